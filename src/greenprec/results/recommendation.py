"""``recommendation.json``: the answer of ``greenprec recommend`` as a typed record, for scripts.

Written next to ``experiment.json`` by ``greenprec report`` (and by ``recommend`` when it
ends) from :func:`greenprec.report.recommendation.recommendation`; read back through the same
models, so a field has one name, one type and one unit everywhere: energies in joules
(``_j``), durations in seconds (``_s``), power in watts (``_w``), CO2e in grams (``_g``),
percentages as percent (``_pct``). ``schema_version`` follows ``experiment.json``'s: a newer
major is refused with one line.

The file is derived data: ``greenprec report`` rewrites it from the runs whenever it runs, so
a damaged or stale copy is never a source of truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from greenprec.errors import ConfigError
from greenprec.results.files import read_bounded, write_atomic
from greenprec.results.models import SCHEMA_MAJOR, SCHEMA_VERSION
from greenprec.results.store import ResultsStore

__all__ = [
    "RECOMMENDATION_FILE",
    "AccuracyCheckRecord",
    "CostItemRecord",
    "CostRecord",
    "DecompositionRecord",
    "LeftOutRecord",
    "LookSummaryRecord",
    "Outcome",
    "RankedConfigurationRecord",
    "RecommendationRecord",
    "SavingRecord",
    "read_recommendation",
    "recommendation_file",
    "write_recommendation",
]

RECOMMENDATION_FILE = "recommendation.json"

Outcome = Literal["use", "reference", "no_single_best", "not_separated", "none", "pending"]
"""``use``: one configuration is best and it is not the reference; ``reference``: the reference
itself is best; ``no_single_best``: the best are within the indifference zone of each other;
``not_separated``: the maximum runs came without separating the survivors; ``none``: no
configuration reached the target in enough of its runs; ``pending``: the selection has not
ended (an interrupted experiment)."""


class _Record(BaseModel):
    # As experiment.json's records: fields a newer minor version adds are kept.
    model_config = ConfigDict(extra="allow")


class RankedConfigurationRecord(_Record):
    """One row of the ranked table."""

    rank: int = Field(ge=1)
    label: str
    """The configuration's label, what its runs record as ``policy`` (``bf16-batch_size=256``)."""
    name: str
    """For sentences: ``bf16 with batch size 256``."""
    reference: bool
    status: str
    """The last look's status (``recommended``, ``within_indifference``, ``dropped``, ...)."""
    status_text: str
    runs: int
    """Done runs of the comparison (failed ones are in ``left_out``)."""
    reached: int
    energy_to_target_j: float | None = None
    """Mean energy to the target over the runs that reached it."""
    energy_ci_low_j: float | None = None
    energy_ci_high_j: float | None = None
    """The t-interval of that mean at 95 %: descriptive, not adjusted for the looks."""
    geometric_mean_energy_j: float | None = None
    """What the selection ranks and compares (its tests are on the log scale)."""
    duration_to_target_s: float | None = None
    power_to_target_w: float | None = None
    """Mean over the runs that reached the target of energy / time to the target."""
    energy_per_sample_j: float | None = None
    samples_per_s: float | None = None
    final_value: float | None = None
    """Mean final value of the (first) target's metric over the done runs."""
    final_metric: str | None = None
    dropped_at_look: int | None = None


class SavingRecord(_Record):
    """Energy to the target of the chosen configuration against the reference, on the log
    scale (ratio of geometric means), with its repeated confidence interval."""

    configuration: str
    reference: str
    ratio: float
    """Geometric-mean energy to the target, configuration / reference."""
    saving_pct: float
    """100 · (1 − ratio): positive is less energy."""
    ci_low_pct: float | None = None
    ci_high_pct: float | None = None
    confidence: float | None = None
    """1 − 2·level: the interval's coverage."""
    level: float | None = None
    """The last look's one-sided nominal level (Lan-DeMets boundary, Bonferroni share)."""
    note: str | None = None


class AccuracyCheckRecord(_Record):
    """The chosen configuration's final value of a target metric against the reference's: a
    one-sided non-inferiority test at the selection's alpha."""

    metric: str
    margin: str
    """As :func:`greenprec.stats.parse_margin` reads it (``test_accuracy=-0.5pp``)."""
    margin_text: str
    margin_source: Literal["experiment", "default"]
    test: str
    alpha: float
    shown: bool | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    p: float | None = None
    n_reference: int = 0
    n_configuration: int = 0
    reason: str | None = None
    bound_text: str | None = None
    """The margin as a signed bound, as the sentence says it: ``−0.5 pp``."""


class DecompositionRecord(_Record):
    """Energy = power × time: the ratio of geometric means splits exactly into both."""

    energy_change_pct: float
    power_change_pct: float
    duration_change_pct: float
    power_share: float | None = None
    """The share of the log energy change that is the log power change (1: all power)."""
    runs_configuration: int
    runs_reference: int
    sentence: str


class CostItemRecord(_Record):
    what: str
    energy_j: float
    count: int = 1


class CostRecord(_Record):
    """What the answer cost against what it saves."""

    experiment_energy_j: float
    items: list[CostItemRecord] = Field(default_factory=list)
    not_counted: str
    saving_per_run_j: float | None = None
    """Mean energy to the target of the reference less the chosen configuration's."""
    payback_runs: int | None = None
    """Training runs with the chosen configuration after which the experiment's energy is
    saved: ceil(experiment_energy_j / saving_per_run_j)."""
    grid_intensity_g_per_kwh: float | None = None
    experiment_co2e_g: float | None = None
    saving_per_run_co2e_g: float | None = None
    co2e_label: str | None = None
    sentences: list[str] = Field(default_factory=list)


class LeftOutRecord(_Record):
    run_id: str
    configuration: str
    reason: str


class LookSummaryRecord(_Record):
    look: int
    runs: int
    level: float | None = None
    dropped: list[str] = Field(default_factory=list)
    ruled_out: list[str] = Field(default_factory=list)
    outcome: str
    text: str


class RecommendationRecord(_Record):
    """``recommendation.json``."""

    schema_version: str = SCHEMA_VERSION
    outcome: Outcome
    sentence: str
    recommended: str | None = None
    """The single best configuration's label (None unless ``outcome`` is use or reference)."""
    leader: str | None = None
    """The configuration with the least geometric-mean energy among those not ruled out."""
    reference: str
    within: list[str] = Field(default_factory=list)
    targets: dict[str, float] = Field(default_factory=dict)
    target_text: str
    method: str
    alpha: float
    indifference: str
    stopped: bool
    stopped_early: bool
    reason: str | None = None
    configurations: list[RankedConfigurationRecord] = Field(default_factory=list)
    saving: SavingRecord | None = None
    accuracy: list[AccuracyCheckRecord] = Field(default_factory=list)
    where_from: DecompositionRecord | None = None
    cost: CostRecord
    left_out: list[LeftOutRecord] = Field(default_factory=list)
    not_run: int = 0
    """Scheduled runs that never ran (the experiment stopped first)."""
    looks: list[LookSummaryRecord] = Field(default_factory=list)
    summary: list[str] = Field(default_factory=list)
    """The sentences, as the report and the terminal print them."""
    energy_source: Literal["measured", "estimated", "simulated"] = "measured"
    """Whether the energy figures are measured, estimated (a modelling meter) or simulated (a
    test meter)."""


def recommendation_file(store: ResultsStore) -> Path:
    """``recommendation.json`` of the store's folder (a fixed name, never built from data)."""
    return store.path / RECOMMENDATION_FILE


def write_recommendation(store: ResultsStore, record: RecommendationRecord) -> Path:
    """Write ``recommendation.json`` atomically (as the store writes every file)."""
    path = recommendation_file(store)
    write_atomic(path, record.model_dump_json(indent=2) + "\n")
    return path


def read_recommendation(store: ResultsStore) -> RecommendationRecord | None:
    """``recommendation.json``, None when the folder has none; ConfigError naming the file when
    it is damaged or written by a newer greenprec."""
    path = recommendation_file(store)
    try:
        raw = read_bounded(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error.strerror or error}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{path} is damaged (not JSON); run greenprec report again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object; run greenprec report again")
    major = str(data.get("schema_version", "")).split(".", 1)[0]
    if not major.isdigit() or int(major) > SCHEMA_MAJOR:
        raise ConfigError(
            f"{path}: schema_version {str(data.get('schema_version'))[:20]!r} is not one this "
            f"greenprec reads ({SCHEMA_MAJOR}.x)"
        )
    try:
        return RecommendationRecord.model_validate(data)
    except ValidationError as error:
        item = error.errors()[0]
        where = ".".join(str(part) for part in item["loc"]) or "record"
        raise ConfigError(
            f"{path} is damaged ({where}: {item['msg']}); run greenprec report again"
        ) from None

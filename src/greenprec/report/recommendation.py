"""The answer of ``greenprec recommend``: which configuration reaches the target for the least
energy, how sure that is, where the saving comes from and what finding it out cost.

:func:`recommendation` is a pure function of the folder's records (``experiment.json`` with its
``selection``, the run records, the Slurm jobs' records): data in, a frozen
:class:`Recommendation` out, which ``recommendation.json``
(:class:`greenprec.results.recommendation.RecommendationRecord`), the report's
"Recommendation" section and the terminal table (:mod:`greenprec.cli.recommendation`) all
show. The statistics are greenprec's own tests, reused, never redone here:

- the saving of the chosen configuration against the reference is the ratio of their
  geometric-mean energies to the target, with the Welch interval on the log scale at the last
  look's one-sided level (:func:`greenprec.stats.tost_welch` on the logs, the test
  :func:`greenprec.stats.select_look` makes against the indifference zone): a repeated
  confidence interval, valid however many looks were made (confidence 1 − 2·level);
- the final value of each target's metric is tested non-inferior to the reference's with its
  margin (``config.margins``, else greenprec's default for accuracy) at the selection's alpha
  (:func:`greenprec.stats.noninferiority_welch`, on the log ratio for a margin in %);
- the table's energy interval is the t-interval of the mean at 95 %
  (:func:`greenprec.stats.describe`): a description of the runs, not adjusted for the looks.

A run's outcome is its energy to the target: when it reached every target, the largest energy
to one of them; a run that did not reach every target "did not reach". Failed runs are not runs
of the comparison; they, and every other run without an energy to the target, are named in
``left_out``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from greenprec import stats
from greenprec.carbon import co2e_g, describe_intensity, parse_grid_intensity
from greenprec.errors import ConfigError
from greenprec.report import formatting as fmt
from greenprec.report._json import Json, JsonObject
from greenprec.report.content import Table
from greenprec.results import ExperimentRecord, JobRecord, ResultsStore, RunRecord
from greenprec.results.models import (
    SCHEMA_VERSION,
    ConfigurationStatusRecord,
    PhaseRecord,
    SelectionLookRecord,
    SelectionRecord,
)
from greenprec.results.recommendation import Outcome, RecommendationRecord

__all__ = [
    "AccuracyCheck",
    "Cost",
    "CostItem",
    "Decomposition",
    "LeftOut",
    "LookSummary",
    "RankedConfiguration",
    "Recommendation",
    "Saving",
    "Section",
    "describe_energy",
    "from_store",
    "human_name",
    "recommendation",
    "section",
    "table",
]

_ENERGY_CI = "95% t-interval of the mean, not adjusted for the looks"
_NOT_COUNTED = (
    "cool-down pauses and the time between runs are not measured and not counted, nor is "
    "the energy of writing this report"
)
# The ranked table's order: the answer first, then what is still close, then what was ruled out.
_RANK_GROUP = {
    "recommended": 0,
    "leading": 0,
    "within_indifference": 1,
    "not_separated": 2,
    "in_play": 2,
    "dropped": 3,
    "too_few_reached": 4,
    "never_reached": 5,
}


# -- the typed answer -------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedConfiguration:
    """One row of the ranked table (see
    :class:`greenprec.results.recommendation.RankedConfigurationRecord` for the fields)."""

    rank: int
    label: str
    name: str
    reference: bool
    status: str
    status_text: str
    runs: int
    reached: int
    energy_to_target_j: float | None
    energy_ci_low_j: float | None
    energy_ci_high_j: float | None
    geometric_mean_energy_j: float | None
    duration_to_target_s: float | None
    power_to_target_w: float | None
    energy_per_sample_j: float | None
    samples_per_s: float | None
    final_value: float | None
    final_metric: str | None
    dropped_at_look: int | None


@dataclass(frozen=True)
class Saving:
    """The chosen configuration against the reference: ratio of geometric-mean energies to the
    target and the saving in %, with the repeated confidence interval of the last look."""

    configuration: str
    reference: str
    ratio: float
    saving_pct: float
    ci_low_pct: float | None
    ci_high_pct: float | None
    confidence: float | None
    level: float | None
    note: str | None = None


@dataclass(frozen=True)
class AccuracyCheck:
    """A target metric's final value, chosen configuration against the reference: shown not
    worse than the margin (``shown``) at the selection's alpha, or not (with ``reason`` when
    the test could not be made)."""

    metric: str
    margin: str
    margin_text: str
    margin_source: Literal["experiment", "default"]
    test: str
    alpha: float
    shown: bool | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float | None
    p: float | None
    n_reference: int
    n_configuration: int
    reason: str | None
    bound_text: str
    """The margin as a signed bound, for the sentence: ``−0.5 pp``."""


@dataclass(frozen=True)
class Decomposition:
    """Where the saving comes from: energy to the target = power × time to the target, per run,
    so the ratio of geometric means splits exactly: energy ratio = power ratio × time ratio."""

    energy_change_pct: float
    power_change_pct: float
    duration_change_pct: float
    power_share: float | None
    runs_configuration: int
    runs_reference: int
    sentence: str


@dataclass(frozen=True)
class CostItem:
    what: str
    energy_j: float
    count: int = 1


@dataclass(frozen=True)
class Cost:
    """The experiment's own measured energy beside the saving per future training run."""

    experiment_energy_j: float
    items: tuple[CostItem, ...]
    not_counted: str
    saving_per_run_j: float | None
    payback_runs: int | None
    grid_intensity_g_per_kwh: float | None
    experiment_co2e_g: float | None
    saving_per_run_co2e_g: float | None
    co2e_label: str | None
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class LeftOut:
    """A run that gives no energy to the target, and why."""

    run_id: str
    configuration: str
    reason: str


@dataclass(frozen=True)
class LookSummary:
    look: int
    runs: int
    level: float | None
    dropped: tuple[str, ...]
    ruled_out: tuple[str, ...]
    outcome: str
    text: str


@dataclass(frozen=True)
class Recommendation:
    """The whole answer; :meth:`to_record` is ``recommendation.json``."""

    outcome: Outcome
    sentence: str
    recommended: str | None
    leader: str | None
    reference: str
    within: tuple[str, ...]
    targets: dict[str, float]
    target_text: str
    method: str
    alpha: float
    indifference: str
    stopped: bool
    stopped_early: bool
    reason: str | None
    configurations: tuple[RankedConfiguration, ...]
    saving: Saving | None
    accuracy: tuple[AccuracyCheck, ...]
    where_from: Decomposition | None
    cost: Cost
    left_out: tuple[LeftOut, ...]
    not_run: int
    looks: tuple[LookSummary, ...]
    summary: tuple[str, ...] = field(default_factory=tuple)
    energy_source: EnergySource = "measured"
    """``measured``, ``estimated`` (a meter that models power, e.g. ``estimate``) or
    ``simulated`` (a test meter: ``mock``, ``scripted``): every energy figure here is that."""

    def row(self, label: str) -> RankedConfiguration:
        """The ranked row of configuration ``label``."""
        for configuration in self.configurations:
            if configuration.label == label:
                return configuration
        raise ConfigError(f"no configuration {label!r:.60} in the recommendation")

    def to_json_dict(self) -> JsonObject:
        """``recommendation.json``'s content: the schema version, then every field, tuples as
        lists, non-finite numbers as None."""
        out = _jsonable({"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)})
        assert isinstance(out, dict)
        return out

    def to_record(self) -> RecommendationRecord:
        """``recommendation.json`` as its typed record."""
        return RecommendationRecord.model_validate(self.to_json_dict())


def _jsonable(value: object) -> Json:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# -- names and numbers in words ---------------------------------------------------------------


def _value_text(value: object) -> str:
    """A parameter value as a configuration's label shows it (the rule of
    :class:`greenprec.experiment.candidates.Candidate`, which the report does not import)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value).replace("e+", "e") if isinstance(value, float) else str(value)


def _listed(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def human_name(policy: str, params: Mapping[str, object]) -> str:
    """For sentences: ``bf16 with batch size 256 and learning rate 0.001``."""
    parts = [f"{key.replace('_', ' ')} {_value_text(value)}" for key, value in params.items()]
    return f"{policy} with {_listed(parts)}" if parts else policy


def _names(experiment: ExperimentRecord) -> dict[str, str]:
    """Each configuration's label -> its name in sentences (a policy is its own name)."""
    names = {label: label for label in experiment.policies}
    configurations = experiment.config.get("configurations")
    for item in configurations if isinstance(configurations, list) else []:
        if isinstance(item, dict) and item.get("label") is not None:
            params = item.get("params")
            names[str(item["label"])] = human_name(
                str(item.get("policy") or item["label"]),
                params if isinstance(params, dict) else {},
            )
    return names


def describe_energy(energy_j: float) -> str:
    """``512 J``, ``12.3 kJ``, ``1.23 MJ``, with kWh beside from 1 kJ: ``12.3 kJ (0.00342 kWh)``."""
    size = abs(energy_j)
    for unit, scale in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if size >= scale:
            return f"{energy_j / scale:.3g} {unit} ({energy_j / 3.6e6:.3g} kWh)"
    return f"{energy_j:.3g} J"


def _pct(value: float, signed: bool = False) -> str:
    """A percentage for sentences: one decimal (``31.2``), typographic minus."""
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    return text.replace("-", fmt.MINUS, 1)


def _confidence(level: float) -> str:
    """1 − 2·level with enough decimals to tell it from 100 % (early looks test at tiny
    levels): ``98.9 %``, ``99.998 %``."""
    decimals = max(1, 1 - math.floor(math.log10(200.0 * level)))
    return f"{100.0 * (1.0 - 2.0 * level):.{decimals}f} %"


def _metric_words(metric: str) -> str:
    return metric.replace("_", " ")


def _target_text(targets: Mapping[str, float], higher: Mapping[str, bool]) -> str:
    """``97 % test accuracy``, ``test loss ≤ 0.3``; several joined with "and"."""
    parts = []
    for metric, value in targets.items():
        if stats.accuracy_like(metric) and 0.0 < value <= 100.0:
            shown = 100.0 * value if value <= 1.0 else value
            parts.append(f"{shown:g} % {_metric_words(metric)}")
        else:
            sign = "≥" if higher.get(metric, True) else "≤"
            parts.append(f"{_metric_words(metric)} {sign} {value:g}")
    return _listed(parts) or "the target"


# -- the runs ---------------------------------------------------------------------------------


@dataclass
class _Group:
    """One configuration's runs of the comparison (done) and their outcomes."""

    label: str
    done: list[RunRecord] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    duration_s: list[float | None] = field(default_factory=list)

    @property
    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Energy and time to the target of the runs that have both, positive."""
        pairs = [(e, d) for e, d in zip(self.energy_j, self.duration_s, strict=True) if d]
        pairs = [(e, d) for e, d in pairs if d is not None and d > 0.0 and math.isfinite(d)]
        return (
            np.asarray([e for e, _ in pairs], dtype=np.float64),
            np.asarray([d for _, d in pairs], dtype=np.float64),
        )


def _to_target(
    run: RunRecord, targets: Mapping[str, float], text: str
) -> tuple[float | None, float | None, str | None]:
    """(energy to every target, time to it, None) or (None, None, why there is none)."""
    records = {t.metric: t for t in run.targets}
    wanted = list(targets) or list(records)
    if not wanted or any(m not in records or not records[m].reached for m in wanted):
        finals = [
            f"final {_metric_words(m)} {records[m].final_value:.4g}"
            for m in wanted
            if m in records and records[m].final_value is not None
        ]
        return None, None, f"did not reach {text}" + (f" ({', '.join(finals)})" if finals else "")
    reached = [records[m] for m in wanted]
    if any(t.energy_j is None for t in reached):
        return None, None, "reached the target, but its energy to the target was not recorded"
    binding = max(reached, key=lambda t: float(t.energy_j or 0.0))
    energy_j = float(binding.energy_j or 0.0)
    if not math.isfinite(energy_j) or energy_j <= 0.0:
        return None, None, f"its energy to the target ({energy_j:g} J) is not positive"
    return energy_j, binding.duration_s, None


def _collect(
    experiment: ExperimentRecord, runs: Sequence[RunRecord], targets: Mapping[str, float], text: str
) -> tuple[dict[str, _Group], list[LeftOut], int]:
    """The done runs per configuration with their outcomes, every run left out, and the count
    of scheduled runs that never ran."""
    groups = {label: _Group(label) for label in experiment.policies}
    left_out: list[LeftOut] = []
    not_run = 0
    for run in sorted(runs, key=lambda r: r.order):
        if run.status in ("pending", "running"):
            not_run += 1
            continue
        if run.status == "failed":
            reason = f"failed: {run.error or 'no error recorded'}"
            left_out.append(LeftOut(run.run_id, run.policy, reason))
            continue
        group = groups.setdefault(run.policy, _Group(run.policy))
        group.done.append(run)
        energy_j, duration_s, why = _to_target(run, targets, text)
        if energy_j is None:
            left_out.append(LeftOut(run.run_id, run.policy, why or "no energy to the target"))
            continue
        group.energy_j.append(energy_j)
        group.duration_s.append(duration_s)
    return groups, left_out, not_run


def _final_values(group: _Group, metric: str) -> np.ndarray:
    """The metric's final value of each done run (its target record's, else what the workload
    returned), finite ones only."""
    values: list[float] = []
    for run in group.done:
        record = next((t for t in run.targets if t.metric == metric), None)
        value: object = record.final_value if record is not None else None
        if value is None:
            value = run.metrics.get(metric)
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is not None and math.isfinite(float(number)):
            values.append(float(number))
    return np.asarray(values, dtype=np.float64)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else None


# -- the ranked table -------------------------------------------------------------------------


def _status_text(status: str, runs: int, reached: int, share: float, look: int | None) -> str:
    if status == "dropped":
        return f"dropped at look {look}" if look is not None else "dropped"
    if status == "too_few_reached":
        return f"reached in {reached} of {runs} runs (fewer than {100.0 * share:g} %)"
    return {
        "recommended": "recommended",
        "leading": "leading",
        "in_play": "in play",
        "within_indifference": "within the indifference zone",
        "not_separated": "not separated",
        "never_reached": "never reached",
    }.get(status, status.replace("_", " "))


def _row(
    group: _Group,
    status: ConfigurationStatusRecord | None,
    names: Mapping[str, str],
    reference: str,
    metric: str | None,
    single: bool,
    share: float,
) -> RankedConfiguration:
    code = status.status if status is not None else "not_compared"
    if code == "recommended" and not single:
        code = "leading"  # the leader of a tie, or of survivors the maximum runs left apart
    energy = np.asarray(group.energy_j, dtype=np.float64)
    described = stats.describe(energy) if energy.size else None
    ci = described.ci95 if described is not None else None
    pair_e, pair_d = group.positive_pairs
    finals = _final_values(group, metric) if metric is not None else np.asarray([])
    return RankedConfiguration(
        rank=0,
        label=group.label,
        name=names.get(group.label, group.label),
        reference=group.label == reference,
        status=code,
        status_text=(
            "not compared"
            if status is None
            else _status_text(
                code, len(group.done), len(group.energy_j), share, status.dropped_at_look
            )
        ),
        runs=len(group.done),
        reached=len(group.energy_j),
        energy_to_target_j=described.mean if described is not None else None,
        energy_ci_low_j=ci[0] if ci is not None else None,
        energy_ci_high_j=ci[1] if ci is not None else None,
        geometric_mean_energy_j=float(np.exp(np.log(energy).mean())) if energy.size else None,
        duration_to_target_s=_mean(group.duration_s),
        power_to_target_w=float((pair_e / pair_d).mean()) if pair_e.size else None,
        energy_per_sample_j=_mean([r.energy_per_sample_j for r in group.done]),
        samples_per_s=_mean([r.samples_per_s for r in group.done]),
        final_value=float(finals.mean()) if finals.size else None,
        final_metric=metric,
        dropped_at_look=status.dropped_at_look if status is not None else None,
    )


def _rows(
    groups: Mapping[str, _Group],
    last: SelectionLookRecord | None,
    names: Mapping[str, str],
    reference: str,
    metric: str | None,
    outcome: Outcome,
    selection: SelectionRecord,
) -> tuple[RankedConfiguration, ...]:
    """Every configuration's row, ranked (see :func:`_ranked`)."""
    statuses = {c.name: c for c in last.configurations} if last is not None else {}
    single = outcome in ("use", "reference")
    share = selection.min_reached_share
    return _ranked(
        [
            _row(group, statuses.get(label), names, reference, metric, single, share)
            for label, group in groups.items()
        ]
    )


def _ranked(rows: list[RankedConfiguration]) -> tuple[RankedConfiguration, ...]:
    def key(row: RankedConfiguration) -> tuple[int, float, str]:
        energy = row.geometric_mean_energy_j
        return (_RANK_GROUP.get(row.status, 6), math.inf if energy is None else energy, row.label)

    ordered = sorted(rows, key=key)
    return tuple(dataclasses.replace(row, rank=i) for i, row in enumerate(ordered, start=1))


# -- the saving and its interval --------------------------------------------------------------


def _minus_expm1_pct(log_ratio: float | None) -> float | None:
    """100 · (1 − exp(x)): the saving in % of a log ratio; None beyond a float's range."""
    if log_ratio is None or not math.isfinite(log_ratio) or log_ratio > 700.0:
        return None
    return -100.0 * math.expm1(log_ratio)


def _saving(chosen: _Group, reference: _Group, level: float | None, delta: float) -> Saving | None:
    """The repeated confidence interval of the log ratio of geometric means: Welch on the logs
    at the last look's one-sided level, the very test select_look makes (TOST against the
    indifference zone δ, whose 1 − 2·level interval this is)."""
    if not chosen.energy_j or not reference.energy_j:
        return None
    log_chosen = np.log(np.asarray(chosen.energy_j, dtype=np.float64))
    log_reference = np.log(np.asarray(reference.energy_j, dtype=np.float64))
    diff = float(log_chosen.mean() - log_reference.mean())
    saving_pct = _minus_expm1_pct(diff)
    if saving_pct is None:
        return None
    low = high = None
    note: str | None = None
    if level is None:
        note = "no interval: no look made a test"
    else:
        result = stats.tost_welch(
            log_reference,
            log_chosen,
            delta,
            level,
            label_a=reference.label,
            label_b=chosen.label,
        )
        if result.ci_low is None or result.ci_high is None:
            note = "no interval: " + next(iter(result.not_computed.values()), "not computed")
        else:
            low, high = _minus_expm1_pct(result.ci_high), _minus_expm1_pct(result.ci_low)
            if low is None or high is None:
                note = "the interval is unbounded (very variable runs)"
    return Saving(
        configuration=chosen.label,
        reference=reference.label,
        ratio=math.exp(diff),
        saving_pct=saving_pct,
        ci_low_pct=low,
        ci_high_pct=high,
        confidence=None if level is None else 1.0 - 2.0 * level,
        level=level,
        note=note,
    )


# -- final accuracy: not worse than the margin ------------------------------------------------


def _margin(
    metric: str, config: Mapping[str, object], higher_is_better: bool
) -> tuple[stats.Margin, Literal["experiment", "default"]] | None:
    """The metric's one-sided margin: ``config.margins``' (an equivalence margin tolerates
    its worse side), else for an accuracy greenprec's default; None for another metric."""
    margins = config.get("margins")
    spec = margins.get(metric) if isinstance(margins, dict) else None
    source: Literal["experiment", "default"] = "experiment"
    margin: stats.Margin | None = None
    if spec is not None:
        try:
            margin = stats.parse_margin(f"{metric}={spec}")
        except ConfigError:
            margin = None
    if margin is None:
        if not stats.accuracy_like(metric):
            return None
        default = stats.DEFAULT_ACCURACY_MARGIN
        margin, source = stats.Margin(metric, default.value, default.unit, "equivalence"), "default"
    if margin.kind == "equivalence":
        tolerated: Literal[-1, 1] = -1 if higher_is_better else 1
        margin = stats.Margin(metric, margin.value, margin.unit, "noninferiority", tolerated)
    return margin, source


def _bound_text(margin: stats.Margin) -> str:
    sign = fmt.MINUS if margin.tolerated == -1 else "+"
    unit = {"pp": " pp", "%": " %", "abs": ""}[margin.unit]
    return f"{sign}{margin.value:g}{unit}"


def _accuracy_check(
    metric: str,
    found: tuple[stats.Margin, Literal["experiment", "default"]],
    chosen: _Group,
    reference: _Group,
    alpha: float,
) -> AccuracyCheck:
    margin, source = found
    ref, new = _final_values(reference, metric), _final_values(chosen, metric)
    scale: Literal["fraction", "percent"] | None = None
    if stats.accuracy_like(metric) and (ref.size or new.size):
        try:
            scale = stats.accuracy_scale(np.concatenate([ref, new]))
        except ConfigError:
            scale = None
    tolerated: int = margin.tolerated or -1
    absolute: float | None = None
    result: stats.NonInferiorityResult | None = None
    reason: str | None = None
    try:
        if margin.unit == "%":
            result = stats.noninferiority_log_ratio(ref, new, margin.value, tolerated, alpha)
        else:
            absolute = margin.absolute(float(ref.mean()) if ref.size else math.nan, scale)
            result = stats.noninferiority_welch(ref, new, absolute, tolerated, alpha)
    except ConfigError as error:
        reason = str(error)
    if result is not None and result.noninferior is None:
        reason = next(iter(result.not_computed.values()), "not computed")
    return AccuracyCheck(
        metric=metric,
        margin=margin.spec(),
        margin_text=margin.describe(absolute=absolute, accuracy_scale=scale),
        margin_source=source,
        test="noninferiority_log_ratio" if margin.unit == "%" else "noninferiority_welch",
        alpha=alpha,
        shown=None if result is None else result.noninferior,
        difference=None if result is None else result.difference,
        ci_low=None if result is None else result.ci_low,
        ci_high=None if result is None else result.ci_high,
        confidence=1.0 - 2.0 * alpha,
        p=None if result is None else result.p,
        n_reference=int(ref.size),
        n_configuration=int(new.size),
        reason=reason,
        bound_text=_bound_text(margin),
    )


def _accuracy_checks(
    experiment: ExperimentRecord,
    targets: Mapping[str, float],
    higher: Mapping[str, bool],
    chosen: _Group,
    reference: _Group,
    alpha: float,
) -> tuple[AccuracyCheck, ...]:
    checks = []
    for metric in targets:
        found = _margin(metric, experiment.config, higher.get(metric, True))
        if found is not None:
            checks.append(_accuracy_check(metric, found, chosen, reference, alpha))
    return tuple(checks)


def _accuracy_clause(check: AccuracyCheck) -> str:
    words = _metric_words(check.metric)
    if check.shown:
        side = "not worse than" if check.bound_text.startswith(fmt.MINUS) else "not more than"
        return f"final {words} {side} {check.bound_text}"
    return f"final {words} NOT shown within {check.bound_text} of the reference's"


# -- where the saving comes from --------------------------------------------------------------


def _where_phrase(log_energy: float, log_power: float, log_time: float) -> str:
    """Which of power and time the energy change comes from, in words."""
    if log_energy >= 0.0:
        return "no saving to explain"
    if log_power < 0.0 <= log_time:
        return "from lower power, despite a time to target no shorter"
    if log_time < 0.0 <= log_power:
        return "from a shorter time to target, despite power no lower"
    share = log_power / log_energy  # both negative: a share of the saving in (0, 1)
    if share >= 0.9:
        return "almost all from lower power"
    if share >= 0.6:
        return "mostly from lower power"
    if share > 0.4:
        return "from lower power and a shorter time to target alike"
    if share > 0.1:
        return "mostly from a shorter time to target"
    return "almost all from a shorter time to target"


def _decomposition(chosen: _Group, reference: _Group) -> Decomposition | None:
    """log E = log P + log T run by run, so the ratio of geometric means of energy to the target
    is exactly the power ratio times the time ratio (over the runs with a positive time)."""
    energy_c, time_c = chosen.positive_pairs
    energy_r, time_r = reference.positive_pairs
    if not energy_c.size or not energy_r.size:
        return None
    log_energy = float(np.log(energy_c).mean() - np.log(energy_r).mean())
    log_time = float(np.log(time_c).mean() - np.log(time_r).mean())
    log_power = log_energy - log_time
    if max(abs(log_energy), abs(log_time), abs(log_power)) > 700.0:
        return None
    energy_pct, power_pct, time_pct = (
        100.0 * math.expm1(x) for x in (log_energy, log_power, log_time)
    )
    phrase = _where_phrase(log_energy, log_power, log_time)
    sentence = (
        f"The saving comes {phrase}: power to the target {_pct(power_pct, True)} %, "
        f"time to the target {_pct(time_pct, True)} % (energy {_pct(energy_pct, True)} %)."
    )
    if phrase == "no saving to explain":
        sentence = (
            f"No saving to explain: energy to the target {_pct(energy_pct, True)} %, power "
            f"{_pct(power_pct, True)} %, time {_pct(time_pct, True)} %."
        )
    return Decomposition(
        energy_change_pct=energy_pct,
        power_change_pct=power_pct,
        duration_change_pct=time_pct,
        power_share=log_power / log_energy if log_energy != 0.0 else None,
        runs_configuration=int(energy_c.size),
        runs_reference=int(energy_r.size),
        sentence=sentence,
    )


# -- what the answer cost ---------------------------------------------------------------------


def _phase_energy(phase: PhaseRecord | None) -> float | None:
    if phase is None:
        return None
    if phase.energy_j is not None and math.isfinite(phase.energy_j):
        return float(phase.energy_j)
    if phase.power_w is not None and phase.duration_s is not None:
        energy_j = float(phase.power_w) * float(phase.duration_s)
        return energy_j if math.isfinite(energy_j) else None
    return None


def _cost_items(
    experiment: ExperimentRecord, runs: Sequence[RunRecord], jobs: Sequence[JobRecord]
) -> tuple[CostItem, ...]:
    """Every measured energy of the experiment, named: its runs (done and failed alike, as
    long as they measured something), its idle baselines and its warm-ups."""
    items: list[CostItem] = []
    measured = [r for r in runs if r.energy_j is not None and math.isfinite(r.energy_j)]
    if measured:
        failed = sum(1 for r in measured if r.status == "failed")
        what = fmt.plural(len(measured), "run")
        if failed:
            what += f" ({len(measured) - failed} done, {failed} failed)"
        items.append(CostItem(what, float(sum(r.energy_j or 0.0 for r in measured)), len(measured)))
    phases = [
        (("idle baseline", None), [_phase_energy(experiment.baseline)]),
        (("warm-up", None), [_phase_energy(p) for p in experiment.warmups]),
        (
            ("Slurm job's idle baseline", "Slurm jobs' idle baselines"),
            [_phase_energy(j.baseline) for j in jobs],
        ),
        (("Slurm job's warm-up", "Slurm jobs' warm-ups"), [_phase_energy(j.warmup) for j in jobs]),
    ]
    for (one, many), energies in phases:
        known = [e for e in energies if e is not None]
        if known:
            items.append(CostItem(fmt.plural(len(known), one, many), float(sum(known)), len(known)))
    return tuple(items)


def _cost(
    items: tuple[CostItem, ...],
    saving_j: float | None,
    grid_intensity: str | None,
    who: tuple[str, str, str] | None,
) -> Cost:
    """``who``: (the chosen configuration's name, the reference's, the target) for the
    sentences."""
    total_j = float(sum(item.energy_j for item in items))
    if saving_j is not None and saving_j <= 0.0:
        saving_j = None
    payback = math.ceil(total_j / saving_j) if saving_j and total_j > 0.0 else None
    parts = ", ".join(f"{describe_energy(item.energy_j)} in {item.what}" for item in items)
    sentences = [
        f"The experiment used {describe_energy(total_j)}" + (f": {parts}." if parts else ".")
    ]
    if saving_j is not None and who is not None:
        sentences.append(
            f"Each future training run with {who[0]} instead of {who[1]} saves "
            f"{describe_energy(saving_j)} to {who[2]}; the experiment pays back after "
            f"{payback} training runs."
        )
    elif who is not None:
        sentences.append("No saving per training run, so the experiment does not pay back.")
    g_per_kwh = exp_g = save_g = label = None
    if grid_intensity is not None:
        try:
            g_per_kwh = parse_grid_intensity(grid_intensity)
        except ConfigError:
            g_per_kwh = None
    if g_per_kwh is not None:
        label = f"converted at {describe_intensity(g_per_kwh)}, not measured"
        exp_g = co2e_g(total_j, g_per_kwh)
        save_g = None if saving_j is None else co2e_g(saving_j, g_per_kwh)
        per_run = "" if save_g is None else f"; the saving {save_g:.3g} g CO2e per training run"
        sentences.append(f"CO2e ({label}): the experiment {exp_g:.3g} g CO2e{per_run}.")
    return Cost(
        experiment_energy_j=total_j,
        items=items,
        not_counted=_NOT_COUNTED,
        saving_per_run_j=saving_j,
        payback_runs=payback,
        grid_intensity_g_per_kwh=g_per_kwh,
        experiment_co2e_g=exp_g,
        saving_per_run_co2e_g=save_g,
        co2e_label=label,
        sentences=tuple(sentences),
    )


# -- the looks --------------------------------------------------------------------------------


def _looks(selection: SelectionRecord, names: Mapping[str, str]) -> tuple[LookSummary, ...]:
    out: list[LookSummary] = []
    final_before: set[str] = set()
    for look in selection.looks:
        dropped = tuple(
            c.name
            for c in look.configurations
            if c.status == "dropped" and c.dropped_at_look == look.look
        )
        final_now = {
            c.name
            for c in look.configurations
            if c.final and c.status in ("never_reached", "too_few_reached")
        }
        ruled_out = tuple(sorted(final_now - final_before))
        final_before |= final_now
        level = "no test yet" if look.level is None else f"one-sided level {look.level:.2g}"
        what = [_drop_text(c, names) for c in look.configurations if c.name in dropped]
        what += [
            f"ruled out {names.get(n, n)} (too few runs reached the target)" for n in ruled_out
        ]
        text = (
            f"Look {look.look} after {look.runs} runs per configuration ({level}): "
            f"{'; '.join(what) if what else 'nothing dropped'}; {look.reason}."
        )
        out.append(
            LookSummary(look.look, look.runs, look.level, dropped, ruled_out, look.outcome, text)
        )
    return tuple(out)


def _drop_text(status: ConfigurationStatusRecord, names: Mapping[str, str]) -> str:
    pair = status.dropped_by
    name = names.get(status.name, status.name)
    if pair is None:
        return f"dropped {name}"
    more = 100.0 * (pair.ratio - 1.0)
    low, high = (100.0 * (r - 1.0) for r in (pair.ratio_ci_low, pair.ratio_ci_high))
    bound = f"{_pct(high)}" if math.isfinite(high) else "∞"
    return (
        f"dropped {name}: {_pct(more)} % more energy than {names.get(pair.better, pair.better)} "
        f"({_confidence(pair.level)} CI {_pct(low)} to {bound} %)"
    )


# -- the answer in one sentence ---------------------------------------------------------------


def _outcome(last: SelectionLookRecord | None, reference: str, stopped: bool) -> Outcome:
    if last is not None and not last.stop and stopped:
        # Every planned block has run, but failed runs left the last look short of the
        # maximum: the selection has ended, with the survivors not separated.
        return "not_separated" if last.leader is not None else "none"
    if last is None or not last.stop:
        return "pending"
    if last.recommended is None:
        return "none"
    if any(c.status == "not_separated" for c in last.configurations):
        return "not_separated"
    if last.within:
        return "no_single_best"
    return "reference" if last.recommended == reference else "use"


def _use_sentence(
    name: str,
    reference_name: str,
    target: str,
    saving: Saving | None,
    accuracy: tuple[AccuracyCheck, ...],
) -> str:
    clauses = [_accuracy_clause(check) for check in accuracy]
    tail = "".join(f", {clause}" for clause in clauses)
    if saving is None:
        return (
            f"Use {name}: {reference_name}, the reference, did not reach {target} in enough of "
            f"its runs to state a saving against it{tail}."
        )
    amount = saving.saving_pct
    how = f"{_pct(amount)} % less" if amount >= 0.0 else f"{_pct(-amount)} % more"
    if saving.ci_low_pct is not None and saving.ci_high_pct is not None and saving.level:
        interval = (
            f"{_confidence(saving.level)} CI {_pct(saving.ci_low_pct)} to "
            f"{_pct(saving.ci_high_pct)} %"
        )
    else:
        interval = saving.note or "no interval"
    return f"Use {name}: {how} energy to {target} than {reference_name} ({interval}){tail}."


@dataclass(frozen=True)
class _Facts:
    """What the sentence needs besides the outcome."""

    names: Mapping[str, str]
    reference: str
    target: str
    zone: str
    share: float
    max_runs: int
    min_runs: int


def _ended_short(last: SelectionLookRecord, facts: _Facts, name: Callable[[str], str]) -> str:
    """Every planned block has run, but failed runs left the last look short of the maximum
    runs, undecided: neither "not ended yet" nor "the maximum was reached"."""
    short = (
        f"after {last.runs} runs per configuration: every planned block has run, but failed "
        f"runs left it short of the maximum of {facts.max_runs}"
    )
    if last.leader is None:
        return f"No recommendation: no configuration is ahead {short}."
    apart = [c.name for c in last.configurations if c.status == "in_play"]
    others = f" from {_listed([name(n) for n in apart])}" if apart else ""
    return f"No single best: {name(last.leader)} leads, but is not separated{others} {short}."


def _sentence(
    outcome: Outcome,
    last: SelectionLookRecord | None,
    facts: _Facts,
    saving: Saving | None,
    accuracy: tuple[AccuracyCheck, ...],
) -> str:
    def name(label: str) -> str:
        return facts.names.get(label, label)

    if last is not None and not last.stop and outcome != "pending":
        return _ended_short(last, facts, name)
    if outcome == "pending" or last is None or last.recommended is None:
        if last is None:
            why = (
                f"no look has been made yet (the first comes after {facts.min_runs} runs of "
                "every configuration)"
            )
            return f"No recommendation yet: {why}."
        if outcome == "pending":
            return f"No recommendation yet: the selection has not ended ({last.reason})."
        return (
            f"No recommendation: no configuration reached {facts.target} in at least "
            f"{100.0 * facts.share:g} % of its runs."
        )
    leader = last.recommended
    if outcome == "not_separated":
        apart = [c.name for c in last.configurations if c.status == "not_separated"]
        return (
            f"No single best: {name(leader)} leads, but is not separated from "
            f"{_listed([name(n) for n in apart])} after the maximum of {facts.max_runs} runs "
            "per configuration."
        )
    if outcome == "no_single_best":
        tied = _listed([name(n) for n in (leader, *last.within)])
        return f"No single best: {tied} are within {facts.zone} of each other."
    if outcome == "reference":
        return (
            f"Use {name(leader)}: it is the reference; every other configuration was shown to "
            f"need more energy to {facts.target} or reached it too rarely."
        )
    return _use_sentence(name(leader), name(facts.reference), facts.target, saving, accuracy)


# -- the whole answer -------------------------------------------------------------------------


def _higher_is_better(runs: Sequence[RunRecord]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for run in runs:
        for target in run.targets:
            out.setdefault(target.metric, target.higher_is_better)
    return out


def _targets(experiment: ExperimentRecord, runs: Sequence[RunRecord]) -> dict[str, float]:
    configured = experiment.config.get("targets")
    if isinstance(configured, dict) and configured:
        return {str(k): float(v) for k, v in configured.items() if isinstance(v, (int, float))}
    seen: dict[str, float] = {}
    for run in runs:
        for target in run.targets:
            seen.setdefault(target.metric, target.value)
    return seen


def _zone(selection: SelectionRecord) -> tuple[float, str]:
    """δ on the log scale and its words (``3 %``)."""
    last = selection.last
    if last is not None:
        delta = last.indifference
    else:
        try:
            delta = stats.parse_indifference(selection.indifference)
        except ConfigError:
            delta = math.log1p(0.03)
    return delta, f"{100.0 * math.expm1(delta):.3g} %"


def _against_reference(
    experiment: ExperimentRecord,
    targets: tuple[Mapping[str, float], Mapping[str, bool]],
    chosen: _Group | None,
    reference: _Group,
    level_delta: tuple[float | None, float],
) -> tuple[Saving | None, tuple[AccuracyCheck, ...], Decomposition | None, float | None]:
    """The chosen configuration against the reference: the saving with its repeated interval,
    the final values' non-inferiority, where the saving comes from, and the mean joules saved
    per run (all None when nothing is chosen or the reference itself is)."""
    selection = experiment.selection
    if chosen is None or selection is None:
        return None, (), None, None
    goals, higher = targets
    saving = _saving(chosen, reference, *level_delta)
    accuracy = _accuracy_checks(experiment, goals, higher, chosen, reference, selection.alpha)
    saving_j = None
    if chosen.energy_j and reference.energy_j:
        saving_j = float(np.mean(reference.energy_j) - np.mean(chosen.energy_j))
    return saving, accuracy, _decomposition(chosen, reference), saving_j


EnergySource = Literal["measured", "estimated", "simulated"]


def _energy_source(experiment: ExperimentRecord) -> EnergySource:
    meters = experiment.meters
    if meters.simulated:
        return "simulated"
    return "estimated" if meters.estimated else "measured"


def _source_line(experiment: ExperimentRecord, source: EnergySource) -> list[str]:
    """Every figure's label when it is not a measurement (estimates are always labelled)."""
    used = "+".join(experiment.meters.used) or "unknown"
    if source == "simulated":
        return [f"Every energy figure here is SIMULATED (meter {used}), not measured."]
    if source == "estimated":
        return [f"Every energy figure here is estimated (meter {used}), not measured."]
    return []


def recommendation(
    experiment: ExperimentRecord,
    runs: Sequence[RunRecord],
    jobs: Sequence[JobRecord] = (),
) -> Recommendation | None:
    """The answer of a selection folder; None when the experiment made no selection
    (``experiment.selection`` is None: ``compare``, an import)."""
    selection = experiment.selection
    if selection is None:
        return None
    last = selection.last
    reference = experiment.policies[0] if experiment.policies else ""
    names = _names(experiment)
    targets = _targets(experiment, runs)
    higher = _higher_is_better(runs)
    target = _target_text(targets, higher)
    groups, left_out, not_run = _collect(experiment, runs, targets, target)
    delta, zone = _zone(selection)
    outcome = _outcome(last, reference, selection.stopped)
    rows = _rows(groups, last, names, reference, next(iter(targets), None), outcome, selection)
    leader = last.recommended if last is not None else None
    chosen = groups.get(leader) if leader is not None and leader != reference else None
    ref_group = groups.get(reference, _Group(reference))
    level = last.level if last is not None else None
    saving, accuracy, where, saving_j = _against_reference(
        experiment, (targets, higher), chosen, ref_group, (level, delta)
    )
    who = (
        None
        if chosen is None
        else (names.get(chosen.label, chosen.label), names.get(reference, reference), target)
    )
    grid = experiment.config.get("grid_intensity")
    cost = _cost(
        _cost_items(experiment, runs, jobs), saving_j, grid if isinstance(grid, str) else None, who
    )
    share, most, least = selection.min_reached_share, selection.max_runs, selection.min_runs
    facts = _Facts(names, reference, target, zone, share, most, least)
    sentence = _sentence(outcome, last, facts, saving, accuracy)
    source = _energy_source(experiment)
    return Recommendation(
        outcome=outcome,
        sentence=sentence,
        recommended=leader if outcome in ("use", "reference") else None,
        leader=leader,
        reference=reference,
        within=tuple(last.within) if last is not None else (),
        targets=dict(targets),
        target_text=target,
        method=selection.method,
        alpha=selection.alpha,
        indifference=selection.indifference,
        stopped=selection.stopped,
        stopped_early=selection.stopped_early,
        reason=selection.reason,
        configurations=rows,
        saving=saving,
        accuracy=accuracy,
        where_from=where,
        cost=cost,
        left_out=tuple(left_out),
        not_run=not_run,
        looks=_looks(selection, names),
        summary=_summary(sentence, accuracy, where, cost, left_out, not_run)
        + tuple(_source_line(experiment, source)),
        energy_source=source,
    )


def _summary(
    sentence: str,
    accuracy: tuple[AccuracyCheck, ...],
    where: Decomposition | None,
    cost: Cost,
    left_out: Sequence[LeftOut],
    not_run: int,
) -> tuple[str, ...]:
    """The sentences the report and the terminal print, in order."""
    lines = [sentence]
    for check in accuracy:
        if check.reason is not None:
            lines.append(
                f"The final {_metric_words(check.metric)} could not be tested against the "
                f"margin ({check.margin_text}): {check.reason}."
            )
    if where is not None:
        lines.append(where.sentence)
    lines += cost.sentences
    if left_out:
        lines.append(
            f"{fmt.plural(len(left_out), 'run')} gave no energy to the target and "
            f"{'is' if len(left_out) == 1 else 'are'} left out of the comparison (listed below)."
        )
    if not_run:
        lines.append(
            f"{fmt.plural(not_run, 'scheduled run')} never ran (the selection ended first)."
        )
    return tuple(lines)


# -- as the report and the terminal show it ---------------------------------------------------


@dataclass(frozen=True)
class Section:
    """The report's "Recommendation" section, as report.md and report.html render it: the
    sentence, the lines under it, the ranked table and its note, then titled listings."""

    headline: str
    lines: tuple[str, ...]
    table: Table
    table_note: str
    parts: tuple[tuple[str, tuple[str, ...]], ...]


def _final_header(rec: Recommendation) -> tuple[str, float]:
    """The final-value column's header and the factor its values are shown with (an accuracy
    recorded as a fraction is shown in %)."""
    metric = next((r.final_metric for r in rec.configurations if r.final_metric), None)
    if metric is None:
        return "final value", 1.0
    values = [r.final_value for r in rec.configurations if r.final_value is not None]
    if stats.accuracy_like(metric) and values and all(0.0 <= v <= 1.0 for v in values):
        return f"final {_metric_words(metric)} (%)", 100.0
    return f"final {_metric_words(metric)}", 1.0


def table(rec: Recommendation) -> Table:
    """The ranked table: configuration, energy to the target (mean, 95 % t-interval), time to
    the target, J per sample, runs, reached k of n, final value of the target's metric, status."""
    final_header, factor = _final_header(rec)
    headers = [
        "#",
        "configuration",
        "energy to target (J)",
        "95% CI (J)",
        "time to target (s)",
        "J/sample",
        "runs",
        "reached",
        final_header,
        "status",
    ]
    rows = []
    for row in rec.configurations:
        ci = (
            f"{fmt.num(row.energy_ci_low_j)} to {fmt.num(row.energy_ci_high_j)}"
            if row.energy_ci_low_j is not None and row.energy_ci_high_j is not None
            else fmt.NOT_AVAILABLE
        )
        final = None if row.final_value is None else row.final_value * factor
        rows.append(
            [
                str(row.rank),
                row.name + (" (reference)" if row.reference else ""),
                fmt.num(row.energy_to_target_j),
                ci,
                fmt.num(row.duration_to_target_s),
                fmt.num(row.energy_per_sample_j),
                str(row.runs),
                f"{row.reached} of {row.runs}",
                fmt.num(final, 2 if factor != 1.0 else None),
                row.status_text,
            ]
        )
    return Table(headers, rows, frozenset({0, 2, 3, 4, 5, 6, 7, 8}))


def section(rec: Recommendation) -> Section:
    """The report's section: what report.md and report.html show above the details."""
    note = (
        f"Ranked by energy to {rec.target_text}: the recommendation first, then the "
        "configurations within the indifference zone, then by geometric-mean energy; those "
        "dropped or short of the target last. Energy and time to the target: means over the "
        f"runs that reached it ({_ENERGY_CI}); the saving's interval in the sentence above is "
        "the repeated confidence interval of the last look, valid despite the looks. J/sample "
        "and the final value: means over every done run."
    )
    parts: list[tuple[str, tuple[str, ...]]] = []
    if rec.where_from is not None:
        parts.append(("Where the saving comes from", (rec.where_from.sentence,)))
    parts.append(
        ("What the answer cost", (*rec.cost.sentences, f"Not counted: {rec.cost.not_counted}."))
    )
    if rec.left_out or rec.not_run:
        lines = [f"{item.run_id} ({item.configuration}): {item.reason}" for item in rec.left_out]
        if rec.not_run:
            lines.append(f"{fmt.plural(rec.not_run, 'scheduled run')} never ran.")
        parts.append(("Runs left out", tuple(lines)))
    method = (
        f"Method: {rec.method}; alpha {rec.alpha:g}, indifference zone {rec.indifference}. "
        'See docs/stats.md, "Selecting a configuration".'
    )
    parts.append(("Looks", (*(look.text for look in rec.looks), method)))
    extra = tuple(line for line in rec.summary[1:] if line.startswith("The final "))
    return Section(rec.sentence, extra, table(rec), note, tuple(parts))


def _jobs(store: ResultsStore) -> list[JobRecord]:
    """The Slurm jobs' records (their idle baselines and warm-ups are part of the cost); a
    damaged one is skipped: the cost then misses it, which its sentence cannot know."""
    if not store.jobs_dir.is_dir():
        return []
    jobs = []
    for path in sorted(store.jobs_dir.glob("*.json")):
        try:
            jobs.append(store.read_job(path.stem))
        except (ConfigError, ValueError):
            continue
    return jobs


def from_store(store: ResultsStore) -> Recommendation | None:
    """The recommendation of a results folder, read through its store (None when it made no
    selection); ConfigError when it is not a results folder."""
    snapshot = store.load()
    if snapshot.experiment.selection is None:
        return None
    return recommendation(snapshot.experiment, snapshot.runs, _jobs(store))

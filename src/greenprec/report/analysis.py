"""The numbers behind the report: outlier removal, per-metric statistics, planning.

:func:`analyse` returns an :class:`Analysis`: dataclasses that wrap the results of
:mod:`greenprec.stats` (``Description``, ``NormalityResult``, ``PolicyComparison``,
``CompareResult``, ``OutlierResult``). The verdict, the warnings, the planning and outlier
sentences are written from these objects in :mod:`.prose` (the only text made here is the
reason an :class:`Excluded` outlier carries, as data.py gives every unused run one), and
``stats.json`` from :meth:`Analysis.to_json_dict` in :mod:`.build`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report._json import JsonObject
from greenprec.report.data import Excluded, ExperimentData, Row, numeric
from greenprec.report.decisions import (
    Decision,
    Family,
    Outcome,
    Question,
    TFit,
    decide,
    phrase,
    with_sequential,
)
from greenprec.report.equivalence import (
    EquivalenceItem,
    MarginUse,
    as_margins,
    equivalence_item,
    resolve_margins,
)
from greenprec.report.state import MachineStates, Stopping, Target, machine_states, stopping
from greenprec.report.state import targets as energy_to_targets
from greenprec.results import NodeInfo
from greenprec.stats import FloatArray

__all__ = [
    "ACCURACY",
    "ALPHA",
    "BLOCKED_TEST",
    "ENERGY",
    "METRIC_BY_KEY",
    "POWER",
    "Analysis",
    "Blocking",
    "Drift",
    "JsonObject",
    "Metric",
    "Outlier",
    "OutlierInfo",
    "Planning",
    "PowerTrace",
    "Prepared",
    "accuracy_points",
    "analyse",
    "as_sesoi",
    "finite",
    "meters_used",
    "prepare",
    "removed_rows",
    "simulated_used",
]

ENERGY = "energy_j"
ACCURACY = "test_accuracy"
_OUTLIER_THRESHOLD = 3.0
ALPHA = 0.05
POWER = 0.8

# What stats.json holds (JsonObject, from _json): JSON values, NaN and infinity already None.


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite (as in stats.json)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    energy: bool  # an energy figure: labelled "estimated" when the meter estimated
    always: bool  # in stats.json even when no run has it
    # The primary test, fixed before the data by the metric's scale: a ratio of means for
    # positive quantities (energy, time, power), a difference for accuracy and loss.
    primary: stats.Primary = "log_ratio"


_METRICS: tuple[Metric, ...] = (
    Metric("energy_j", "energy", "J", energy=True, always=True),
    Metric("net_energy_j", "net energy (above idle)", "J", energy=True, always=False),
    Metric("duration_s", "duration", "s", energy=False, always=True),
    Metric("mean_power_w", "mean power", "W", energy=True, always=True),
    Metric("test_accuracy", "test accuracy", "", energy=False, always=True, primary="difference"),
    Metric("test_loss", "test loss", "", energy=False, always=False, primary="difference"),
)
METRIC_BY_KEY = {metric.key: metric for metric in _METRICS}


# -- the meters -----------------------------------------------------------------------------------


def meters_used(data: ExperimentData) -> list[str]:
    """The meters the runs were measured with: experiment.json's ``meters.used``, else the
    runs' ``meter`` column (``rapl+nvml`` is two meters)."""
    meters = data.experiment.get("meters")
    used = meters.get("used") if isinstance(meters, dict) else None
    if isinstance(used, list) and used:
        return [str(name) for name in used]
    names = (str(row["meter"]).split("+") for row in data.done if row.get("meter"))
    return sorted({name for split in names for name in split if name})


def simulated_used(data: ExperimentData) -> list[str]:
    """Those of the meters used (:func:`meters_used`) that make their readings up, as
    experiment.json's ``meters.simulated`` recorded when they measured.

    Folders that did not record it (written before 0.3, or by an importer) fall back to
    asking the meters installed here (:func:`_simulated_meters`): a plugin meter missing on
    this machine then reads as measured, which the recorded list does not.
    """
    used = meters_used(data)
    meters = data.experiment.get("meters")
    recorded = meters.get("simulated") if isinstance(meters, dict) else None
    if isinstance(recorded, list):
        names = {str(name) for name in recorded}
        return [name for name in used if name in names]
    return _simulated_meters(used)  # not recorded: today's registry lookup


def _simulated_meters(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that make their readings up (the ``mock``): their figures are not
    measurements, and the report must not call them measured.

    A meter says so with the class attribute ``simulated``; a name no installed meter has
    (a folder from another machine) is simulated only if it is the built-in ``mock``.
    """
    from greenprec.meters.registry import meter_classes

    classes = meter_classes()
    out = []
    for name in names:
        cls = classes.get(name)
        if (getattr(cls, "simulated", False) is True) if cls is not None else name == "mock":
            out.append(name)
    return out


# -- outliers and the runs used ----------------------------------------------------------------


@dataclass(frozen=True)
class Outlier:
    """A run the |z| rule picks: its energy is unusual within its policy."""

    run_id: str
    policy: str
    energy_j: float
    z: float

    def to_json_dict(self) -> JsonObject:
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "energy_j": self.energy_j,
            "z": self.z,
        }


@dataclass(frozen=True)
class OutlierInfo:
    """The study's rule on energy_j (wrapping :func:`stats.zscore_outliers`), and whether the
    runs it picks were removed (``applied``) or kept (``--no-outliers``)."""

    applied: bool
    threshold: float
    result: stats.OutlierResult | None  # None when no run finished

    @property
    def rule(self) -> str:
        return f"|z| > {self.threshold:g} on energy_j within each policy (z with ddof=0)"

    @property
    def flagged(self) -> list[Outlier]:
        """What the rule picks, removed or not."""
        result = self.result
        if result is None:
            return []
        return [
            Outlier(str(run_id), str(group), value, z)
            for run_id, group, value, z in zip(
                result.removed_ids,
                result.removed_groups or [],
                result.removed_values,
                result.removed_z,
                strict=True,
            )
        ]

    @property
    def removed(self) -> list[Outlier]:
        return self.flagged if self.applied else []

    @property
    def notes(self) -> list[str]:
        return list(self.result.notes) if self.result is not None else []

    def removed_ids(self, policy: str | None = None) -> list[str]:
        return [o.run_id for o in self.removed if policy is None or o.policy == policy]

    def to_json_dict(self) -> JsonObject:
        return {
            "applied": self.applied,
            "rule": self.rule,
            "removed": [o.to_json_dict() for o in self.removed],
            "flagged": [o.to_json_dict() for o in self.flagged],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Prepared:
    """The runs that enter the statistics, and why the others do not."""

    data: ExperimentData
    outliers: OutlierInfo
    kept: list[Row]

    @property
    def accuracy_scale(self) -> Literal["fraction", "percent"] | None:
        return self.data.accuracy_scale

    def kept_by_policy(self) -> dict[str, list[Row]]:
        groups: dict[str, list[Row]] = {policy: [] for policy in self.data.policies}
        for row in self.kept:
            groups.setdefault(str(row["policy"]), []).append(row)
        return groups

    def removed_ids(self, policy: str | None = None) -> list[str]:
        return self.outliers.removed_ids(policy)

    def excluded(self) -> list[Excluded]:
        """Every row of runs.csv (or value of one) the statistics do not use, by line."""
        out = list(self.data.excluded)
        for outlier in self.outliers.removed:
            out.append(
                Excluded(
                    outlier.run_id,
                    self.data.line_of(outlier.run_id) or 0,
                    f"outlier: energy_j {outlier.energy_j:g} J has |z| = {abs(outlier.z):.3g} "
                    f"> {self.outliers.threshold:g} within {outlier.policy} (--no-outliers keeps "
                    "it)",
                    outlier.policy,
                )
            )
        return sorted(out, key=lambda e: (e.line, e.column or ""))


def prepare(
    data: ExperimentData, *, outliers: bool = True, threshold: float = _OUTLIER_THRESHOLD
) -> Prepared:
    """Apply the study's rule: within each policy, drop runs whose energy has |z| > 3.

    A removed run leaves every metric, not just energy: its duration and accuracy belong to
    the same disturbed run.
    """
    done = data.done
    result = None
    if done:
        result = stats.zscore_outliers(
            numeric(done, ENERGY),
            threshold,
            ids=[str(row["run_id"]) for row in done],
            groups=[str(row["policy"]) for row in done],
        )
    info = OutlierInfo(applied=outliers, threshold=threshold, result=result)
    removed = set(info.removed_ids())
    kept = [row for row in done if str(row["run_id"]) not in removed]
    return Prepared(data=data, outliers=info, kept=kept)


def removed_rows(prepared: Prepared) -> Sequence[Row]:
    ids = set(prepared.removed_ids())
    return [row for row in prepared.data.done if str(row["run_id"]) in ids]


def accuracy_points(value: float | None, scale: str | None) -> float | None:
    """An accuracy (or accuracy difference) in percentage points."""
    if value is None or scale is None:
        return None
    return value * 100.0 if scale == "fraction" else value


# -- per metric ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GroupSummary:
    """One policy's values of one metric: their description and their normality."""

    description: stats.Description
    normality: stats.NormalityResult
    outliers: list[str]  # the policy's removed runs (left out of these values)

    @property
    def not_computed(self) -> dict[str, str]:
        missing = dict(self.description.not_computed)
        for key in ("w", "p"):
            if key in self.normality.not_computed:
                missing[f"shapiro_{key}"] = self.normality.not_computed[key]
        return missing

    def to_json_dict(self) -> JsonObject:
        described = self.description.to_dict()
        normal = self.normality.to_dict()
        return {
            "n": described["n"],
            "mean": described["mean"],
            "sd": described["sd"],
            "cv_pct": described["cv_pct"],
            "shapiro_w": normal["w"],
            "shapiro_p": normal["p"],
            "outliers": list(self.outliers),
            "median": described["median"],
            "iqr": described["iqr"],
            "ci95": described["ci95"],
            "n_missing": described["n_nan"],
            "not_computed": self.not_computed,
            "notes": described["notes"],
        }


@dataclass(frozen=True)
class _MetricAnalysis:
    """One metric: every policy's :class:`_GroupSummary` and, when the data allow, every policy
    against the reference policy (:func:`stats.compare_policies`)."""

    metric: Metric
    groups: dict[str, _GroupSummary]
    compared: stats.PolicyComparison | None = None
    reason: str | None = None  # why nothing was compared, when ``compared`` is None

    @property
    def comparisons(self) -> list[stats.CompareResult]:
        """Each policy against the reference, in the policies' order (Holm-adjusted p set)."""
        return list(self.compared.comparisons.values()) if self.compared is not None else []

    def against(self, policy: str) -> stats.CompareResult | None:
        """The comparison of ``policy`` with the reference, if there is one."""
        return self.compared.comparisons.get(policy) if self.compared is not None else None

    @property
    def not_computed(self) -> dict[str, str]:
        if self.compared is not None:
            return dict(self.compared.not_computed)
        return {"comparisons": self.reason} if self.reason is not None else {}

    def to_json_dict(self) -> JsonObject:
        out: JsonObject = {
            "label": self.metric.label,
            "unit": self.metric.unit,
            "groups": {policy: g.to_json_dict() for policy, g in self.groups.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
            "not_computed": self.not_computed,
        }
        if self.compared is not None and self.compared.notes:
            out["notes"] = list(self.compared.notes)
        return out


def _metric(
    metric: Metric,
    values: dict[str, FloatArray],
    prepared: Prepared,
    *,
    present: bool,
    alpha: float,
) -> _MetricAnalysis:
    groups = {
        policy: _GroupSummary(
            stats.describe(array), stats.normality(array, alpha), prepared.removed_ids(policy)
        )
        for policy, array in values.items()
    }
    refused = prepared.data.refused_columns.get(metric.key)
    if not values:
        reason: str | None = "runs.csv has no runs"
    elif refused is not None:
        reason = refused
    elif not present:
        reason = f"no finished run reported {metric.key}"
    else:
        reason = None
    if reason is not None:
        return _MetricAnalysis(metric, groups, reason=reason)
    compared = stats.compare_policies(
        values, prepared.data.baseline, alpha=alpha, primary=metric.primary
    )
    return _MetricAnalysis(metric, groups, compared=compared)


# -- planning ------------------------------------------------------------------------------------

_PLANNED = ("cv_pct", "runs_needed_per_policy", "enough")
_SesoiSource = Literal["given", "experiment", "margin"]
_SESOI_HINT = "--sesoi energy_j=5%"
_NO_SESOI = (
    "no smallest effect of interest was stated for energy (and it has no margin), and the "
    "observed change is not one: power computed from it only restates its p-value"
)


@dataclass(frozen=True)
class _PlanningItem:
    """Runs per policy a fixed design needs for one energy comparison to detect the smallest
    effect of interest (``sesoi_pct``, % of the reference mean) with the planned power, at the
    pooled CV seen here (the pooled SD as a percentage of the reference mean; to first order
    the SD of the log ratio the energy test uses). Never the observed effect: power computed
    from it is a function of the p-value and says nothing more (Hoenig and Heisey, 2001)."""

    comparison: stats.CompareResult
    cv_pct: float | None = None
    sesoi_pct: float | None = None
    runs_needed_per_policy: int | None = None
    enough: bool | None = None  # the runs per policy used reach runs_needed_per_policy
    not_computed: dict[str, str] = field(default_factory=dict)

    @property
    def runs_per_policy(self) -> int:
        return min(self.comparison.n_a, self.comparison.n_b)

    def to_json_dict(self) -> JsonObject:
        c = self.comparison
        return {
            "a": c.a,
            "b": c.b,
            "n_a": c.n_a,
            "n_b": c.n_b,
            "cv_pct": finite(self.cv_pct),
            "sesoi_pct": finite(self.sesoi_pct),
            "runs_needed_per_policy": self.runs_needed_per_policy,
            "enough": self.enough,
            "not_computed": dict(self.not_computed),
        }


@dataclass(frozen=True)
class _MarginPlan:
    """Runs per policy that would show a margin question's answer (equivalence, or
    non-inferiority) with the planned power if there were no true difference, at the pooled
    SD seen here: what is reachable, not what the observed difference would need."""

    metric: str
    a: str
    b: str
    margin: MarginUse
    runs_needed_per_policy: int | None
    n_a: int
    n_b: int
    basis: str
    not_computed: str | None = None

    def to_json_dict(self) -> JsonObject:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "margin": self.margin.text,
            "true_difference": 0.0,
            "runs_needed_per_policy": self.runs_needed_per_policy,
            "basis": self.basis,
            "not_computed": self.not_computed,
        }


@dataclass(frozen=True)
class Planning:
    """Runs needed, planned from effects stated in advance: per energy comparison for the
    smallest effect of interest (``sesoi``: given, from the experiment, else energy's margin;
    none: no figure), and per margin question for no true difference."""

    alpha: float
    power: float
    items: list[_PlanningItem]
    not_computed: dict[str, str]
    metric: str = ENERGY
    sesoi: stats.Margin | None = None
    sesoi_source: _SesoiSource | None = None
    margins: list[_MarginPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # sesoi given but not usable

    @property
    def basis(self) -> str:
        if self.sesoi is None:
            return _NO_SESOI
        return (
            f"the smallest effect of interest {self.sesoi.spec()} ({self.sesoi_source}) and the "
            "pooled CV observed; two-sided t-test"
        )

    def to_json_dict(self) -> JsonObject:
        sesoi = self.sesoi
        return {
            "metric": self.metric,
            "alpha": self.alpha,
            "power": self.power,
            "basis": self.basis,
            "sesoi": None
            if sesoi is None
            else {
                "spec": sesoi.spec(),
                "value": sesoi.value,
                "unit": sesoi.unit,
                "source": self.sesoi_source,
            },
            "comparisons": [item.to_json_dict() for item in self.items],
            "margin_questions": [plan.to_json_dict() for plan in self.margins],
            "not_computed": dict(self.not_computed),
        }


def as_sesoi(given: Iterable[stats.Margin | str] | None) -> list[stats.Margin]:
    """Smallest effects of interest from :class:`stats.Margin` objects or ``METRIC=SPEC``
    texts (:func:`stats.parse_sesoi`; ConfigError on one it cannot read)."""
    return [
        item if isinstance(item, stats.Margin) else stats.parse_sesoi(str(item))
        for item in given or []
    ]


def _energy_sesoi(
    given: Sequence[stats.Margin],
    experiment: Mapping[str, Any],
    margins: Mapping[str, MarginUse],
) -> tuple[stats.Margin | None, _SesoiSource | None, list[str]]:
    """Energy's smallest effect of interest: given, else the experiment's, else its margin."""
    problems: list[str] = []
    for margin in given:
        if margin.metric != ENERGY:
            problems.append(
                f"sesoi {margin.spec()} is not used: only energy ({ENERGY}) is planned from a "
                "smallest effect of interest; a metric with a margin is planned from its margin"
            )
    chosen = next((m for m in given if m.metric == ENERGY), None)
    if chosen is not None:
        return chosen, "given", problems
    config = experiment.get("config")
    recorded = config.get("sesoi") if isinstance(config, dict) else None
    if isinstance(recorded, dict) and ENERGY in recorded:
        try:
            return stats.parse_sesoi(f"{ENERGY}={recorded[ENERGY]}"), "experiment", problems
        except ConfigError as error:
            problems.append(f"experiment.json sesoi for {ENERGY} is ignored: {error}")
    use = margins.get(ENERGY)
    if use is not None:
        return use.margin, "margin", problems
    return None, None, problems


def _planning(
    energy: _MetricAnalysis,
    *,
    alpha: float,
    power: float,
    sesoi: Sequence[stats.Margin] = (),
    experiment: Mapping[str, Any] | None = None,
    margins: Mapping[str, MarginUse] | None = None,
    equivalence: Mapping[str, Sequence[EquivalenceItem]] | None = None,
) -> Planning:
    comparisons = energy.comparisons
    missing: dict[str, str] = {}
    if not comparisons:
        missing["comparisons"] = energy.not_computed.get("comparisons", "nothing to compare")
    chosen, source, problems = _energy_sesoi(sesoi, experiment or {}, margins or {})
    plans = [
        _MarginPlan(
            item.metric,
            item.a,
            item.b,
            item.margin,
            item.runs_needed,
            item.n_a,
            item.n_b,
            item.runs_needed_basis,
            item.not_computed.get("runs_needed"),
        )
        for items in (equivalence or {}).values()
        for item in items
    ]
    return Planning(
        alpha,
        power,
        [_plan(c, chosen, alpha, power) for c in comparisons],
        missing,
        sesoi=chosen,
        sesoi_source=source,
        margins=plans,
        problems=problems,
    )


def _plan(
    comparison: stats.CompareResult, sesoi: stats.Margin | None, alpha: float, power: float
) -> _PlanningItem:
    reason = _planning_reason(comparison)
    if reason:
        return _PlanningItem(comparison, not_computed=dict.fromkeys(_PLANNED, reason))
    n_a, n_b = comparison.n_a, comparison.n_b
    sd_a, sd_b, mean_a = comparison.sd_a, comparison.sd_b, comparison.mean_a
    assert sd_a is not None and sd_b is not None and mean_a  # _planning_reason
    pooled = math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / (n_a + n_b - 2))
    cv = 100.0 * pooled / abs(mean_a)
    if sesoi is None:
        return _PlanningItem(
            comparison, finite(cv), not_computed=dict.fromkeys(_PLANNED[1:], _NO_SESOI)
        )
    if sesoi.unit == "pp":
        why = f"a smallest effect in pp ({sesoi.spec()}) is for an accuracy; give energy's in %"
        return _PlanningItem(comparison, finite(cv), not_computed=dict.fromkeys(_PLANNED[1:], why))
    sesoi_pct = sesoi.value if sesoi.unit == "%" else 100.0 * sesoi.value / abs(mean_a)
    if cv == 0.0:
        return _PlanningItem(
            comparison,
            cv,
            sesoi_pct,
            not_computed=dict.fromkeys(_PLANNED[1:], "zero variance"),
        )
    try:
        needed = stats.runs_needed(cv, sesoi_pct, alpha, power)
    except ConfigError as error:
        return _PlanningItem(
            comparison,
            finite(cv),
            sesoi_pct,
            None,
            enough=False,
            not_computed={"runs_needed_per_policy": str(error)},
        )
    return _PlanningItem(comparison, finite(cv), sesoi_pct, int(needed), min(n_a, n_b) >= needed)


def _planning_reason(comparison: stats.CompareResult) -> str | None:
    if comparison.n_a < 2 or comparison.n_b < 2:
        return "needs at least 2 runs per policy"
    if finite(comparison.sd_a) is None or finite(comparison.sd_b) is None:
        return "needs the SD of both policies"
    if not finite(comparison.mean_a):
        return "the reference mean is zero or missing"
    return None


# -- runs from several hosts ----------------------------------------------------------------------

BLOCKED_TEST: Literal["host_blocked_log_ratio"] = "host_blocked_log_ratio"
_BLOCKED_MODEL = "log(energy_j) ~ policy + host"
_BLOCKED_REASON = (
    "the runs came from several hosts: OLS of log(energy_j) on the policy with one fixed "
    "effect per host compares energy within hosts; the relative-change CI inverts the same "
    "t-test, so p < alpha exactly when the CI excludes 0"
)
_UNKNOWN_HARDWARE = "unknown"
# The CompareResult fields the host-blocked test replaces, and the field of
# stats.BlockedLogRatio each one comes from.
_PRIMARY_FROM_BLOCKED = {
    "relative_change_pct": "relative_change_pct",
    "relative_change_ci": "relative_change_ci_pct",
    "log_ratio_t": "t",
    "log_ratio_df": "df",
    "log_ratio_p": "p",
    "primary_p": "p",
}


def _host_of(row: Row) -> str | None:
    """The host that ran a run, or None when its record does not say."""
    host = row.get("host")
    if host is None or (isinstance(host, str) and not host.strip()):
        return None
    return str(host)


@dataclass(frozen=True)
class _HostPolicy:
    """One policy's runs on one host: how many, their mean energy and power, and (for a policy
    other than the reference) the change of its mean energy against the reference's on the
    same host."""

    n: int
    mean_energy_j: float | None
    mean_power_w: float | None
    change_vs_reference_pct: float | None

    def to_json_dict(self) -> JsonObject:
        return {
            "n": self.n,
            "mean_energy_j": finite(self.mean_energy_j),
            "mean_power_w": finite(self.mean_power_w),
            "change_vs_reference_pct": finite(self.change_vs_reference_pct),
        }


@dataclass(frozen=True)
class _HostSummary:
    """A host's hardware and its runs used, per policy."""

    host: str
    node: NodeInfo | None
    policies: dict[str, _HostPolicy]

    @property
    def hardware(self) -> str:
        """The host's CPU and GPUs in one line (NodeInfo.describe), or "unknown"."""
        return self.node.describe() if self.node is not None else _UNKNOWN_HARDWARE

    @property
    def n(self) -> int:
        return sum(p.n for p in self.policies.values())

    def to_json_dict(self) -> JsonObject:
        return {
            "host": self.host,
            "hardware": self.hardware,
            "hardware_recorded": self.node is not None,
            "runs": self.n,
            "policies": {policy: p.to_json_dict() for policy, p in self.policies.items()},
        }


@dataclass(frozen=True)
class _LeftOutRun:
    """A run used elsewhere in the report that one host-blocked comparison cannot use: its host
    ran only one of the two policies, or it has no host."""

    run_id: str
    policy: str
    host: str | None
    a: str
    b: str

    @property
    def reason(self) -> str:
        if self.host is None:
            return "no host recorded"
        return f"host {self.host} ran only {self.policy} of {self.a} and {self.b}"

    def to_json_dict(self) -> JsonObject:
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "host": self.host,
            "comparison": f"{self.b} vs {self.a}",
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _BlockedComparison:
    """One policy against the reference within hosts (:func:`stats.blocked_log_ratio`), and
    the unpaired Welch comparison of the same runs, which ignores the hosts."""

    test: stats.BlockedLogRatio
    unpaired: stats.CompareResult
    holm_p: float | None
    left_out: list[_LeftOutRun]
    # the host × policy interaction of log energy (per-host changes and its F-test)
    interaction: stats.BlockInteraction | None = None

    @property
    def a(self) -> str:
        return self.test.a

    @property
    def b(self) -> str:
        return self.test.b

    @property
    def confounded(self) -> bool:
        """The unpaired estimate lies outside the host-blocked interval: the policies are
        spread unevenly over hosts that differ, and the unpaired comparison mixes the two."""
        change = finite(self.unpaired.relative_change_pct)
        ci = self.test.relative_change_ci_pct
        return change is not None and ci is not None and not ci[0] <= change <= ci[1]

    def unpaired_json(self) -> JsonObject:
        c = self.unpaired
        return {
            "test": "welch_log_ratio",
            "ignores": "host",
            "relative_change_pct": finite(c.relative_change_pct),
            "relative_change_ci": list(c.relative_change_ci) if c.relative_change_ci else None,
            "log_ratio_t": finite(c.log_ratio_t),
            "log_ratio_df": finite(c.log_ratio_df),
            "log_ratio_p": finite(c.log_ratio_p),
            "holm_p": finite(c.holm_p),
        }

    def to_json_dict(self) -> JsonObject:
        out: JsonObject = {"test": BLOCKED_TEST, "model": _BLOCKED_MODEL}
        out.update(self.test.to_dict())
        out["n_hosts"] = self.test.n_blocks
        out["holm_p"] = finite(self.holm_p)
        out["unpaired"] = self.unpaired_json()
        out["confounded"] = self.confounded
        out["left_out"] = [run.run_id for run in self.left_out]
        interaction = self.interaction
        out["interaction"] = interaction.to_dict() if interaction is not None else None
        return out

    @property
    def interacts(self) -> bool:
        """The policy's change in energy differs between hosts (the interaction's F-test)."""
        return self.interaction is not None and self.interaction.significant is True


@dataclass(frozen=True)
class Blocking:
    """Runs from more than one host: each host is a block, energy is compared within hosts."""

    hosts: list[_HostSummary]
    comparisons: list[_BlockedComparison]
    exclusive: bool | None  # experiment.json config.slurm.exclusive, when recorded
    by: str = "host"

    @property
    def left_out(self) -> list[_LeftOutRun]:
        return [run for c in self.comparisons for run in c.left_out]

    @property
    def hardware_differs(self) -> bool:
        """Some host has no hardware recorded, or two hosts' CPU or GPUs (or driver) differ."""
        if any(h.node is None for h in self.hosts):
            return True
        return len({h.node.hardware() for h in self.hosts if h.node is not None}) > 1

    def against(self, policy: str) -> _BlockedComparison | None:
        return next((c for c in self.comparisons if c.b == policy), None)

    def to_json_dict(self) -> JsonObject:
        return {
            "by": self.by,
            "model": _BLOCKED_MODEL,
            "hosts": [host.to_json_dict() for host in self.hosts],
            "hardware_differs": self.hardware_differs,
            "exclusive": self.exclusive,
            "comparisons": [c.to_json_dict() for c in self.comparisons],
            "left_out": [run.to_json_dict() for run in self.left_out],
        }


def _mean(rows: Sequence[Row], key: str) -> float | None:
    values = numeric(rows, key)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _host_summaries(prepared: Prepared, reference: str | None) -> list[_HostSummary]:
    data = prepared.data
    by_host: dict[str, list[Row]] = {}
    for row in prepared.kept:
        host = _host_of(row)
        if host is not None:
            by_host.setdefault(host, []).append(row)
    out = []
    for host in sorted(by_host):
        rows = by_host[host]
        node = next(
            (n for n in (data.node_by_run.get(str(r["run_id"])) for r in rows) if n is not None),
            None,
        )
        mine = [r for r in rows if str(r["policy"]) == reference]
        reference_mean = _mean(mine, ENERGY)
        policies: dict[str, _HostPolicy] = {}
        for policy in data.policies:
            runs = [r for r in rows if str(r["policy"]) == policy]
            if not runs:
                continue
            mean_energy = _mean(runs, ENERGY)
            change = None
            if policy != reference and mean_energy is not None and reference_mean:
                change = 100.0 * (mean_energy / reference_mean - 1.0)
            policies[policy] = _HostPolicy(
                len(runs), mean_energy, _mean(runs, "mean_power_w"), change
            )
        out.append(_HostSummary(host, node, policies))
    return out


def _blocked(
    prepared: Prepared, comparison: stats.CompareResult, alpha: float
) -> tuple[stats.BlockedLogRatio, list[_LeftOutRun]]:
    a, b = comparison.a, comparison.b
    groups = prepared.kept_by_policy()
    rows_a, rows_b = groups.get(a, []), groups.get(b, [])
    test = stats.blocked_log_ratio(
        *_energy_by_host(rows_a, rows_b), alpha=alpha, label_a=a, label_b=b
    )
    alone = set(test.blocks_left_out)
    left_out = [
        _LeftOutRun(str(r["run_id"]), str(r["policy"]), _host_of(r), a, b)
        for r in [*rows_a, *rows_b]
        if _host_of(r) is None or _host_of(r) in alone
    ]
    return test, left_out


def _with_blocked_primary(
    comparison: stats.CompareResult, blocked: _BlockedComparison
) -> stats.CompareResult:
    """The energy comparison with the host-blocked test as its primary test (and interval)."""
    test = blocked.test
    missing = {k: v for k, v in comparison.not_computed.items() if k not in _PRIMARY_FROM_BLOCKED}
    values: dict[str, Any] = {}
    for name, source in _PRIMARY_FROM_BLOCKED.items():
        value = getattr(test, source)
        values[name] = float(value) if isinstance(value, int) else value
        if value is None:
            missing[name] = test.not_computed.get(source, "not computed")
    return replace(
        comparison,
        **values,
        primary_test=BLOCKED_TEST,
        primary_reason=_BLOCKED_REASON,
        holm_p=blocked.holm_p,
        not_computed=missing,
    )


def _blocking(
    prepared: Prepared, energy: _MetricAnalysis, alpha: float
) -> tuple[Blocking, _MetricAnalysis] | None:
    """The host-blocked analysis when the runs used come from more than one host, and the
    energy analysis with it as the primary test; None for one host (nothing changes)."""
    hosts = {_host_of(row) for row in prepared.kept} - {None}
    if len(hosts) < 2:
        return None
    reference = prepared.data.baseline
    tests = [_blocked(prepared, c, alpha) for c in energy.comparisons]
    adjusted = stats.holm([test.p for test, _ in tests])
    comparisons = [
        _BlockedComparison(
            test, unpaired, holm_p, left_out, _interaction(prepared, unpaired, alpha)
        )
        for (test, left_out), unpaired, holm_p in zip(
            tests, energy.comparisons, adjusted, strict=True
        )
    ]
    config = prepared.data.experiment.get("config")
    slurm = config.get("slurm") if isinstance(config, dict) else None
    exclusive = slurm.get("exclusive") if isinstance(slurm, dict) else None
    blocking = Blocking(
        hosts=_host_summaries(prepared, reference),
        comparisons=comparisons,
        exclusive=exclusive if isinstance(exclusive, bool) else None,
    )
    if energy.compared is None:
        return blocking, energy
    primary = {c.b: _with_blocked_primary(c.unpaired, c) for c in comparisons}
    compared = replace(
        energy.compared,
        comparisons=primary,
        holm_p={name: c.holm_p for name, c in primary.items()},
    )
    return blocking, replace(energy, compared=compared)


def _interaction(
    prepared: Prepared, comparison: stats.CompareResult, alpha: float
) -> stats.BlockInteraction:
    """The host × policy interaction of log energy for one comparison."""
    a, b = comparison.a, comparison.b
    groups = prepared.kept_by_policy()
    values = _energy_by_host(groups.get(a, []), groups.get(b, []))
    return stats.block_interaction(*values, alpha=alpha, label_a=a, label_b=b)


def _energy_by_host(
    rows_a: Sequence[Row], rows_b: Sequence[Row]
) -> tuple[FloatArray, FloatArray, list[str | None], list[str | None]]:
    """The energies and hosts of the runs that name their host, for the host-blocked fits
    (``values_a, values_b, blocks_a, blocks_b``); runs without one cannot be blocked."""
    named_a = [r for r in rows_a if _host_of(r) is not None]
    named_b = [r for r in rows_b if _host_of(r) is not None]
    return (
        numeric(named_a, ENERGY),
        numeric(named_b, ENERGY),
        [_host_of(r) for r in named_a],
        [_host_of(r) for r in named_b],
    )


# -- drift over the run order --------------------------------------------------------------------

_ORDER = "order"  # runs.csv: the run's position in the schedule (1, 2, ...)


@dataclass(frozen=True)
class Drift:
    """A trend of energy over the schedule (a machine warming up, a background job starting):
    OLS of log energy on the run's position with one intercept per policy (per policy and host
    when the runs came from several hosts) and one common slope."""

    test: stats.RunOrderTrend
    within: str  # "policy" or "policy and host"
    first: int | None  # the first and last schedule position of the runs used
    last: int | None

    @property
    def model(self) -> str:
        terms = "policy:host" if self.within == "policy and host" else "policy"
        return f"log(energy_j) ~ {terms} + order"

    @property
    def flagged(self) -> bool:
        return self.test.significant is True

    @property
    def total_pct(self) -> float | None:
        """The change the trend makes from the first run used to the last, in %."""
        slope = self.test.slope
        if slope is None or self.first is None or self.last is None:
            return None
        return finite(100.0 * math.expm1(min(slope * (self.last - self.first), 709.0)))

    def to_json_dict(self) -> JsonObject:
        out: JsonObject = {"model": self.model, "within": self.within, "flagged": self.flagged}
        out.update(self.test.to_dict())
        out["first_order"] = self.first
        out["last_order"] = self.last
        out["total_pct"] = self.total_pct
        return out


def _drift(prepared: Prepared, several_hosts: bool, alpha: float) -> Drift | None:
    """The drift check on the runs used; None when no run used has an energy."""
    rows = [row for row in prepared.kept if finite(_number_or_none(row.get(_ORDER))) is not None]
    if not rows:
        return None
    within = "policy and host" if several_hosts else "policy"
    groups = [
        (str(row["policy"]), _host_of(row)) if several_hosts else str(row["policy"]) for row in rows
    ]
    order = numeric(rows, _ORDER)
    test = stats.run_order_trend(numeric(rows, ENERGY), order, groups, alpha=alpha)
    used = order[np.isfinite(numeric(rows, ENERGY))]
    first = int(used.min()) if used.size else None
    last = int(used.max()) if used.size else None
    return Drift(test=test, within=within, first=first, last=last)


def _number_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- outlier sensitivity -------------------------------------------------------------------------


@dataclass(frozen=True)
class _SensitivityItem:
    """One question of the verdict, as decided with the outliers removed and with them kept."""

    metric: str
    label: str
    policy: str
    reference: str
    kind: str
    test: str
    p_removed: float | None  # the question's primary p (TOST's, the difference test's, ...)
    p_kept: float | None
    outcome_removed: str
    outcome_kept: str

    @property
    def changed(self) -> bool:
        return self.outcome_removed != self.outcome_kept

    def to_json_dict(self) -> JsonObject:
        return {
            "metric": self.metric,
            "policy": self.policy,
            "reference": self.reference,
            "kind": self.kind,
            "test": self.test,
            "p_removed": finite(self.p_removed),
            "p_kept": finite(self.p_kept),
            "outcome_removed": self.outcome_removed,
            "outcome_kept": self.outcome_kept,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class _OutlierSensitivity:
    """The verdict's questions decided again with the runs the outlier rule picks kept (when
    the report removed them) or removed (when ``--no-outliers`` kept them)."""

    applied: bool  # the report removed the outliers (the alternative keeps them)
    run_ids: list[str]
    items: list[_SensitivityItem]

    @property
    def changed(self) -> bool:
        return any(item.changed for item in self.items)

    def to_json_dict(self) -> JsonObject:
        return {
            "report": "removed" if self.applied else "kept",
            "alternative": "kept" if self.applied else "removed",
            "runs": list(self.run_ids),
            "verdict_changes": self.changed,
            "questions": [item.to_json_dict() for item in self.items],
        }


def _outlier_sensitivity(
    analysis: Analysis, power: float, margins: Iterable[stats.Margin | str] | None
) -> _OutlierSensitivity | None:
    """Decide every question again with the flagged runs treated the other way."""
    outliers = analysis.prepared.outliers
    if not outliers.flagged:
        return None
    other = analyse(
        prepare(analysis.data, outliers=not outliers.applied, threshold=outliers.threshold),
        alpha=analysis.alpha,
        power=power,
        margins=margins,
        sensitivity=False,
    )
    items = []
    for decision in analysis.family.decisions:
        q = decision.question
        alternative = other.family.of(q.metric, q.policy)
        if alternative is None:
            continue
        mine, theirs = q.primary_p(), alternative.question.primary_p()
        removed, kept = (decision, alternative) if outliers.applied else (alternative, decision)
        items.append(
            _SensitivityItem(
                metric=q.metric,
                label=q.label,
                policy=q.policy,
                reference=q.reference,
                kind=q.kind,
                test=q.test_key,
                p_removed=mine if outliers.applied else theirs,
                p_kept=theirs if outliers.applied else mine,
                outcome_removed=removed.outcome,
                outcome_kept=kept.outcome,
            )
        )
    return _OutlierSensitivity(
        applied=outliers.applied,
        run_ids=[o.run_id for o in outliers.flagged],
        items=items,
    )


# -- the whole analysis --------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunCounts:
    """How many runs the folder holds, and what became of them."""

    total: int
    done: int
    used: int
    failed: int
    unfinished: int
    excluded: int  # whole runs not used (failed, unfinished, invalid, outliers)

    def to_json_dict(self) -> JsonObject:
        return dict(asdict(self))


@dataclass(frozen=True)
class _FailedRun:
    run_id: str
    policy: str
    error: str | None

    def to_json_dict(self) -> JsonObject:
        return {"run_id": self.run_id, "policy": self.policy, "error": self.error}


@dataclass(frozen=True)
class Analysis:
    """Everything the report computes from a results folder; ``stats.json`` is
    :meth:`to_json_dict` plus the text, power trace and figures that :mod:`.build` adds."""

    prepared: Prepared
    alpha: float
    metrics: dict[str, _MetricAnalysis]
    planning: Planning
    runs: _RunCounts
    excluded: list[Excluded]
    failed: list[_FailedRun]
    blocking: Blocking | None = None  # runs from more than one host
    # Each metric with a margin (test accuracy always), and its comparisons' equivalence tests
    margins: dict[str, MarginUse] = field(default_factory=dict)
    equivalence: dict[str, list[EquivalenceItem]] = field(default_factory=dict)
    margin_problems: list[str] = field(default_factory=list)
    machine: MachineStates | None = None  # runs that recorded their machine's state
    stopping: Stopping | None = None  # an adaptive experiment
    targets: list[Target] = field(default_factory=list)  # energy to a target
    # Every question of every policy, decided together (the verdict)
    family: Family = field(default_factory=lambda: Family(ALPHA, []))
    drift: Drift | None = None  # a trend of energy over the run order
    # the verdict with the outliers treated the other way (kept when removed)
    outlier_sensitivity: _OutlierSensitivity | None = None

    def equivalence_of(self, metric: str, policy: str) -> EquivalenceItem | None:
        """The equivalence (or non-inferiority) test of ``policy`` on ``metric``, if any."""
        return next((i for i in self.equivalence.get(metric, []) if i.b == policy), None)

    @property
    def data(self) -> ExperimentData:
        return self.prepared.data

    @property
    def outliers(self) -> OutlierInfo:
        return self.prepared.outliers

    @property
    def energy(self) -> _MetricAnalysis:
        return self.metrics[ENERGY]

    @property
    def estimated(self) -> bool:
        return self.data.estimated

    @property
    def accuracy_scale(self) -> Literal["fraction", "percent"] | None:
        return self.prepared.accuracy_scale

    @property
    def reference(self) -> str | None:
        """The policy every other is compared with (the first configured one)."""
        return self.data.baseline

    def to_json_dict(self) -> JsonObject:
        data = self.data
        not_computed: JsonObject = {}
        out: JsonObject = {
            # The policy every other is compared with. Not "baseline": that is the idle power
            # measurement (--baseline, net_energy_j).
            "reference": data.baseline,
            "policies": list(data.policies),
            "estimated": data.estimated,
            "metrics": {key: metric.to_json_dict() for key, metric in self.metrics.items()},
            "accuracy_scale": self.accuracy_scale,
            "runs_needed": self.planning.to_json_dict(),
            "outliers": self.outliers.to_json_dict(),
            "runs": self.runs.to_json_dict(),
            "excluded_runs": [e.to_dict() for e in self.excluded],
            "refused_columns": dict(data.refused_columns),
            "failed_runs": [run.to_json_dict() for run in self.failed],
            "counted_domains": data.counted_domains,
            "counted_domains_source": data.counted_source,
            "alpha": self.alpha,
            "decisions": self.family.to_json_dict(),
            "not_computed": not_computed,
        }
        out["margins"] = {key: use.to_json_dict() for key, use in self.margins.items()}
        metrics_json = out["metrics"]
        assert isinstance(metrics_json, dict)
        for key, metric_json in metrics_json.items():
            assert isinstance(metric_json, dict)
            for comparison in metric_json["comparisons"]:
                assert isinstance(comparison, dict)
                item = self.equivalence_of(key, str(comparison["b"]))
                comparison["equivalence"] = item.to_json_dict() if item is not None else None
        if self.machine is not None:
            out["machine_state"] = self.machine.to_json_dict()
        if self.stopping is not None:
            out["stopping"] = self.stopping.to_json_dict()
        if self.targets:
            out["energy_to_target"] = [target.to_json_dict() for target in self.targets]
        if self.blocking is not None:
            out["blocking"] = self.blocking.to_json_dict()
            metrics = out["metrics"]
            assert isinstance(metrics, dict)
            energy = metrics[ENERGY]
            assert isinstance(energy, dict)
            for comparison in energy["comparisons"]:
                assert isinstance(comparison, dict)
                blocked = self.blocking.against(str(comparison["b"]))
                if blocked is not None:
                    comparison["unpaired"] = blocked.unpaired_json()
        if self.drift is not None:
            out["drift"] = self.drift.to_json_dict()
        sensitivity = self.outlier_sensitivity
        out["outlier_sensitivity"] = sensitivity.to_json_dict() if sensitivity else None
        return out


def analyse(
    prepared: Prepared,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
    margins: Iterable[stats.Margin | str] | None = None,
    sensitivity: bool = True,
    sesoi: Iterable[stats.Margin | str] | None = None,
) -> Analysis:
    """Every metric of the runs used, per policy and policy against the reference, planning,
    and the equivalence of every metric with a margin.

    ``margins`` (:class:`stats.Margin` or ``METRIC=SPEC`` texts) come before the experiment's
    ``config.margins``; test accuracy without either gets :data:`stats.DEFAULT_ACCURACY_MARGIN`.
    ``sesoi`` (:func:`stats.parse_sesoi` texts or margins) plans energy's runs needed, before
    the experiment's ``config.sesoi`` and energy's margin.
    """
    data = prepared.data
    groups = prepared.kept_by_policy()
    metrics, blocking = _metrics_and_blocking(prepared, groups, alpha)
    excluded = prepared.excluded()
    used_margins, margin_problems = _bound_margins(prepared, groups, margins, metrics)
    equivalence = _equivalence(
        prepared, groups, metrics, used_margins, margin_problems, alpha=alpha, power=power
    )
    family = decide(_questions(metrics, equivalence, blocking, prepared.accuracy_scale), alpha)
    stopped = stopping(data)
    if stopped is not None and stopped.final_answers:
        # After an adaptive experiment the verdict is the design's answers (with their
        # repeated confidence intervals), never a fixed-sample re-test of the stopped data.
        family = with_sequential(family, _sequential_decisions(family, stopped))
    equivalence = {
        key: [_with_verdict(item, family) for item in items] for key, items in equivalence.items()
    }
    kept_ids = {str(row["run_id"]) for row in prepared.kept}
    analysis = Analysis(
        family=family,
        prepared=prepared,
        alpha=alpha,
        metrics=metrics,
        planning=_planning(
            metrics[ENERGY],
            alpha=alpha,
            power=power,
            sesoi=as_sesoi(sesoi),
            experiment=data.experiment,
            margins=used_margins,
            equivalence=equivalence,
        ),
        runs=_run_counts(prepared, excluded),
        excluded=excluded,
        failed=_failed_runs(data),
        blocking=blocking,
        margins=used_margins,
        equivalence=equivalence,
        margin_problems=margin_problems,
        machine=machine_states(data, kept_ids),
        stopping=stopped,
        targets=energy_to_targets(data, prepared.kept, data.baseline, alpha),
    )
    # Checks of the model behind the verdict (``sensitivity``: the outlier check's own re-run
    # of this function has none).
    drift = _drift(prepared, blocking is not None, alpha)
    analysis = replace(analysis, drift=drift)
    if sensitivity:
        analysis = replace(
            analysis, outlier_sensitivity=_outlier_sensitivity(analysis, power, margins)
        )
    return analysis


def _metrics_and_blocking(
    prepared: Prepared, groups: Mapping[str, list[Row]], alpha: float
) -> tuple[dict[str, _MetricAnalysis], Blocking | None]:
    """Every metric the runs have (and those always reported), with energy's primary test
    blocked by host where the runs ran on several hosts."""
    metrics: dict[str, _MetricAnalysis] = {}
    for metric in _METRICS:
        values = {policy: numeric(rows, metric.key) for policy, rows in groups.items()}
        present = any(np.isfinite(v).any() for v in values.values())
        if not present and not metric.always:
            continue
        metrics[metric.key] = _metric(metric, values, prepared, present=present, alpha=alpha)
    blocked = _blocking(prepared, metrics[ENERGY], alpha)
    if blocked is None:
        return metrics, None
    blocking, metrics[ENERGY] = blocked
    return metrics, blocking


def _bound_margins(
    prepared: Prepared,
    groups: Mapping[str, list[Row]],
    margins: Iterable[stats.Margin | str] | None,
    metrics: Mapping[str, _MetricAnalysis],
) -> tuple[dict[str, MarginUse], list[str]]:
    """The margins in use, each bound to its value in its metric's units, and the problems."""
    data = prepared.data
    used_margins, margin_problems = resolve_margins(
        as_margins(margins), data.experiment, bool(metrics[ACCURACY].comparisons)
    )
    # Each margin knows its value in its metric's units, so that it describes itself fully.
    reference_rows = groups.get(data.baseline, []) if data.baseline is not None else []
    bound = {
        key: use.bound(
            data.baseline,
            numeric(reference_rows, key),
            prepared.accuracy_scale if key == ACCURACY else None,
        )
        for key, use in used_margins.items()
    }
    return bound, margin_problems


def _equivalence(
    prepared: Prepared,
    groups: Mapping[str, list[Row]],
    metrics: Mapping[str, _MetricAnalysis],
    used_margins: Mapping[str, MarginUse],
    margin_problems: list[str],
    *,
    alpha: float,
    power: float,
) -> dict[str, list[EquivalenceItem]]:
    """Each comparison's equivalence test, for every metric with a margin; a margin whose
    metric the report lacks goes into ``margin_problems``."""
    equivalence: dict[str, list[EquivalenceItem]] = {}
    for key, use in used_margins.items():
        analysed = metrics.get(key)
        if analysed is None:
            margin_problems.append(
                f"margin {use.margin.spec()} is not used: the report has no metric {key}"
            )
            continue
        equivalence[key] = [
            equivalence_item(
                c,
                use,
                numeric(groups.get(c.a, []), key),
                numeric(groups.get(c.b, []), key),
                scale=prepared.accuracy_scale if key == ACCURACY else None,
                alpha=alpha,
                power=power,
            )
            for c in analysed.comparisons
        ]
    return equivalence


def _run_counts(prepared: Prepared, excluded: Sequence[Excluded]) -> _RunCounts:
    data = prepared.data
    return _RunCounts(
        total=len(data.rows) + data.unreadable,
        done=len(data.done),
        used=len(prepared.kept),
        failed=len(data.failed),
        unfinished=len(data.unfinished),
        excluded=sum(1 for e in excluded if e.column is None),
    )


def _failed_runs(data: ExperimentData) -> list[_FailedRun]:
    return [
        _FailedRun(
            str(row["run_id"]),
            str(row["policy"]),
            None if row.get("error") is None else str(row["error"]),
        )
        for row in data.failed
    ]


# -- the questions the verdict decides ----------------------------------------------------------


def _questions(
    metrics: Mapping[str, _MetricAnalysis],
    equivalence: Mapping[str, list[EquivalenceItem]],
    blocking: Blocking | None,
    scale: Literal["fraction", "percent"] | None,
) -> list[Question]:
    """Per policy, in the policies' order: energy's question (its margin's, or whether it
    differs), then each other metric with a margin (test accuracy by default)."""
    out: list[Question] = []
    for comparison in metrics[ENERGY].comparisons:
        policy = comparison.b
        for key in [ENERGY, *(k for k in equivalence if k != ENERGY)]:
            item = next((i for i in equivalence.get(key, []) if i.b == policy), None)
            if item is not None:
                out.append(_margin_question(item, scale))
            elif key == ENERGY:
                blocked = blocking.against(policy) if blocking is not None else None
                out.append(_energy_question(comparison, blocked))
    return out


def _label_of(key: str) -> str:
    metric = METRIC_BY_KEY.get(key)
    return metric.label if metric is not None else key


def _energy_question(c: stats.CompareResult, blocked: _BlockedComparison | None) -> Question:
    common = {
        "metric": ENERGY,
        "label": "energy",
        "policy": c.b,
        "reference": c.a,
        "kind": "difference",
        "scale": "log_ratio",
        "unit": "%",
        "factor": 1.0,
        "n_a": c.n_a,
        "n_b": c.n_b,
    }
    if blocked is not None:
        test = blocked.test
        fit = None
        if test.log_ratio is not None and test.se is not None and test.df is not None:
            fit = TFit(float(test.log_ratio), float(test.se), float(test.df))
        reason = next(iter(test.not_computed.values()), None) if fit is None else None
        return Question(
            **common,  # type: ignore[arg-type]
            test="host-blocked t on the log ratio",
            test_key=BLOCKED_TEST,
            fit=fit,
            reason=reason,
        )
    fit = None
    reason = c.not_computed.get("primary_p")
    if reason is None and c.mean_a and c.mean_b and c.sd_a is not None and c.sd_b is not None:
        welch = stats.welch_log_ratio(c.mean_a, c.sd_a, c.n_a, c.mean_b, c.sd_b, c.n_b)
        if math.isfinite(float(welch.se)) and math.isfinite(float(welch.df)):
            fit = TFit(float(welch.log_ratio), float(welch.se), float(welch.df))
    return Question(
        **common,  # type: ignore[arg-type]
        test="Welch t on the log ratio",
        test_key="welch_log_ratio",
        fit=fit,
        reason=reason or (None if fit is not None else "not computed"),
    )


def _margin_question(
    item: EquivalenceItem, scale: Literal["fraction", "percent"] | None
) -> Question:
    margin = item.margin.margin
    result = item.result
    log_scale = margin.unit == "%"
    fit = None
    if result is not None and result.se is not None and result.df is not None:
        assert result.difference is not None
        fit = TFit(float(result.difference), float(result.se), float(result.df))
    reason = None
    if fit is None:
        missing = {**(result.not_computed if result is not None else {}), **item.not_computed}
        reason = next(iter(missing.values()), "not computed")
    lower: float | None = None
    upper: float | None = None
    if log_scale:
        if margin.kind == "equivalence":
            lower, upper = math.log1p(-margin.value / 100.0), math.log1p(margin.value / 100.0)
        elif margin.tolerated == -1:
            lower = math.log1p(-margin.value / 100.0)
        else:
            upper = math.log1p(margin.value / 100.0)
    elif item.margin_abs is not None:
        size = float(item.margin_abs)
        if margin.kind == "equivalence":
            lower, upper = -size, size
        elif margin.tolerated == -1:
            lower = -size
        else:
            upper = size
    elif fit is not None:
        fit, reason = None, "the margin could not be put in the metric's units"
    accuracy_pp = item.metric == ACCURACY and scale is not None
    if log_scale:
        unit, factor = "%", 1.0
    elif accuracy_pp:
        unit, factor = " pp", 100.0 if scale == "fraction" else 1.0
    else:
        unit, factor = "", 1.0
    kind_words = "TOST" if margin.kind == "equivalence" else "non-inferiority test"
    scale_words = "on the log ratio" if log_scale else "Welch"
    return Question(
        metric=item.metric,
        label=_label_of(item.metric),
        policy=item.b,
        reference=item.a,
        kind=margin.kind,
        test=f"{kind_words} ({scale_words})",
        test_key=item.test,
        scale="log_ratio" if log_scale else "difference",
        unit=unit,
        factor=factor,
        fit=fit,
        reason=reason,
        lower_bound=lower,
        upper_bound=upper,
        margin_text=item.margin.text,
        n_a=item.n_a,
        n_b=item.n_b,
    )


_SEQUENTIAL_OUTCOMES: dict[str, Outcome] = {
    "equivalent": "equivalent",
    "beyond margin": "beyond",
    "not worse": "not worse",
    "worse": "worse",
}


def _sequential_decisions(family: Family, stopped: Stopping) -> list[Decision]:
    """The design's last answer to each of the family's questions, as decisions.

    The answer's interval is its repeated confidence interval (in % for a log-ratio question,
    in the metric's units otherwise), put back on the question's scale; its level is the
    nominal level the design tested at. A question the design did not ask keeps the fixed
    decision (an old folder, or a metric the experiment had no margin for)."""
    out = []
    answers = stopped.final_answers
    for decision in family.decisions:
        q = decision.question
        answer = answers.get((q.metric, q.policy))
        if answer is None or answer.kind != q.kind:
            continue
        interval = None
        estimate = None
        if answer.estimate is not None:
            if answer.scale == "percent" and answer.estimate > -100.0:
                estimate = math.log1p(answer.estimate / 100.0)
            elif answer.scale == "difference":
                estimate = answer.estimate
        if answer.ci_low is not None and answer.ci_high is not None:
            low, high = answer.ci_low, answer.ci_high
            if answer.scale == "percent" and low > -100.0:
                interval = (math.log1p(low / 100.0), math.log1p(high / 100.0))
            elif answer.scale == "difference":
                interval = (low, high)
        verdict = answer.verdict if answer.settled else None
        outcome: Outcome
        if verdict == "different":
            sign = answer.estimate if answer.estimate is not None else 0.0
            outcome = "lower" if sign < 0 else "higher"
        elif verdict is None:
            outcome = "open"
        else:
            outcome = _SEQUENTIAL_OUTCOMES.get(verdict, "open")
        out.append(
            Decision(
                q,
                outcome,
                answer.p,
                None,
                answer.level,
                interval,
                source="sequential",
                note=None if interval is not None else "the design recorded no interval",
                estimate=estimate,
            )
        )
    return out


def _with_verdict(item: EquivalenceItem, family: Family) -> EquivalenceItem:
    decision = family.of(item.metric, item.b)
    return replace(item, verdict=phrase(decision)) if decision is not None else item


# -- mean power over time ------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerTrace:
    """What went into the mean power trace per policy (the trace itself is a DataFrame)."""

    bin_s: float
    domains: list[str] | None  # the counted domains summed into power
    runs: dict[str, int]  # per policy: runs in the trace
    missing: list[str]  # runs used without samples/<run_id>.csv
    unreadable: dict[str, str] = field(default_factory=dict)  # run id -> why not read
    # run id -> its counted domains, for runs whose samples have no bin with all of them
    no_counted: dict[str, list[str] | None] = field(default_factory=dict)

    def to_json_dict(self) -> JsonObject:
        return {
            "bin_s": self.bin_s,
            "domains": self.domains,
            "runs": dict(self.runs),
            "missing": list(self.missing),
        }

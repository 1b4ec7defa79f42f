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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report.data import Excluded, ExperimentData, Row, numeric

ENERGY = "energy_j"
ACCURACY = "test_accuracy"
OUTLIER_THRESHOLD = 3.0
ALPHA = 0.05
POWER = 0.8

# What stats.json holds: JSON values, with NaN and infinity already None.
Json: TypeAlias = bool | int | float | str | Sequence["Json"] | Mapping[str, "Json"] | None
JsonObject: TypeAlias = dict[str, Json]
FloatArray: TypeAlias = np.ndarray[Any, np.dtype[np.float64]]


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


METRICS: tuple[Metric, ...] = (
    Metric("energy_j", "energy", "J", energy=True, always=True),
    Metric("net_energy_j", "net energy (above idle)", "J", energy=True, always=False),
    Metric("duration_s", "duration", "s", energy=False, always=True),
    Metric("mean_power_w", "mean power", "W", energy=True, always=True),
    Metric("test_accuracy", "test accuracy", "", energy=False, always=True),
    Metric("test_loss", "test loss", "", energy=False, always=False),
)
METRIC_BY_KEY = {metric.key: metric for metric in METRICS}


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


def simulated_meters(names: Sequence[str]) -> list[str]:
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
    data: ExperimentData, *, outliers: bool = True, threshold: float = OUTLIER_THRESHOLD
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
class GroupSummary:
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
class MetricAnalysis:
    """One metric: every policy's :class:`GroupSummary` and, when the data allow, every policy
    against the reference policy (:func:`stats.compare_policies`)."""

    metric: Metric
    groups: dict[str, GroupSummary]
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
) -> MetricAnalysis:
    groups = {
        policy: GroupSummary(
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
        return MetricAnalysis(metric, groups, reason=reason)
    compared = stats.compare_policies(values, prepared.data.baseline, alpha=alpha)
    return MetricAnalysis(metric, groups, compared=compared)


# -- energy per accuracy point -----------------------------------------------------------------


@dataclass(frozen=True)
class EnergyPerPoint:
    """Mean energy over mean accuracy in percentage points, per policy (the study's Table 1)."""

    values: dict[str, float | None]
    not_computed: dict[str, str]  # policy -> why its value is None


def _energy_per_point(
    energy: MetricAnalysis, accuracy: MetricAnalysis, prepared: Prepared
) -> EnergyPerPoint:
    out: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    refused = prepared.data.refused_columns
    for policy, group in energy.groups.items():
        mean_e = finite(group.description.mean)
        mean_a = finite(accuracy.groups[policy].description.mean)
        out[policy] = None
        if mean_e is None:
            missing[policy] = "no energy values"
        elif ACCURACY in refused:
            missing[policy] = refused[ACCURACY]
        elif mean_a is None or prepared.accuracy_scale is None:
            missing[policy] = "no test_accuracy values"
        else:
            try:
                value = stats.energy_per_accuracy_point(
                    mean_e, mean_a, scale=prepared.accuracy_scale
                )
            except ConfigError as error:
                missing[policy] = str(error)
                continue
            if math.isfinite(value):
                out[policy] = value
            else:
                missing[policy] = "mean test accuracy is zero"
    return EnergyPerPoint(out, missing)


# -- planning ------------------------------------------------------------------------------------

PLANNED = ("cv_pct", "runs_needed_per_policy", "achieved_power", "enough")


@dataclass(frozen=True)
class PlanningItem:
    """Runs per policy that one energy comparison's observed effect needs, and the power the
    experiment had. ``cv_pct`` is the pooled SD (the one behind Cohen's d) as a percentage of
    the reference mean, so the planning effect size is exactly the observed |d|."""

    comparison: stats.CompareResult
    cv_pct: float | None = None
    runs_needed_per_policy: int | None = None
    achieved_power: float | None = None
    enough: bool | None = None
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
            "relative_change_pct": finite(c.relative_change_pct),
            "runs_needed_per_policy": self.runs_needed_per_policy,
            "achieved_power": finite(self.achieved_power),
            "enough": self.enough,
            "not_computed": dict(self.not_computed),
        }


@dataclass(frozen=True)
class Planning:
    """:class:`PlanningItem` for every energy comparison (a post-hoc estimate)."""

    alpha: float
    power: float
    items: list[PlanningItem]
    not_computed: dict[str, str]
    metric: str = ENERGY
    basis: str = "observed pooled CV and observed relative change (a post-hoc estimate)"

    def to_json_dict(self) -> JsonObject:
        return {
            "metric": self.metric,
            "alpha": self.alpha,
            "power": self.power,
            "basis": self.basis,
            "comparisons": [item.to_json_dict() for item in self.items],
            "not_computed": dict(self.not_computed),
        }


def _planning(energy: MetricAnalysis, *, alpha: float, power: float) -> Planning:
    comparisons = energy.comparisons
    missing: dict[str, str] = {}
    if not comparisons:
        missing["comparisons"] = energy.not_computed.get("comparisons", "nothing to compare")
    return Planning(alpha, power, [_plan(c, alpha, power) for c in comparisons], missing)


def _plan(comparison: stats.CompareResult, alpha: float, power: float) -> PlanningItem:
    reason = _planning_reason(comparison)
    if reason:
        return PlanningItem(comparison, not_computed=dict.fromkeys(PLANNED, reason))
    n_a, n_b = comparison.n_a, comparison.n_b
    sd_a, sd_b, mean_a = comparison.sd_a, comparison.sd_b, comparison.mean_a
    change = comparison.relative_change_pct
    assert sd_a is not None and sd_b is not None and mean_a and change  # _planning_reason
    pooled = math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / (n_a + n_b - 2))
    cv = 100.0 * pooled / abs(mean_a)
    if cv == 0.0:
        return PlanningItem(
            comparison, cv_pct=cv, not_computed=dict.fromkeys(PLANNED[1:], "zero variance")
        )
    missing: dict[str, str] = {}
    achieved: float | None = None
    try:
        achieved = finite(stats.achieved_power((n_a, n_b), cv, change, alpha))
    except ConfigError as error:
        missing["achieved_power"] = str(error)
    try:
        needed = stats.runs_needed(cv, change, alpha, power)
    except ConfigError as error:
        missing["runs_needed_per_policy"] = str(error)
        return PlanningItem(
            comparison, finite(cv), None, achieved, enough=False, not_computed=missing
        )
    return PlanningItem(
        comparison, finite(cv), int(needed), achieved, min(n_a, n_b) >= needed, missing
    )


def _planning_reason(comparison: stats.CompareResult) -> str | None:
    if comparison.n_a < 2 or comparison.n_b < 2:
        return "needs at least 2 runs per policy"
    if finite(comparison.sd_a) is None or finite(comparison.sd_b) is None:
        return "needs the SD of both policies"
    if not finite(comparison.mean_a):
        return "the reference mean is zero or missing"
    if not finite(comparison.relative_change_pct):
        return "no observed change; no number of runs detects it"
    return None


# -- the whole analysis --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCounts:
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
class FailedRun:
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
    metrics: dict[str, MetricAnalysis]
    energy_per_point: EnergyPerPoint
    planning: Planning
    runs: RunCounts
    excluded: list[Excluded]
    failed: list[FailedRun]

    @property
    def data(self) -> ExperimentData:
        return self.prepared.data

    @property
    def outliers(self) -> OutlierInfo:
        return self.prepared.outliers

    @property
    def energy(self) -> MetricAnalysis:
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
        if self.energy_per_point.not_computed:
            not_computed["energy_per_accuracy_point_j"] = dict(self.energy_per_point.not_computed)
        return {
            # The policy every other is compared with. Not "baseline": that is the idle power
            # measurement (--baseline, net_energy_j).
            "reference": data.baseline,
            "policies": list(data.policies),
            "estimated": data.estimated,
            "metrics": {key: metric.to_json_dict() for key, metric in self.metrics.items()},
            "energy_per_accuracy_point_j": dict(self.energy_per_point.values),
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
            "not_computed": not_computed,
        }


def analyse(prepared: Prepared, *, alpha: float = ALPHA, power: float = POWER) -> Analysis:
    """Every metric of the runs used, per policy and policy against the reference, and planning."""
    data = prepared.data
    groups = prepared.kept_by_policy()
    metrics: dict[str, MetricAnalysis] = {}
    for metric in METRICS:
        values = {policy: numeric(rows, metric.key) for policy, rows in groups.items()}
        present = any(np.isfinite(v).any() for v in values.values())
        if not present and not metric.always:
            continue
        metrics[metric.key] = _metric(metric, values, prepared, present=present, alpha=alpha)
    excluded = prepared.excluded()
    return Analysis(
        prepared=prepared,
        alpha=alpha,
        metrics=metrics,
        energy_per_point=_energy_per_point(metrics[ENERGY], metrics[ACCURACY], prepared),
        planning=_planning(metrics[ENERGY], alpha=alpha, power=power),
        runs=RunCounts(
            total=len(data.rows) + data.unreadable,
            done=len(data.done),
            used=len(prepared.kept),
            failed=len(data.failed),
            unfinished=len(data.unfinished),
            excluded=sum(1 for e in excluded if e.column is None),
        ),
        excluded=excluded,
        failed=[
            FailedRun(
                str(row["run_id"]),
                str(row["policy"]),
                None if row.get("error") is None else str(row["error"]),
            )
            for row in data.failed
        ],
    )


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

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
from typing import Any, Literal, TypeAlias

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report.data import Excluded, ExperimentData, Row, numeric
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


# -- runs from several hosts ----------------------------------------------------------------------

BLOCKED_TEST: Literal["host_blocked_log_ratio"] = "host_blocked_log_ratio"
BLOCKED_MODEL = "log(energy_j) ~ policy + host"
BLOCKED_REASON = (
    "the runs came from several hosts: OLS of log(energy_j) on the policy with one fixed "
    "effect per host compares energy within hosts; the relative-change CI inverts the same "
    "t-test, so p < alpha exactly when the CI excludes 0"
)
UNKNOWN_HARDWARE = "unknown"
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


def host_of(row: Row) -> str | None:
    """The host that ran a run, or None when its record does not say."""
    host = row.get("host")
    if host is None or (isinstance(host, str) and not host.strip()):
        return None
    return str(host)


@dataclass(frozen=True)
class HostPolicy:
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
class HostSummary:
    """A host's hardware and its runs used, per policy."""

    host: str
    node: NodeInfo | None
    policies: dict[str, HostPolicy]

    @property
    def hardware(self) -> str:
        """The host's CPU and GPUs in one line (NodeInfo.describe), or "unknown"."""
        return self.node.describe() if self.node is not None else UNKNOWN_HARDWARE

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
class LeftOutRun:
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
class BlockedComparison:
    """One policy against the reference within hosts (:func:`stats.blocked_log_ratio`), and
    the unpaired Welch comparison of the same runs, which ignores the hosts."""

    test: stats.BlockedLogRatio
    unpaired: stats.CompareResult
    holm_p: float | None
    left_out: list[LeftOutRun]

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
        out: JsonObject = {"test": BLOCKED_TEST, "model": BLOCKED_MODEL}
        out.update(self.test.to_dict())
        out["n_hosts"] = self.test.n_blocks
        out["holm_p"] = finite(self.holm_p)
        out["unpaired"] = self.unpaired_json()
        out["confounded"] = self.confounded
        out["left_out"] = [run.run_id for run in self.left_out]
        return out


@dataclass(frozen=True)
class Blocking:
    """Runs from more than one host: each host is a block, energy is compared within hosts."""

    hosts: list[HostSummary]
    comparisons: list[BlockedComparison]
    exclusive: bool | None  # experiment.json config.slurm.exclusive, when recorded
    by: str = "host"

    @property
    def left_out(self) -> list[LeftOutRun]:
        return [run for c in self.comparisons for run in c.left_out]

    @property
    def hardware_differs(self) -> bool:
        """Some host has no hardware recorded, or two hosts' CPU or GPUs (or driver) differ."""
        if any(h.node is None for h in self.hosts):
            return True
        return len({h.node.hardware() for h in self.hosts if h.node is not None}) > 1

    def against(self, policy: str) -> BlockedComparison | None:
        return next((c for c in self.comparisons if c.b == policy), None)

    def to_json_dict(self) -> JsonObject:
        return {
            "by": self.by,
            "model": BLOCKED_MODEL,
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


def _host_summaries(prepared: Prepared, reference: str | None) -> list[HostSummary]:
    data = prepared.data
    by_host: dict[str, list[Row]] = {}
    for row in prepared.kept:
        host = host_of(row)
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
        policies: dict[str, HostPolicy] = {}
        for policy in data.policies:
            runs = [r for r in rows if str(r["policy"]) == policy]
            if not runs:
                continue
            mean_energy = _mean(runs, ENERGY)
            change = None
            if policy != reference and mean_energy is not None and reference_mean:
                change = 100.0 * (mean_energy / reference_mean - 1.0)
            policies[policy] = HostPolicy(
                len(runs), mean_energy, _mean(runs, "mean_power_w"), change
            )
        out.append(HostSummary(host, node, policies))
    return out


def _blocked(
    prepared: Prepared, comparison: stats.CompareResult, alpha: float
) -> tuple[stats.BlockedLogRatio, list[LeftOutRun]]:
    a, b = comparison.a, comparison.b
    groups = prepared.kept_by_policy()
    rows_a, rows_b = groups.get(a, []), groups.get(b, [])
    named_a = [r for r in rows_a if host_of(r) is not None]
    named_b = [r for r in rows_b if host_of(r) is not None]
    test = stats.blocked_log_ratio(
        numeric(named_a, ENERGY),
        numeric(named_b, ENERGY),
        [host_of(r) for r in named_a],
        [host_of(r) for r in named_b],
        alpha=alpha,
        label_a=a,
        label_b=b,
    )
    alone = set(test.blocks_left_out)
    left_out = [
        LeftOutRun(str(r["run_id"]), str(r["policy"]), host_of(r), a, b)
        for r in [*rows_a, *rows_b]
        if host_of(r) is None or host_of(r) in alone
    ]
    return test, left_out


def _with_blocked_primary(
    comparison: stats.CompareResult, blocked: BlockedComparison
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
        primary_reason=BLOCKED_REASON,
        holm_p=blocked.holm_p,
        not_computed=missing,
    )


def _blocking(
    prepared: Prepared, energy: MetricAnalysis, alpha: float
) -> tuple[Blocking, MetricAnalysis] | None:
    """The host-blocked analysis when the runs used come from more than one host, and the
    energy analysis with it as the primary test; None for one host (nothing changes)."""
    hosts = {host_of(row) for row in prepared.kept} - {None}
    if len(hosts) < 2:
        return None
    reference = prepared.data.baseline
    tests = [_blocked(prepared, c, alpha) for c in energy.comparisons]
    adjusted = stats.holm([test.p for test, _ in tests])
    comparisons = [
        BlockedComparison(test, unpaired, holm_p, left_out)
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
    blocking: Blocking | None = None  # runs from more than one host
    # Each metric with a margin (test accuracy always), and its comparisons' equivalence tests
    margins: dict[str, MarginUse] = field(default_factory=dict)
    equivalence: dict[str, list[EquivalenceItem]] = field(default_factory=dict)
    margin_problems: list[str] = field(default_factory=list)
    machine: MachineStates | None = None  # runs that recorded their machine's state
    stopping: Stopping | None = None  # an adaptive experiment
    targets: list[Target] = field(default_factory=list)  # energy to a target

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
        out: JsonObject = {
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
        return out


def analyse(
    prepared: Prepared,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
    margins: Iterable[stats.Margin | str] | None = None,
) -> Analysis:
    """Every metric of the runs used, per policy and policy against the reference, planning,
    and the equivalence of every metric with a margin.

    ``margins`` (:class:`stats.Margin` or ``METRIC=SPEC`` texts) come before the experiment's
    ``config.margins``; test accuracy without either gets :data:`stats.DEFAULT_ACCURACY_MARGIN`.
    """
    data = prepared.data
    groups = prepared.kept_by_policy()
    metrics: dict[str, MetricAnalysis] = {}
    for metric in METRICS:
        values = {policy: numeric(rows, metric.key) for policy, rows in groups.items()}
        present = any(np.isfinite(v).any() for v in values.values())
        if not present and not metric.always:
            continue
        metrics[metric.key] = _metric(metric, values, prepared, present=present, alpha=alpha)
    blocked = _blocking(prepared, metrics[ENERGY], alpha)
    blocking = None
    if blocked is not None:
        blocking, metrics[ENERGY] = blocked
    excluded = prepared.excluded()
    used_margins, margin_problems = resolve_margins(
        as_margins(margins), data.experiment, bool(metrics[ACCURACY].comparisons)
    )
    equivalence: dict[str, list[EquivalenceItem]] = {}
    for key, use in used_margins.items():
        analysed = metrics.get(key)
        if analysed is None:
            margin_problems.append(
                f"margin {use.margin.spec()} is not used: the report has no metric {key}"
            )
            continue
        several = len(analysed.comparisons) > 1
        equivalence[key] = [
            equivalence_item(
                c,
                use,
                numeric(groups.get(c.a, []), key),
                numeric(groups.get(c.b, []), key),
                scale=prepared.accuracy_scale if key == ACCURACY else None,
                alpha=alpha,
                power=power,
                several=several,
            )
            for c in analysed.comparisons
        ]
    kept_ids = {str(row["run_id"]) for row in prepared.kept}
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
        blocking=blocking,
        margins=used_margins,
        equivalence=equivalence,
        margin_problems=margin_problems,
        machine=machine_states(data, kept_ids),
        stopping=stopping(data, {policy: numeric(rows, ENERGY) for policy, rows in groups.items()}),
        targets=energy_to_targets(data, prepared.kept, data.baseline, alpha),
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

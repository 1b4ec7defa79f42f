"""What the runs' records say beyond their totals: the machine's state as each run started,
the warm-up, why an adaptive experiment stopped, and the energy each run took to reach a
target. Numbers only; :mod:`.prose` words them and :mod:`.content` tabulates them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np
from pydantic import ValidationError

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report.data import ExperimentData, Row
from greenprec.results import MachineState, RunRecord
from greenprec.results.models import PhaseRecord, SequentialRecord

TEMPERATURE_LIMIT_C = 5.0  # a run that starts this much hotter or colder than the median
CLOCK_LIMIT_PCT = 10.0  # a run whose starting clock differs this much from the median
# NVML's clock throttle reasons that mean heat or power held the clocks down (not gpu_idle,
# an application clock setting, sync boost or the display clock).
THROTTLE_FLAGGED = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)

# (field of MachineState, what, unit, kind of rule)
STATE_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("cpu_temp_c", "CPU temperature", "°C", "temperature"),
    ("cpu_freq_mhz", "CPU frequency", "MHz", "clock"),
    ("gpu_temp_c", "GPU temperature", "°C", "temperature"),
    ("gpu_sm_clock_mhz", "GPU SM clock", "MHz", "clock"),
    ("gpu_power_limit_w", "GPU power limit", "W", "none"),
)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# -- machine state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MachineRun:
    """One run's machine state as it started (and ended), and the idle power just before it."""

    run_id: str
    policy: str
    used: bool  # in the statistics (not an outlier)
    start: MachineState | None
    end: MachineState | None
    idle_power_w: float | None

    def value(self, name: str) -> float | None:
        return _finite(getattr(self.start, name)) if self.start is not None else None

    @property
    def throttled(self) -> list[tuple[str, str]]:
        """(when, reason) for each heat or power throttle reason active at the start or end."""
        out = []
        for when, state in (("start", self.start), ("end", self.end)):
            if state is not None:
                out += [(when, r) for r in state.gpu_throttle_reasons if r in THROTTLE_FLAGGED]
        return out

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "policy": self.policy, "used": self.used}
        for name, *_ in STATE_FIELDS:
            out[name] = self.value(name)
        out["gpu_throttle_reasons"] = list(self.start.gpu_throttle_reasons) if self.start else []
        out["gpu_throttle_reasons_end"] = list(self.end.gpu_throttle_reasons) if self.end else []
        out["sources"] = list(self.start.sources) if self.start else []
        out["idle_power_w"] = _finite(self.idle_power_w)
        return out


@dataclass(frozen=True)
class MachineFlag:
    """A run that started unlike the others (or throttled)."""

    run_id: str
    policy: str
    field: str  # a MachineState field, or "gpu_throttle_reasons"
    what: str
    unit: str
    value: float | None
    median: float | None
    difference: float | None  # value − median (°C) or relative difference in % (clocks)
    rule: str
    reasons: list[str] = dc_field(default_factory=list)  # throttle reasons ("start: sw_power_cap")

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "field": self.field,
            "value": self.value,
            "median": self.median,
            "difference": self.difference,
            "rule": self.rule,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Warmup:
    """A warm-up before the runs: how long it took; an automatic one settled or hit its cap."""

    duration_s: float | None
    settled: bool | None  # None: a warm-up of fixed length
    criterion: str | None
    cap_s: float | None

    @property
    def automatic(self) -> bool:
        return self.settled is not None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "duration_s": _finite(self.duration_s),
            "automatic": self.automatic,
            "settled": self.settled,
            "criterion": self.criterion,
            "cap_s": _finite(self.cap_s),
        }


@dataclass(frozen=True)
class MachineStates:
    runs: list[MachineRun]
    medians: dict[str, float | None]
    flags: list[MachineFlag]
    warmups: list[Warmup]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "runs": [run.to_json_dict() for run in self.runs],
            "medians": dict(self.medians),
            "rules": {
                "temperature_c": TEMPERATURE_LIMIT_C,
                "clock_pct": CLOCK_LIMIT_PCT,
                "throttle_reasons": sorted(THROTTLE_FLAGGED),
            },
            "flags": [flag.to_json_dict() for flag in self.flags],
            "warmups": [w.to_json_dict() for w in self.warmups],
        }


def machine_states(data: ExperimentData, kept_ids: set[str]) -> MachineStates | None:
    """The machine state of every finished run (outliers included: an unusual start may be
    why), with the runs that started unlike the others; None when no run recorded any."""
    runs: list[MachineRun] = []
    for row in data.done:
        record = data.records.get(str(row["run_id"]))
        if record is None:
            continue
        runs.append(
            MachineRun(
                record.run_id,
                record.policy,
                record.run_id in kept_ids,
                record.machine_start,
                record.machine_end,
                _finite(record.idle_power_w),
            )
        )
    warmups = _warmups(data.experiment)
    has_state = any(
        run.idle_power_w is not None
        or (
            run.start is not None
            and (
                run.start.gpu_throttle_reasons
                or any(run.value(name) is not None for name, *_ in STATE_FIELDS)
            )
        )
        for run in runs
    )
    if not has_state and not warmups:
        return None
    runs = [
        r for r in runs if r.start is not None or r.end is not None or r.idle_power_w is not None
    ]
    medians: dict[str, float | None] = {}
    for name, *_ in STATE_FIELDS:
        values = [v for v in (run.value(name) for run in runs) if v is not None]
        medians[name] = float(np.median(values)) if values else None
    idle = [run.idle_power_w for run in runs if run.idle_power_w is not None]
    medians["idle_power_w"] = float(np.median(idle)) if idle else None
    return MachineStates(runs, medians, _flags(runs, medians), warmups)


def _flags(runs: Sequence[MachineRun], medians: dict[str, float | None]) -> list[MachineFlag]:
    flags: list[MachineFlag] = []
    for run in runs:
        for name, what, unit, kind in STATE_FIELDS:
            value, median = run.value(name), medians.get(name)
            if value is None or median is None or kind == "none":
                continue
            if kind == "temperature":
                difference = value - median
                limit = f"more than {TEMPERATURE_LIMIT_C:g} °C from the median of all runs"
                beyond = abs(difference) > TEMPERATURE_LIMIT_C
            elif median > 0:
                difference = 100.0 * (value / median - 1.0)
                limit = f"more than {CLOCK_LIMIT_PCT:g} % from the median of all runs"
                beyond = abs(difference) > CLOCK_LIMIT_PCT
            else:
                continue
            if beyond:
                flags.append(
                    MachineFlag(
                        run.run_id, run.policy, name, what, unit, value, median, difference, limit
                    )
                )
        throttled = run.throttled
        if throttled:
            flags.append(
                MachineFlag(
                    run.run_id,
                    run.policy,
                    "gpu_throttle_reasons",
                    "GPU throttle reasons",
                    "",
                    None,
                    None,
                    None,
                    "heat or power throttled the GPU's clocks",
                    [f"{when}: {reason}" for when, reason in throttled],
                )
            )
    return flags


def _warmups(experiment: dict[str, Any]) -> list[Warmup]:
    config = experiment.get("config")
    cap = _finite(config.get("warmup_s")) if isinstance(config, dict) else None
    out = []
    for item in experiment.get("warmups") or []:
        try:
            phase = PhaseRecord.model_validate(item)
        except ValidationError:
            continue
        out.append(Warmup(_finite(phase.duration_s), phase.settled, phase.criterion, cap))
    return out


# -- why an adaptive experiment stopped ----------------------------------------------------------


@dataclass(frozen=True)
class Stopping:
    """An adaptive experiment's looks, why it stopped, and what stopping saved."""

    record: SequentialRecord | None
    policies: int
    fixed_runs_per_policy: int | None  # a fixed design of the same power
    fixed_not_computed: str | None
    problem: str | None = None  # why the record could not be read

    @property
    def runs_per_policy(self) -> int | None:
        record = self.record
        if record is None:
            return None
        if record.runs_per_policy is not None:
            return record.runs_per_policy
        return record.looks[-1].runs_per_policy if record.looks else None

    @property
    def saved_runs(self) -> int | None:
        """Runs (all policies together) stopping saved against the fixed design."""
        fixed, used = self.fixed_runs_per_policy, self.runs_per_policy
        if fixed is None or used is None:
            return None
        return (fixed - used) * self.policies

    def to_json_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "sequential": record.model_dump(mode="json") if record is not None else None,
            "runs_per_policy": self.runs_per_policy,
            "fixed_runs_per_policy": self.fixed_runs_per_policy,
            "saved_runs": self.saved_runs,
            "policies": self.policies,
            "not_computed": (
                {"fixed_runs_per_policy": self.fixed_not_computed}
                if self.fixed_not_computed
                else {}
            ),
            "problem": self.problem,
        }


def stopping(
    data: ExperimentData, energy: dict[str, np.ndarray[Any, np.dtype[np.float64]]]
) -> Stopping | None:
    """None unless the experiment was adaptive (``config.adaptive`` or a sequential record).
    ``energy``: each policy's energies of the runs used, for the fixed design's runs."""
    experiment = data.experiment
    config = experiment.get("config")
    adaptive = isinstance(config, dict) and config.get("adaptive") is True
    raw = experiment.get("sequential")
    if raw is None and not adaptive:
        return None
    policies = max(len(data.policies), 1)
    if raw is None:
        return Stopping(
            None,
            policies,
            None,
            "no sequential record",
            "experiment.json records no looks (config.adaptive is set but the experiment "
            "made none)",
        )
    try:
        record = SequentialRecord.model_validate(raw)
    except ValidationError as error:
        first = str(error).splitlines()[0] if str(error) else "invalid"
        return Stopping(
            None,
            policies,
            None,
            "the record cannot be read",
            f"experiment.json sequential cannot be read: {first}",
        )
    fixed, reason = _fixed_runs(record, energy, data.baseline)
    return Stopping(record, policies, fixed, reason)


def _fixed_runs(
    record: SequentialRecord,
    energy: dict[str, np.ndarray[Any, np.dtype[np.float64]]],
    reference: str | None,
) -> tuple[int | None, str | None]:
    """Runs per policy a fixed design needs to detect the observed energy changes with the
    same power (:func:`greenprec.sequential.fixed_runs_same_power`; the largest over the
    policies), or why it cannot be computed."""
    try:
        from greenprec.sequential import fixed_runs_same_power
    except ImportError as error:  # pragma: no cover - greenprec.sequential ships with greenprec
        return None, f"greenprec.sequential is not available ({error})"
    if reference is None or reference not in energy:
        return None, "no reference policy with energy values"
    needed: list[int] = []
    for policy, values in energy.items():
        if policy == reference:
            continue
        try:
            n = fixed_runs_same_power(
                energy[reference].tolist(), values.tolist(), alpha=record.alpha
            )
        except ConfigError as error:
            return None, str(error)
        if n is None:
            return None, (
                f"the energy of {policy} against {reference} does not allow it (fewer than 2 "
                "runs per policy, no observed change or no spread)"
            )
        needed.append(int(n))
    if not needed:
        return None, "no policy to compare with the reference"
    return max(needed), None


# -- energy to a target --------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetPolicy:
    """One policy's runs used and how they did against one target."""

    policy: str
    runs: int
    reached: list[str]  # run ids
    not_reached: list[str]  # run ids that did not reach it (or recorded nothing for it)
    not_recorded: list[str]  # of those: runs without a record of the target at all
    energy: stats.Description | None  # energy to the target over the runs that reached it
    mean_epoch: float | None
    mean_duration_s: float | None

    @property
    def rate(self) -> float | None:
        return len(self.reached) / self.runs if self.runs else None

    def to_json_dict(self) -> dict[str, Any]:
        energy = self.energy
        return {
            "runs": self.runs,
            "reached": len(self.reached),
            "reached_fraction": self.rate,
            "not_reached": list(self.not_reached),
            "not_recorded": list(self.not_recorded),
            "mean_energy_j": _finite(energy.mean) if energy is not None else None,
            "sd_energy_j": _finite(energy.sd) if energy is not None else None,
            "mean_epoch": self.mean_epoch,
            "mean_duration_s": self.mean_duration_s,
        }


@dataclass(frozen=True)
class TargetComparison:
    """Energy to the target of a policy against the reference's, over the runs that reached
    it (:func:`stats.welch_log_ratio`)."""

    a: str
    b: str
    n_a: int
    n_b: int
    relative_change_pct: float | None
    ci: tuple[float, float] | None
    t: float | None
    df: float | None
    p: float | None
    flattering: bool  # b reached the target less often than the reference

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "test": "welch_log_ratio",
            "n_a": self.n_a,
            "n_b": self.n_b,
            "relative_change_pct": self.relative_change_pct,
            "relative_change_ci": list(self.ci) if self.ci is not None else None,
            "log_ratio_t": self.t,
            "log_ratio_df": self.df,
            "log_ratio_p": self.p,
            "reaches_less_often": self.flattering,
        }


@dataclass(frozen=True)
class Target:
    metric: str
    value: float
    higher_is_better: bool
    policies: dict[str, TargetPolicy]
    comparisons: list[TargetComparison]

    @property
    def name(self) -> str:
        return f"{self.metric} {'≥' if self.higher_is_better else '≤'} {self.value:g}"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "policies": {p: t.to_json_dict() for p, t in self.policies.items()},
            "comparisons": [c.to_json_dict() for c in self.comparisons],
        }


def targets(
    data: ExperimentData, kept: Sequence[Row], reference: str | None, alpha: float
) -> list[Target]:
    """Energy to each target the experiment set (``config.targets``) or the runs recorded."""
    wanted: dict[tuple[str, float], bool] = {}
    config = data.experiment.get("config")
    configured = config.get("targets") if isinstance(config, dict) else None
    records: dict[str, RunRecord] = {}
    for row in kept:
        record = data.records.get(str(row["run_id"]))
        if record is not None:
            records[record.run_id] = record
    found = {
        (t.metric, float(t.value)): t.higher_is_better for r in records.values() for t in r.targets
    }
    if isinstance(configured, dict):
        for metric, value in configured.items():
            number = _finite(value)
            if number is not None:
                key = (str(metric), number)
                wanted[key] = found.get(key, True)
    for key, higher in found.items():
        wanted.setdefault(key, higher)
    out = []
    by_policy: dict[str, list[RunRecord]] = {policy: [] for policy in data.policies}
    for record in records.values():
        by_policy.setdefault(record.policy, []).append(record)
    for (metric, value), higher in wanted.items():
        policies: dict[str, TargetPolicy] = {}
        energies: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        for policy, runs in by_policy.items():
            if not runs:
                continue
            reached, not_reached, not_recorded = [], [], []
            energy, epochs, durations = [], [], []
            for run in runs:
                mine = next(
                    (t for t in run.targets if t.metric == metric and float(t.value) == value),
                    None,
                )
                joules = _finite(mine.energy_j) if mine is not None else None
                if mine is not None and mine.reached and joules is not None and joules > 0:
                    reached.append(run.run_id)
                    energy.append(joules)
                    if mine.epoch is not None:
                        epochs.append(float(mine.epoch))
                    if _finite(mine.duration_s) is not None:
                        durations.append(float(mine.duration_s or 0.0))
                else:
                    not_reached.append(run.run_id)
                    if mine is None:
                        not_recorded.append(run.run_id)
            array = np.array(energy, dtype=np.float64)
            energies[policy] = array
            policies[policy] = TargetPolicy(
                policy,
                len(runs),
                reached,
                not_reached,
                not_recorded,
                stats.describe(array) if array.size else None,
                float(np.mean(epochs)) if epochs else None,
                float(np.mean(durations)) if durations else None,
            )
        comparisons = []
        if reference in policies:
            ref = policies[reference]
            for policy, item in policies.items():
                if policy == reference:
                    continue
                comparisons.append(
                    _compare_target(
                        reference,
                        policy,
                        energies[reference],
                        energies[policy],
                        (item.rate or 0.0) < (ref.rate or 0.0),
                        alpha,
                    )
                )
        out.append(Target(metric, value, higher, policies, comparisons))
    return out


def _compare_target(
    a: str,
    b: str,
    xa: np.ndarray[Any, np.dtype[np.float64]],
    xb: np.ndarray[Any, np.dtype[np.float64]],
    flattering: bool,
    alpha: float,
) -> TargetComparison:
    if xa.size < 2 or xb.size < 2:
        return TargetComparison(a, b, xa.size, xb.size, None, None, None, None, None, flattering)
    test = stats.welch_log_ratio(
        float(xa.mean()),
        float(xa.std(ddof=1)),
        xa.size,
        float(xb.mean()),
        float(xb.std(ddof=1)),
        xb.size,
        alpha=alpha,
    )
    change = _finite(float(100.0 * np.expm1(test.log_ratio)))
    low, high = _finite(float(test.ci_lo_pct)), _finite(float(test.ci_hi_pct))
    return TargetComparison(
        a,
        b,
        xa.size,
        xb.size,
        change,
        (low, high) if low is not None and high is not None else None,
        _finite(float(test.t)),
        _finite(float(test.df)),
        _finite(float(test.p)),
        flattering,
    )

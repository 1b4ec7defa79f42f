"""What the runs' records say beyond their totals: the machine's state as each run started,
the warm-up, why an adaptive experiment stopped, and the energy each run took to reach a
target. Numbers only; :mod:`.prose` words them and :mod:`.content` tabulates them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report._json import JsonObject
from greenprec.report.data import ExperimentData, Row
from greenprec.results import MachineState, RunRecord
from greenprec.results.models import AnswerRecord, PhaseRecord, SequentialRecord
from greenprec.stats import FloatArray

__all__ = [
    "MachineFlag",
    "MachineStates",
    "Stopping",
    "Target",
    "Warmup",
    "machine_states",
    "stopping",
    "targets",
]

_TEMPERATURE_LIMIT_C = 5.0  # a run that starts this much hotter or colder than the median
_CLOCK_LIMIT_PCT = 10.0  # a run whose starting clock differs this much from the median
# NVML's clock throttle reasons that mean heat or power held the clocks down (not gpu_idle,
# an application clock setting, sync boost or the display clock).
_THROTTLE_FLAGGED = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)

# (field of MachineState, what, unit, kind of rule)
_STATE_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("cpu_temp_c", "CPU temperature", "°C", "temperature"),
    ("cpu_freq_mhz", "CPU frequency", "MHz", "clock"),
    ("gpu_temp_c", "GPU temperature", "°C", "temperature"),
    ("gpu_sm_clock_mhz", "GPU SM clock", "MHz", "clock"),
    ("gpu_power_limit_w", "GPU power limit", "W", "none"),
)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# -- machine state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MachineRun:
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
                out += [(when, r) for r in state.gpu_throttle_reasons if r in _THROTTLE_FLAGGED]
        return out

    def to_json_dict(self) -> JsonObject:
        out: JsonObject = {"run_id": self.run_id, "policy": self.policy, "used": self.used}
        for name, *_ in _STATE_FIELDS:
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

    def to_json_dict(self) -> JsonObject:
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

    def to_json_dict(self) -> JsonObject:
        return {
            "duration_s": _finite(self.duration_s),
            "automatic": self.automatic,
            "settled": self.settled,
            "criterion": self.criterion,
            "cap_s": _finite(self.cap_s),
        }


@dataclass(frozen=True)
class MachineStates:
    runs: list[_MachineRun]
    medians: dict[str, float | None]
    flags: list[MachineFlag]
    warmups: list[Warmup]

    def to_json_dict(self) -> JsonObject:
        return {
            "runs": [run.to_json_dict() for run in self.runs],
            "medians": dict(self.medians),
            "rules": {
                "temperature_c": _TEMPERATURE_LIMIT_C,
                "clock_pct": _CLOCK_LIMIT_PCT,
                "throttle_reasons": sorted(_THROTTLE_FLAGGED),
            },
            "flags": [flag.to_json_dict() for flag in self.flags],
            "warmups": [w.to_json_dict() for w in self.warmups],
        }


def machine_states(data: ExperimentData, kept_ids: set[str]) -> MachineStates | None:
    """The machine state of every finished run (outliers included: an unusual start may be
    why), with the runs that started unlike the others; None when no run recorded any."""
    runs: list[_MachineRun] = []
    for row in data.done:
        record = data.records.get(str(row["run_id"]))
        if record is None:
            continue
        runs.append(
            _MachineRun(
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
                or any(run.value(name) is not None for name, *_ in _STATE_FIELDS)
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
    for name, *_ in _STATE_FIELDS:
        values = [v for v in (run.value(name) for run in runs) if v is not None]
        medians[name] = float(np.median(values)) if values else None
    idle = [run.idle_power_w for run in runs if run.idle_power_w is not None]
    medians["idle_power_w"] = float(np.median(idle)) if idle else None
    return MachineStates(runs, medians, _flags(runs, medians), warmups)


def _flags(runs: Sequence[_MachineRun], medians: dict[str, float | None]) -> list[MachineFlag]:
    flags: list[MachineFlag] = []
    for run in runs:
        for name, what, unit, kind in _STATE_FIELDS:
            value, median = run.value(name), medians.get(name)
            if value is None or median is None or kind == "none":
                continue
            if kind == "temperature":
                difference = value - median
                limit = f"more than {_TEMPERATURE_LIMIT_C:g} °C from the median of all runs"
                beyond = abs(difference) > _TEMPERATURE_LIMIT_C
            elif median > 0:
                difference = 100.0 * (value / median - 1.0)
                limit = f"more than {_CLOCK_LIMIT_PCT:g} % from the median of all runs"
                beyond = abs(difference) > _CLOCK_LIMIT_PCT
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
    """An adaptive experiment's looks, why it stopped, its final answers, and what stopping
    early saved.

    ``final_answers``: per (metric, policy), the answer of the last look (an AnswerRecord: the
    decision, its repeated confidence interval ``ci_low``–``ci_high`` at level
    ``confidence``, the nominal ``level`` it was settled or tested at). After an adaptive
    experiment the verdict is these answers, not a fixed-sample re-test of the stopped data.
    ``driver``: the question whose settling stopped the design early (the last one settled),
    for which ``fixed_runs_per_policy`` is the fixed design of the same power; None unless it
    stopped early."""

    record: SequentialRecord | None
    policies: int
    fixed_runs_per_policy: int | None  # a fixed design of the same power, for ``driver``
    fixed_not_computed: str | None
    problem: str | None = None  # why the record could not be read
    driver: AnswerRecord | None = None

    @property
    def runs_per_policy(self) -> int | None:
        record = self.record
        if record is None:
            return None
        if record.runs_per_policy is not None:
            return record.runs_per_policy
        return record.looks[-1].runs_per_policy if record.looks else None

    @property
    def stopped_early(self) -> bool:
        return self.record is not None and self.record.stopped_early

    @property
    def final_answers(self) -> dict[tuple[str, str], AnswerRecord]:
        record = self.record
        if record is None or not record.looks:
            return {}
        return {(a.metric, a.policy): a for a in record.looks[-1].answers}

    @property
    def saved_runs(self) -> int | None:
        """Runs (all policies together) stopping early saved against the fixed design of the
        same power for the question that drove the stop; None unless it stopped early."""
        fixed, used = self.fixed_runs_per_policy, self.runs_per_policy
        if not self.stopped_early or fixed is None or used is None:
            return None
        return (fixed - used) * self.policies

    def to_json_dict(self) -> JsonObject:
        record = self.record
        driver = self.driver
        return {
            "sequential": record.model_dump(mode="json") if record is not None else None,
            "runs_per_policy": self.runs_per_policy,
            "stopped_early": self.stopped_early,
            "final_answers": [a.model_dump(mode="json") for a in self.final_answers.values()],
            "driver": (
                {"metric": driver.metric, "policy": driver.policy, "kind": driver.kind}
                if driver is not None
                else None
            ),
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


def stopping(data: ExperimentData) -> Stopping | None:
    """None unless the experiment was adaptive (``config.adaptive`` or a sequential record).

    What stopping saved is a property of the design and of the question that drove the stop,
    never of the observed effect, so no run's energy is needed here."""
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
    driver = _driver(record)
    fixed, reason = _fixed_runs(record, driver)
    return Stopping(record, policies, fixed, reason, driver=driver)


def _driver(record: SequentialRecord) -> AnswerRecord | None:
    """The question whose settling stopped the design early: the last one settled at the
    stopping look (not carried from an earlier look)."""
    if not record.stopped_early or not record.looks:
        return None
    last = record.looks[-1]
    fresh = [
        a
        for a in last.answers
        if a.settled
        and not a.carried
        and (a.settled_at is None or a.settled_at == last.runs_per_policy)
    ]
    return fresh[-1] if fresh else None


def _fixed_runs(
    record: SequentialRecord, driver: AnswerRecord | None
) -> tuple[int | None, str | None]:
    """Runs per policy of a fixed design with the same power as the sequential design, for
    the question that drove the stop (:meth:`greenprec.sequential.SequentialDesign.fixed_runs`:
    a property of the design, at its share of alpha), or why it is not given."""
    if not record.stopped_early:
        return None, "the design did not stop early, so stopping saved nothing"
    if driver is None:
        return None, "the question that stopped the design is not recorded"
    if "exact boundaries" not in record.method:
        return None, (
            "the design recorded (each look tested at its alpha increment, before greenprec "
            "0.3) has no fixed design of the same power computed"
        )
    try:
        from greenprec.sequential import SequentialDesign

        design = SequentialDesign(
            alpha=record.alpha,
            min_runs=record.min_runs,
            max_runs=record.max_runs,
            spending="pocock" if "pocock" in record.method.lower() else "obrien-fleming",
        )
        last = record.looks[-1]
        share = last.alpha_share or record.alpha / max(len(last.answers), 1)
        sides: Literal[1, 2] = 2 if driver.kind == "difference" else 1
        return design.fixed_runs(alpha=share, sides=sides), None
    except (ConfigError, ValueError, ArithmeticError) as error:
        return None, str(error)


# -- energy to a target --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TargetPolicy:
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

    def to_json_dict(self) -> JsonObject:
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
class _TargetComparison:
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

    def to_json_dict(self) -> JsonObject:
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
class _TargetBest:
    """The best value of a target's metric any run recorded after an epoch, and how long the
    runs trained: why a target no run reached was likely out of reach."""

    value: float | None  # the best value recorded (None: no run recorded the metric)
    run_id: str | None
    epoch: int | None
    epochs: int | None  # the most epochs a run recorded
    epochs_param: int | None  # the experiment's epochs parameter, when it set one
    protocol: str | None

    def to_json_dict(self) -> JsonObject:
        return {
            "best_value": self.value,
            "best_run": self.run_id,
            "best_epoch": self.epoch,
            "epochs_recorded": self.epochs,
            "epochs_param": self.epochs_param,
            "protocol": self.protocol,
        }


@dataclass(frozen=True)
class Target:
    metric: str
    value: float
    higher_is_better: bool
    policies: dict[str, _TargetPolicy]
    comparisons: list[_TargetComparison]
    best: _TargetBest | None = None

    @property
    def name(self) -> str:
        return f"{self.metric} {'≥' if self.higher_is_better else '≤'} {self.value:g}"

    @property
    def reached_by_none(self) -> bool:
        """Runs were used, and not one reached the target."""
        return bool(self.policies) and not any(p.reached for p in self.policies.values())

    def to_json_dict(self) -> JsonObject:
        out: JsonObject = {
            "metric": self.metric,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "policies": {p: t.to_json_dict() for p, t in self.policies.items()},
            "comparisons": [c.to_json_dict() for c in self.comparisons],
        }
        if self.best is not None:
            out["best"] = self.best.to_json_dict()
        return out


def _target_best(
    metric: str, higher: bool, records: Sequence[RunRecord], config: object
) -> _TargetBest:
    best: tuple[float, str, int] | None = None
    most_epochs: int | None = None
    for record in records:
        for epoch in record.epochs:
            most_epochs = max(most_epochs or 0, int(epoch.epoch))
            seen = _finite(epoch.metrics.get(metric))
            if seen is None:
                continue
            if best is None or (seen > best[0] if higher else seen < best[0]):
                best = (seen, record.run_id, int(epoch.epoch))
    params = config.get("params") if isinstance(config, dict) else None
    epochs_param = params.get("epochs") if isinstance(params, dict) else None
    protocol = config.get("protocol") if isinstance(config, dict) else None
    return _TargetBest(
        best[0] if best is not None else None,
        best[1] if best is not None else None,
        best[2] if best is not None else None,
        most_epochs,
        int(epochs_param) if isinstance(epochs_param, (int, float)) else None,
        str(protocol) if isinstance(protocol, str) else None,
    )


def targets(
    data: ExperimentData, kept: Sequence[Row], reference: str | None, alpha: float
) -> list[Target]:
    """Energy to each target the experiment set (``config.targets``) or the runs recorded."""
    config = data.experiment.get("config")
    records = _kept_records(data, kept)
    by_policy: dict[str, list[RunRecord]] = {policy: [] for policy in data.policies}
    for record in records.values():
        by_policy.setdefault(record.policy, []).append(record)
    out = []
    for (metric, value), higher in _wanted_targets(config, records).items():
        policies: dict[str, _TargetPolicy] = {}
        energies: dict[str, FloatArray] = {}
        for policy, runs in by_policy.items():
            if runs:
                policies[policy], energies[policy] = _target_policy(policy, runs, metric, value)
        comparisons = _target_comparisons(reference, policies, energies, alpha)
        best = _target_best(metric, higher, list(records.values()), config)
        out.append(Target(metric, value, higher, policies, comparisons, best))
    return out


def _kept_records(data: ExperimentData, kept: Sequence[Row]) -> dict[str, RunRecord]:
    """The run records of the runs the statistics use, by run id."""
    records: dict[str, RunRecord] = {}
    for row in kept:
        record = data.records.get(str(row["run_id"]))
        if record is not None:
            records[record.run_id] = record
    return records


def _wanted_targets(
    config: object, records: Mapping[str, RunRecord]
) -> dict[tuple[str, float], bool]:
    """Each (metric, value) target, configured ones first, and whether higher is better."""
    configured = config.get("targets") if isinstance(config, dict) else None
    found = {
        (t.metric, float(t.value)): t.higher_is_better for r in records.values() for t in r.targets
    }
    wanted: dict[tuple[str, float], bool] = {}
    if isinstance(configured, dict):
        for metric, value in configured.items():
            number = _finite(value)
            if number is not None:
                key = (str(metric), number)
                wanted[key] = found.get(key, True)
    for key, higher in found.items():
        wanted.setdefault(key, higher)
    return wanted


def _target_policy(
    policy: str, runs: Sequence[RunRecord], metric: str, value: float
) -> tuple[_TargetPolicy, FloatArray]:
    """One policy's runs against one target, and the energies of those that reached it."""
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
    summary = _TargetPolicy(
        policy,
        len(runs),
        reached,
        not_reached,
        not_recorded,
        stats.describe(array) if array.size else None,
        float(np.mean(epochs)) if epochs else None,
        float(np.mean(durations)) if durations else None,
    )
    return summary, array


def _target_comparisons(
    reference: str | None,
    policies: Mapping[str, _TargetPolicy],
    energies: Mapping[str, FloatArray],
    alpha: float,
) -> list[_TargetComparison]:
    """Each policy's energy to the target against the reference's."""
    if reference is None or reference not in policies:
        return []
    ref = policies[reference]
    return [
        _compare_target(
            reference,
            policy,
            energies[reference],
            energies[policy],
            (item.rate or 0.0) < (ref.rate or 0.0),
            alpha,
        )
        for policy, item in policies.items()
        if policy != reference
    ]


def _compare_target(
    a: str,
    b: str,
    xa: FloatArray,
    xb: FloatArray,
    flattering: bool,
    alpha: float,
) -> _TargetComparison:
    if xa.size < 2 or xb.size < 2:
        return _TargetComparison(a, b, xa.size, xb.size, None, None, None, None, None, flattering)
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
    return _TargetComparison(
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

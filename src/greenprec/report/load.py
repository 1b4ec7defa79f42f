"""The runs measured under load: which runs had company on the machine, and whether the verdict
holds without them.

A run's ``load`` (:class:`~greenprec.results.models.MachineLoad`, recorded by ``compare`` since
0.3) says what else used the machine while it ran. A run is *measured under load* when
:meth:`~greenprec.results.models.MachineLoad.under_load` gives a reason: other processes used
more than :data:`~greenprec.results.models.UNDER_LOAD_CPU_FRACTION` of the CPU capacity, the
hypervisor took more than :data:`~greenprec.results.models.UNDER_LOAD_STEAL_FRACTION` of it
(steal), another process computed on its GPUs, or its wait for an idle machine reached its
bound. A value that was not known flags nothing.

When runs the statistics use are flagged, every question of the verdict is decided again
without them: a sensitivity check, labelled so, never a second primary test (the verdict stays
the one of all the runs used). The section, and ``stats.json``'s ``machine_load``, appear only
when some finished run recorded its load: a folder written before 0.3, or by an import, shows
neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from greenprec.report import formatting as fmt
from greenprec.report.analysis import Analysis, analyse, finite
from greenprec.report.content import Table
from greenprec.results.models import (
    UNDER_LOAD_CPU_FRACTION,
    UNDER_LOAD_STEAL_FRACTION,
    MachineLoad,
)

if TYPE_CHECKING:
    from greenprec.report._json import JsonObject
    from greenprec.report.decisions import Decision

__all__ = ["LoadSensitivity", "RunLoad", "RunLoads", "load_lines", "load_table", "run_loads"]


@dataclass(frozen=True)
class RunLoad:
    """One finished run's load, and why it counts as measured under load (if it does)."""

    run_id: str
    policy: str
    used: bool
    """The statistics use the run (False: an outlier the rule removed)."""
    load: MachineLoad
    reasons: list[str]

    @property
    def under_load(self) -> bool:
        return bool(self.reasons)

    def to_json_dict(self) -> JsonObject:
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "used": self.used,
            "under_load": self.under_load,
            "reasons": list(self.reasons),
            **self.load.model_dump(mode="json", include=set(MachineLoad.model_fields)),
        }


@dataclass(frozen=True)
class _Item:
    """One question of the verdict, decided with every run used and without those under load."""

    metric: str
    label: str
    policy: str
    reference: str
    kind: str
    test: str
    outcome_all: str
    outcome_without: str
    estimate_all: float | None
    estimate_without: float | None
    unit: str
    p_all: float | None
    p_without: float | None

    @property
    def decidable_without(self) -> bool:
        """Whether the question can still be decided without the runs (enough runs left)."""
        return self.outcome_without != "not tested" or self.outcome_all == "not tested"

    @property
    def changed(self) -> bool:
        return self.decidable_without and self.outcome_all != self.outcome_without

    def to_json_dict(self) -> JsonObject:
        return {
            "metric": self.metric,
            "policy": self.policy,
            "reference": self.reference,
            "kind": self.kind,
            "test": self.test,
            "outcome_all": self.outcome_all,
            "outcome_without": self.outcome_without,
            "estimate_all": finite(self.estimate_all),
            "estimate_without": finite(self.estimate_without),
            "unit": self.unit.strip() or None,
            "p_all": finite(self.p_all),
            "p_without": finite(self.p_without),
            "decidable_without": self.decidable_without,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class LoadSensitivity:
    """The verdict's questions decided again without the runs measured under load."""

    run_ids: list[str]
    items: list[_Item]

    @property
    def changed(self) -> bool:
        return any(item.changed for item in self.items)

    @property
    def undecidable(self) -> bool:
        """Some question cannot be decided without the runs: too few are left."""
        return not all(item.decidable_without for item in self.items)

    def to_json_dict(self) -> JsonObject:
        return {
            "label": "sensitivity check, not a second primary test",
            "without_runs": list(self.run_ids),
            "verdict_changes": self.changed,
            "decidable_without": not self.undecidable,
            "questions": [item.to_json_dict() for item in self.items],
        }


@dataclass(frozen=True)
class RunLoads:
    """Every finished run that recorded its load; those measured under load; the check."""

    runs: list[RunLoad]
    total_done: int
    sensitivity: LoadSensitivity | None

    @property
    def flagged(self) -> list[RunLoad]:
        return [run for run in self.runs if run.under_load]

    @property
    def unknown(self) -> list[str]:
        """Why values are missing, each reason once, over all the runs."""
        return list(dict.fromkeys(reason for run in self.runs for reason in run.load.unknown))

    def to_json_dict(self) -> JsonObject:
        return {
            "thresholds": {
                "other_cpu_fraction": UNDER_LOAD_CPU_FRACTION,
                "cpu_steal_fraction": UNDER_LOAD_STEAL_FRACTION,
                "gpu_other_processes": 0,
            },
            "under_load": [run.run_id for run in self.flagged],
            "not_known": self.unknown,
            "runs": [run.to_json_dict() for run in self.runs],
            "sensitivity": self.sensitivity.to_json_dict() if self.sensitivity else None,
        }


def run_loads(analysis: Analysis) -> RunLoads | None:
    """The finished runs' loads, with the verdict decided again without the runs under load
    that the statistics use; None when no finished run recorded its load."""
    data = analysis.data
    kept = {str(row["run_id"]) for row in analysis.prepared.kept}
    runs: list[RunLoad] = []
    for row in data.done:
        record = data.records.get(str(row["run_id"]))
        if record is None or record.load is None:
            continue
        runs.append(
            RunLoad(
                record.run_id,
                record.policy,
                record.run_id in kept,
                record.load,
                record.load.under_load(),
            )
        )
    if not runs:
        return None
    flagged_used = [run.run_id for run in runs if run.under_load and run.used]
    sensitivity = _without(analysis, flagged_used) if flagged_used else None
    return RunLoads(runs=runs, total_done=len(data.done), sensitivity=sensitivity)


def _without(analysis: Analysis, run_ids: list[str]) -> LoadSensitivity:
    """Every question of the verdict decided again on the runs used less ``run_ids``."""
    prepared = analysis.prepared
    leave_out = set(run_ids)
    fewer = replace(
        prepared, kept=[row for row in prepared.kept if str(row["run_id"]) not in leave_out]
    )
    other = analyse(
        fewer,
        alpha=analysis.alpha,
        power=analysis.planning.power,
        margins=[use.margin for use in analysis.margins.values()],
        sensitivity=False,
    )
    items = []
    for decision in analysis.family.decisions:
        q = decision.question
        alternative = other.family.of(q.metric, q.policy)
        items.append(_item(decision, alternative))
    return LoadSensitivity(run_ids=run_ids, items=items)


def _item(decision: Decision, alternative: Decision | None) -> _Item:
    q = decision.question
    return _Item(
        metric=q.metric,
        label=q.label,
        policy=q.policy,
        reference=q.reference,
        kind=q.kind,
        test=q.test_key,
        outcome_all=decision.outcome,
        outcome_without=alternative.outcome if alternative is not None else "not tested",
        estimate_all=decision.shown_estimate(),
        estimate_without=alternative.shown_estimate() if alternative is not None else None,
        unit=q.unit,
        p_all=decision.question.primary_p(),
        p_without=alternative.question.primary_p() if alternative is not None else None,
    )


def _percent(value: float | None) -> str:
    return fmt.NOT_AVAILABLE if value is None else f"{100 * value:.1f}"


def _loadavg(load: MachineLoad) -> str:
    if load.loadavg_1m_start is None and load.loadavg_1m_end is None:
        return fmt.NOT_AVAILABLE
    return f"{fmt.num(load.loadavg_1m_start, 2)} → {fmt.num(load.loadavg_1m_end, 2)}"


def load_table(loads: RunLoads) -> Table:
    """Per finished run: what else used the machine, and whether that flags it."""

    headers = [
        "run",
        "policy",
        "other processes' CPU (% of capacity)",
        "other CPU time (s)",
        "CPU steal (%)",
        "load average 1 min (start → end)",
        "other GPU processes",
        "waited for idle (s)",
        "under load",
    ]
    rows = []
    for run in loads.runs:
        load = run.load
        rows.append(
            [
                run.run_id + ("" if run.used else " (outlier)"),
                run.policy,
                _percent(load.other_cpu_fraction),
                fmt.num(load.other_cpu_s, 1),
                _percent(load.cpu_steal_fraction),
                _loadavg(load),
                fmt.NOT_AVAILABLE
                if load.gpu_other_processes is None
                else str(load.gpu_other_processes),
                fmt.num(load.waited_for_idle_s, 0),
                "⚠ " + "; ".join(run.reasons) if run.under_load else "no",
            ]
        )
    return Table(headers, rows, frozenset({2, 3, 4, 6, 7}))


_RULE = (
    f"other processes above {100 * UNDER_LOAD_CPU_FRACTION:.0f} % of the CPU capacity, CPU "
    f"steal above {100 * UNDER_LOAD_STEAL_FRACTION:.0f} %, another process computing on the "
    "run's GPUs, or a wait for an idle machine that reached its bound"
)
_NAMED = 20
"""At most this many runs under load are named in the sentence (the table lists them all)."""


def load_lines(loads: RunLoads) -> list[str]:
    """What the table says in words: the runs under load, the sensitivity check, what is not
    known on this machine."""
    flagged = loads.flagged
    lines = [
        f"{len(loads.runs)} of {loads.total_done} finished runs recorded what else used the "
        f"machine while they ran. A run is measured under load with {_RULE}."
    ]
    if not flagged:
        lines.append("No run was measured under load.")
    else:
        named = ", ".join(run.run_id for run in flagged[:_NAMED])
        if len(flagged) > _NAMED:
            named += f" and {len(flagged) - _NAMED} more"
        lines.append(
            f"⚠ {fmt.plural(len(flagged), 'run')} measured under load ({named}; the table says "
            "why). Their energy "
            "and time may hold other work's share (greenprec compare --wait-for-idle S waits "
            "for a quiet machine before each run)."
        )
    if loads.sensitivity is not None:
        lines.append(_sensitivity_line(loads.sensitivity))
    elif flagged:
        lines.append(
            "Sensitivity check: the runs under load are not among the runs used; the verdict "
            "does not depend on them."
        )
    if loads.unknown:
        lines.append("Not known on this machine: " + "; ".join(loads.unknown) + ".")
    return lines


def _shown(value: float | None, unit: str) -> str:
    return fmt.NOT_AVAILABLE if value is None else f"{value:+.3g}{unit}"


def _sensitivity_line(sensitivity: LoadSensitivity) -> str:
    n = len(sensitivity.run_ids)
    parts = [
        f"{item.policy} vs {item.reference} {item.label} ({item.kind}): {item.outcome_all}, "
        f"{_shown(item.estimate_all, item.unit)} with all runs used; {item.outcome_without}, "
        f"{_shown(item.estimate_without, item.unit)} without"
        for item in sensitivity.items
    ]
    if not parts:
        return (
            f"Sensitivity check (not a second primary test): without the {fmt.plural(n, 'run')} "
            "under load there is no question of the verdict to decide again."
        )
    if sensitivity.changed:
        conclusion = (
            "the verdict's conclusion CHANGES without them: repeat those runs on a quiet machine"
        )
    elif sensitivity.undecidable:
        conclusion = (
            "without them too few runs are left to decide every question: whether the "
            "conclusion holds is not known; repeat those runs on a quiet machine"
        )
    else:
        conclusion = "the verdict's conclusion does not change without them"
    return (
        f"Sensitivity check (not a second primary test), leaving out the "
        f"{fmt.plural(n, 'run')} under load that the statistics use "
        f"({', '.join(sensitivity.run_ids)}): {'; '.join(parts)}. So {conclusion}."
    )

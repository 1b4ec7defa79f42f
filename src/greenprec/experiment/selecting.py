"""The looks of a recommendation: after each complete block, drop the configurations shown
worse in energy to the target, and stop when one is left or the rest are within the
indifference zone (the statistics are :func:`greenprec.stats.select_look`'s).

Like an adaptive experiment's looks (:mod:`greenprec.experiment.looks`), a look is recorded in
``experiment.json`` (``selection.looks``) before anything else happens, so a resumed experiment
knows the looks already made and never looks twice at one block. A dropped configuration's runs
not yet made leave the schedule at once (they are never run or submitted); when the selection
stops, every run not yet made leaves it, and the folder is a complete experiment of that size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from greenprec.experiment.config import ExperimentConfig
from greenprec.experiment.session import Session
from greenprec.results import RunRecord, SelectionLookRecord, SelectionRecord
from greenprec.results.models import ConfigurationStatusRecord, PairRecord
from greenprec.sequential import SequentialDesign
from greenprec.stats import ConfigurationStatus, PairComparison, SelectionLook, select_look
from greenprec.stats.selection import METHOD, parse_indifference

__all__ = [
    "energy_to_target",
    "new_selection_record",
    "selection_data",
    "selection_look",
    "still_selected",
]


def new_selection_record(config: ExperimentConfig) -> SelectionRecord:
    """The empty record of a recommendation's looks, with its design (``experiment.json``)."""
    settings = config.selection
    if settings is None:
        raise ValueError("not a selection experiment")
    return SelectionRecord(
        method=METHOD,
        alpha=settings.alpha,
        indifference=settings.indifference,
        min_reached_share=settings.min_reached_share,
        min_runs=config.min_runs,
        max_runs=config.runs,
    )


def energy_to_target(run: RunRecord) -> float | None:
    """A done run's energy to the target: when it reached every target, the energy at which
    it reached the last one (joules); None when it did not reach them all."""
    if not run.targets or not all(t.reached and t.energy_j is not None for t in run.targets):
        return None
    return max(float(t.energy_j) for t in run.targets if t.energy_j is not None)


def selection_data(
    labels: Iterable[str], runs: Iterable[RunRecord]
) -> dict[str, list[float | None]]:
    """Configuration -> energy to the target of each done run (None: not reached). Failed and
    unfinished runs are not runs of the comparison: a failure is not a slow configuration."""
    data: dict[str, list[float | None]] = {label: [] for label in labels}
    for run in runs:
        if run.status == "done" and run.energy_j is not None and run.policy in data:
            data[run.policy].append(energy_to_target(run))
    return data


def _design(record: SelectionRecord) -> SequentialDesign:
    return SequentialDesign(alpha=record.alpha, min_runs=record.min_runs, max_runs=record.max_runs)


def still_selected(session: Session) -> set[str]:
    """The configurations still in play (not dropped for good): those whose runs are made."""
    record = session.experiment.selection
    labels = set(session.config.arm_labels)
    return labels if record is None else labels - record.dropped


def _latest_ended_block(runs: list[RunRecord]) -> int | None:
    """The latest block whose runs have all ended, when every block before it has too."""
    blocks = sorted({run.block for run in runs if run.block is not None})
    latest = None
    for block in blocks:
        if not all(r.status in ("done", "failed") for r in runs if r.block == block):
            break
        latest = block
    return latest


def selection_look(session: Session) -> bool:
    """After a complete block: look, drop, and say whether the recommendation stops here.

    A look is due when every run of the latest block has ended and the configurations in play
    have ``min_runs`` done runs. Its record is written before any run is cut from the schedule:
    a session killed in between resumes with the look made, and cuts again.
    """
    record = session.experiment.selection
    if record is None:
        return False
    if record.looks or record.skipped:
        # A session killed between writing a look and cutting the schedule: cut now (cutting
        # twice does nothing), so no dropped configuration's run is made after its drop.
        _cut(session, max([look.block for look in record.looks] + record.skipped), record.stopped)
    if record.stopped:
        return True
    runs = list(session.runs.values())
    latest = _latest_ended_block(runs)
    looked = {look.block for look in record.looks}
    if latest is None or latest in looked or latest in record.skipped:
        return False
    blocks = [run.block for run in runs if run.block is not None]
    last_block = max(blocks)
    data = selection_data(
        session.config.arm_labels, (r for r in runs if r.block is not None and r.block <= latest)
    )
    active = still_selected(session)
    done = max((len(data[label]) for label in active), default=0)
    if done < record.min_runs and latest < last_block:
        return False
    previous = record.looks[-1].runs if record.looks else 0
    if done < record.min_runs or done <= previous:
        return _skip(session, record, latest, last_block)
    look = select_look(
        data,
        _design(record),
        indifference=parse_indifference(record.indifference),
        earlier=to_look(record.looks[-1]) if record.looks else None,
        min_reached_share=record.min_reached_share,
        alpha=record.alpha,
    )
    stop = look.stop or latest >= last_block
    record.looks.append(look_record(look, latest))
    if stop:
        record.stopped = True
        record.stopped_early = look.stop and latest < last_block
        record.reason = look.reason if look.stop else _at_last_block(look)
    session.store.write_experiment(session.experiment)
    _cut(session, latest, stop)
    _report(session, look, latest, stop)
    return stop


def _at_last_block(look: SelectionLook) -> str:
    if look.outcome == "max_runs":
        return look.reason
    return (
        f"every planned block has run, with {look.runs} runs per configuration (fewer than the "
        f"maximum: runs failed); {look.reason}"
    )


def _skip(session: Session, record: SelectionRecord, latest: int, last_block: int) -> bool:
    """A block that added no done run (runs failed): no look after it; the next block may."""
    record.skipped.append(latest)
    message = f"block {latest} added no done run to compare (runs failed): no look after it"
    stop = latest >= last_block
    if stop:
        record.stopped = True
        record.reason = "every planned block has run; " + (
            record.looks[-1].reason if record.looks else "no look could be made"
        )
        message += f"; every planned block has run: {record.reason}"
    session.store.write_experiment(session.experiment)
    if stop:
        _cut(session, latest, True)
    session.reporter.message(message)
    return stop


def _cut(session: Session, latest: int, stop: bool) -> None:
    """Remove from the schedule the runs not yet made that will never be: every later run
    when the selection stops, else those of the configurations dropped."""
    keep = still_selected(session)
    cut = [
        run.run_id
        for run in session.runs.values()
        if run.block is not None
        and run.block > latest
        and run.status in ("pending", "failed")
        and (stop or run.policy not in keep)
    ]
    if not cut:
        return
    experiment = session.experiment
    gone = set(cut)
    experiment.schedule = [p for p in experiment.schedule if p.run_id not in gone]
    session.store.write_experiment(experiment)
    for run_id in cut:
        session.store.forget_run(run_id)
        del session.runs[run_id]


def _report(session: Session, look: SelectionLook, latest: int, stop: bool) -> None:
    dropped = [c.name for c in look.configurations if c.dropped_at_look == look.look]
    parts = [f"look {look.look} after block {latest} ({look.runs} runs per configuration)"]
    if dropped:
        parts.append("dropped " + ", ".join(dropped))
    parts.append(look.sentence if stop else f"leader {look.leader or 'none'}; going on")
    session.reporter.message(": ".join(parts))


# -- the record of a look, and back (the next look carries the drops) ---------------------------


def look_record(look: SelectionLook, block: int) -> SelectionLookRecord:
    """``look`` as ``experiment.json`` records it, after ``block``."""
    return SelectionLookRecord(
        look=look.look,
        block=block,
        runs=look.runs,
        schedule=list(look.schedule),
        alpha=look.alpha,
        indifference=look.indifference,
        min_reached_share=look.min_reached_share,
        level=look.level,
        configurations=[_status_record(c) for c in look.configurations],
        leader=look.leader,
        stop=look.stop,
        outcome=look.outcome,
        reason=look.reason,
        recommended=look.recommended,
        within=list(look.within),
    )


def _status_record(status: ConfigurationStatus) -> ConfigurationStatusRecord:
    pair = status.dropped_by
    return ConfigurationStatusRecord(
        name=status.name,
        status=status.status,
        runs=status.runs,
        reached=status.reached,
        mean_energy_j=status.mean_energy_j,
        geometric_mean_energy_j=status.geometric_mean_energy_j,
        ratio_to_leader=_finite(status.ratio_to_leader),
        ratio_ci_low=_finite(status.ratio_ci_low),
        ratio_ci_high=_finite(status.ratio_ci_high),
        dropped_by=None if pair is None else _pair_record(pair),
        dropped_at_look=status.dropped_at_look,
        note=status.note,
        final=status.final,
    )


def _finite(value: float | None) -> float | None:
    # An early look's interval can be unbounded; JSON has no infinity, so None (unbounded).
    return value if value is None or math.isfinite(value) else None


def _pair_record(pair: PairComparison) -> PairRecord:
    return PairRecord(
        worse=pair.worse,
        better=pair.better,
        ratio=pair.ratio,
        ratio_ci_low=pair.ratio_ci_low,
        # Unbounded above (an early look on variable data): the largest float JSON holds.
        ratio_ci_high=pair.ratio_ci_high if math.isfinite(pair.ratio_ci_high) else 1e308,
        level=pair.level,
        look=pair.look,
        runs=pair.runs,
    )


def to_look(record: SelectionLookRecord) -> SelectionLook:
    """A recorded look as :func:`greenprec.stats.select_look` takes it as ``earlier``."""
    return SelectionLook(
        look=record.look,
        runs=record.runs,
        schedule=tuple(record.schedule),
        alpha=record.alpha,
        indifference=record.indifference,
        min_reached_share=record.min_reached_share,
        level=record.level,
        configurations=tuple(_status(c) for c in record.configurations),
        leader=record.leader,
        stop=record.stop,
        outcome=record.outcome,  # type: ignore[arg-type]
        reason=record.reason,
        recommended=record.recommended,
        within=tuple(record.within),
    )


def _status(record: ConfigurationStatusRecord) -> ConfigurationStatus:
    pair = record.dropped_by
    return ConfigurationStatus(
        name=record.name,
        status=record.status,  # type: ignore[arg-type]
        runs=record.runs,
        reached=record.reached,
        mean_energy_j=record.mean_energy_j,
        geometric_mean_energy_j=record.geometric_mean_energy_j,
        ratio_to_leader=record.ratio_to_leader,
        ratio_ci_low=record.ratio_ci_low,
        ratio_ci_high=record.ratio_ci_high,
        dropped_by=None
        if pair is None
        else PairComparison(
            worse=pair.worse,
            better=pair.better,
            ratio=pair.ratio,
            ratio_ci_low=pair.ratio_ci_low,
            ratio_ci_high=pair.ratio_ci_high,
            level=pair.level,
            look=pair.look,
            runs=pair.runs,
        ),
        dropped_at_look=record.dropped_at_look,
        note=record.note,
        final=record.final,
    )

"""Running an experiment: create or reopen its folder, then hand it to an executor.

The runner is the folder's *driver*: it holds the folder lock (one driver at a time), creates
the experiment record and a pending run file per scheduled run (or reopens them, to resume),
and hands a :class:`~greenprec.experiment.session.Session` to the executor the configuration
names (:mod:`greenprec.experiment.executors`: here, on Slurm). When the executor is done,
however it ends, the runner writes the index and the experiment's status. Everything on disk
goes through :class:`greenprec.results.ResultsStore`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from greenprec.errors import ConfigError, GreenprecError
from greenprec.experiment.config import ExperimentConfig, stored_config, validate
from greenprec.experiment.environment import environment
from greenprec.experiment.executors import Executor, executor_for
from greenprec.experiment.progress import Reporter
from greenprec.experiment.schedule import make_blocked_schedule, make_schedule
from greenprec.experiment.session import ExperimentFailed, Session
from greenprec.results import (
    INDEX_FILE,
    ExperimentRecord,
    Location,
    MetersRecord,
    ResultsStore,
    RunRecord,
    SequentialRecord,
    new_experiment_record,
)
from greenprec.results.lock import LOCK_NAME
from greenprec.results.records import now_iso

__all__ = [
    "SOURCE",
    "ExperimentFailed",
    "ResumeOutlook",
    "resumable_config",
    "resume_outlook",
    "run_experiment",
    "workload_framework",
]

SOURCE = "greenprec compare"


def run_experiment(
    config: ExperimentConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    on_interrupt: Callable[[Sequence[str]], bool] | None = None,
    slurm: Mapping[str, object] | None = None,
    executor: Executor | None = None,
) -> tuple[ResultsStore, list[RunRecord]]:
    """Run (or continue) an experiment into ``out``; return the store and its final runs.

    With ``resume``, the configuration stored in the folder is used and only runs that are
    not done are executed: pending ones, one interrupted mid-run, a stale ``running`` one,
    and failed ones if ``retry_failed``. Without it, a folder that already holds anything is
    refused. A second process driving the same folder is refused while this one runs.

    With the cluster executor, ``on_interrupt`` is asked on Ctrl-C, with the ids of the Slurm
    jobs still pending or running, whether to cancel them (without it, they keep running).
    ``executor`` replaces the one ``config.executor`` names (the debug executor, say: a
    cluster experiment run by local processes).
    """
    reporter = reporter or Reporter()
    store = ResultsStore(out)
    if not resume:
        if config is None:
            raise ConfigError("no configuration given")
        store.check_new()
    elif not store.exists():
        raise ConfigError(f"nothing to resume: {store.path} holds no experiment")
    created_dir = not store.path.exists()
    store.path.mkdir(parents=True, exist_ok=True)
    lock = store.lock("greenprec compare" + (" --resume" if resume else ""))
    try:
        lock.acquire()
    except BaseException:
        if created_dir:
            _remove_empty(store.path)
        raise
    try:
        if resume:
            config, experiment, runs, notes = _reopen(store)
            if slurm:
                config, note = _new_slurm_settings(store, config, experiment, slurm)
                notes.append(note)
            executor = executor or executor_for(config.executor)
        else:
            assert config is not None
            executor = executor or executor_for(config.executor)
            store.check_new()  # again, under the lock: another process may have been first
            experiment, runs = _create(store, config, executor)
            notes = []
        session = Session(
            store,
            config,
            experiment,
            {run.run_id: run for run in runs},
            notes,
            retry_failed,
            reporter,
            on_interrupt,
        )
        return store, _hand_over(session, executor)
    finally:
        lock.release()


def _new_slurm_settings(
    store: ResultsStore,
    config: ExperimentConfig,
    experiment: ExperimentRecord,
    slurm: Mapping[str, object],
) -> tuple[ExperimentConfig, str]:
    if config.executor == "local":
        raise ConfigError(
            "slurm: this experiment runs with the local executor; its [slurm] settings do not "
            "apply (drop them)"
        )
    before = config.slurm_settings.model_dump()
    updated = validate({**config.model_dump(), "slurm": {**before, **slurm}})
    changed = {
        key: value
        for key, value in updated.slurm_settings.model_dump().items()
        if before.get(key) != value
    }
    experiment.config = updated.model_dump(mode="json")
    store.write_experiment(experiment)
    listed = ", ".join(f"{key} = {value!r}" for key, value in changed.items()) or "none changed"
    return updated, f"[slurm] settings for the jobs submitted from now on: {listed}"


def _hand_over(session: Session, executor: Executor) -> list[RunRecord]:
    """Let ``executor`` drive the session; then, however it ended, the index and status."""
    final: list[RunRecord] | None = None
    try:
        final = executor.drive(session)
        return final
    finally:
        session.reporter.close()
        # Stopped (Ctrl-C, SIGTERM, an error): the session's runs say how each one stands. A
        # session that failed before it started (its first index write refused) changes
        # nothing already recorded: experiment.json stays as it was.
        if session.started:
            runs = session.final_runs() if final is None else final
            _finish(session.store, session.experiment, runs)
        if final is not None:
            session.reporter.finished(final)


def _finish(store: ResultsStore, experiment: ExperimentRecord, final: list[RunRecord]) -> None:
    """The index and the experiment's status, as the session ends (however it ends)."""
    with contextlib.suppress(OSError):
        store.write_index(final)
    experiment.status = "complete" if all(r.status == "done" for r in final) else "incomplete"
    experiment.updated_at = now_iso()
    store.write_experiment(experiment)


def _create(
    store: ResultsStore, config: ExperimentConfig, executor: Executor
) -> tuple[ExperimentRecord, list[RunRecord]]:
    from greenprec.meters.registry import resolve
    from greenprec.precision import emulation_warnings, support

    requested = config.meters
    if not executor.measures_here:
        # Measured on the compute nodes, not here: a login node often has no RAPL or GPU. The
        # names were checked with the config; a node that cannot open a meter fails its runs.
        from greenprec.meters.registry import get_meter_class

        classes = [get_meter_class(name) for name in requested]
        used = list(requested)
        estimated = any(cls.estimated for cls in classes)
        simulated = [cls.name for cls in classes if cls.simulated is True]
    else:
        chosen = resolve(requested if requested != ["auto"] else "auto", config.meter_options)
        used = [meter.name for meter in chosen]
        estimated = any(meter.estimated for meter in chosen)
        simulated = [meter.name for meter in chosen if meter.simulated is True]
    arms = config.arms()
    if executor.blocked or config.adaptive or config.selection is not None:
        # One job per block on one node: policies are compared within nodes (see cluster.py).
        # Adaptive and selection: each look comes after a whole block, one run of every policy
        # (configuration) more.
        schedule = make_blocked_schedule(arms, config.runs, config.seed)
    else:
        schedule = make_schedule(arms, config.runs, config.seed, shuffle=config.shuffle)
    framework = workload_framework(config.workload)
    warnings = list(emulation_warnings(config.policies, framework=framework))
    if estimated:
        warnings.append(
            f"meter {'+'.join(used)} is an estimate, not a measurement: every energy figure "
            "of this experiment is estimated"
        )
    facts = environment()
    experiment = new_experiment_record(
        source=SOURCE,
        config=config.model_dump(mode="json"),
        schedule=schedule,
        meters=MetersRecord(
            requested=requested, used=used, estimated=estimated, simulated=simulated
        ),
        warnings=warnings,
        precision_support=support(framework=framework).to_dict(),
        versions=facts["versions"],
        host=facts["host"],
    )
    if config.adaptive:
        from greenprec.sequential import SequentialDesign

        design = SequentialDesign(max_runs=config.runs, min_runs=config.min_runs)
        experiment.sequential = SequentialRecord(
            method=design.method,
            alpha=design.alpha,
            min_runs=design.min_runs,
            max_runs=design.max_runs,
        )
    if config.selection is not None:
        from greenprec.experiment.selecting import new_selection_record

        experiment.selection = new_selection_record(config)
    runs = [RunRecord.planned(run) for run in schedule]
    store.create(experiment, runs)  # the schedule is on disk before the first run starts
    store.ensure_dirs()
    return experiment, runs


def workload_framework(workload: str) -> str:
    """The framework whose precision support the experiment records (TensorFlow's by default)."""
    from greenprec.workloads import get_workload
    from greenprec.workloads.core import framework_of

    try:
        return framework_of(get_workload(workload)) or "tensorflow"
    except ConfigError:
        return "tensorflow"


def _reopen(
    store: ResultsStore,
) -> tuple[ExperimentConfig, ExperimentRecord, list[RunRecord], list[str]]:
    """The folder's config and runs; missing or damaged runs come back pending, named."""
    snapshot = store.load()
    experiment = snapshot.experiment
    config = resumable_config(store, experiment)
    usable = {run.run_id: run for run in snapshot.runs}
    notes: list[str] = []
    runs: list[RunRecord] = []
    for planned in experiment.schedule:
        run = usable.get(planned.run_id)
        if run is None:
            run = RunRecord.planned(planned)
            store.write_run(run)
        runs.append(run)
    for problem in snapshot.problems:
        if problem.run_id in usable or problem.location == Location(INDEX_FILE):
            continue
        again = " it runs again" if problem.run_id in {r.run_id for r in runs} else ""
        notes.append(f"{problem};{again}" if again else str(problem))
    if snapshot.legacy:
        notes.append(
            "this folder was written by greenprec 0.1; its runs now have run files in runs/"
        )
        experiment.schema_version = ExperimentRecord.model_fields["schema_version"].default
        store.write_experiment(experiment)
        for run in runs:
            store.write_run(run)
    store.ensure_dirs()
    return config, experiment, runs, notes


def resumable_config(
    store: ResultsStore, experiment: ExperimentRecord | None = None
) -> ExperimentConfig:
    """The settings to continue the experiment in ``store`` with (its ``experiment.json``, or
    ``experiment`` when already read); ConfigError naming the folder when it cannot go on."""
    if experiment is None:
        experiment = store.load().experiment
    if experiment.source != SOURCE:
        raise ConfigError(
            f"{store.path} was made by {experiment.source[:40]}, not greenprec compare; there "
            "is nothing to resume (greenprec report reads it)"
        )
    # Without its settings or its meters, the runs left would be measured differently from
    # the runs done: start again rather than mix two experiments in one folder.
    unusable = (
        "holds no config (the experiment's settings)"
        if not experiment.config
        else "records no meters used"
        if not experiment.meters.used
        else None
    )
    if unusable:
        raise ConfigError(
            f"{store.experiment_file} {unusable}, so the runs left cannot be run like the others; "
            "start a new experiment in another folder (greenprec report still reads this one)"
        )
    try:
        return stored_config(experiment)
    except ConfigError as error:
        problems = "; ".join(str(error).splitlines())
        raise ConfigError(f"cannot continue {store.path}: {problems}") from None


@dataclass(frozen=True)
class ResumeOutlook:
    """What the next resume of a folder does with the runs that are not done, counted.

    Read off the runs by the same rules the executors follow
    (:meth:`RunRecord.failed_and_runs_again`, :func:`~greenprec.experiment.cluster.
    needs_submitting`, :meth:`ResultsStore.is_stale`), so that what a closing line promises is
    what the resume then does.
    """

    again: dict[str, int] = field(default_factory=dict)
    """Runs a plain resume runs again, by why they are not done (``"interrupted"``, ``"never
    run"``, ``"whose Slurm job ended TIMEOUT"``, ...): how many of each."""
    held: int = 0
    """Runs a process or a scheduler's job of an earlier session still holds: a resume leaves
    them to it (re-attaching to a job), and runs them again if it ends without finishing them."""
    own_failures: int = 0
    """Runs that failed for their own reasons (an exception, a time limit, a meter): a resume
    runs them again only when asked to retry failed runs."""

    @property
    def runs_again(self) -> int:
        return sum(self.again.values())

    @property
    def not_done(self) -> int:
        return self.runs_again + self.held + self.own_failures


def resume_outlook(store: ResultsStore, runs: Sequence[RunRecord] | None = None) -> ResumeOutlook:
    """What a resume of ``store`` without retrying failed runs would do with each run that is
    not done (``runs``: the folder's runs as they ended, read from it when not given)."""
    from greenprec.experiment.cluster import needs_submitting

    if runs is None:
        runs = store.load().runs
    try:
        jobs = store.read_submissions().jobs
    except GreenprecError:
        jobs = []  # damaged: the resume refuses it with its own message
    held_by_jobs = {run_id for job in jobs if not job.settled for run_id in job.run_ids}
    again: dict[str, int] = {}
    held = own_failures = 0
    for run in runs:
        if run.status == "done":
            continue
        if run.run_id in held_by_jobs or (
            not jobs and run.status == "running" and not store.is_stale(run)
        ):
            held += 1
        elif not needs_submitting(run, retry_failed=False):
            own_failures += 1
        else:
            why = _why_not_done(run)
            again[why] = again.get(why, 0) + 1
    return ResumeOutlook(again, held, own_failures)


def _why_not_done(run: RunRecord) -> str:
    """Why a run the next resume runs again is not done, in a few words."""
    if run.status == "pending":
        return "never run"
    if run.status == "running":
        return "left running by a process or job that has ended"
    if run.ended_by_scheduler:
        return f"whose Slurm job ended {run.job_state}"
    return "interrupted"


def _remove_empty(path: Path) -> None:
    """Undo a folder this runner created but could not lock (only if nothing else is in it)."""
    with contextlib.suppress(OSError):
        (path / LOCK_NAME).unlink()
        path.rmdir()

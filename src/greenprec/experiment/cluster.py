"""The cluster executors' submitting side: one job per block, watched, never run here.

The schedule is blocked (:func:`greenprec.experiment.schedule.make_blocked_schedule`): a block
is one run of each policy, and one job runs a whole block on the node it gets, so every policy
of a block meets the same silicon, cooling and firmware. One job per block is more robust than
jobs pinned to a node (``--nodelist``): a pinned job waits for its node however busy or broken
it is, while a block's job takes whichever node is free and keeps its runs together.

The submitter (this module, in ``greenprec compare``) holds the folder lock and only writes
``submissions.json`` (every job: its block, runs, id, last state), the index and, for a job
that ended before its runs had their final records, those runs' files: failed, with Slurm's
state (``TIMEOUT``, ``NODE_FAIL``, ``PREEMPTED``, ``OUT_OF_MEMORY``, ``CANCELLED``) as the
reason. Everything else is written by the jobs (:mod:`greenprec.experiment.block`).

Killing the submitter does not touch the jobs. Resuming re-attaches: a run whose job is still
pending or running is never submitted again; runs a finished job left unfinished are. A job
found by its name whose submitit files were never written (the submitter killed between sbatch
and writing them) could only fail: it is cancelled and its block submitted again.

An experiment that looks at its data (``compare --adaptive``, a recommendation) goes out in
**waves** (:class:`Waves`): the blocks before the first look go out together, then one block
at a time. When a wave's jobs have ended and their runs are settled, the look is made (the same
:func:`~greenprec.experiment.looks.adaptive_look` or
:func:`~greenprec.experiment.selecting.selection_look` the local executor makes after a block);
it may stop the experiment, or cut a dropped configuration's later runs from the schedule, so
those are never submitted. A resumed submitter re-attaches to the wave in flight, looks when it
has ended (a look already recorded for a block is not made again), and goes on.

The scheduler is a :class:`Scheduler`: Slurm (:mod:`greenprec.experiment.slurm`, for the Slurm
executor) or local processes (the debug executor); the bookkeeping here is the same for both.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from greenprec.errors import GreenprecError, Interrupted, Terminated
from greenprec.experiment.config import MAX_JOB_MINUTES, ExperimentConfig, run_timeout_for
from greenprec.experiment.progress import Reporter
from greenprec.experiment.session import InterruptHandler, Session
from greenprec.experiment.slurm import JobRequest, JobState, SlurmError
from greenprec.results import (
    ExperimentRecord,
    ResultsStore,
    RunRecord,
    Submission,
    SubmissionsRecord,
)
from greenprec.results.models import JOB_STOPPED
from greenprec.results.records import now_iso

__all__ = [
    "JOB_START_MARGIN_S",
    "UNKNOWN_POLLS",
    "ClusterError",
    "Scheduler",
    "Watch",
    "Waves",
    "drive_blocks",
    "job_request",
    "latest_jobs",
    "needs_submitting",
]

_UNREACHABLE_LIMIT_S = 600.0
"""Stop watching when Slurm has not answered for this long (the jobs keep running)."""
UNKNOWN_POLLS = 2
"""A job Slurm does not know is taken as ended only after this many polls in a row: a job
submitted a moment ago, or a controller restarting, must not have its runs marked failed."""
_CANCEL_WAIT_S = 60.0
"""After cancelling on Ctrl-C, how long to wait for Slurm to end the jobs."""
JOB_START_MARGIN_S = 300.0
"""Time a job asks for on top of its runs: start-up, imports, writing files."""


class ClusterError(GreenprecError):
    """The cluster executor cannot go on (Slurm refused a job, or stopped answering)."""


class Scheduler(Protocol):
    """A batch scheduler as the submitter uses it; :mod:`greenprec.experiment.slurm` is one
    (the module itself), the debug executor's local processes another."""

    def submit(
        self, folder: Path, request: JobRequest, function: Callable[..., object], *args: object
    ) -> str:
        """Submit ``function(*args)`` as one job (its own files under ``folder``); its id."""
        ...

    def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """What the scheduler says of these jobs (a job it does not know is left out)."""
        ...

    def find_by_name(self, name: str) -> JobState | None:
        """The job of this name, if the scheduler knows one."""
        ...

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Ask the scheduler to end these jobs."""
        ...

    def launchable(self, folder: Path, job_id: str) -> bool:
        """Whether a job submitted with its files under ``folder`` has what it starts from
        (False: an orphan of a submitter killed before writing them, which can only fail)."""
        ...


def drive_blocks(session: Session, scheduler: Scheduler) -> list[RunRecord]:
    """Submit the blocks that have runs left, watch their jobs until every one has ended, and
    return the runs as they ended (the caller writes the index and the experiment's status).

    ``session.runs`` is the watch's own view, kept current; when the session is stopped it
    is read again from the run files, which the jobs may have written since the last poll.
    """
    try:
        return _drive_blocks(session, scheduler)
    except BaseException:
        with contextlib.suppress(GreenprecError, OSError):
            session.runs = {run.run_id: run for run in session.store.load().runs}
        raise


def _drive_blocks(session: Session, scheduler: Scheduler) -> list[RunRecord]:
    store, reporter = session.store, session.reporter
    watch = Watch(
        store, session.config, session.runs, store.read_submissions(), reporter, scheduler
    )
    session.warn()
    watch.reattach()
    todo = [
        run_id
        for run_id, run in watch.runs.items()
        if run_id not in watch.held() and needs_submitting(run, session.retry_failed)
    ]
    for run_id in todo:
        watch.runs[run_id] = watch.runs[run_id].cleared()
        store.write_run(watch.runs[run_id])
    watch.write_index()
    session.report_start()
    waiting = _blocks_of(session.experiment, set(todo))
    active = len(watch.unsettled())
    if active:
        reporter.message(f"re-attached to {active} Slurm job(s) still pending or running")
    looks = session.config.adaptive or session.config.selection is not None
    try:
        watch.run(waiting, Waves(session) if looks else None)
    except Terminated:  # SIGTERM: the submitter is being killed; the jobs stay
        raise Terminated(watch.interrupted(None)) from None
    except KeyboardInterrupt:
        raise Interrupted(watch.interrupted(session.on_interrupt)) from None
    return list(watch.runs.values())


def needs_submitting(run: RunRecord, retry_failed: bool) -> bool:
    """Whether a run no live job holds must be submitted again."""
    if run.status in ("pending", "running"):
        return True  # not held by a live job (the caller checked): nobody will finish it
    return run.failed_and_runs_again(retry_failed)


def _blocks_of(experiment: ExperimentRecord, todo: set[str]) -> list[tuple[int, list[str]]]:
    """The blocks with runs to submit, in block order, each with its runs in schedule order."""
    blocks: dict[int, list[str]] = {}
    for planned in experiment.schedule:
        if planned.run_id in todo:
            blocks.setdefault(planned.block or planned.repetition, []).append(planned.run_id)
    return sorted(blocks.items())


class Waves:
    """How an experiment that looks at its data goes out: in waves, with a look after each.

    A look comes after a whole block, and may stop the experiment or drop configurations, so the
    blocks after it cannot be submitted before it is made. A wave is therefore one block, except
    before the first look: no look can be due until some configuration has ``min_runs`` done
    runs, so the blocks needed to get there go out together (a cluster runs them side by side)
    and the look after the wave's last block is the first one that can be due, as it would be
    locally.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def look(self) -> bool:
        """Look, if a look is due (every run of the latest block ended and not yet looked at);
        True when the experiment stops. Its runs never to be made are then cut from
        ``session.runs`` and the schedule."""
        if self.session.config.adaptive:
            from greenprec.experiment.looks import adaptive_look

            return adaptive_look(self.session)
        from greenprec.experiment.selecting import selection_look

        return selection_look(self.session)

    def next_wave(
        self, waiting: list[tuple[int, list[str]]]
    ) -> tuple[list[tuple[int, list[str]]], list[tuple[int, list[str]]]]:
        """The next wave and the blocks after it, each keeping only runs still scheduled (a look
        cut a dropped configuration's runs: they are never submitted)."""
        runs = self.session.runs
        kept = [(block, [r for r in run_ids if r in runs]) for block, run_ids in waiting]
        kept = [(block, run_ids) for block, run_ids in kept if run_ids]
        done: dict[str, int] = {}
        for run in runs.values():
            if run.status == "done":
                done[run.policy] = done.get(run.policy, 0) + 1
        # The most done runs of any configuration: a wave of the blocks still needed to reach
        # min_runs can have no look due before its last block (for any configuration).
        size = max(1, self.session.config.min_runs - max(done.values(), default=0))
        return kept[:size], kept[size:]


class Watch:
    """The submitter's view: the runs, the submissions, and what the scheduler says of them.

    ``runs`` (run id -> record) is updated in place as the jobs write their runs' files.
    """

    def __init__(
        self,
        store: ResultsStore,
        config: ExperimentConfig,
        runs: dict[str, RunRecord],
        ledger: SubmissionsRecord,
        reporter: Reporter,
        scheduler: Scheduler,
    ) -> None:
        self.store, self.config, self.ledger, self.reporter = store, config, ledger, reporter
        self.scheduler = scheduler
        self.runs = runs
        self.unknown_polls: dict[str, int] = {}
        self.tag = _folder_tag(store)

    # -- the ledger --------------------------------------------------------------------------
    def unsettled(self) -> list[Submission]:
        return [job for job in self.ledger.jobs if not job.settled]

    def held(self) -> set[str]:
        """Runs a job that has not ended may still run: never submitted again meanwhile."""
        return {run_id for job in self.unsettled() for run_id in job.run_ids}

    def save(self) -> None:
        self.store.write_submissions(self.ledger)

    def write_index(self) -> None:
        with contextlib.suppress(OSError):
            self.store.write_index(list(self.runs.values()))

    # -- re-attaching ------------------------------------------------------------------------
    def reattach(self) -> None:
        """Find the jobs an earlier submitter left, and settle those that ended meanwhile."""
        for job in self.unsettled():
            if job.job_id is None:
                # Killed between sbatch and recording the id: find the job by its name.
                found = self.scheduler.find_by_name(job.name)
                if found is None:
                    job.state, job.settled = "NOT_SUBMITTED", True
                    job.reason = (
                        "no job of this name is known to Slurm; its runs are submitted again"
                    )
                elif not self.scheduler.launchable(self.store.slurm_dir, found.job_id):
                    self.replace_orphan(job, found)
                else:
                    job.job_id, job.state = found.job_id, found.state
        self.save()
        if self.unsettled():
            self.refresh(first=True)

    def replace_orphan(self, job: Submission, found: JobState) -> None:
        """A job found by name whose files were never written (its submitter was killed between
        sbatch and writing them) can only fail: cancel it; its runs, which it never started,
        are submitted again as a new attempt of the block."""
        if not found.final:
            try:
                self.scheduler.cancel([found.job_id])
            except SlurmError as error:
                raise ClusterError(
                    f"{error}; cancel Slurm job {found.job_id} ({job.name}) with scancel, then "
                    "resume the experiment"
                ) from None
        ended = (found.state, "it had ended")
        state, done = ended if found.final else ("CANCELLED", "cancelled it")
        job.job_id, job.state, job.settled = found.job_id, state, True
        job.reason = (
            "its submitter was killed before submitit wrote the job's files, so it could not "
            "start; its runs are submitted again"
        )
        self.reporter.message(
            f"Slurm job {found.job_id} (block {job.block}) was submitted by a submitter killed "
            f"before it wrote the job's files, so it could only fail: {done}, and block "
            f"{job.block} is submitted again"
        )

    # -- watching ----------------------------------------------------------------------------
    def run(self, waiting: list[tuple[int, list[str]]], waves: Waves | None = None) -> None:
        """Submit ``waiting``'s blocks (at most ``max_in_flight`` jobs at once) and watch the
        jobs until all have ended; with ``waves``, one wave at a time, looking after each."""
        settings = self.config.slurm_settings
        unreachable_since: float | None = None
        wave, waiting = (waiting, []) if waves is None else ([], waiting)
        while True:
            if waves is not None and not wave and not self.unsettled():
                # The wave's jobs have ended and their runs are settled (or, as a session
                # starts, none is in flight: a look its predecessor did not live to make).
                if waves.look():
                    return
                wave, waiting = waves.next_wave(waiting)
            limit = settings.max_in_flight
            while wave and (limit is None or len(self.unsettled()) < limit):
                block, run_ids = wave.pop(0)
                self.submit(block, run_ids)
            if not wave and not waiting and not self.unsettled():
                return
            time.sleep(settings.poll_s)
            try:
                self.refresh()
                unreachable_since = None
            except SlurmError as error:
                now = time.monotonic()
                if unreachable_since is None:
                    unreachable_since = now
                    self.reporter.message(f"warning: {error}; trying again")
                elif now - unreachable_since > _UNREACHABLE_LIMIT_S:
                    raise ClusterError(
                        f"Slurm has not answered for {_UNREACHABLE_LIMIT_S / 60:g} minutes "
                        f"({error}); the jobs submitted keep running, and resuming the "
                        "experiment re-attaches to them"
                    ) from None

    def submit(self, block: int, run_ids: list[str]) -> None:
        from greenprec.experiment.block import run_block

        attempt = 1 + sum(job.block == block for job in self.ledger.jobs)
        job = Submission(
            name=f"greenprec-{self.tag}-b{block:03d}-a{attempt}",
            block=block,
            attempt=attempt,
            run_ids=run_ids,
            submitted_at=now_iso(),
        )
        # Recorded before sbatch: a submitter killed in between leaves a name to look for.
        self.ledger.jobs.append(job)
        self.save()
        try:
            job_id = self.scheduler.submit(
                self.store.slurm_dir,
                job_request(self.config, job.name, len(run_ids)),
                run_block,
                str(self.store.path.resolve()),
                block,
            )
        except SlurmError as error:
            self.ledger.jobs.remove(job)
            self.save()
            raise ClusterError(
                f"{error}; check the [slurm] settings (partition, account, qos, time per run, "
                "sbatch options); the experiment is saved and resuming submits its runs"
            ) from None
        job.job_id, job.state = job_id, "PENDING"
        self.save()
        self.reporter.message(
            f"submitted block {block} ({', '.join(run_ids)}) as Slurm job {job_id}"
        )

    def refresh(self, *, first: bool = False) -> None:
        """Ask Slurm about the jobs not yet settled; read their runs; settle those that ended."""
        jobs = [job for job in self.unsettled() if job.job_id is not None]
        states = self.scheduler.job_states([job.job_id for job in jobs if job.job_id is not None])
        for job in jobs:
            assert job.job_id is not None
            state = states.get(job.job_id, JobState(job.job_id, "UNKNOWN"))
            if state.state == "UNKNOWN" and not first:
                self.unknown_polls[job.job_id] = self.unknown_polls.get(job.job_id, 0) + 1
                if self.unknown_polls[job.job_id] < UNKNOWN_POLLS:
                    continue
            else:
                self.unknown_polls.pop(job.job_id, None)  # "in a row": seen again, start over
            job.state, job.reason = state.state, state.reason
            job.node = state.node or job.node
            self.read_runs(job)
            if state.final:
                self.settle(job)
        self.save()
        self.write_index()

    def read_runs(self, job: Submission) -> None:
        """The job's runs as their files say now; report what changed."""
        from greenprec.errors import ConfigError

        for run_id in job.run_ids:
            try:
                now = self.store.read_run(run_id)
            except ConfigError:
                continue  # being written, or damaged: the next poll reads it again
            before = self.runs.get(run_id)
            self.runs[run_id] = now
            if before is None or before.status == now.status:
                continue
            if now.status == "running":
                self.reporter.phase("training", now)
            elif now.status in ("done", "failed"):
                self.reporter.run_finished(now)

    def settle(self, job: Submission) -> None:
        """The job ended: a run it left without its final record failed for Slurm's reason."""
        why = f" ({job.reason})" if job.reason else ""
        for run_id in job.run_ids:
            run = self.runs[run_id]
            stopped = run.status == "failed" and run.job_state == JOB_STOPPED
            if run.status not in ("pending", "running") and not stopped:
                continue
            failed = run.failed(
                f"Slurm job {job.job_id} ended {job.state}{why} before this run finished; "
                "resuming the experiment submits it again",
                ended_at=now_iso(),
                slurm_job_id=job.job_id,
                job_state=job.state,
            )
            self.store.write_run(failed)
            self.runs[run_id] = failed
            if not stopped:  # a stopped run was reported when its job wrote it
                self.reporter.run_finished(failed)
        job.settled = True

    # -- stopping ----------------------------------------------------------------------------
    def interrupted(self, on_interrupt: InterruptHandler | None) -> str:
        """What happens to the jobs when the submitter is stopped; one line saying so."""
        live = [job.job_id for job in self.unsettled() if job.job_id is not None]
        if not live:
            return "no Slurm job of the experiment is running"
        ids = ", ".join(live[:10]) + (" ..." if len(live) > 10 else "")
        cancel = False
        if on_interrupt is not None:
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                cancel = on_interrupt(live)
        if not cancel:
            return (
                f"its {len(live)} Slurm job(s) keep running ({ids}); resuming the experiment "
                "re-attaches to them"
            )
        try:
            self.scheduler.cancel(live)
            deadline = time.monotonic() + _CANCEL_WAIT_S
            while self.unsettled() and time.monotonic() < deadline:
                time.sleep(1.0)
                self.refresh()
        except SlurmError as error:
            return f"cancelling the Slurm jobs ({ids}) failed: {error}; cancel them with scancel"
        return (
            f"its {len(live)} Slurm job(s) were cancelled ({ids}); resuming the experiment "
            "submits their unfinished runs again"
        )


def job_request(config: ExperimentConfig, name: str, runs: int) -> JobRequest:
    """The resources a block of ``runs`` runs asks for: its time covers the baseline, the
    warm-up, every run at its time limit and the cool-downs between them."""
    settings = config.slurm_settings
    per_run_s = (
        settings.time_per_run_min * 60.0
        if settings.time_per_run_min is not None
        else run_timeout_for(config)
    )
    seconds = (
        config.baseline_s
        + config.warmup_s
        + runs * per_run_s
        + max(0, runs - 1) * config.cooldown_s
        + JOB_START_MARGIN_S
    )
    return JobRequest(
        name=name,
        time_min=min(MAX_JOB_MINUTES, math.ceil(seconds / 60.0)),
        partition=settings.partition,
        account=settings.account,
        qos=settings.qos,
        gres=settings.gres,
        cpus_per_task=settings.cpus_per_task,
        mem_gb=settings.mem_gb,
        exclusive=settings.exclusive,
        sbatch=tuple(sorted(settings.sbatch.items())),
        nodes=config.nodes,
    )


def _folder_tag(store: ResultsStore) -> str:
    """A short tag of this folder, so job names of two experiments never collide."""
    return hashlib.sha256(str(store.path.resolve()).encode()).hexdigest()[:8]


def latest_jobs(store: ResultsStore) -> dict[str, Submission]:
    """Each run's latest job, from ``submissions.json`` (empty for a local experiment)."""
    latest: dict[str, Submission] = {}
    for job in store.read_submissions().jobs:
        for run_id in job.run_ids:
            latest[run_id] = job
    return latest

"""The block loop, and one block of a cluster experiment run inside its job on one node.

:func:`run_block_loop` is the experiment protocol, once: the idle baseline (when the
experiment has one), the warm-up, then runs one after another with cool-downs between them,
each through the run executor (:mod:`greenprec.experiment.execute`: a fresh Python per run,
the same meters, the run file written by the run's own process). The local executor
(:mod:`greenprec.experiment.executors.local`) and a Slurm job both run it; what differs comes
in as :class:`BlockHooks`.

:func:`run_block` is a job's side: it does on its node what the local executor does on its
machine, and writes only files that are its own: its runs' files and samples, and
``jobs/<job_id>.json`` (its node, baseline and warm-up). The submitting process only watches.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenprec.experiment.config import ExperimentConfig, run_timeout_for, stored_config
from greenprec.experiment.execute import RunSpec, current_job_id, node_info
from greenprec.experiment.phases import measure_phase, warm_up
from greenprec.results import JobRecord, ResultsStore, RunRecord
from greenprec.results.models import JOB_STOPPED
from greenprec.results.records import now_iso

if TYPE_CHECKING:
    from greenprec.machine_load import IdleWait

__all__ = ["BlockHooks", "run_block", "run_block_loop"]


@dataclass
class BlockHooks:
    """What differs between the places a block of runs is run (the local executor, a Slurm
    job): where the baseline and the warm-up are recorded, and what is done around each run."""

    baseline_power_w: Callable[[], float | None]
    """Measure the idle baseline if one is due; the idle power the runs subtract, if any."""
    warm_up: Callable[[], None]
    """Warm the machine up (when the experiment has a warm-up) and record it."""
    cooling: Callable[[RunRecord], None] = lambda run: None
    """Called before the cool-down that precedes ``run``."""
    waiting: Callable[[RunRecord, float], None] = lambda run, max_s: None
    """Called before the wait for an idle machine that precedes ``run`` (``max_s`` at most)."""
    starting: Callable[[RunRecord], None] = lambda run: None
    """Called just before ``run`` executes."""
    finished: Callable[[RunRecord], bool] = lambda run: False
    """Called with each run's final record; True stops the block there."""
    skip: Callable[[RunRecord], bool] = lambda run: False
    """Asked before each run: True leaves it out (a recommendation dropped its configuration
    at a look after an earlier run of this loop)."""


def run_block_loop(
    store: ResultsStore,
    config: ExperimentConfig,
    meters: list[str],
    todo: Sequence[RunRecord],
    hooks: BlockHooks,
    *,
    timeout_s: float,
) -> None:
    """The protocol of one session on one machine: baseline, warm-up, then ``todo``'s runs one
    after another with a cool-down between two runs, each through the run executor
    (:meth:`RunSpec.execute`, which writes the run's file). Nothing is measured when there is
    nothing to run."""
    if not todo:
        return
    baseline_power_w = hooks.baseline_power_w()
    hooks.warm_up()
    index = 0
    for run in todo:
        if hooks.skip(run):
            continue
        index += 1
        if index > 1 and config.cooldown_s > 0:
            hooks.cooling(run)
            time.sleep(config.cooldown_s)
        waited = _wait_for_idle(config, run, hooks)
        hooks.starting(run)
        spec = RunSpec.of(
            config, run, meters, baseline_power_w=baseline_power_w, timeout_s=timeout_s
        )
        if waited is not None:
            spec = spec.model_copy(
                update={"waited_for_idle_s": waited.waited_s, "idle_wait_note": waited.note}
            )
        if hooks.finished(spec.execute(store, config.isolation)):
            return


def _wait_for_idle(config: ExperimentConfig, run: RunRecord, hooks: BlockHooks) -> IdleWait | None:
    """With ``wait_for_idle_s``: wait for a quiet machine before ``run``, that long at most
    (after the cool-down, so the machine's own rest is not taken for another's load). Before
    :attr:`BlockHooks.starting`: a stop during the wait stops no run."""
    if config.wait_for_idle_s <= 0:
        return None
    from greenprec.machine_load import wait_for_idle

    hooks.waiting(run, config.wait_for_idle_s)
    return wait_for_idle(config.wait_for_idle_s)


def run_block(folder: str, block: int) -> str:
    """Run the pending runs of ``block`` here; return one line saying what was done.

    Only runs still ``pending`` are run: the submitter makes a block's unfinished runs pending
    before it submits the block, and never while a job of that block may still run.
    """
    # submitit warns of the time limit with SIGUSR2 and would end the job then as failed. A
    # run cannot be checkpointed: let Slurm's own limit end the job, so its state says TIMEOUT.
    # submitit ignores SIGTERM (it logs "Bypassing signal"), and a block would then go on to its
    # next run while Slurm ends the job: stop the run in progress, and the block, instead.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _end_job)
    store = ResultsStore(folder)
    experiment = store.read_experiment()
    config = stored_config(experiment)
    planned = [run for run in experiment.schedule if run.block == block]
    todo = [run for run in (store.read_run(p.run_id) for p in planned) if run.status == "pending"]
    job_id = current_job_id() or f"0_{os.getpid()}"
    job = JobRecord(
        job_id=job_id,
        block=block,
        host=platform.node(),
        node=node_info(),
        started_at=now_iso(),
        run_ids=[run.run_id for run in todo],
    )
    store.write_job(job)
    if not todo:
        job.ended_at = now_iso()
        store.write_job(job)
        return f"block {block}: nothing left to run"
    store.ensure_dirs()
    job_run = _JobRun(store, config, experiment.meters.used, job)
    timeout_s = run_timeout_for(config)
    minutes = config.slurm_settings.time_per_run_min
    if minutes is not None:
        timeout_s = min(timeout_s, minutes * 60.0)
    try:
        run_block_loop(store, config, job_run.meters, todo, job_run.hooks(), timeout_s=timeout_s)
    except _JobEnding:
        if job_run.current is not None:
            _stopped_by_slurm(store, job_run.current.run_id)
        job.ended_at = now_iso()
        store.write_job(job)
        return f"block {block}: stopped by Slurm (SIGTERM) after {job_run.done} runs done"
    job.ended_at = now_iso()
    store.write_job(job)
    return f"block {block}: {job_run.done} of {len(todo)} runs done on {job.host}"


class _JobRun:
    """A job's side of the block loop: its baseline and warm-up go to ``jobs/<job_id>.json``;
    it counts the runs done and knows the run in progress (for SIGTERM)."""

    def __init__(
        self, store: ResultsStore, config: ExperimentConfig, meters: list[str], job: JobRecord
    ) -> None:
        self.store, self.config, self.meters, self.job = store, config, meters, job
        self.current: RunRecord | None = None
        self.done = 0

    def hooks(self) -> BlockHooks:
        return BlockHooks(
            baseline_power_w=self.baseline_power_w,
            warm_up=self.warm_up,
            starting=self.starting,
            finished=self.finished,
        )

    def baseline_power_w(self) -> float | None:
        if self.config.baseline_s <= 0:
            return None
        self.job.baseline = measure_phase(
            self.store,
            self.config,
            self.meters,
            f"baseline-job-{self.job.job_id}",
            self.config.baseline_s,
            busy=False,
        )
        self.store.write_job(self.job)
        return self.job.baseline.power_w

    def warm_up(self) -> None:
        if self.config.warmup_s <= 0:
            return
        self.job.warmup = warm_up(
            self.store, self.config, self.meters, f"warmup-job-{self.job.job_id}"
        )
        self.store.write_job(self.job)

    def starting(self, run: RunRecord) -> None:
        self.current = run

    def finished(self, run: RunRecord) -> bool:
        if run.status == "failed" and "killed by SIG" in (run.error or ""):
            # Slurm signals every process of a job it ends: the run's may die first. Let
            # the signal reach this process too, so the run counts as the job's end.
            time.sleep(_SIGNAL_GRACE_S)
        self.current = None
        self.done += run.status == "done"
        return False


_SIGNAL_GRACE_S = 2.0


class _JobEnding(BaseException):
    """Slurm is ending this job (cancelled, time limit, node going down, preempted).

    A BaseException on purpose (see :mod:`greenprec.errors`): no ``except Exception`` in the
    run may swallow it; :func:`run_block` catches it and the job ends.
    """


def _end_job(signum: int, frame: object) -> None:
    raise _JobEnding()


def _stopped_by_slurm(store: ResultsStore, run_id: str) -> None:
    """The run in progress when Slurm ended the job: failed, for the job's reason (the
    submitter replaces ``STOPPED`` by Slurm's final word once the job has ended)."""
    with contextlib.suppress(Exception):
        record = store.read_run(run_id)
        # Done, or already settled by the submitter with Slurm's own word (a node set down:
        # Slurm reports NODE_FAIL while the job's processes are still being ended, and the
        # submitter may settle the run before this handler runs): keep that record.
        if record.status == "done" or record.job_state is not None:
            return
        store.write_run(
            record.failed(
                "its Slurm job was ended (SIGTERM) before the run finished; resuming the "
                "experiment submits it again",
                ended_at=now_iso(),
                slurm_job_id=current_job_id(),
                job_state=JOB_STOPPED,
            )
        )

"""One block of a cluster experiment, run inside its Slurm job on one node.

The job does on its node what the local runner does on its machine: the idle baseline (when
the experiment has one), the warm-up, then the block's runs one after another with cool-downs
between them, each through the same run executor (:mod:`greenprec.experiment.execute`: a fresh
Python per run, the same meters, the run file written by the run's own process). It writes
only files that are its own: its runs' files and samples, and ``jobs/<job_id>.json`` (its node,
baseline and warm-up). The submitting process only watches.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time

from greenprec.experiment.config import run_timeout_for, stored_config
from greenprec.experiment.execute import RunSpec, current_job_id, node_info
from greenprec.experiment.phases import measure_phase, warm_up
from greenprec.results import JobRecord, ResultsStore
from greenprec.results.models import JOB_STOPPED
from greenprec.results.records import now_iso


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
    meters = experiment.meters.used
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
    baseline_power_w = None
    if config.baseline_s > 0:
        job.baseline = measure_phase(
            store, config, meters, f"baseline-job-{job_id}", config.baseline_s, busy=False
        )
        baseline_power_w = job.baseline.power_w
        store.write_job(job)
    if config.warmup_s > 0:
        job.warmup = warm_up(store, config, meters, f"warmup-job-{job_id}")
        store.write_job(job)
    timeout_s = run_timeout_for(config)
    minutes = config.slurm_settings.time_per_run_min
    if minutes is not None:
        timeout_s = min(timeout_s, minutes * 60.0)
    done = 0
    current = None
    try:
        for index, run in enumerate(todo):
            if index > 0 and config.cooldown_s > 0:
                time.sleep(config.cooldown_s)
            current = run
            spec = RunSpec.of(
                config, run, meters, baseline_power_w=baseline_power_w, timeout_s=timeout_s
            )
            finished = spec.execute(store, config.isolation)
            if finished.status == "failed" and "killed by SIG" in (finished.error or ""):
                # Slurm signals every process of a job it ends: the run's may die first. Let
                # the signal reach this process too, so the run counts as the job's end.
                time.sleep(_SIGNAL_GRACE_S)
            current = None
            done += finished.status == "done"
    except _JobEnding:
        if current is not None:
            _stopped_by_slurm(store, current.run_id)
        job.ended_at = now_iso()
        store.write_job(job)
        return f"block {block}: stopped by Slurm (SIGTERM) after {done} runs done"
    job.ended_at = now_iso()
    store.write_job(job)
    return f"block {block}: {done} of {len(todo)} runs done on {job.host}"


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
        if record.status == "done":
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

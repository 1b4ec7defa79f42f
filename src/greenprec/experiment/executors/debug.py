"""The debug executor: the Slurm executor's whole protocol, with local processes for jobs.

Each block is submitted as a fresh Python process on this machine that runs
:func:`greenprec.experiment.block.run_block`, the very code a Slurm job runs, and the
submitter (:func:`greenprec.experiment.cluster.drive_blocks`) watches those processes as it
watches Slurm jobs: the same ledger in ``submissions.json``, the same job records in ``jobs/``,
the same settling of a job that ended before its runs did. No scheduler is needed, which makes
it the way to try a cluster experiment, or test the submitter's bookkeeping, on one machine
(submitit's ``DebugExecutor`` has the same purpose).

Jobs run one at a time, in the order submitted, as on a one-node cluster with exclusive jobs.
A job is a process started in its own session (Ctrl-C in the terminal does not reach it, as
it would not reach a Slurm job), with ``SLURM_JOB_ID`` set to its id so the block records the
job as a Slurm job would. Cancelling sends it SIGTERM, as ``scancel`` does; its output goes
to ``slurm/<job name>.log``. A job of an earlier session is not known to a new one: it is
settled as ``UNKNOWN`` after two polls, and its unfinished runs are submitted again.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from greenprec.experiment.cluster import drive_blocks
from greenprec.experiment.session import Session
from greenprec.experiment.slurm import JobRequest, JobState, SlurmError
from greenprec.results import RunRecord

__all__ = ["DebugExecutor", "LocalProcesses"]

_JOB_SCRIPT = """
import importlib, json, sys
module, name, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(getattr(importlib.import_module(module), name)(*args), flush=True)
"""


class DebugExecutor:
    """Run each block as a local process through the Slurm executor's submitter.

    Its configuration is a cluster one (``executor = "debug"``, or ``"slurm"`` handed this
    executor through :func:`~greenprec.experiment.runner.run_experiment`; the ``[slurm]``
    settings that ask for resources are not used), so the folder is the one a Slurm run leaves.
    """

    name = "debug"
    blocked = True
    measures_here = False

    def drive(self, session: Session) -> list[RunRecord]:
        return drive_blocks(session, LocalProcesses())


class LocalProcesses:
    """A :class:`~greenprec.experiment.cluster.Scheduler` whose jobs are local processes, one
    at a time (a one-node cluster with exclusive jobs: runs measured side by side on one
    machine would disturb each other's energy)."""

    def __init__(self) -> None:
        self._queued: dict[str, tuple[list[str], Path]] = {}
        """Jobs not started yet: the command and the log file."""
        self._started: dict[str, subprocess.Popen[bytes]] = {}
        self._names: dict[str, str] = {}
        self._cancelled: set[str] = set()
        self._count = 0

    def submit(
        self, folder: Path, request: JobRequest, function: Callable[..., object], *args: object
    ) -> str:
        """Queue ``function(*args)`` for a fresh Python; the function and its arguments must be
        importable by name and JSON (a block's are: ``run_block``, the folder, the block)."""
        try:
            arguments = json.dumps(list(args))
        except TypeError as error:
            raise SlurmError(f"a debug job's arguments must be JSON: {error}") from None
        self._count += 1
        # Digits, as Slurm's are (a job id names a file in jobs/), and unique to this process.
        job_id = str(os.getpid() * 1000 + self._count)
        command = [
            sys.executable, "-c", _JOB_SCRIPT, function.__module__, function.__qualname__,
            arguments,
        ]  # fmt: skip
        self._queued[job_id] = (command, folder / f"{request.name}.log")
        self._names[request.name] = job_id
        self._start_next()
        return job_id

    def _start_next(self) -> None:
        if not self._queued or any(job.poll() is None for job in self._started.values()):
            return
        job_id = next(iter(self._queued))
        command, log_file = self._queued.pop(job_id)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        with log_file.open("ab") as log:
            try:
                self._started[job_id] = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**environment, "SLURM_JOB_ID": job_id},
                )
            except OSError as error:
                raise SlurmError(f"cannot start a debug job: {error.strerror or error}") from None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        self._start_next()
        states = {}
        for job_id in job_ids:
            state = self._state(job_id)
            if state is not None:
                states[job_id] = JobState(job_id, state, node=platform.node())
        return states

    def _state(self, job_id: str) -> str | None:
        if job_id in self._queued:
            return "PENDING"
        child = self._started.get(job_id)
        if child is None:
            return "CANCELLED" if job_id in self._cancelled else None
        returncode = child.poll()
        if returncode is None:
            return "RUNNING"
        if job_id in self._cancelled:
            return "CANCELLED"
        return "COMPLETED" if returncode == 0 else "FAILED"

    def find_by_name(self, name: str) -> JobState | None:
        job_id = self._names.get(name)
        return None if job_id is None else self.job_states([job_id]).get(job_id)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """As scancel does: a queued job never starts; a running one gets SIGTERM."""
        for job_id in job_ids:
            self._cancelled.add(job_id)
            self._queued.pop(job_id, None)
            child = self._started.get(job_id)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)

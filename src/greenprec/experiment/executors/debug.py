"""The debug executor: the Slurm executor's whole protocol, with local processes for jobs.

Each block is submitted as a fresh Python process on this machine that runs
:func:`greenprec.experiment.block.run_block`, the very code a Slurm job runs, and the
submitter (:func:`greenprec.experiment.cluster.drive_blocks`) watches those processes as it
watches Slurm jobs: the same ledger in ``submissions.json``, the same job records in ``jobs/``,
the same settling of a job that ended before its runs did. No scheduler is needed, which makes
it the way to try a cluster experiment, or test the submitter's bookkeeping, on one machine
(submitit's ``DebugExecutor`` has the same purpose).

Jobs run one at a time, in the order submitted, as on a one-node cluster with exclusive jobs.
A job is a process started in its own session (Ctrl-C in the terminal, or killing the
submitter, does not reach it, as it would not reach a Slurm job), with ``SLURM_JOB_ID`` set to
its id so the block records the job as a Slurm job would. Cancelling sends it SIGTERM, as
``scancel`` does; its output goes to ``slurm/<job name>.log``.

A resumed submitter re-attaches to the jobs of an earlier one, as it does on Slurm: each job
started records its process in ``slurm/debug-<job id>.json`` and, as it ends, its exit status
in ``slurm/debug-<job id>.status``, so a new session knows a job still running, or how it
ended. A job the earlier submitter had queued but not started died with it: the new session
does not know it (``UNKNOWN``), and its runs are submitted again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from greenprec._processes import open_log, process_alive
from greenprec.errors import ConfigError
from greenprec.experiment.cluster import drive_blocks
from greenprec.experiment.session import Session
from greenprec.experiment.slurm import JobRequest, JobState, SlurmError
from greenprec.results import RunRecord
from greenprec.results.files import write_atomic

__all__ = ["DebugExecutor", "LocalProcesses"]

_JOB_SCRIPT = """
import importlib, json, pathlib, sys
from greenprec.results.files import write_atomic
module, name, args, status = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
code = 1
try:
    print(getattr(importlib.import_module(module), name)(*args), flush=True)
    code = 0
finally:
    write_atomic(pathlib.Path(status), str(code))
"""
"""A job: run the function, then record its exit status for a submitter that is not its
parent (a resumed one cannot wait for it). Written atomically, as every file in slurm/ is: a
link in its place is replaced, never written through."""


_JOB_NUMBERS = itertools.count(1)
"""The jobs submitted by this process, numbered (a job id is this process's id and its number)."""


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
        return drive_blocks(session, LocalProcesses(session.store.slurm_dir))


class LocalProcesses:
    """A :class:`~greenprec.experiment.cluster.Scheduler` whose jobs are local processes, one
    at a time (a one-node cluster with exclusive jobs: runs measured side by side on one
    machine would disturb each other's energy).

    ``folder`` holds each started job's record (its process, then its exit status), through
    which the jobs an earlier submitter started are known to this one.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._queued: dict[str, tuple[list[str], Path, str]] = {}
        """Jobs not started yet: the command, the log file and the job's name."""
        self._started: dict[str, subprocess.Popen[bytes]] = {}
        self._names: dict[str, str] = {}
        self._cancelled: set[str] = set()

    def submit(
        self, folder: Path, request: JobRequest, function: Callable[..., object], *args: object
    ) -> str:
        """Queue ``function(*args)`` for a fresh Python; the function and its arguments must be
        importable by name and JSON (a block's are: ``run_block``, the folder, the block)."""
        try:
            arguments = json.dumps(list(args))
        except TypeError as error:
            raise SlurmError(f"a debug job's arguments must be JSON: {error}") from None
        # Digits, as Slurm's are (a job id names a file in jobs/). Unique in this process, even
        # to a second submitter of the same folder (a resumed experiment), whose jobs must not
        # be taken for the first one's; and not the id of a job an earlier process recorded.
        job_id = str(os.getpid() * 1000 + next(_JOB_NUMBERS))
        while self._record_file(job_id).exists():
            job_id = str(os.getpid() * 1000 + next(_JOB_NUMBERS))
        command = [
            sys.executable, "-c", _JOB_SCRIPT, function.__module__, function.__qualname__,
            arguments, str(self._status_file(job_id)),
        ]  # fmt: skip
        self._queued[job_id] = (command, folder / f"{request.name}.log", request.name)
        self._names[request.name] = job_id
        self._start_next()
        return job_id

    def _start_next(self) -> None:
        if not self._queued or any(job.poll() is None for job in self._started.values()):
            return
        if any(self._earlier_state(job_id) == "RUNNING" for job_id in self._earlier_jobs()):
            return  # a job an earlier submitter started still runs: one job at a time
        job_id = next(iter(self._queued))
        command, log_file, name = self._queued.pop(job_id)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        try:
            log = open_log(log_file, append=True)  # a link, FIFO or device there is replaced
        except (ConfigError, OSError) as error:
            raise SlurmError(f"cannot start a debug job: {error}") from None
        with log:
            try:
                child = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**environment, "SLURM_JOB_ID": job_id},
                )
            except OSError as error:
                raise SlurmError(f"cannot start a debug job: {error.strerror or error}") from None
        self._started[job_id] = child
        with contextlib.suppress(OSError):
            write_atomic(self._record_file(job_id), json.dumps({"pid": child.pid, "name": name}))

    # -- the records through which a later submitter knows a job -----------------------------
    def _record_file(self, job_id: str) -> Path:
        return self.folder / f"debug-{job_id}.json"

    def _status_file(self, job_id: str) -> Path:
        return self.folder / f"debug-{job_id}.status"

    def _earlier_jobs(self) -> list[str]:
        """Jobs started by an earlier submitter of this folder, by their records."""
        if not self.folder.is_dir():
            return []
        ids = [path.stem.removeprefix("debug-") for path in self.folder.glob("debug-*.json")]
        return [job_id for job_id in ids if job_id not in self._started]

    def _earlier_state(self, job_id: str) -> str | None:
        """The state of a job an earlier submitter started (None: it never started)."""
        try:
            code = self._status_file(job_id).read_text().strip()
        except OSError:
            code = ""
        if code:
            return "COMPLETED" if code == "0" else "FAILED"
        pid = self._earlier_pid(job_id)
        if pid is None:
            return None
        # Gone without an exit status: killed (as Slurm says of a job killed by a signal).
        return "RUNNING" if _is_job_process(pid, job_id) else "FAILED"

    def _earlier_pid(self, job_id: str) -> int | None:
        try:
            record = json.loads(self._record_file(job_id).read_text())
        except (OSError, ValueError):
            return None
        pid = record.get("pid") if isinstance(record, dict) else None
        return pid if isinstance(pid, int) else None

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
            earlier = self._earlier_state(job_id)
            if job_id in self._cancelled and earlier != "RUNNING":
                return "CANCELLED"  # as scancel leaves it, once it has ended
            return earlier
        returncode = child.poll()
        if returncode is None:
            return "RUNNING"
        if job_id in self._cancelled:
            return "CANCELLED"
        return "COMPLETED" if returncode == 0 else "FAILED"

    def find_by_name(self, name: str) -> JobState | None:
        job_id = self._names.get(name)
        if job_id is None:
            job_id = next(
                (found for found in self._earlier_jobs() if self._earlier_name(found) == name),
                None,
            )
        return None if job_id is None else self.job_states([job_id]).get(job_id)

    def launchable(self, folder: Path, job_id: str) -> bool:
        """Always: a debug job is started by its submitter, with all it needs, or not at all."""
        return True

    def _earlier_name(self, job_id: str) -> str | None:
        try:
            record = json.loads(self._record_file(job_id).read_text())
        except (OSError, ValueError):
            return None
        name = record.get("name") if isinstance(record, dict) else None
        return name if isinstance(name, str) else None

    def cancel(self, job_ids: Sequence[str]) -> None:
        """As scancel does: a queued job never starts; a running one gets SIGTERM."""
        for job_id in job_ids:
            self._cancelled.add(job_id)
            self._queued.pop(job_id, None)
            child = self._started.get(job_id)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
            elif child is None and self._earlier_state(job_id) == "RUNNING":
                pid = self._earlier_pid(job_id)
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)


def _is_job_process(pid: int, job_id: str) -> bool:
    """Whether process ``pid`` is alive and is debug job ``job_id`` (not a process that got
    its id later: the job's command line holds its status file, named by the job id)."""
    if not process_alive(pid):
        return False  # gone, or a zombie: it has ended, its parent has not reaped it yet
    try:
        os.kill(pid, 0)
    except OSError:
        return False  # another user's process (PermissionError): the id was reused
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): alive is all that can be known
    # Empty while a process is being set up (a job started a moment ago): alive, then.
    return command_line == b"" or f"debug-{job_id}.status".encode() in command_line

"""Slurm as the cluster executor sees it: submit a block's job (through submitit), ask for
jobs' states, cancel jobs.

Every Slurm command here is bounded in time. States come from ``squeue --states=all``, which
knows a finished job for ``MinJobAge`` seconds (five minutes by default) and works without
Slurm's accounting database; ``sacct`` is asked only about a job squeue no longer knows, and
many clusters without accounting answer it with an error (the job is then ``UNKNOWN``).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from greenprec.errors import GreenprecError
from greenprec.results.models import JOB_ID_PATTERN, SLURM_FINAL_STATES

__all__ = [
    "JobRequest",
    "JobState",
    "SlurmError",
    "SubmititValue",
    "cancel",
    "find_by_name",
    "job_hostnames",
    "job_states",
    "launchable",
    "srun_argv",
    "submit",
]

SubmititValue = str | int | float | bool | dict[str, str | bool]
"""A value of submitit's SlurmExecutor parameters (``additional_parameters`` is a table)."""

_COMMAND_TIMEOUT_S = 60.0
"""The longest a Slurm command may take before it counts as failed (a busy controller)."""


class SlurmError(GreenprecError):
    """A Slurm command failed or could not be run (the controller down, the command missing)."""


@dataclass(frozen=True)
class JobState:
    """What Slurm says of one job."""

    job_id: str
    state: str
    """Slurm's word: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, NODE_FAIL, ..."""
    reason: str | None = None
    node: str | None = None

    @property
    def final(self) -> bool:
        return self.state in SLURM_FINAL_STATES


def _run(
    command: list[str], timeout_s: float = _COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(command[0])
    if executable is None:
        raise SlurmError(f"{command[0]} is not on this machine's PATH (is Slurm installed here?)")
    try:
        return subprocess.run(
            [executable, *command[1:]],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{command[0]} did not answer within {timeout_s:g} s") from None
    except OSError as error:
        raise SlurmError(f"cannot run {command[0]}: {error.strerror or error}") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else "(no output)"


def _base_state(word: str) -> str:
    # squeue may add a suffix ("CANCELLED by 0" in sacct; "+" marks a requeued state).
    return word.strip().split()[0].rstrip("+").upper() if word.strip() else "UNKNOWN"


def job_states(job_ids: Sequence[str]) -> dict[str, JobState]:
    """Each job's state. A job Slurm no longer knows is ``UNKNOWN`` (with the reason)."""
    ids = [job_id for job_id in dict.fromkeys(job_ids) if JOB_ID_PATTERN.fullmatch(job_id)]
    if not ids:
        return {}
    found: dict[str, JobState] = {}
    for start in range(0, len(ids), 200):  # a bounded command line
        chunk = ids[start : start + 200]
        for state in _squeue(["-j", ",".join(chunk)], missing_ok=True):
            if state.job_id in chunk:
                found[state.job_id] = state
    for job_id in ids:
        if job_id not in found:
            found[job_id] = _from_accounting(job_id)
    return found


def _squeue(selection: list[str], *, missing_ok: bool = False) -> list[JobState]:
    """The jobs ``squeue --states=all`` lists for ``selection`` (``-j IDS``, ``--name N``).
    With ``missing_ok``, "Invalid job id" (none of the ids is known any more) is no error."""
    done = _run(["squeue", "-h", "--states=all", *selection, "-o", "%i|%T|%r|%N"])
    if done.returncode != 0 and not (missing_ok and "Invalid job id" in done.stderr):
        raise SlurmError(f"squeue failed: {_first_line(done.stderr or done.stdout)}")
    states = []
    for line in done.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) != 4 or JOB_ID_PATTERN.fullmatch(cells[0]) is None:
            continue
        job_id, state, reason, node = cells
        states.append(
            JobState(
                job_id,
                _base_state(state),
                None if reason in ("", "None", "(null)") else reason[:200],
                node[:200] or None,
            )
        )
    return states


def _from_accounting(job_id: str) -> JobState:
    gone = JobState(
        job_id,
        "UNKNOWN",
        "Slurm no longer knows the job (it ended over MinJobAge ago, or was cancelled before it "
        "started) and has no accounting to ask",
    )
    try:
        done = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,NodeList"])
    except SlurmError:
        return gone
    if done.returncode != 0:
        return gone
    for line in done.stdout.splitlines():
        cells = line.split("|")
        if len(cells) >= 2 and cells[0].strip() == job_id:
            node = cells[2].strip() if len(cells) > 2 else ""
            return JobState(job_id, _base_state(cells[1]), None, node[:200] or None)
    return gone


def find_by_name(name: str) -> JobState | None:
    """The newest job named ``name`` that Slurm still knows (to adopt a job whose id the
    submitter never recorded), or None."""
    states = _squeue(["--name", name])
    if not states:
        return None
    return max(states, key=lambda state: int(state.job_id.split("_")[0]))


def launchable(folder: Path, job_id: str) -> bool:
    """Whether the job ``job_id``, submitted with its files under ``folder`` (as :func:`submit`
    puts them), has what it starts from: submitit's pickle of the function to run.

    submitit writes it only after sbatch has answered: a submitter killed in between leaves a
    job that waits for the file and then fails (submitit's ``JobLaunchFailure``)."""
    if JOB_ID_PATTERN.fullmatch(job_id) is None:
        return False
    # As submitit's JobPaths name it: "%j" is the job id (an array task's "<id>_<task>").
    return (folder / job_id / f"{job_id}_submitted.pkl").is_file()


def cancel(job_ids: Sequence[str]) -> None:
    """scancel the jobs (a job already ended is no error)."""
    ids = [job_id for job_id in job_ids if JOB_ID_PATTERN.fullmatch(job_id)]
    if not ids:
        return
    done = _run(["scancel", *ids])
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SlurmError(f"scancel failed: {_first_line(done.stderr or done.stdout)}")


@dataclass(frozen=True)
class JobRequest:
    """What one block's job asks Slurm for."""

    name: str
    time_min: int
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gres: str | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    exclusive: bool = True
    sbatch: tuple[tuple[str, str], ...] = ()
    nodes: int = 1
    """Nodes of the job: above 1, each of its runs spans them (one srun step per run)."""

    def parameters(self) -> dict[str, SubmititValue]:
        """submitit's SlurmExecutor parameters for this request."""
        additional: dict[str, str | bool] = dict(self.sbatch)
        # Slurm must not restart a block by itself: the submitter resubmits what a failed job
        # left, and records why it failed (a requeued job would rerun half-measured runs).
        additional["no-requeue"] = True
        parameters: dict[str, SubmititValue] = {
            "job_name": self.name,
            "time": self.time_min,
            "nodes": 1,
            "ntasks_per_node": 1,
            "stderr_to_stdout": True,
            "additional_parameters": additional,
        }
        if self.nodes > 1:
            # The block's loop must run once, on the first node, and start each run's srun
            # step over every node itself: submitit's own srun would start the whole block
            # on each node (one task per node), and a step inside that step would wait for
            # resources it already holds.
            parameters["nodes"] = self.nodes
            parameters["use_srun"] = False
        if self.exclusive:
            parameters["exclusive"] = True
        for key in ("partition", "account", "qos", "gres", "cpus_per_task"):
            value = getattr(self, key)
            if value is not None:
                parameters[key] = value
        if self.mem_gb is not None:
            parameters["mem"] = f"{max(1, math.ceil(self.mem_gb * 1024))}M"
        return parameters


def job_hostnames(nodelist: str | None = None) -> list[str]:
    """The host names of this job's nodes, first node first: ``SLURM_JOB_NODELIST`` (or
    ``nodelist``, e.g. ``gpu[01-02]``) expanded by ``scontrol show hostnames``."""
    compact = nodelist if nodelist is not None else os.environ.get("SLURM_JOB_NODELIST", "")
    if not compact.strip():
        raise SlurmError(
            "SLURM_JOB_NODELIST is not set: a run across several nodes must start inside a "
            "Slurm job of that many nodes"
        )
    done = _run(["scontrol", "show", "hostnames", compact])
    if done.returncode != 0:
        raise SlurmError(
            f"scontrol show hostnames failed: {_first_line(done.stderr or done.stdout)}"
        )
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if not names:
        raise SlurmError(f"scontrol show hostnames gave no host for {compact[:200]!r}")
    return names


def srun_argv(nodes: int, command: Sequence[str]) -> list[str]:
    """``command`` as one srun step with one task on each of ``nodes`` nodes of this job.

    ``--kill-on-bad-exit``: a node whose launcher fails ends the step on every node, so the
    others do not wait for it until torch.distributed's time-outs."""
    return [
        "srun",
        "--nodes",
        str(nodes),
        "--ntasks",
        str(nodes),
        "--ntasks-per-node",
        "1",
        "--kill-on-bad-exit=1",
        *command,
    ]


def _import_submitit() -> ModuleType:
    """submitit, imported without its logging set-up unless the user asked for one.

    Why: on import submitit calls ``logging.config.dictConfig``, which closes every logging
    handler already there; absl's (TensorFlow's) handler closes the stream it writes to, which
    is the process's own ``sys.stderr`` — so a ``compare`` in a process that had imported
    TensorFlow (a notebook, a test) lost its stderr. ``SUBMITIT_LOG_LEVEL=NOCONFIG`` is
    submitit's own switch to skip that; a value the user set is kept, and the variable is
    restored at once, so the jobs' environment is not changed.
    """
    if "submitit" in sys.modules:
        return sys.modules["submitit"]
    before = os.environ.get(_SUBMITIT_LOG_VARIABLE)
    os.environ.setdefault(_SUBMITIT_LOG_VARIABLE, "NOCONFIG")
    try:
        import submitit
    except ImportError:
        raise SlurmError(
            "the cluster executor needs submitit; install it with pip install 'greenprec[slurm]'"
        ) from None
    finally:
        if before is None:
            os.environ.pop(_SUBMITIT_LOG_VARIABLE, None)
    return submitit


_SUBMITIT_LOG_VARIABLE = "SUBMITIT_LOG_LEVEL"


def submit(
    folder: Path, request: JobRequest, function: Callable[..., object], *args: object
) -> str:
    """Submit ``function(*args)`` as one job; its files go to ``folder/<job_id>/``. Returns the
    job id; SlurmError with sbatch's own words when Slurm refuses the job."""
    submitit = _import_submitit()
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=0)
    executor.update_parameters(**request.parameters())
    try:
        job = executor.submit(function, *args)
    except subprocess.CalledProcessError as error:
        output = error.output.decode(errors="replace") if isinstance(error.output, bytes) else ""
        raise SlurmError(f"sbatch refused the job: {_first_line(output or str(error))}") from None
    except Exception as error:  # submitit wraps sbatch's failures in its own errors
        raise SlurmError(f"sbatch refused the job: {_first_line(str(error))}") from None
    job_id = str(job.job_id)
    if JOB_ID_PATTERN.fullmatch(job_id) is None:
        raise SlurmError(f"sbatch gave an unexpected job id {job_id[:40]!r}")
    return job_id

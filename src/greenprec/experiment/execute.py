"""The run executor: one scheduled run, here (``inline``) or in a fresh Python (``process``).

Whoever executes a run writes its run file (``runs/<run_id>.json``) and its samples: first
``running`` (with this host and process, so a stale state can be recognised), then ``done``
or ``failed``. The driver (:mod:`greenprec.experiment.runner`) writes the file itself only
when the executor is gone without a final record (killed, out of memory, a native crash).
A job on another node runs the very same :func:`execute_run`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from greenprec.results import (
    EpochRecord,
    HostEnergy,
    MachineState,
    NodeInfo,
    ResultsStore,
    RunRecord,
    TargetRecord,
)
from greenprec.results.files import write_atomic
from greenprec.results.records import now_iso

__all__ = [
    "Launch",
    "RunSpec",
    "child_main",
    "current_job_id",
    "current_run",
    "energy_to_targets",
    "execute_run",
    "launches",
    "node_info",
    "simulated_node_launches",
    "slurm_launch_argv",
    "torchrun_argv",
]

if TYPE_CHECKING:
    from greenprec.experiment.config import ExperimentConfig
    from greenprec.measurement import Measurement
    from greenprec.workloads.core import EpochPoint, WorkloadResult

_RUNNER_PID_VARIABLE = "GREENPREC_RUNNER_PID"
_RANK_FAILED = "greenprec: run failed on"
"""The start of the line a failing rank prints: the runner takes the run's error from it."""


class RunSpec(BaseModel):
    """Everything one run needs, handed from the driver to the executor (a JSON file)."""

    model_config = ConfigDict(extra="forbid")

    run: RunRecord
    workload: str
    params: dict[str, Any] = Field(default_factory=dict)
    deterministic: bool = False
    meters: list[str]
    meter_options: dict[str, str] = Field(default_factory=dict)
    interval_s: float
    baseline_power_w: float | None = None
    """The idle baseline's power: ``net_energy_j`` is the run's energy less this over its time."""
    timeout_s: float | None = None
    """Stop the run after this long (process isolation): a failed run, "timed out after N s"."""
    targets: dict[str, float] = Field(default_factory=dict)
    """Energy to a target: the metric values whose first reaching is recorded."""
    stop_at_target: bool = False
    """End training once every target is reached (the workload reads ``ctx.epoch_end``'s
    answer): the energy after the target is not spent."""
    idle_before_s: float = 0.0
    """Measure this long idle just before the workload: the run's ``idle_power_w``."""
    nproc_per_node: int = Field(default=1, ge=1)
    """torch.distributed ranks per node: above 1 (or with several nodes) the run is launched
    through torchrun, and only global rank 0 writes its files."""
    nodes: int = Field(default=1, ge=1)
    """Nodes the run spans: one srun step inside the Slurm job, a torchrun launcher per node."""
    simulated_nodes: bool = False
    """The debug executor: the nodes are torchrun launchers on this machine, each a host of
    its own to greenprec (``GREENPREC_HOST_ID``)."""

    @property
    def distributed(self) -> bool:
        """Whether the run is several torch.distributed ranks."""
        return self.nproc_per_node * self.nodes > 1

    @classmethod
    def of(
        cls,
        config: ExperimentConfig,
        run: RunRecord,
        meters: list[str],
        *,
        baseline_power_w: float | None,
        timeout_s: float,
    ) -> RunSpec:
        """The spec of ``run`` under the experiment's ``config`` (the local runner and a
        cluster job build it alike; only the baseline and the time limit are theirs)."""
        return cls(
            run=run,
            workload=config.workload,
            params={**config.params, **run.params},
            deterministic=config.deterministic,
            meters=meters,
            meter_options=config.meter_options,
            interval_s=config.interval_s,
            baseline_power_w=baseline_power_w,
            timeout_s=timeout_s,
            targets=config.targets,
            stop_at_target=config.stop_at_target,
            idle_before_s=config.idle_before_run_s,
            nproc_per_node=config.nproc_per_node,
            nodes=config.nodes,
            simulated_nodes=config.nodes > 1 and config.executor == "debug",
        )

    def execute(self, store: ResultsStore, isolation: str) -> RunRecord:
        """Execute the run here (``inline``) or in a fresh Python (``process``)."""
        if isolation == "process":
            return _execute_in_process(self, store)
        return execute_run(self, store)


def current_job_id() -> str | None:
    """This process's Slurm job id (``1234``, or ``1234_5`` in an array), if in a job."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def node_info() -> NodeInfo:
    """This machine's CPU and GPU models and GPU driver (what the report compares hosts by)."""
    from greenprec.host import cpu_model, logical_cpus, nvidia_gpus

    return NodeInfo(cpu_model=cpu_model() or None, logical_cpus=logical_cpus(), gpus=nvidia_gpus())


_CURRENT_RUN: contextvars.ContextVar[RunRecord | None] = contextvars.ContextVar(
    "greenprec_current_run", default=None
)


def current_run() -> RunRecord | None:
    """The run :func:`execute_run` is executing in this process (its record as it started),
    None outside one. For meters that must know what they measure: the scripted test meter
    (:mod:`greenprec.testing.scripted`) draws each configuration's known power from it."""
    return _CURRENT_RUN.get()


def execute_run(spec: RunSpec, store: ResultsStore, *, rank: int = 0) -> RunRecord:
    """Run the workload in this process, measure its marked phase, write the run's files.

    In a distributed run every rank calls this, and only global ``rank`` 0 writes: the other
    ranks' records are returned, never stored, and their failures are raised (see
    :func:`child_main`)."""
    token = _CURRENT_RUN.set(spec.run)
    try:
        return _execute_run(spec, store, rank)
    finally:
        _CURRENT_RUN.reset(token)


def _execute_run(spec: RunSpec, store: ResultsStore, rank: int = 0) -> RunRecord:
    """Run the workload in this process, measure its marked phase, write the run's files."""
    from greenprec.machine import read_machine_state  # sysfs: $GREENPREC_SYSFS_ROOT or /sys
    from greenprec.measurement import measure
    from greenprec.workloads import run_workload

    running = spec.run.cleared().started(
        started_at=now_iso(),
        host=platform.node(),
        node=node_info(),
        slurm_job_id=current_job_id(),
        executor_pid=os.getpid(),
        machine_start=read_machine_state(),
    )
    writes = rank == 0  # one record per run, however many ranks run it
    if writes:
        store.write_run(running)
    idle_power_w = _idle_power(spec) if spec.idle_before_s > 0 else None

    def measure_factory() -> Measurement:
        return measure(spec.meters, interval=spec.interval_s, meter_options=spec.meter_options)

    try:
        result = run_workload(
            spec.workload,
            policy=spec.run.precision_policy,
            seed=spec.run.seed if spec.run.seed is not None else 0,
            params=spec.params,
            deterministic=spec.deterministic,
            measure_factory=measure_factory,
            targets=spec.targets,
            stop_at_target=spec.stop_at_target,
        )
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # a failed run is data, not a crash of the experiment
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        if spec.distributed:
            # The runner records the run's failure from torchrun's exit and this line: the
            # first rank to fail is the cause; rank 0 may only see its consequence (a lost
            # peer), and a rank that returned normally would leave the others waiting.
            print(f"{_RANK_FAILED} rank {rank}: {_one_line(error)}", file=sys.stderr, flush=True)
            raise
        # The pid stays, as 0.2 wrote it: the record of a run that failed in this process.
        failed = running.failed(
            _one_line(error), ended_at=now_iso(), executor_pid=running.executor_pid
        )
        store.write_run(failed)
        return failed
    machine_end = read_machine_state()
    done = _finished(spec, running, result, machine_end=machine_end, idle_power_w=idle_power_w)
    if writes:
        # Rank 0's samples: its host's readings (samples are not gathered across hosts).
        store.write_samples(
            spec.run.run_id, result.measurement.samples.itertuples(index=False, name=None)
        )
        store.write_run(done)
    return done


def _finished(
    spec: RunSpec,
    running: RunRecord,
    result: WorkloadResult,
    *,
    machine_end: MachineState | None,
    idle_power_w: float | None,
) -> RunRecord:
    """The done record of ``running`` with what ``result`` measured and reported."""
    measurement = result.measurement
    duration_s = measurement.duration_s
    energy_j = measurement.energy_j
    mean_power_w = measurement.mean_power_w
    done = running.finished(
        started_at=measurement.started_at.isoformat(),
        ended_at=measurement.ended_at.isoformat(),
        duration_s=duration_s,
        energy_j=energy_j,
        net_energy_j=(
            energy_j - spec.baseline_power_w * duration_s
            if spec.baseline_power_w is not None
            else None
        ),
        mean_power_w=mean_power_w if mean_power_w == mean_power_w else None,
        meter=measurement.meter,
        estimated=measurement.estimated,
        domains=measurement.domains,
        counted_domains=measurement.counted_domains,
        metrics=dict(result.metrics),
        # The framework, its version, the device and the TF32 state as the run had them:
        # "fp32" from another tool is often TF32, so the record says which it was.
        framework=result.framework.to_dict(),
        machine_end=machine_end,
        idle_power_w=idle_power_w,
        epochs=[
            EpochRecord(
                epoch=point.epoch,
                duration_s=point.duration_s,
                energy_j=point.energy_j,
                metrics=point.metrics,
            )
            for point in result.epochs
        ],
        targets=energy_to_targets(spec.targets, result.epochs, result.metrics),
        stopped_at_target=result.stopped_at_target,
        epochs_run=result.epochs_run,
        samples_trained=result.samples_trained,
    )
    if measurement.layout is None:
        return done  # one process: no per-host list, as before
    # Under torch.distributed, energy_j is already the job's total (each host once) and each
    # host's share goes beside it.
    hosts = [
        HostEnergy(
            hostname=host.host,
            energy_j=host.energy_j,
            domains=dict(host.domains),
            counted_domains=list(host.counted_domains),
            ranks=list(host.ranks),
            duration_s=host.duration_s,
            meters=list(host.meters),
            estimated=host.estimated,
        )
        for host in measurement.hosts
    ]
    return done.model_copy(update={"hosts": hosts})


def _idle_power(spec: RunSpec) -> float | None:
    """Mean power over ``idle_before_s`` of rest, measured by the run's meters."""
    from greenprec.measurement import measure

    with measure(spec.meters, interval=spec.interval_s, meter_options=spec.meter_options) as m:
        time.sleep(spec.idle_before_s)
    power_w = m.mean_power_w
    return power_w if math.isfinite(power_w) else None


def energy_to_targets(
    targets: Mapping[str, float],
    epochs: Sequence[EpochPoint],
    final_metrics: Mapping[str, float] | None = None,
) -> list[TargetRecord]:
    """For each target, the first epoch whose metric reached it, with the energy and time to
    the end of that epoch; ``reached`` False when no epoch did (or none reported the metric).
    ``final_value`` is the metric as the run ended: ``final_metrics`` (what the workload
    returned) where it has it, else the last epoch's value."""
    from greenprec.workloads.core import lower_is_better, target_reached

    records = []
    for metric, value in targets.items():
        record = TargetRecord(
            metric=metric,
            value=value,
            higher_is_better=not lower_is_better(metric),
            final_value=_final_value(metric, epochs, final_metrics or {}),
        )
        for point in epochs:
            if target_reached(metric, value, point.metrics.get(metric)):
                record = record.model_copy(
                    update={
                        "reached": True,
                        "epoch": point.epoch,
                        "energy_j": point.energy_j,
                        "duration_s": point.duration_s,
                    }
                )
                break
        records.append(record)
    return records


def _final_value(
    metric: str, epochs: Sequence[EpochPoint], final_metrics: Mapping[str, float]
) -> float | None:
    returned = final_metrics.get(metric)
    if returned is not None and math.isfinite(returned):
        return float(returned)
    for point in reversed(epochs):
        seen = point.metrics.get(metric)
        if seen is not None and math.isfinite(seen):
            return seen
    return None


@dataclass(frozen=True)
class Launch:
    """One process the runner starts for a run: its command line and what it adds to the
    environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


_CHILD_MODULE = "greenprec.experiment.child"


def torchrun_argv(
    child_args: Sequence[str],
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
    rdzv_conf: str | None = None,
) -> list[str]:
    """The torchrun command that starts ``nproc_per_node`` ranks of the run's child here.

    One node: ``--standalone`` (a rendezvous on a free local port). Several: a c10d
    rendezvous at ``rdzv_endpoint`` (``host:port``), ``rdzv_id`` naming the run so a stray
    launcher of another run cannot join. No restarts: a rank that fails fails the run."""
    argv = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1:
        argv.append("--standalone")
    else:
        if rdzv_endpoint is None or rdzv_id is None:
            raise ValueError("a run across several nodes needs a rendezvous endpoint and id")
        argv += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d"]
        argv += ["--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id]
        if rdzv_conf is not None:
            argv += ["--rdzv-conf", rdzv_conf]
    argv += ["--nproc-per-node", str(nproc_per_node), "--max-restarts", "0"]
    return [*argv, "-m", _CHILD_MODULE, *child_args]


def slurm_launch_argv(
    hostnames: Sequence[str],
    child_args: Sequence[str],
    *,
    nodes: int,
    nproc_per_node: int,
    port: int,
    run_id: str,
) -> list[str]:
    """A run across ``nodes`` nodes of a Slurm job: one srun step, a torchrun launcher per
    node, meeting at the job's first node (``hostnames``, as ``scontrol show hostnames``
    lists ``SLURM_JOB_NODELIST``: where the block's loop runs, so ``port`` is free there)."""
    from greenprec.experiment.slurm import srun_argv

    if len(hostnames) < nodes:
        raise ValueError(
            f"the run spans {nodes} nodes but its Slurm job has {len(hostnames)} "
            f"({', '.join(hostnames)[:200]})"
        )
    launcher = torchrun_argv(
        child_args,
        nproc_per_node=nproc_per_node,
        nnodes=nodes,
        rdzv_endpoint=f"{hostnames[0]}:{port}",
        rdzv_id=run_id,
    )
    return srun_argv(nodes, launcher)


def simulated_node_launches(
    child_args: Sequence[str],
    *,
    nodes: int,
    nproc_per_node: int,
    port: int,
    run_id: str,
    host: str,
) -> list[Launch]:
    """The debug executor's nodes: ``nodes`` torchrun launchers on this machine, meeting on
    127.0.0.1, each a host of its own to greenprec (``GREENPREC_HOST_ID`` = ``host/node<i>``).
    The first launcher holds the rendezvous store (``is_host``); the others only join it."""
    from greenprec.distributed import HOST_ID_VARIABLE

    return [
        Launch(
            torchrun_argv(
                child_args,
                nproc_per_node=nproc_per_node,
                nnodes=nodes,
                rdzv_endpoint=f"127.0.0.1:{port}",
                rdzv_id=run_id,
                rdzv_conf=f"is_host={1 if index == 0 else 0}",
            ),
            {HOST_ID_VARIABLE: f"{host}/node{index}"},
        )
        for index in range(nodes)
    ]


def launches(spec: RunSpec, child_args: Sequence[str]) -> list[Launch]:
    """The processes that execute ``spec``: its child alone, or torchrun launcher(s)."""
    if not spec.distributed:
        # The child checks that its parent is this runner (see _die_with_parent).
        return [
            Launch(
                [sys.executable, "-m", _CHILD_MODULE, *child_args],
                {_RUNNER_PID_VARIABLE: str(os.getpid())},
            )
        ]
    if spec.nodes == 1:
        return [Launch(torchrun_argv(child_args, nproc_per_node=spec.nproc_per_node))]
    if spec.simulated_nodes:
        return simulated_node_launches(
            child_args,
            nodes=spec.nodes,
            nproc_per_node=spec.nproc_per_node,
            port=_free_port(),
            run_id=spec.run.run_id,
            host=platform.node(),
        )
    from greenprec.experiment.slurm import job_hostnames

    argv = slurm_launch_argv(
        job_hostnames(),
        child_args,
        nodes=spec.nodes,
        nproc_per_node=spec.nproc_per_node,
        port=_free_port(),
        run_id=spec.run.run_id,
    )
    return [Launch(argv)]


def _free_port() -> int:
    """A TCP port free on this machine now (the rendezvous's; taken again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _execute_in_process(spec: RunSpec, store: ResultsStore) -> RunRecord:
    """Run in a fresh interpreter so no framework state leaks from run to run.

    The child's output goes to ``logs/<run_id>.log``. A child that dies without a final
    record (killed, out of memory, a crash in native code) leaves a failed run with its log's
    last line, written here once the child is gone. A distributed run's launchers (torchrun,
    srun) and every rank write to the same log; the first rank that fails names the error.
    """
    run_id = spec.run.run_id
    spec_file = store.work_file(run_id, "spec.json")
    write_atomic(spec_file, spec.model_dump_json())
    log_file = store.log_file(run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        started = launches(spec, [str(store.path), str(spec_file)])
    except Exception as error:  # no node list, a job too small: the run fails, in one line
        store.remove_work_file(run_id, "spec.json")
        return _failed_here(
            store, spec, f"cannot launch the run across {spec.nodes} nodes: {_one_line(error)}"
        )
    with log_file.open("wb") as log:
        returncode, timed_out = _wait_for(started, log, spec)
    store.remove_work_file(run_id, "spec.json")
    if timed_out:
        return _failed_here(
            store,
            spec,
            f"timed out after {spec.timeout_s:g} s (the run's time limit); its process group "
            f"was stopped (log: {log_file})",
        )
    try:
        record = store.read_run(run_id)
    except Exception:
        record = spec.run
    if record.status in ("done", "failed"):
        return record
    failed = record.failed(_failure(spec, returncode, log_file), ended_at=now_iso())
    store.write_run(failed)
    return failed


def _failed_here(store: ResultsStore, spec: RunSpec, error: str) -> RunRecord:
    """The run failed before or around its processes, on this host: recorded, and returned."""
    failed = spec.run.cleared().failed(
        error,
        ended_at=now_iso(),
        host=platform.node(),
        node=node_info(),
        slurm_job_id=current_job_id(),
    )
    store.write_run(failed)
    return failed


def _wait_for(started: Sequence[Launch], log: BinaryIO, spec: RunSpec) -> tuple[int, bool]:
    """Start the run's processes with their output to ``log`` and wait for them, within the
    run's time limit: (the first non-zero exit status or 0, whether the limit was reached)."""
    children: list[subprocess.Popen[bytes]] = []
    timed_out = False
    try:
        for launch in started:
            # A process group of its own: a time limit or an interruption ends the run with
            # every process it started (data loaders, EnergiBridge, torchrun's ranks), not
            # just the Python at its top.
            children.append(
                subprocess.Popen(
                    launch.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_environment(launch),
                    start_new_session=True,
                    preexec_fn=_dies_with_runner(os.getpid()) if spec.distributed else None,
                )
            )
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None
        while any(child.poll() is None for child in children):
            if any(child.poll() not in (None, 0) for child in children):
                # One node's launcher failed: the others' ranks would wait for it until
                # torch.distributed's time-outs.
                for child in children:
                    _stop_child(child, grace_s=5.0)
                break
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                for child in children:
                    _stop_child(child, grace_s=5.0)
                break
            time.sleep(0.1)
    except BaseException:
        for child in children:
            _stop_child(child)
        raise
    codes = [child.wait() for child in children]
    return next((code for code in codes if code != 0), 0), timed_out


def _failure(spec: RunSpec, returncode: int, log_file: Path) -> str:
    """Why a run's processes ended without its final record, in one line."""
    cause = _rank_failure(log_file) if spec.distributed else None
    if cause is not None:
        launcher = "srun" if spec.nodes > 1 and not spec.simulated_nodes else "torchrun"
        return f"{cause} ({launcher} exited with code {returncode}; full log: {log_file})"
    return (
        f"{_exit_description(returncode)}; last output: {_last_line(log_file)} "
        f"(full log: {log_file})"
    )


def _environment(launch: Launch) -> dict[str, str]:
    """This process's environment for ``launch``, with only its own runner's pid: a torchrun
    launcher, not this runner, is the parent of a distributed run's ranks."""
    inherited = {k: v for k, v in os.environ.items() if k != _RUNNER_PID_VARIABLE}
    return {**inherited, **launch.env}


def _dies_with_runner(runner_pid: int) -> Callable[[], None] | None:
    """For a launcher (torchrun, srun): end it when the runner is killed, as a run's child
    ends itself (:func:`_die_with_parent`); its ranks end with it in turn (they do the same
    with torchrun as their parent). None off Linux. The C library is loaded here, before the
    fork: the function runs between fork and exec, where little is safe."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def arrange() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != runner_pid:
            os._exit(1)  # the runner died before prctl took effect

    return arrange


def _rank_failure(log_file: Path) -> str | None:
    """The first line a failing rank printed (``rank 1: ValueError: ...``), if any."""
    try:
        text = log_file.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        start = line.find(_RANK_FAILED)
        if start >= 0:
            return line[start + len(_RANK_FAILED) :].strip()[:400]
    return None


def _stop_child(child: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> None:
    """Ask a run's process group to stop (SIGINT), then kill the whole group after ``grace_s``."""
    if child.poll() is None:
        _signal_group(child, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_s)
    # Whatever the run started (and left) goes too, even when its top process already ended.
    _signal_group(child, signal.SIGKILL)
    child.wait()


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError:
        with contextlib.suppress(OSError):
            child.send_signal(signum)


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"run process was killed by {name}{hint}"
    return f"run process exited with code {returncode} without a result"


def _last_line(log_file: Path) -> str:
    try:
        with log_file.open("rb") as handle:
            handle.seek(max(0, log_file.stat().st_size - 65536))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message with whitespace folded."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def child_main(argv: list[str]) -> int:
    """Entry of ``python -m greenprec.experiment.child FOLDER SPEC``: one run, or one rank of
    a distributed run (started by torchrun, which sets ``RANK`` and ``WORLD_SIZE``)."""
    folder_path, spec_path = argv
    # The runner stops a run with SIGINT (_stop_child). This process has a session of its own,
    # so no terminal's Ctrl-C reaches it; a runner started with SIGINT ignored (nohup ... &)
    # must still be able to stop its run gracefully.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_parent()
    spec = RunSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    if not spec.distributed:
        execute_run(spec, ResultsStore(folder_path))
        return 0
    rank = _join_process_group(spec)
    try:
        execute_run(spec, ResultsStore(folder_path), rank=rank)
    except KeyboardInterrupt:
        raise
    except BaseException:
        return 1  # torchrun ends the other ranks and exits with an error: the run failed
    _leave_process_group()
    return 0


def _join_process_group(spec: RunSpec) -> int:
    """Initialise torch.distributed's default group for the workload (its DDP uses it; the
    workload must not initialise one itself) and return this process's global rank.

    NCCL when CUDA is available and the run is on a GPU, else gloo; each rank is given the
    GPU of its ``LOCAL_RANK``, so ``device = "cuda"`` means its own."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = torch.cuda.is_available() and str(spec.params.get("device", "cuda")).startswith(
            "cuda"
        )
        if on_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return int(dist.get_rank())


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):  # the run's files are written already
            dist.destroy_process_group()


def _die_with_parent() -> None:
    """On Linux, end this run when the runner is killed, so a resumed run is not raced by it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    runner_pid = os.environ.get(_RUNNER_PID_VARIABLE)
    if runner_pid is not None and os.getppid() != int(runner_pid):
        os._exit(1)  # the runner died before prctl took effect

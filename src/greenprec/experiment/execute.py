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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from greenprec._processes import (
    RUN_MARK_VARIABLE,
    become_subreaper,
    end_descendants,
    end_marked,
    open_log,
)
from greenprec.errors import ConfigError
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
    "NON_FINITE_VALUES",
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
    from greenprec.machine_load import LoadReading
    from greenprec.measurement import Measurement
    from greenprec.results.models import MachineLoad
    from greenprec.workloads.core import EpochPoint, WorkloadResult

_RUNNER_PID_VARIABLE = "GREENPREC_RUNNER_PID"
_NOTE_FD_VARIABLE = "GREENPREC_RUN_NOTE_FD"
"""The descriptor on which a run's process tells its runner why it could not record the run
(a full disk takes the log and the run file with it; a pipe needs no disk)."""
_KEPT_BYTES = 4096
"""What is kept of one error message or printed line: a 200 KB message is not a record."""
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
    waited_for_idle_s: float | None = None
    """How long the driver waited for an idle machine before the run (``wait_for_idle_s``)."""
    idle_wait_note: str | None = None
    """Set when that wait reached its bound with the machine busy: the run's ``load`` says so."""

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
    from greenprec.machine_load import read_load  # procfs: $GREENPREC_PROC_ROOT or /proc
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
    # The run's own processes: this one, or under torchrun the launcher and all its ranks.
    load_root = os.getppid() if spec.distributed else os.getpid()
    load_start = read_load(load_root) if writes else None
    if writes:
        _write_run(store, running)
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
        _print_error("\n".join(_cut(line) for line in traceback.format_exc().splitlines()))
        if spec.distributed:
            # The runner records the run's failure from torchrun's exit and this line: the
            # first rank to fail is the cause; rank 0 may only see its consequence (a lost
            # peer), and a rank that returned normally would leave the others waiting.
            _print_error(f"{_RANK_FAILED} rank {rank}: {_one_line(error)}")
            raise
        # The pid stays, as 0.2 wrote it: the record of a run that failed in this process.
        failed = running.failed(
            _one_line(error), ended_at=now_iso(), executor_pid=running.executor_pid
        )
        _write_run(store, failed)
        return failed
    machine_end = read_machine_state()
    done = _finished(spec, running, result, machine_end=machine_end, idle_power_w=idle_power_w)
    if load_start is not None:
        done = done.model_copy(update={"load": _load(spec, load_start, read_load(load_root))})
    if writes:
        # Rank 0's samples: its host's readings (samples are not gathered across hosts).
        samples = result.measurement.samples.itertuples(index=False, name=None)
        with _naming(store.samples_file(spec.run.run_id)):
            store.write_samples(spec.run.run_id, samples)
        _write_run(store, done)
    return done


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError inside names ``path``: a full disk fails in ``write()``, which names no
    file, and "No space left on device" alone does not say what was lost."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def _write_run(store: ResultsStore, run: RunRecord) -> None:
    """Write the run's file; an OSError names it."""
    with _naming(store.run_file(run.run_id)):
        store.write_run(run)


def _print_error(text: str) -> None:
    """Print to the run's log; a log that cannot be written (a full disk) stops nothing."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _recorded_metrics(metrics: Mapping[str, float | None]) -> dict[str, float | str | None]:
    """The workload's metrics as the run file keeps them: a non-finite value as its name
    (``"inf"``, ``"-inf"``, ``"nan"``). JSON has no such numbers; written as a number it
    would become null, and a diverged run would read as one that reported nothing. None (an
    epoch's metric the workload did not report) stays None."""
    return {
        name: (
            None
            if value is None
            else float(value)
            if math.isfinite(value)
            else _NON_FINITE_NAMES[_non_finite(value)]
        )
        for name, value in metrics.items()
    }


_NON_FINITE_NAMES = {1: "inf", -1: "-inf", 0: "nan"}
NON_FINITE_VALUES = frozenset(_NON_FINITE_NAMES.values())
"""How a run file names a metric that was not a finite number (see ``_recorded_metrics``)."""


def _non_finite(value: float) -> int:
    return 0 if math.isnan(value) else (1 if value > 0 else -1)


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
        metrics=_recorded_metrics(result.metrics),
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
                metrics=_recorded_metrics(point.metrics),
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


def _load(spec: RunSpec, start: LoadReading, end: LoadReading) -> MachineLoad:
    """What else used the machine over the run, with the driver's wait for idle before it."""
    from greenprec.machine_load import machine_load

    return machine_load(
        start,
        end,
        waited_for_idle_s=spec.waited_for_idle_s,
        idle_wait_note=spec.idle_wait_note,
    )


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

    The child's output goes to ``logs/<run_id>.log`` (opened by :func:`open_log`: never
    through a link, a FIFO or a device). A child that dies without a final record (killed,
    out of memory, a crash in native code, a full disk) leaves a failed run with what it told
    this process, or its log's last line, written here once the child is gone. A distributed
    run's launchers (torchrun, srun) and every rank write to the same log; the first rank that
    fails names the error. Every process the run started ends with it (see
    :mod:`greenprec._processes`).
    """
    run_id = spec.run.run_id
    spec_file = store.work_file(run_id, "spec.json")
    with _naming(spec_file):
        write_atomic(spec_file, spec.model_dump_json())
    log_file = store.log_file(run_id)
    try:
        started = launches(spec, [str(store.path), str(spec_file)])
    except Exception as error:  # no node list, a job too small: the run fails, in one line
        store.remove_work_file(run_id, "spec.json")
        return _failed_here(
            store, spec, f"cannot launch the run across {spec.nodes} nodes: {_one_line(error)}"
        )
    try:
        log = open_log(log_file)
    except (ConfigError, OSError) as error:  # a folder in its place, logs/ a link, no space
        store.remove_work_file(run_id, "spec.json")
        reason = str(error) if isinstance(error, ConfigError) else _os_error_line(error, log_file)
        return _failed_here(store, spec, f"cannot write the run's log: {reason}")
    mark = _run_mark(store, run_id)
    end_marked(mark)  # what an earlier attempt of this run left (its runner killed by kill -9)
    with log:
        ended = _wait_for(started, log, spec, mark)
        store.remove_work_file(run_id, "spec.json")
        if ended.timed_out:
            return _failed_here(
                store,
                spec,
                f"timed out after {spec.timeout_s:g} s (the run's time limit); it was stopped "
                f"with every process it started (log: {log_file})",
            )
        try:
            record = store.read_run(run_id)
        except Exception:
            record = spec.run
        if record.status in ("done", "failed"):
            return record
        failed = record.failed(_failure(spec, ended, log, log_file), ended_at=now_iso())
    _write_run(store, failed)
    return failed


def _run_mark(store: ResultsStore, run_id: str) -> str:
    """The mark of this run's processes: the same for every attempt at it, so an attempt ends
    what an earlier one's killed runner left running."""
    import hashlib

    return hashlib.sha256(f"{store.path.resolve()}\0{run_id}".encode()).hexdigest()[:32]


def _os_error_line(error: OSError, path: Path) -> str:
    return f"cannot write {error.filename or path}: {error.strerror or error}"


def _failed_here(store: ResultsStore, spec: RunSpec, error: str) -> RunRecord:
    """The run failed before or around its processes, on this host: recorded, and returned."""
    failed = spec.run.cleared().failed(
        error,
        ended_at=now_iso(),
        host=platform.node(),
        node=node_info(),
        slurm_job_id=current_job_id(),
    )
    _write_run(store, failed)
    return failed


@dataclass(frozen=True)
class _Ended:
    """How a run's processes ended."""

    returncode: int
    """The first non-zero exit status, or 0."""
    timed_out: bool
    """Whether the run's time limit stopped them."""
    note: str | None = None
    """What the run's process told the runner before it ended: why it could not record the
    run (a full disk, a read-only folder), which its log may not hold."""


def _wait_for(started: Sequence[Launch], log: BinaryIO, spec: RunSpec, mark: str) -> _Ended:
    """Start the run's processes with their output to ``log`` and wait for them, within the
    run's time limit; then end whatever they started that is still there."""
    children: list[subprocess.Popen[bytes]] = []
    note_read, note_write = os.pipe()
    os.set_blocking(note_read, False)
    try:
        for launch in started:
            # A process group of its own: a time limit or an interruption ends the run with
            # every process it started (data loaders, EnergiBridge, torchrun's ranks), not
            # just the Python at its top. The mark follows every process the run starts,
            # in a session of its own too: what outlives the run is found by it.
            environment = {**_environment(launch), RUN_MARK_VARIABLE: mark}
            if not spec.distributed:  # torchrun hands its ranks no descriptor
                environment[_NOTE_FD_VARIABLE] = str(note_write)
            children.append(
                subprocess.Popen(
                    launch.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    start_new_session=True,
                    pass_fds=() if spec.distributed else (note_write,),
                    preexec_fn=_dies_with_runner(os.getpid()) if spec.distributed else None,
                )
            )
        os.close(note_write)
        note_write = -1
        timed_out = _watch(children, spec)
        codes = [child.wait() for child in children]
        return _Ended(next((c for c in codes if c != 0), 0), timed_out, _read_note(note_read))
    except BaseException:
        for child in children:
            _stop_child(child)
        raise
    finally:
        for fd in (note_read, note_write):
            if fd >= 0:
                os.close(fd)
        for child in children:
            _signal_group(child, signal.SIGKILL)  # what stayed in the run's process group
        end_marked(mark)  # and what left it, when the run's process could not end it itself


def _watch(children: Sequence[subprocess.Popen[bytes]], spec: RunSpec) -> bool:
    """Wait for the run's processes within its time limit; whether the limit was reached."""
    deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None
    while any(child.poll() is None for child in children):
        if any(child.poll() not in (None, 0) for child in children):
            # One node's launcher failed: the others' ranks would wait for it until
            # torch.distributed's time-outs.
            for child in children:
                _stop_child(child, grace_s=5.0)
            return False
        if deadline is not None and time.monotonic() > deadline:
            for child in children:
                _stop_child(child, grace_s=5.0)
            return True
        time.sleep(0.1)
    return False


def _read_note(fd: int) -> str | None:
    """What the run's process wrote on its note pipe (bounded), if anything."""
    try:
        data = os.read(fd, _KEPT_BYTES * 2)
    except OSError:  # nothing written (EAGAIN)
        return None
    text = data.decode("utf-8", errors="replace").strip()
    return _cut(" ".join(text.split())) or None


def _failure(spec: RunSpec, ended: _Ended, log: BinaryIO, log_file: Path) -> str:
    """Why a run's processes ended without its final record, in one line."""
    cause = _rank_failure(log) if spec.distributed else None
    if cause is not None:
        launcher = "srun" if spec.nodes > 1 and not spec.simulated_nodes else "torchrun"
        return f"{cause} ({launcher} exited with code {ended.returncode}; full log: {log_file})"
    if ended.note is not None:
        return f"{ended.note} ({_exit_description(ended.returncode)}; full log: {log_file})"
    return (
        f"{_exit_description(ended.returncode)}; last output: {_last_line(log)} "
        f"(full log: {log_file})"
    )


def _environment(launch: Launch) -> dict[str, str]:
    """This process's environment for ``launch``, with only its own runner's pid: a torchrun
    launcher, not this runner, is the parent of a distributed run's ranks."""
    own = (_RUNNER_PID_VARIABLE, _NOTE_FD_VARIABLE)
    inherited = {k: v for k, v in os.environ.items() if k not in own}
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


_LOG_READ_BYTES = 16 * 2**20
"""How much of a log is searched for a rank's failure: the first lines matter, and a log of
gigabytes is not read into memory."""


def _rank_failure(log: BinaryIO) -> str | None:
    """The first line a failing rank printed (``rank 1: ValueError: ...``), if any."""
    try:
        text = os.pread(log.fileno(), _LOG_READ_BYTES, 0).decode("utf-8", errors="replace")
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


def _last_line(log: BinaryIO) -> str:
    """The log's last line, read through the handle it was written through (its name may
    have been replaced since by anyone who can write into logs/)."""
    try:
        size = os.fstat(log.fileno()).st_size
        tail_bytes = os.pread(log.fileno(), 65536, max(0, size - 65536))
        tail = tail_bytes.decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message with whitespace folded."""
    text = " ".join(str(error).split())
    return _cut(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _cut(text: str, limit_bytes: int = _KEPT_BYTES) -> str:
    """``text`` kept to ``limit_bytes`` of UTF-8 (cut between characters), saying how much
    was cut: a 200 KB exception message is neither stored whole nor printed as one line."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit_bytes:
        return text
    kept = data[:limit_bytes].decode("utf-8", errors="ignore")
    return f"{kept} … [cut: {len(text) - len(kept):,} more characters]"


def child_main(argv: list[str]) -> int:
    """Entry of ``python -m greenprec.experiment.child FOLDER SPEC``: one run, or one rank of
    a distributed run (started by torchrun, which sets ``RANK`` and ``WORLD_SIZE``)."""
    folder_path, spec_path = argv
    # The runner stops a run with SIGINT (_stop_child). This process has a session of its own,
    # so no terminal's Ctrl-C reaches it; a runner started with SIGINT ignored (nohup ... &)
    # must still be able to stop its run gracefully.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_parent()
    # What the workload starts and leaves (a helper whose parent ended, a daemon in a session
    # of its own) is re-parented to this process, not to PID 1: ended below with the run.
    become_subreaper()
    note_fd = _note_fd()
    try:
        return _child_run(folder_path, spec_path, note_fd)
    finally:
        end_descendants()


def _child_run(folder_path: str, spec_path: str, note_fd: int | None) -> int:
    spec = RunSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    if not spec.distributed:
        try:
            execute_run(spec, ResultsStore(folder_path))
        except Exception as error:  # the run could not be recorded: tell the runner why
            if note_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(note_fd, _recording_failure(error).encode("utf-8"))
            raise
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


def _note_fd() -> int | None:
    """The runner's note pipe (taken out of the environment: the workload's processes do not
    have the descriptor, and must not write to another file of that number)."""
    value = os.environ.pop(_NOTE_FD_VARIABLE, None)
    return int(value) if value is not None and value.isdigit() else None


def _recording_failure(error: Exception) -> str:
    """Why the run's process could not record its run, in one line: a file it could not write
    is named (the disk full, the folder read-only)."""
    if isinstance(error, OSError) and error.filename is not None:
        return _cut(f"cannot write {error.filename}: {error.strerror or error}")
    return _one_line(error)


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

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
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from greenprec.results import (
    EpochRecord,
    MachineState,
    NodeInfo,
    ResultsStore,
    RunRecord,
    TargetRecord,
)
from greenprec.results.files import write_atomic
from greenprec.results.records import now_iso

__all__ = [
    "RunSpec",
    "child_main",
    "current_job_id",
    "current_run",
    "energy_to_targets",
    "execute_run",
    "node_info",
]

if TYPE_CHECKING:
    from greenprec.experiment.config import ExperimentConfig
    from greenprec.measurement import Measurement
    from greenprec.workloads.core import EpochPoint, WorkloadResult

_RUNNER_PID_VARIABLE = "GREENPREC_RUNNER_PID"


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


def execute_run(spec: RunSpec, store: ResultsStore) -> RunRecord:
    """Run the workload in this process, measure its marked phase, write the run's files."""
    token = _CURRENT_RUN.set(spec.run)
    try:
        return _execute_run(spec, store)
    finally:
        _CURRENT_RUN.reset(token)


def _execute_run(spec: RunSpec, store: ResultsStore) -> RunRecord:
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
        # The pid stays, as 0.2 wrote it: the record of a run that failed in this process.
        failed = running.failed(
            _one_line(error), ended_at=now_iso(), executor_pid=running.executor_pid
        )
        store.write_run(failed)
        return failed
    machine_end = read_machine_state()
    store.write_samples(
        spec.run.run_id, result.measurement.samples.itertuples(index=False, name=None)
    )
    done = _finished(spec, running, result, machine_end=machine_end, idle_power_w=idle_power_w)
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
    return running.finished(
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


def _execute_in_process(spec: RunSpec, store: ResultsStore) -> RunRecord:
    """Run in a fresh interpreter so no framework state leaks from run to run.

    The child's output goes to ``logs/<run_id>.log``. A child that dies without a final
    record (killed, out of memory, a crash in native code) leaves a failed run with its log's
    last line, written here once the child is gone.
    """
    run_id = spec.run.run_id
    spec_file = store.work_file(run_id, "spec.json")
    write_atomic(spec_file, spec.model_dump_json())
    log_file = store.log_file(run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "greenprec.experiment.child",
        str(store.path),
        str(spec_file),
    ]
    timed_out = False
    with log_file.open("wb") as log:
        env = {**os.environ, _RUNNER_PID_VARIABLE: str(os.getpid())}
        # A process group of its own: a time limit or an interruption ends the run with every
        # process it started (data loaders, EnergiBridge), not just the Python at its top.
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None
        try:
            while child.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    _stop_child(child, grace_s=5.0)
                    break
                time.sleep(0.1)
        except BaseException:
            _stop_child(child)
            raise
    store.remove_work_file(run_id, "spec.json")
    if timed_out:
        failed = spec.run.cleared().failed(
            f"timed out after {spec.timeout_s:g} s (the run's time limit); its process group "
            f"was stopped (log: {log_file})",
            ended_at=now_iso(),
            host=platform.node(),
            node=node_info(),
            slurm_job_id=current_job_id(),
        )
        store.write_run(failed)
        return failed
    try:
        record = store.read_run(run_id)
    except Exception:
        record = spec.run
    if record.status in ("done", "failed"):
        return record
    failed = record.failed(
        f"{_exit_description(child.returncode)}; last output: {_last_line(log_file)} "
        f"(full log: {log_file})",
        ended_at=now_iso(),
    )
    store.write_run(failed)
    return failed


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
    """Entry of ``python -m greenprec.experiment.child FOLDER SPEC``."""
    folder_path, spec_path = argv
    # The runner stops a run with SIGINT (_stop_child). This process has a session of its own,
    # so no terminal's Ctrl-C reaches it; a runner started with SIGINT ignored (nohup ... &)
    # must still be able to stop its run gracefully.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_parent()
    spec = RunSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    execute_run(spec, ResultsStore(folder_path))
    return 0


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

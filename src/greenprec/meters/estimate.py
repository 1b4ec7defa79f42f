"""``estimate``: energy estimated from CPU time, for machines with no readable counter.

The model (documented in docs/meters/estimate.md)::

    energy_j = cpu_s * (tdp_w / logical_cpus) + duration_s * idle_fraction * tdp_w

- ``cpu_s``: CPU time (user + system) of this process and all its descendants since the
  block began, from psutil, including children that have already exited.
- ``tdp_w``: the package TDP (option ``tdp_w``; default from a small table of CPU models;
  otherwise ``DEFAULT_WATTS_PER_CPU`` times the logical CPU count).
- ``idle_fraction``: the share of TDP drawn while idle (option, default ``DEFAULT_IDLE_FRACTION``).

It is a model, not a measurement: it ignores frequency, memory, GPUs and everything else
that runs on the machine, and every output that shows its figures says "estimated".
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from greenprec.errors import ConfigError
from greenprec.hookspecs import hookimpl
from greenprec.host import cpu_model
from greenprec.meters import options
from greenprec.meters.base import Meter, Probe, Reading

DEFAULT_WATTS_PER_CPU = 10.0
"""Per logical CPU share of TDP when the CPU model is not in the table (a mid-range server
core at 20 W TDP per physical core with two hyperthreads)."""

DEFAULT_IDLE_FRACTION = 0.1
"""Share of the package TDP drawn at idle, attributed to the measured block's wall time."""

# Package TDP in watts by CPU model substring; first match wins. Small on purpose: a wrong
# entry is worse than the documented default.
TDP_TABLE_W: tuple[tuple[str, float], ...] = (
    ("EPYC 7B13", 240.0),
    ("EPYC 7763", 280.0),
    ("EPYC 9654", 360.0),
    ("Xeon(R) Platinum 8375C", 300.0),
    ("Xeon(R) Platinum 8480", 350.0),
    ("Xeon(R) Gold 6248", 150.0),
    ("Core(TM) i7-8700", 65.0),
    ("Core(TM) i9-13900K", 125.0),
    ("Apple M1", 20.0),
    ("Apple M2", 22.0),
)


def default_tdp_w(model: str | None = None, logical_cpus: int | None = None) -> tuple[float, str]:
    """The TDP used when none is given, and where it came from."""
    model = cpu_model() if model is None else model
    for pattern, tdp_w in TDP_TABLE_W:
        if pattern in model:
            return tdp_w, f"table entry for {pattern!r}"
    cpus = logical_cpus or os.cpu_count() or 1
    return DEFAULT_WATTS_PER_CPU * cpus, f"{DEFAULT_WATTS_PER_CPU:g} W x {cpus} logical CPUs"


def process_tree_cpu_s(process: psutil.Process) -> float:
    """CPU seconds of a process and all its descendants, exited ones included.

    Exited children that were waited for are in the parent's ``children_*`` times; live
    descendants are added with their own ``children_*``, so each second is counted once.
    """
    total = _own_and_reaped(process)
    for child in _descendants(process):
        try:
            total += _own_and_reaped(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # it exited between listing and reading; it shows up in reaped times
    return total


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """Live descendants. On Linux, /proc/PID/task/*/children avoids scanning every process,
    which keeps the sampling thread cheap on busy machines."""
    task_dir = f"/proc/{process.pid}/task"
    if not os.path.isdir(task_dir):
        return list(process.children(recursive=True))
    found: list[psutil.Process] = []
    pending = [process.pid]
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            child_pids: list[int] = []
            for task in tasks:
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                    child_pids.extend(int(field) for field in children.read().split())
        except FileNotFoundError:
            if pid == process.pid and not found:
                return list(process.children(recursive=True))  # kernel without the file
            continue
        except (ProcessLookupError, PermissionError):
            continue
        for child_pid in child_pids:
            try:
                found.append(psutil.Process(child_pid))
            except psutil.NoSuchProcess:
                continue
            pending.append(child_pid)
    return found


def _own_and_reaped(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class EstimateMeter(Meter):
    """Estimated energy from CPU time (see the module docstring for the model)."""

    name = "estimate"
    estimated = True
    description = "CPU time x per-CPU share of TDP + idle share (estimated, no counter needed)"

    def __init__(
        self,
        tdp_w: float | str | None = None,
        idle_fraction: float | str = DEFAULT_IDLE_FRACTION,
        pid: int | str | None = None,
    ) -> None:
        self.logical_cpus = os.cpu_count() or 1
        if tdp_w is None:
            self.tdp_w, self.tdp_source = default_tdp_w(logical_cpus=self.logical_cpus)
        else:
            self.tdp_w, self.tdp_source = (
                options.positive_number(tdp_w, "estimate", "tdp_w", unit="watts"),
                "option tdp_w",
            )
        self.idle_fraction = options.positive_number(
            idle_fraction, "estimate", "idle_fraction", allow_zero=True
        )
        if self.idle_fraction > 1:
            raise ConfigError(f"idle_fraction must be between 0 and 1, got {idle_fraction!r}")
        try:
            self._process = psutil.Process(int(pid) if pid is not None else os.getpid())
        except (psutil.NoSuchProcess, ValueError):
            raise ConfigError(f"estimate: no process with pid {pid!r}") from None
        self._cpu_start_s = 0.0
        self._cpu_last_s = 0.0
        self._t0 = 0.0

    @property
    def watts_per_cpu(self) -> float:
        return self.tdp_w / self.logical_cpus

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        cls(**options)  # validates the options
        return Probe(True, domains=["estimate/cpu"])

    def start(self) -> None:
        self._cpu_start_s = self._cpu_last_s = process_tree_cpu_s(self._process)
        self._t0 = time.monotonic()

    def read(self) -> list[Reading]:
        elapsed_s = time.monotonic() - self._t0
        try:
            cpu_s = process_tree_cpu_s(self._process)
        except psutil.NoSuchProcess:
            cpu_s = self._cpu_last_s  # the measured process has exited: its CPU time is final
        # A child that exits between listing and reading is briefly missed; never go backwards.
        self._cpu_last_s = max(self._cpu_last_s, cpu_s)
        energy_j = (self._cpu_last_s - self._cpu_start_s) * self.watts_per_cpu + (
            elapsed_s * self.idle_fraction * self.tdp_w
        )
        return [Reading("estimate/cpu", energy_j=energy_j)]


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [EstimateMeter]

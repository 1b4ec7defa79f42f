"""``estimate``: energy estimated from CPU time, for machines with no readable counter.

The model (documented in docs/meters/estimate.md)::

    energy_j = cpu_s * watts_per_thread + duration_s * idle_fraction * watts_per_thread * threads

- ``cpu_s``: CPU time (user + system) of this process and all its descendants since the
  block began, from psutil, including children that have already exited.
- ``watts_per_thread``: one hardware thread's share of its chip's TDP: the chip's TDP over
  the chip's own thread count, from a small table of CPU models (:data:`TDP_TABLE`); for a
  model not in it, :data:`DEFAULT_WATTS_PER_THREAD`; with option ``tdp_w``, that TDP over
  this machine's logical CPUs.
- ``threads``: this machine's logical CPUs (a VM's vCPUs), from cpuinfo.
- ``idle_fraction``: the share of TDP drawn while idle (option, default 0.1).

Per-thread figures are what make the estimate right in a VM: a 2-vCPU VM on a 128-thread
EPYC 7B13 owns 2/128 of the chip, and dividing the whole chip's 240 W by the VM's 2 vCPUs
would charge each busy vCPU 120 W instead of 1.9 W.

It is a model, not a measurement: it ignores frequency, memory, GPUs and everything else
that runs on the machine, and every output that shows its figures says "estimated".
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import psutil

from greenprec import host
from greenprec.errors import ConfigError
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.estimate.options import EstimateOptions

__all__ = ["DEFAULT_WATTS_PER_THREAD", "TDP_TABLE", "CpuTdp", "EstimateMeter", "greenprec_meters"]

DEFAULT_WATTS_PER_THREAD = 10.0
"""One logical CPU's share of TDP when the CPU model is not in the table (a mid-range server
core at 20 W TDP per physical core with two hyperthreads)."""


@dataclass(frozen=True)
class CpuTdp:
    """One CPU model's TDP and the hardware threads that share it (one package)."""

    pattern: str
    """A substring of cpuinfo's model name, matched only where no letter or digit follows."""
    tdp_w: float
    threads: int

    @property
    def watts_per_thread(self) -> float:
        return self.tdp_w / self.threads

    def matches(self, model: str) -> bool:
        # The boundary keeps "Gold 6248" off "Gold 6248R" (24 cores, 205 W) and "i7-8700" off
        # "i7-8700K" (95 W): a near miss must fall to the default, never to a wrong entry.
        return re.search(re.escape(self.pattern) + r"(?![0-9A-Za-z])", model) is not None


# Package TDP and the package's own hardware thread count (cores x SMT), by model; first match
# wins. Small on purpose: a wrong entry is worse than the documented default.
TDP_TABLE: tuple[CpuTdp, ...] = (
    # Google Cloud's own Milan part (T2D, N2D, C2D): 64 cores with SMT, as its name says. AMD
    # publishes no TDP for it; 240 W is the figure commonly reported.
    CpuTdp("EPYC 7B13", 240.0, 128),
    CpuTdp("EPYC 7763", 280.0, 128),  # 64 cores, SMT2
    CpuTdp("EPYC 9654", 360.0, 192),  # 96 cores, SMT2
    # AWS's own Ice Lake part (m6i, c6i, r6i): 32 cores with HT. Intel publishes no TDP for
    # it; 300 W is the figure commonly reported.
    CpuTdp("Xeon(R) Platinum 8375C", 300.0, 64),
    CpuTdp("Xeon(R) Platinum 8480", 350.0, 112),  # 8480+: 56 cores, HT
    CpuTdp("Xeon(R) Gold 6248", 150.0, 40),  # 20 cores, HT
    CpuTdp("Core(TM) i7-8700", 65.0, 12),  # 6 cores, HT
    CpuTdp("Core(TM) i9-13900K", 125.0, 32),  # 8 P-cores with HT + 16 E-cores; base power
)


def _default_watts_per_thread(model: str) -> tuple[float, str]:
    """One hardware thread's share of TDP for a CPU model, and where the figure came from."""
    for entry in TDP_TABLE:
        if entry.matches(model):
            return entry.watts_per_thread, (
                f"table entry for {entry.pattern!r}: {entry.tdp_w:g} W / {entry.threads} threads"
            )
    return DEFAULT_WATTS_PER_THREAD, (
        f"default {DEFAULT_WATTS_PER_THREAD:g} W per thread "
        f"(CPU model {model or 'unknown'!r} is not in the table)"
    )


def _process_tree_cpu_s(process: psutil.Process) -> float:
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
    description = "CPU time x per-thread share of TDP + idle share (estimated, no counter needed)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see estimate/options.py).
    Options = "greenprec.meters.estimate.options:EstimateOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``tdp_w``, ``idle_fraction``, ``pid``, ``cpuinfo`` (see
        :class:`~greenprec.meters.estimate.options.EstimateOptions`)."""
        super().__init__(**options)
        valid = cast("EstimateOptions", self.options)
        # Without the option, host falls back where the file is absent (macOS, Windows).
        cpuinfo = valid.cpuinfo if valid.cpuinfo is not None else host.CPUINFO
        self.cpu_model = host.cpu_model(cpuinfo)
        self.logical_cpus = host.logical_cpus(cpuinfo)
        if valid.tdp_w is None:
            self.watts_per_thread, self.tdp_source = _default_watts_per_thread(self.cpu_model)
        else:
            self.watts_per_thread = valid.tdp_w / self.logical_cpus
            self.tdp_source = f"option tdp_w: {valid.tdp_w:g} W / {self.logical_cpus} logical CPUs"
        self.idle_fraction = valid.idle_fraction
        pid = valid.pid if valid.pid is not None else os.getpid()
        try:
            self._process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            # Whether a process exists is this machine's state, not the option's syntax.
            raise ConfigError(f"estimate: no process with pid {pid!r}") from None
        self._cpu_start_s = 0.0
        self._cpu_last_s = 0.0
        self._t0 = 0.0

    @property
    def tdp_w(self) -> float:
        """The TDP of this machine's logical CPUs: in a VM, its vCPUs' share of the chip."""
        return self.watts_per_thread * self.logical_cpus

    @classmethod
    def probe(cls, **options: object) -> Probe:
        cls(**options)  # validates the options
        return Probe(True, domains=["estimate/cpu"])

    def start(self) -> None:
        self._cpu_start_s = self._cpu_last_s = _process_tree_cpu_s(self._process)
        self._t0 = time.monotonic()

    def read(self) -> list[Reading]:
        elapsed_s = time.monotonic() - self._t0
        try:
            cpu_s = _process_tree_cpu_s(self._process)
        except psutil.NoSuchProcess:
            cpu_s = self._cpu_last_s  # the measured process has exited: its CPU time is final
        # A child that exits between listing and reading is briefly missed; never go backwards.
        self._cpu_last_s = max(self._cpu_last_s, cpu_s)
        energy_j = (self._cpu_last_s - self._cpu_start_s) * self.watts_per_thread + (
            elapsed_s * self.idle_fraction * self.tdp_w
        )
        return [Reading("estimate/cpu", energy_j=energy_j)]


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [EstimateMeter]

"""What else uses this machine: other processes' CPU time, the load average, CPU steal and other
GPU processes, over a run (:class:`~greenprec.results.models.MachineLoad`, a run's ``load``),
and waiting for a quiet machine before a run.

A run measured while something else works is a different measurement: another process takes
memory bandwidth, caches and boost clocks, and its power shows in the package's energy. Four
repeats of one design on a shared machine gave -11.7 %, +15.2 %, -22.9 % and -7.7 %; the record
says which runs had company.

Read from ``/proc`` (Linux), twice: :func:`read_load` as a run starts, again as it ends, and
:func:`machine_load` makes the difference:

- the machine's CPU time from the first line of ``/proc/stat`` (jiffies, all CPUs): ``busy``
  is every state but ``idle``, ``iowait`` and ``steal``; ``guest`` is inside ``user`` already;
- this run's process tree: the process executing the run (``root_pid``, default this one) and
  its descendants, found through the parent field of every ``/proc/<pid>/stat``, each with
  ``utime + stime + cutime + cstime`` (a child that ended and was waited for is in its parent's
  ``cutime``);
- ``other_cpu_s``: the machine's busy time less the tree's, in seconds (``SC_CLK_TCK``); and
  ``other_cpu_fraction``, that over the machine's whole CPU time in the same interval (its
  capacity). ``cpu_steal_fraction``: ``steal`` over the same capacity;
- ``loadavg_1m``: the first field of ``/proc/loadavg`` at each end;
- GPU processes: :func:`greenprec.machine.gpu_compute_pids` (NVML) less the tree's pids. A run
  in a container whose pid namespace is not the host's (``NSpid`` in ``/proc/<pid>/status``
  lists more than one pid) cannot match NVML's pids to its own: there the count is not known.

Anything that cannot be read is None, with the reason in ``unknown`` (no ``/proc`` off Linux,
no NVML): never a zero. The count is approximate at its edges: a descendant that ended without
being waited for by the tree leaves its time with the others (the number only grows with real
load). Nothing here raises; files are opened non-blocking, only when regular, and read to a
bound; at most :data:`_MAX_PROCESSES` processes are looked at.

The root is ``/proc``, or the directory the environment variable ``GREENPREC_PROC_ROOT`` names
(tests point it at a fake tree).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from greenprec._processes import below
from greenprec._sysfs import read_sysfs
from greenprec.errors import MeterError
from greenprec.results.models import MachineLoad

__all__ = [
    "IDLE_WINDOW_S",
    "PROC_ROOT_VARIABLE",
    "IdleWait",
    "LoadReading",
    "machine_load",
    "read_load",
    "wait_for_idle",
]

PROC_ROOT_VARIABLE = "GREENPREC_PROC_ROOT"
"""The environment variable naming the procfs root to read (default ``/proc``)."""
_DEFAULT_PROC_ROOT = "/proc"

IDLE_WINDOW_S = 1.0
""":func:`wait_for_idle` judges the machine over windows this long."""
_MAX_PROCESSES = 131_072
"""At most this many ``/proc`` entries are looked at (a kernel's default pid_max is 32768 or
4194304; a machine with more processes than this is not idle)."""
_STAT_BYTES = 1 << 20
"""``/proc/stat`` is read to this bound: the all-CPU line comes first, then one line per CPU
(about 80 bytes each: 4096 CPUs fit), then interrupt counts that may be cut."""
_PID_STAT_BYTES = 4096
"""``/proc/<pid>/stat``: 52 numbers and a command name of at most 64 bytes."""
_STATUS_BYTES = 16_384
_LOADAVG_BYTES = 256
_PID = re.compile(r"[1-9]\d{0,9}")
_NUMBER = re.compile(r"\d{1,20}")


def _proc_root(proc_root: str | os.PathLike[str] | None) -> str:
    if proc_root is None:
        return os.environ.get(PROC_ROOT_VARIABLE) or _DEFAULT_PROC_ROOT
    return os.fspath(proc_root)


def _head(path: str, limit: int) -> str | None:
    """The first ``limit`` bytes of a regular file as text (``greenprec._sysfs.read_sysfs``:
    opened non-blocking, never read past ``limit``); None if it cannot be read."""
    try:
        return read_sysfs(path, limit=limit, head=True)
    except (OSError, ValueError, MeterError):
        return None


@dataclass(frozen=True)
class _CpuTimes:
    """The all-CPU line of ``/proc/stat``, in jiffies."""

    total: int
    """Every state but ``guest`` and ``guest_nice`` (inside ``user`` and ``nice`` already)."""
    idle: int
    """``idle`` + ``iowait``."""
    steal: int
    cpus: int

    @property
    def busy(self) -> int:
        return self.total - self.idle - self.steal


def _cpu_times(root: str) -> _CpuTimes | None:
    text = _head(os.path.join(root, "stat"), _STAT_BYTES)
    if text is None:
        return None
    lines = text.splitlines()
    first = lines[0].split() if lines else []
    if len(first) < 5 or first[0] != "cpu" or not all(_NUMBER.fullmatch(f) for f in first[1:]):
        return None
    values = [int(field) for field in first[1:9]] + [0] * (9 - len(first))
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    cpus = sum(1 for line in lines[1:] if re.match(r"cpu\d+ ", line))
    return _CpuTimes(
        total=user + nice + system + idle + iowait + irq + softirq + steal,
        idle=idle + iowait,
        steal=steal,
        cpus=cpus,
    )


def _pid_stat(root: str, pid: str) -> tuple[int, int] | None:
    """(parent pid, utime + stime + cutime + cstime) of one process; None if gone or odd."""
    text = _head(os.path.join(root, pid, "stat"), _PID_STAT_BYTES)
    if text is None:
        return None
    # The command name sits in parentheses and may hold spaces and ")": split after the last.
    fields = text.rpartition(")")[2].split()
    if len(fields) < 15 or not all(_NUMBER.fullmatch(f) for f in fields[1:2] + fields[11:15]):
        return None
    return int(fields[1]), sum(int(field) for field in fields[11:15])


def _processes(root: str) -> Iterator[str]:
    try:
        with os.scandir(root) as entries:
            for position, entry in enumerate(entries):
                if position >= _MAX_PROCESSES:
                    return
                if _PID.fullmatch(entry.name):
                    yield entry.name
    except (OSError, ValueError):
        return


def _tree(root: str, root_pid: int) -> tuple[int, frozenset[int]] | None:
    """The CPU jiffies of ``root_pid`` and its descendants, and their pids; None when the root
    process cannot be read."""
    parents: dict[int, int] = {}
    jiffies: dict[int, int] = {}
    for name in _processes(root):
        read = _pid_stat(root, name)
        if read is not None:
            parents[int(name)], jiffies[int(name)] = read
    if root_pid not in jiffies:
        return None
    found = frozenset([root_pid, *below(parents, root_pid)])
    return sum(jiffies[pid] for pid in found), found


def _loadavg_1m(root: str) -> float | None:
    text = _head(os.path.join(root, "loadavg"), _LOADAVG_BYTES)
    fields = text.split() if text else []
    if not fields or re.fullmatch(r"\d{1,6}(\.\d{1,6})?", fields[0]) is None:
        return None
    return float(fields[0])


def _nested_pid_namespace(root: str, pid: int) -> bool:
    """Whether ``pid`` lives in a pid namespace below another (a container): its ``NSpid``
    line lists more than one pid. False where the line cannot be read."""
    text = _head(os.path.join(root, str(pid), "status"), _STATUS_BYTES) or ""
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) > 2
    return False


@dataclass(frozen=True)
class LoadReading:
    """One reading of the machine's load (:func:`read_load`); two make a
    :class:`~greenprec.results.models.MachineLoad` (:func:`machine_load`)."""

    at_s: float
    """``time.monotonic()`` when read."""
    cpu: _CpuTimes | None
    tree_jiffies: int | None
    tree_pids: frozenset[int]
    loadavg_1m: float | None
    gpu_other_processes: int | None
    unknown: tuple[str, ...]


def read_load(
    root_pid: int | None = None,
    *,
    proc_root: str | os.PathLike[str] | None = None,
    gpu: bool = True,
    gpu_pids: Callable[[], list[int] | None] | None = None,
) -> LoadReading:
    """This machine's load now, with ``root_pid``'s process tree (default: this process) set
    apart; never raises. ``gpu``: ask NVML for the GPU processes (``gpu_pids``: how, default
    :func:`greenprec.machine.gpu_compute_pids`)."""
    root = _proc_root(proc_root)
    pid = os.getpid() if root_pid is None else root_pid
    unknown: list[str] = []
    cpu = _cpu_times(root)
    if cpu is None:
        unknown.append(
            f"no readable {os.path.join(root, 'stat')}: other processes' CPU time and CPU "
            "steal are not known (Linux only)"
        )
    tree = _tree(root, pid) if cpu is not None else None
    if cpu is not None and tree is None:
        unknown.append(f"process {pid} could not be read from {root}: its CPU time is not known")
    loadavg = _loadavg_1m(root)
    if loadavg is None:
        unknown.append(f"no readable {os.path.join(root, 'loadavg')}: load average not known")
    pids = tree[1] if tree is not None else frozenset({pid})
    others = _gpu_others(root, pid, pids, unknown, gpu_pids) if gpu else None
    return LoadReading(
        at_s=time.monotonic(),
        cpu=cpu,
        tree_jiffies=tree[0] if tree is not None else None,
        tree_pids=pids,
        loadavg_1m=loadavg,
        gpu_other_processes=others,
        unknown=tuple(unknown),
    )


def _gpu_others(
    root: str,
    pid: int,
    tree_pids: frozenset[int],
    unknown: list[str],
    gpu_pids: Callable[[], list[int] | None] | None,
) -> int | None:
    if gpu_pids is None:
        from greenprec.machine import gpu_compute_pids

        gpu_pids = gpu_compute_pids
    listed = gpu_pids()
    if listed is None:
        unknown.append("NVML not available: other GPU processes are not known")
        return None
    if _nested_pid_namespace(root, pid):
        unknown.append(
            "this process is in a container's pid namespace, so NVML's process ids cannot be "
            "told from the run's: other GPU processes are not known"
        )
        return None
    return sum(1 for listed_pid in listed if listed_pid not in tree_pids)


def _most(first: int | None, second: int | None) -> int | None:
    known = [value for value in (first, second) if value is not None]
    return max(known) if known else None


def _clock_ticks_per_s() -> int:
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100
    return ticks if ticks > 0 else 100


def machine_load(
    start: LoadReading,
    end: LoadReading,
    *,
    waited_for_idle_s: float | None = None,
    idle_wait_note: str | None = None,
) -> MachineLoad:
    """What else used the machine between two readings (see the module docstring)."""
    unknown = list(dict.fromkeys(start.unknown + end.unknown))
    values: dict[str, float | int | None] = {
        "duration_s": max(0.0, end.at_s - start.at_s),
        "loadavg_1m_start": start.loadavg_1m,
        "loadavg_1m_end": end.loadavg_1m,
        "gpu_other_processes": _most(start.gpu_other_processes, end.gpu_other_processes),
    }
    if start.cpu is not None and end.cpu is not None:
        capacity = end.cpu.total - start.cpu.total
        values["logical_cpus"] = end.cpu.cpus or None
        if capacity > 0:
            steal = max(0, end.cpu.steal - start.cpu.steal)
            values["cpu_steal_fraction"] = min(1.0, steal / capacity)
            if start.tree_jiffies is not None and end.tree_jiffies is not None:
                busy = max(0, end.cpu.busy - start.cpu.busy)
                ours = max(0, end.tree_jiffies - start.tree_jiffies)
                other = min(busy, max(0, busy - ours))
                values["other_cpu_s"] = other / _clock_ticks_per_s()
                values["other_cpu_fraction"] = other / capacity
        else:
            unknown.append("no CPU time passed between the two readings of /proc/stat")
    return MachineLoad.model_validate(
        {
            **values,
            "waited_for_idle_s": waited_for_idle_s,
            "idle_wait_note": idle_wait_note,
            "unknown": unknown,
        }
    )


@dataclass(frozen=True)
class IdleWait:
    """How a wait for a quiet machine ended (:func:`wait_for_idle`)."""

    waited_s: float
    quiet: bool
    """The machine was quiet in the last window (False: the bound came first, or not known)."""
    note: str | None
    """Why the run goes on under load (the bound came first), for its record; None when quiet
    or when the load cannot be known (then ``unknown`` says so)."""
    unknown: str | None = None


def wait_for_idle(
    max_s: float,
    *,
    window_s: float = IDLE_WINDOW_S,
    proc_root: str | os.PathLike[str] | None = None,
    root_pid: int | None = None,
    gpu: bool = True,
    gpu_pids: Callable[[], list[int] | None] | None = None,
) -> IdleWait:
    """Wait until the machine is quiet, ``max_s`` seconds at most.

    Quiet: over one window of ``window_s`` seconds, other processes (all but ``root_pid``'s
    tree, default this process's) used at most
    :data:`~greenprec.results.models.UNDER_LOAD_CPU_FRACTION` of the CPU capacity, steal was at
    most :data:`~greenprec.results.models.UNDER_LOAD_STEAL_FRACTION`, and no other process
    computed on the GPUs (where NVML can say): the window's load is not
    :meth:`~greenprec.results.models.MachineLoad.under_load`. Windows follow one another until
    one is quiet or the bound has passed; the wait is time.sleep, so a signal's handler
    (SIGTERM, Ctrl-C) ends it at once. Where ``/proc`` cannot be read the wait ends at once,
    not quiet, with ``unknown`` saying why.
    """
    started = time.monotonic()
    window_s = max(0.05, window_s)

    def read() -> LoadReading:
        return read_load(root_pid, proc_root=proc_root, gpu=gpu, gpu_pids=gpu_pids)

    first = read()
    if first.cpu is None or first.tree_jiffies is None:
        return IdleWait(0.0, False, None, unknown="; ".join(first.unknown))
    reasons: list[str] = []
    while True:
        left = max_s - (time.monotonic() - started)
        time.sleep(max(0.05, min(window_s, left)) if left > 0 else window_s)
        second = read()
        reasons = machine_load(first, second).under_load()
        waited = time.monotonic() - started
        if not reasons:
            return IdleWait(waited, True, None)
        if waited >= max_s:
            return IdleWait(
                waited,
                False,
                f"the machine was still busy after waiting {waited:.0f} s for it to be idle "
                f"(in the last {window_s:g} s {'; '.join(reasons)})",
            )
        first = second

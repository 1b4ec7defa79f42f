"""Fake ``energibridge`` executables: Python scripts that behave like EnergiBridge's main loop.

EnergiBridge samples, then writes each row unbuffered: ``Delta`` (ms from the sample to the
print), ``Time`` (epoch ms of the sample), values sorted by column name. On SIGINT it finishes
its sleep, writes a row, samples once more, writes a last row and exits 1; when its command
exits it writes a last row and exits with the command's code. The fakes do the same, with
counters that grow at a constant power so tests know the exact energy of any window.

When it fails or dies it does not stop its command (a Rust panic, an error return or a
SIGKILL leaves the child running), so a meter that does not kill the whole process group
leaves the placeholder ``sleep`` behind, reparented to init. Each run records its pid, process
group and child in ``<name>.pids`` for tests to check that nothing of the group is left.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

# Column -> (kind, watts). Counters are joules growing at that power; power columns hold it.
LAYOUTS: dict[str, dict[str, tuple[str, float]]] = {
    "intel": {
        "PACKAGE_ENERGY (J)": ("counter", 40.0),
        "DRAM_ENERGY (J)": ("counter", 5.0),
        "PP0_ENERGY (J)": ("counter", 30.0),
        "PP1_ENERGY (J)": ("counter", 1.0),
        "CPU_USAGE_0": ("other", 12.5),
        "CPU_FREQUENCY_0": ("other", 3400.0),
        "USED_MEMORY": ("other", 8.0e9),
    },
    "amd": {
        "CPU_ENERGY (J)": ("counter", 60.0),
        "CORE0_ENERGY (J)": ("counter", 20.0),
        "CORE1_ENERGY (J)": ("counter", 25.0),
        "CORE0_VOLT (V)": ("other", 1.1),
        "CORE0_FREQ (MHZ)": ("other", 4200.0),
        "CPU_USAGE_0": ("other", 40.0),
    },
    "macos": {
        "SYSTEM_POWER (Watts)": ("power", 100.0),
        "CPU_TEMP_0": ("other", 45.0),
        "CPU_USAGE_0": ("other", 30.0),
        "TOTAL_MEMORY": ("other", 1.37e11),
    },
    "no-energy": {
        "CPU_USAGE_0": ("other", 30.0),
        "USED_MEMORY": ("other", 8.0e9),
    },
}
# Added to any layout when -g is passed: power in milliwatts, as EnergiBridge writes it.
GPU_COLUMNS: dict[str, tuple[str, float]] = {
    "GPU0_POWER (mWatts)": ("mpower", 150.0),
    "GPU1_POWER (mWatts)": ("mpower", 70.0),
    "GPU0_USAGE": ("other", 99.0),
    "GPU0_MEMORY_USED": ("other", 4096.0),
}

_SCRIPT = r"""
import json, os, signal, subprocess, sys, time

CONFIG = json.loads(__CONFIG__)
args = sys.argv[1:]
with open(CONFIG["argv_log"], "a") as log:
    log.write(json.dumps(args) + "\n")
output, interval_ms, gpu = None, 200, False
while args and args[0].startswith("-"):
    flag = args.pop(0)
    if flag == "-o":
        output = args.pop(0)
    elif flag == "-i":
        interval_ms = int(args.pop(0))
    elif flag == "-g":
        gpu = True
command = args
behaviour = CONFIG["behaviour"]
try:
    in_block = float(command[-1]) > 1000  # the meter's placeholder, not the probe's trial run
except (IndexError, ValueError):
    in_block = False
if behaviour in ("early-exit", "exit-at-start", "die", "garbage", "stall") and not in_block:
    behaviour = "normal"
if behaviour == "probe-hang":
    if in_block:
        behaviour = "normal"
    else:
        command = [sys.executable, "-c", "import time; time.sleep(1000)"]  # outlives the run
if behaviour == "msr-denied":
    sys.stderr.write(
        "thread 'main' panicked at src/cpu/intel.rs:39:95:\n"
        "called `Result::unwrap()` on an `Err` value: Os { code: 13, kind: PermissionDenied, "
        'message: "Permission denied" }\n'
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    )
    sys.exit(101)

columns = dict(CONFIG["columns"])
if gpu:
    columns.update(CONFIG["gpu_columns"])
names = sorted(columns)
origin = time.time()
ranges = CONFIG["ranges"]


def value(name, at):
    kind, watts = columns[name]
    if kind == "counter":
        raw = CONFIG["offset_j"].get(name, 0.0) + watts * (at - origin)
        return raw % ranges[name] if name in ranges else raw
    if kind == "mpower":
        return watts * 1000.0
    return watts


stopping = []
if behaviour in ("ignore-sigint", "stall", "probe-hang"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
else:
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

time.sleep(CONFIG["startup_s"])
out = open(output, "w", buffering=1) if output else sys.stdout
child = subprocess.Popen(command)
with open(CONFIG["pids_log"], "a") as log:
    record = {"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid, "block": in_block}
    log.write(json.dumps(record) + "\n")
if behaviour == "probe-hang":
    time.sleep(3600)  # hung before its first row, deaf to SIGINT
if behaviour == "exit-at-start":
    sys.stderr.write("Error: no RAPL domain could be opened\n")
    sys.exit(2)  # its command keeps running, as EnergiBridge leaves it
out.write(",".join(["Delta", "Time", *names]) + "\n")
rows = [0]


def row(sampled_at, values):
    delta = int((time.time() - sampled_at) * 1000)
    cells = [str(delta), str(int(sampled_at * 1000))] + [repr(v) for v in values]
    if behaviour == "garbage" and rows[0] == 2:
        cells[2] = "abc"
    out.write(",".join(cells) + "\n")
    out.flush()
    rows[0] += 1


def sample():
    at = time.time()
    return at, [value(name, at) for name in names]


previous, values = sample()
while True:
    row(previous, values)
    previous, values = sample()
    if stopping:
        child.kill()
        code = 1
        break
    if child.poll() is not None:
        code = child.returncode
        break
    if behaviour == "stall" and rows[0] >= 3:
        time.sleep(3600)  # hung: alive, silent, deaf to SIGINT
    if behaviour == "early-exit" and rows[0] >= 3:
        sys.stderr.write("Error waiting: the sensor went away\n")
        sys.exit(3)  # its command keeps running, as EnergiBridge leaves it
    if behaviour == "die" and rows[0] >= 3:
        os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, a crash: nothing cleaned up
    time.sleep(interval_ms / 1000.0)
row(previous, values)
sys.exit(code)
"""


def write_fake_energibridge(
    directory: Path,
    *,
    layout: str = "intel",
    behaviour: str = "normal",
    ranges: dict[str, float] | None = None,
    offset_j: dict[str, float] | None = None,
    startup_s: float = 0.0,
    name: str = "energibridge",
) -> Path:
    """Write an executable fake EnergiBridge into ``directory`` and return its path.

    ``behaviour``: ``normal``, ``early-exit`` (exits 3 after three rows), ``exit-at-start``
    (exits 2 before its first row), ``die`` (SIGKILLs itself after three rows), ``garbage`` (a
    non-numeric cell on the third row), ``ignore-sigint``, ``stall`` (hangs after three rows,
    deaf to SIGINT), ``msr-denied`` (Rust panic, no CSV). ``early-exit``, ``exit-at-start``,
    ``die``, ``garbage`` and ``stall`` apply only to the meter's long run, so the probe passes;
    ``probe-hang`` only to the probe's trial run: it hangs deaf to SIGINT, its command
    replaced by one that outlives it. Failing or dying, the fake leaves its command running.
    Each invocation appends its arguments as a JSON line to ``<name>.argv``, and its pid,
    process group and child to ``<name>.pids`` (see :func:`logged_processes`).
    """
    config: dict[str, Any] = {
        "columns": LAYOUTS[layout],
        "gpu_columns": GPU_COLUMNS,
        "behaviour": behaviour,
        "ranges": ranges or {},
        "offset_j": offset_j or {},
        "startup_s": startup_s,
        "argv_log": str(directory / f"{name}.argv"),
        "pids_log": str(directory / f"{name}.pids"),
    }
    path = directory / name
    body = _SCRIPT.replace("__CONFIG__", repr(json.dumps(config)))
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    WRITTEN.append(path)
    return path


WRITTEN: list[Path] = []
"""Every fake written in this test session, so a fixture can check all their groups."""


def logged_processes(executable: Path) -> list[dict[str, Any]]:
    """Each run of the fake, oldest first: ``pid``, ``pgid``, ``child``, ``block``."""
    log = executable.with_name(executable.name + ".pids")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def live_members(pgid: int) -> list[psutil.Process]:
    """The processes of group ``pgid`` still running: zombies, dead already, are not counted
    (an orphan killed under an init that reaps slowly stays a zombie for a while)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def runs_so_far() -> dict[Path, int]:
    """How many runs each fake written so far has logged: pass it to :func:`leftover_groups`
    to check only the runs made since."""
    return {fake: len(logged_processes(fake)) for fake in WRITTEN}


def leftover_groups(
    executables: list[Path], since: dict[Path, int] | None = None, wait_s: float = 2.0
) -> dict[int, list[str]]:
    """The process groups of these fakes' runs that still have a live process, with their
    command lines, after waiting up to ``wait_s`` for a SIGKILL just sent to take effect.
    ``since``: from :func:`runs_so_far`, to check only later runs.

    A group shared with the caller (a run not in its own session) counts as left over too:
    then there is no group that could be killed without killing the caller.
    """
    since = since or {}
    groups = {
        run["pgid"] for fake in executables for run in logged_processes(fake)[since.get(fake, 0) :]
    }
    deadline = time.monotonic() + wait_s
    while True:
        left = {}
        for pgid in sorted(groups):
            if pgid == os.getpgid(0):
                left[pgid] = ["(shares the test's own process group)"]
                continue
            members = live_members(pgid)
            if members:
                left[pgid] = [" ".join(_cmdline(member)) for member in members]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return [f"pid {process.pid}"]


def logged_arguments(executable: Path) -> list[list[str]]:
    """The argument lists the fake was run with, oldest first."""
    log = executable.with_name(executable.name + ".argv")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def expected_power_w(layout: str, *, gpu: bool = False) -> float:
    """The counted power of a layout: what energy_j / duration_s should be."""
    totals = {"intel": 45.0, "amd": 60.0, "macos": 100.0}
    return totals[layout] + (220.0 if gpu else 0.0)

"""A run's processes and its log: whether a process lives, ending all a run started, opening a
log file without writing through a link.

**Liveness.** :func:`process_alive` is the one answer to "is the process that claimed this run
still there": a zombie (``Z`` in ``/proc/PID/stat``) has ended; only its parent's bookkeeping
is left, and in a container whose PID 1 never reaps it stays so for ever.

**Descendants.** Whatever a workload starts (data loaders, a ``sleep 300``, a daemon in a
session of its own) ends with its run. On Linux the process that runs the run becomes a child
subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): a descendant whose parent ends is re-parented to
it, not to PID 1, so :func:`end_descendants` finds every one by walking ``/proc`` from it, and
reaps them. Every process of a run also carries the run's mark in its environment
(:data:`RUN_MARK_VARIABLE`), which a new process keeps across ``setsid`` and re-parenting: the
driver ends what still carries it when the run's process was killed before it could clean up
(:func:`end_marked`). Elsewhere (macOS) there is no subreaper and no ``/proc``: the walk asks
``ps``, which finds what is still attached to the run's process; a descendant that detached
itself and whose parent ended is out of reach there, and only the run's process group is ended.
Cgroups are not used: creating one needs privileges a user's shell rarely has.

**Logs.** :func:`open_log` opens a log inside a results folder as a regular file of the
folder's own: never through a symbolic link (which would truncate the file it points to), a
hard link shared with another name, a FIFO (which would block) or a device (``/dev/full``
would swallow the output).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from greenprec.errors import ConfigError

__all__ = [
    "RUN_MARK_VARIABLE",
    "become_subreaper",
    "below",
    "descendants",
    "end_descendants",
    "end_marked",
    "open_log",
    "process_alive",
]

RUN_MARK_VARIABLE = "GREENPREC_RUN_MARK"
"""Set in the environment of a run's processes; a process keeps it wherever it goes."""

_PR_SET_CHILD_SUBREAPER = 36
_ENDED_STATES = ("Z", "X")  # zombie, dead


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists; /proc may still say it is a zombie
    except OSError:
        return False
    state = _state(pid)
    return state is None or state not in _ENDED_STATES


def _state(pid: int) -> str | None:
    """The one-letter state in ``/proc/PID/stat`` (None without /proc or the process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or ")": the state follows the last.
    fields = text.rpartition(")")[2].split()
    return fields[0] if fields else None


def become_subreaper() -> bool:
    """Make this process the child subreaper of what it starts (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """Every process's parent: from /proc, else from ``ps`` (bounded), else nothing."""
    if Path("/proc/self/stat").exists():
        parents = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
                parents[int(entry.name)] = int(text.rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # ended while the folder was read
        return parents
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid="],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    parents = {}
    for line in listing.splitlines():
        with contextlib.suppress(ValueError):
            pid, ppid = (int(part) for part in line.split())
            parents[pid] = ppid
    return parents


def descendants(root: int) -> list[int]:
    """The processes below ``root`` (children first), as the process table says now."""
    return below(_parents(), root)


def below(parents: Mapping[int, int], root: int) -> list[int]:
    """The processes below ``root`` (children first) in a table of each process's parent."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        if pid != root and pid not in found:
            found.append(pid)
            queue.extend(children.get(pid, []))
    return found


def end_descendants(*, grace_s: float = 1.0, within_s: float = 5.0) -> list[int]:
    """End every process below this one: SIGTERM, then SIGKILL after ``grace_s``; reap those
    that are (or became, through the subreaper) its children. Bounded by ``within_s``: the
    processes found, whatever is left of them then."""
    me = os.getpid()
    found = descendants(me)
    _signal_all(found, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(process_alive(pid) for pid in found):
        _reap(found)
        time.sleep(0.02)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        # Each round: what is left, and what the killed ones' children became (ours, re-parented).
        left = [pid for pid in descendants(me) if pid not in found or process_alive(pid)]
        found.extend(pid for pid in left if pid not in found)
        _signal_all([pid for pid in left if process_alive(pid)], signal.SIGKILL)
        _reap(found)
        if not any(process_alive(pid) for pid in found) and not descendants_alive(me):
            break
        time.sleep(0.02)
    _reap(found)
    return found


def descendants_alive(root: int) -> bool:
    """Whether any process below ``root`` has not ended."""
    return any(process_alive(pid) for pid in descendants(root))


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those of ``pids`` that are this process's ended children."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def end_marked(mark: str, *, within_s: float = 5.0) -> list[int]:
    """SIGKILL every process whose environment carries ``mark`` (a run's processes that
    outlived its top process), reap those that are this process's children; the pids found.
    Linux only (the environment of another process is read from /proc); elsewhere nothing."""
    entry = f"{RUN_MARK_VARIABLE}={mark}".encode()
    found: list[int] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        marked = [pid for pid in _marked(entry) if process_alive(pid)]
        if not marked:
            break
        found.extend(pid for pid in marked if pid not in found)
        _signal_all(marked, signal.SIGKILL)
        time.sleep(0.02)
        _reap(found)
    _reap(found)
    return found


def _marked(entry: bytes) -> list[int]:
    if not Path("/proc/self/environ").exists():
        return []
    me = os.getpid()
    pids = []
    for proc in os.scandir("/proc"):
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            environment = Path(proc.path, "environ").read_bytes()
        except OSError:
            continue  # another user's, or ended
        if entry in environment.split(b"\0"):
            pids.append(int(proc.name))
    return pids


# -- logs --------------------------------------------------------------------------------------

_LINK_ERRORS = {errno.ELOOP, errno.EMLINK, errno.ENXIO}
"""os.open's answers for a symbolic link under O_NOFOLLOW (ELOOP; EMLINK on FreeBSD) and for a
FIFO no one reads, opened for writing under O_NONBLOCK (ENXIO)."""


def open_log(path: Path, *, append: bool = False) -> BinaryIO:
    """Open ``path`` (a log inside a results folder) for writing, emptied unless ``append``;
    readable too, through the same handle.

    A symbolic link, a hard link shared with another name, a FIFO, a socket or a device in its
    place is replaced by a new regular file: removing a name loses nothing recorded (the file a
    link points to, the other name of a hard link, the device, all stay as they were), while
    writing through it would truncate another file, block on a FIFO, or lose the output into
    ``/dev/full``. A folder in its place may hold someone's files: ConfigError, and it is left
    as it is; so is a log folder that is itself a link out of the results folder."""
    directory = _open_folder(path.parent)
    try:
        for _ in range(5):  # a name replaced between two steps (a race) is replaced again
            fd = _open_regular(path, directory, append=append)
            if fd is not None:
                return os.fdopen(fd, "r+b")
    finally:
        os.close(directory)
    raise ConfigError(f"{path}: replaced again and again while it was opened; stop what writes it")


def _open_folder(folder: Path) -> int:
    """The folder that holds a log, created if missing, opened without following a link."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(parents=True)
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(folder, flags)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise ConfigError(
                f"{folder} is a symbolic link or a file, not a folder; greenprec writes nothing "
                "through a link out of a results folder: replace it with a folder"
            ) from None
        raise


def _open_regular(path: Path, directory: int, *, append: bool) -> int | None:
    """One try: a descriptor of a regular file of this name only, or None to try again."""
    name = path.name
    try:
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        found = None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise ConfigError(
            f"{path} is a folder, where greenprec writes the run's log; it is not removed (it "
            "may hold files of yours): move it away, then resume"
        )
    if found is not None and (not stat.S_ISREG(found.st_mode) or found.st_nlink > 1):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if append:
        flags |= os.O_APPEND
    try:
        fd = os.open(name, flags, 0o666, dir_fd=directory)
    except OSError as error:
        if error.errno in _LINK_ERRORS:
            return None  # became a link or a FIFO since: replaced on the next try
        raise
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink > 1:
        os.close(fd)
        return None
    if not append:
        os.ftruncate(fd, 0)
    os.set_blocking(fd, True)
    return fd

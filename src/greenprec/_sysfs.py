"""Reading one sysfs attribute defensively: the reader the ``rapl`` meter and
:mod:`greenprec.machine` share.

Either may run as root on a tree someone else built, so a file is read only when it is a regular
file inside the directories given, at most a few bytes of it, and a path is echoed only
sanitised (see :mod:`greenprec.meters.rapl`, "Hostile trees").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from greenprec.errors import MeterError

MAX_ATTRIBUTE_BYTES = 64
"""The most a powercap attribute the meter reads can hold: a 20-digit counter, a zone name of at
most 32 characters, a newline. A longer file is not one of them and is refused unread."""

_SHOWN_PATH_CHARS = 160


def read_sysfs(
    path: str, within: Sequence[str] = (), limit: int = MAX_ATTRIBUTE_BYTES, *, head: bool = False
) -> str:
    """The default reader: the text of one sysfs attribute, read defensively.

    Opened non-blocking (a FIFO answers at once instead of waiting for a writer), refused
    unless a regular file (sysfs attributes are; ``/dev/zero`` is not), and at most ``limit``
    bytes read: a longer file raises MeterError without being read further, and its text is
    never returned. ``within``: real directories the file must be in; the file actually opened
    is checked (through ``/proc/self/fd`` where there is one), so a symlink swapped after any
    earlier check is still caught. Undecodable bytes come back as U+FFFD, for the caller's
    validation to refuse. ``head``: return the first ``limit`` bytes of a longer file instead
    of refusing it (a ``/proc`` file whose later lines grow with the machine).
    """
    if within:
        require_inside(path, os.path.realpath(path), within)
    # O_NOCTTY: a terminal device opened here must not become our controlling terminal.
    # (Windows has neither flag, nor powercap: there only a test tree reaches this.)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise MeterError(
                f"{shown(path)} is {_file_type(mode)}, not a sysfs attribute file: refused "
                "(point root at a real powercap tree)"
            )
        if within:
            opened = _opened_path(descriptor)
            if opened is not None:
                require_inside(path, opened, within)
        wanted = limit if head else limit + 1  # one byte more tells a longer file
        data = b""
        while len(data) < wanted:
            chunk = os.read(descriptor, wanted - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise MeterError(
            f"{shown(path)} holds more than {limit} bytes, which no powercap attribute does "
            "(a counter is at most 20 digits): refused unread (point root at a real powercap "
            "tree)"
        )
    return data.decode("ascii", "replace")


def _inside(real: str, trees: Sequence[str]) -> bool:
    return any(real == tree or real.startswith(tree.rstrip(os.sep) + os.sep) for tree in trees)


def require_inside(path: str, real: str, trees: Sequence[str]) -> None:
    if not _inside(real, trees):
        raise MeterError(
            f"{shown(path)} resolves to {shown(real)}, outside the powercap tree "
            f"({', '.join(shown(tree) for tree in trees)}): refused, a zone and its files must "
            "lie in the tree that root names (point root at a real powercap tree)"
        )


def _opened_path(descriptor: int) -> str | None:
    """The real path of an open file, or None where the system cannot say (no /proc)."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return None


def _file_type(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def printable(text: str) -> str:
    """Printable ASCII only: a stray file or link may hold terminal escapes or anything."""
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def shown(path: str) -> str:
    """A path for a message: links are chosen by whoever built the tree, so sanitised too."""
    clean = printable(path)
    if len(clean) > _SHOWN_PATH_CHARS:
        return clean[: _SHOWN_PATH_CHARS - 1] + "…"
    return clean

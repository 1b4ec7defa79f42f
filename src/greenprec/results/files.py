"""Reading and writing files of a results folder: atomic, durable, bounded, never through a link.

A ``kill -9`` at any moment leaves the old file or the new one, never half of one: data go to
a temporary file beside the target, are fsynced, and the temporary file is renamed over it.
The temporary file is created with mode 0600; the final file gets the mode an ordinary
``open()`` would have given it (0666 less the umask), so people sharing a machine can read the
results.

Given the results folder (``folder=``), a path inside it is reached one folder at a time from
the folder's own descriptor, and no step follows a symbolic link: a ``runs/`` or ``figures/``
that is a link to somewhere else is refused (``ELOOP``) instead of being read or written
through, and a file is only ever read when it is a regular file (a FIFO would block the
reader forever, ``/dev/zero`` would fill its memory).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from greenprec.errors import ConfigError

__all__ = [
    "MAX_RECORD_BYTES",
    "check_subfolder",
    "current_umask",
    "describe",
    "read_bounded",
    "write_atomic",
]

_umask_lock = threading.Lock()
_umask: int | None = None

MAX_RECORD_BYTES = 16 * 2**20
"""No record greenprec writes comes near this; a larger file is not one of ours."""

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_LINK_WORDS = "a symbolic link, which greenprec never follows in a results folder"
_NOT_REGULAR = "not a regular file (a FIFO, a device or a folder), which greenprec never reads"


def current_umask() -> int:
    """The process umask (read once; Linux tells it in /proc, elsewhere set-and-restore)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = _read_umask()
        return _umask


def _read_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it: set, then restore at once
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def describe(error: OSError) -> str:
    """Why a file could not be read or written, in words (not ``[Errno 40] Too many ...``)."""
    if error.errno == errno.ELOOP:
        return _LINK_WORDS
    if error.errno == errno.ENOTDIR:
        return "a folder on its path is not a folder"
    if error.errno is None and not error.strerror:
        return str(error) or _NOT_REGULAR
    return error.strerror or str(error)


def check_subfolder(path: Path) -> Path:
    """``path`` (a sub-folder of a results folder) when it is a real folder or does not exist
    yet; a one-line ConfigError naming it when it is a symbolic link or not a folder."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError:
        return path  # unreadable parent: the read or write that follows names it
    if stat.S_ISLNK(mode):
        raise ConfigError(
            f"{path} is a symbolic link; greenprec never reads or writes through a link in a "
            f"results folder: replace it with a real folder (remove the link, then move the "
            f"files it points to into {path.name}/)"
        )
    if not stat.S_ISDIR(mode):
        raise ConfigError(
            f"{path} is not a folder; greenprec keeps its {path.name}/ files there: move it "
            "out of the results folder"
        )
    return path


@contextmanager
def _directory(path: Path, folder: Path | None, *, create: bool) -> Iterator[int]:
    """A descriptor of ``path``'s parent folder. With ``folder``, reached one step at a time
    from ``folder`` without following a link (each missing step made when ``create``)."""
    if folder is None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY | _DIRECTORY)
    else:
        steps = path.parent.relative_to(folder).parts  # ValueError: not inside the folder
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY)  # the folder itself, as the user named it
        try:
            for step in steps:
                if step in ("", ".", ".."):
                    raise OSError(errno.EINVAL, f"{step!r} in a path", str(path))
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(step, 0o777, dir_fd=fd)
                inner = _open_step(step, fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
    try:
        yield fd
    finally:
        os.close(fd)


def _open_step(name: str, parent: int) -> int:
    """The folder ``name`` inside ``parent``, never a link to one (``ELOOP``: Linux says
    ``ENOTDIR`` for a link opened as a folder without following it)."""
    try:
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent)
    except NotADirectoryError:
        if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def write_atomic(path: Path, data: str | bytes, *, folder: Path | None = None) -> None:
    """Write to a temporary file beside ``path``, fsync it, rename it over ``path``.

    The rename replaces whatever ``path`` is, a symbolic link included, and never writes
    through it. With ``folder`` (the results folder ``path`` is in), no folder between the two
    is followed if it is a link: the write fails with ``ELOOP`` instead.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _directory(path, folder, create=True) as directory:
        tmp_name = f".{path.name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        fd = os.open(tmp_name, flags, 0o600, dir_fd=directory)
        try:
            try:
                os.fchmod(fd, _file_mode())
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp_name, dir_fd=directory)
            raise
        with suppress(OSError):
            os.fsync(directory)  # the rename itself made durable (POSIX)


def read_bounded(path: Path, limit: int = MAX_RECORD_BYTES, *, folder: Path | None = None) -> bytes:
    """A regular file's bytes, at most ``limit``; OSError for anything else.

    A symbolic link is not followed (``ELOOP``; with ``folder``, nor is a link among the
    folders between ``folder`` and ``path``), a FIFO or a device is refused before a byte is
    read, and a file over ``limit`` is refused: :func:`describe` says each in words.
    """
    with _directory(path, folder, create=False) as directory:
        fd = os.open(path.name, os.O_RDONLY | _NONBLOCK | _NOFOLLOW, dir_fd=directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, _NOT_REGULAR, str(path))
        os.set_blocking(fd, True)
        if info.st_size > limit:
            raise OSError(errno.EFBIG, _too_large(limit), str(path))
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while being read
                raise OSError(errno.EFBIG, _too_large(limit), str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(limit: int) -> str:
    shown = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
    return f"larger than {shown}, more than greenprec ever writes there"

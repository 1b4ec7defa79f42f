"""The folder lock: one process drives an experiment folder at a time.

The *driver* (``greenprec compare``, with or without ``--resume``) holds an exclusive
``flock`` on ``DIR/.greenprec.lock`` for as long as it runs; a second driver gets one line
naming the holder. Run executors (the child process of a run, a job on another node) never
take it: each writes only its own run file, so many can work at once under one driver. The
kernel drops the lock when the holder dies, however it dies, so a lock is never stale; the
file's text (pid, host, start time) only serves the message.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from greenprec.errors import ConfigError

__all__ = ["LOCK_NAME", "FolderLock"]

LOCK_NAME = ".greenprec.lock"


class FolderLock:
    """An exclusive, non-blocking lock on a results folder (a context manager)."""

    def __init__(self, folder: Path, purpose: str) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.folder} is in use by another greenprec process ({holder}); wait for it "
                "to finish or stop it, then try again"
            ) from None
        except OSError as error:
            os.close(fd)
            raise ConfigError(
                f"cannot lock {self.folder}: {error.strerror or error} (the file system may not "
                "support locks; use a local folder)"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "purpose": self.purpose,
        }
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Closing the descriptor releases the lock; the file stays (removing it would race
            # with a second process that has just opened it).
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _describe_holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        info = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "its details are unknown"
    purpose = str(info.get("purpose", "greenprec"))[:40]
    return (
        f"{purpose}, pid {int(info['pid']) if str(info['pid']).isdigit() else '?'} on "
        f"{str(info.get('host', '?'))[:64]} since {str(info.get('since', '?'))[:32]}"
    )

"""Finding the files an import glob names: one bounded walker for every importer.

The glob syntax is Python's (``*``, ``?``, ``[...]``, ``**`` for any number of folders, names
starting with ``.`` matched only by a pattern that starts with ``.``), with three bounds that
``glob.glob(recursive=True)`` lacks, so that a glob over a symbolic-link loop or over ``/proc``
ends with a message instead of running forever:

- ``**`` never descends into a symbolic link to a folder (a link found by ``*`` or named in the
  pattern is followed: the pattern's length bounds those);
- at most :data:`MAX_ENTRIES` files and folders are looked at per glob;
- the walk stops after :data:`MAX_WALK_S` seconds.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from greenprec.errors import ConfigError

__all__ = ["MAX_ENTRIES", "MAX_WALK_S", "find_files", "natural_key"]

MAX_ENTRIES = 200_000
"""Files and folders one glob may look at: a results tree of thousands of runs is far below,
``/`` or ``/proc`` far above."""
MAX_WALK_S = 30.0
"""Seconds one glob may search (a slow network file system, a huge tree)."""


def natural_key(path: Path) -> list[int | str]:
    """Sort key: run_2 before run_10, as a person would list them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


class _Walk:
    """One glob's search: the caps, and the message when one is reached."""

    def __init__(self, pattern: str, what: str, param: str) -> None:
        self.pattern = pattern
        self.what = what
        self.param = param
        self.entries = 0
        self.deadline = time.monotonic() + MAX_WALK_S

    def _stop(self, reason: str) -> ConfigError:
        return ConfigError(
            f"{self.what}: the glob {self.pattern!r} {reason} without finishing (a folder tree "
            "too large, or a system folder such as /proc); narrow the glob to the folder the "
            "files are in, e.g. 'results/run_*/*.csv' rather than '/**/*.csv'",
            param=self.param,
        )

    def names(self, folder: str) -> list[tuple[str, bool]]:
        """``(name, is a folder not reached through a link)`` for each entry of ``folder``."""
        try:
            with os.scandir(folder or ".") as entries:
                found = []
                for entry in entries:
                    self.entries += 1
                    if self.entries > MAX_ENTRIES:
                        raise self._stop(f"looked at more than {MAX_ENTRIES:,} files and folders")
                    if self.entries % 256 == 0 and time.monotonic() > self.deadline:
                        raise self._stop(f"took more than {MAX_WALK_S:g} s")
                    try:
                        real_folder = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        real_folder = False
                    found.append((entry.name, real_folder))
        except OSError:
            return []  # unreadable or gone: as glob, no match there
        if time.monotonic() > self.deadline:
            raise self._stop(f"took more than {MAX_WALK_S:g} s")
        return found


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _matches(walk: _Walk, base: str, parts: list[str]) -> Iterator[str]:
    """Paths under ``base`` matching the pattern components ``parts``."""
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        yield from _matches(walk, base, rest)  # zero folders
        for name, real_folder in walk.names(base):
            if _hidden(name):
                continue
            if real_folder:
                yield from _matches(walk, os.path.join(base, name), parts)
            elif not rest:
                yield os.path.join(base, name)  # a trailing ** matches files too
        return
    if not glob.has_magic(head):
        path = os.path.join(base, head)
        if os.path.isdir(path) if rest else os.path.lexists(path):
            yield from _matches(walk, path, rest)
        return
    for name, _ in walk.names(base):
        if _hidden(name) and not _hidden(head):
            continue
        if fnmatch.fnmatchcase(name, head):
            path = os.path.join(base, name)
            if not rest or os.path.isdir(path):
                yield from _matches(walk, path, rest)


def find_files(pattern: str, what: str, param: str) -> list[Path]:
    """The regular files ``pattern`` matches (a folder means its ``*.csv``), in natural order.

    ConfigError (``param``) naming ``what`` when none matches, or when the search reaches
    :data:`MAX_ENTRIES` entries or :data:`MAX_WALK_S` seconds.
    """
    expanded = os.path.expanduser(pattern)
    if os.path.isdir(expanded):
        expanded = os.path.join(expanded, "*.csv")
    anchor = os.sep if os.path.isabs(expanded) else ""
    parts = [part for part in expanded.split(os.sep) if part not in ("", ".")]
    walk = _Walk(pattern, what, param)
    found = dict.fromkeys(_matches(walk, anchor, parts))
    files = [Path(path) for path in found if os.path.isfile(path)]
    if not files:
        raise ConfigError(
            f"{what}: {pattern!r} matches no file; check the path and quote the glob",
            param=param,
        )
    return sorted(files, key=natural_key)

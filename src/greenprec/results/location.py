"""Where in a results folder something was read: a file, and a line for a 0.1 ``runs.csv``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["INDEX_FILE", "Location"]

INDEX_FILE = "runs.csv"
"""The runs' index (for a 0.1 folder, their record): the file whose lines a location names."""

_LINE = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Location:
    """A file of the results folder (``runs/<id>.json``, ``runs.csv``) and, for a row of a
    0.1 ``runs.csv``, its line: written ``runs.csv:5`` (:meth:`__str__`), read back with
    :meth:`parse`."""

    file: str
    line: int | None = None

    def __post_init__(self) -> None:
        if self.line is not None and (isinstance(self.line, bool) or self.line < 0):
            raise ValueError(f"a line number is a non-negative integer, not {self.line!r}")

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @classmethod
    def parse(cls, text: str) -> Location:
        """``runs.csv:5`` as file and line. Only a number after the last colon, written as
        :meth:`__str__` writes it (ASCII digits, no leading zero), is a line, so a path with
        colons keeps them (``C:/x/runs.csv:5`` is line 5 of ``C:/x/runs.csv``) and anything
        else (``runs/a.json``, ``a:b``, ``runs.csv:``, ``runs.csv:-1``, ``runs.csv:05``) is a
        file without a line: ``str(Location.parse(text)) == text`` for every text."""
        file, colon, line = text.rpartition(":")
        if colon and file and _LINE.fullmatch(line):
            return cls(file, int(line))
        return cls(text)

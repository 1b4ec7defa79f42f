"""The events an experiment reports as it goes (the command line shows them: cli/progress.py)."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


class Reporter:
    """Silent reporter; the base of the others. Events arrive in this order:
    started, phase (warm-up / baseline / cool-down / training, repeated), run_finished, finished.
    """

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None: ...

    def phase(self, name: str, row: Row | None = None, seconds: float | None = None) -> None: ...

    def run_finished(self, row: Row) -> None: ...

    def message(self, text: str) -> None: ...

    def finished(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...

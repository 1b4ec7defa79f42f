"""The events an experiment reports as it goes (the command line shows them: cli/progress.py)."""

from __future__ import annotations

from greenprec.results.models import RunRecord

__all__ = ["Reporter"]


class Reporter:
    """Silent reporter; the base of the others. Events arrive in this order:
    started, phase (warm-up / baseline / cool-down / training, repeated), run_finished, finished.

    A phase names the run it comes before (None for the warm-up and the baseline); a finished
    run and the final runs are the records as the store holds them.
    """

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None: ...

    def phase(
        self, name: str, run: RunRecord | None = None, seconds: float | None = None
    ) -> None: ...

    def run_finished(self, run: RunRecord) -> None: ...

    def message(self, text: str) -> None: ...

    def finished(self, runs: list[RunRecord]) -> None: ...

    def close(self) -> None: ...

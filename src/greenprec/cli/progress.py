"""How ``greenprec compare`` shows where it is: a rich progress bar, plain lines, JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from greenprec.experiment.progress import Reporter
from greenprec.results import RunRecord, record_row

__all__ = ["JsonLinesReporter", "PlainReporter", "RichReporter"]


def _started_line(total: int, done: int, folder: str, failed: int = 0) -> str:
    """The experiment's opening line: how many runs, how many already done or failed."""
    before = f"{done} already done" + (f", {failed} failed" if failed else "")
    return f"greenprec: {total} runs ({before}) -> {folder}"


def _run_summary(run: RunRecord) -> str:
    """One line per finished run: energy, duration, accuracy (or the error)."""
    head = f"{run.run_id} [{run.policy}]"
    if run.status != "done":
        return f"{head} failed: {run.error}"
    label = " (estimated)" if run.estimated else ""
    accuracy = run.metrics.get("test_accuracy")
    accuracy_text = f", test_accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
    return (
        f"{head} energy_j {run.energy_j:.2f}{label}, duration_s {run.duration_s:.2f}{accuracy_text}"
    )


def _run_label(run: RunRecord) -> str:
    return f"{run.run_id} [{run.policy}]"


class JsonLinesReporter(Reporter):
    """One JSON object per event on stdout, for scripts."""

    def _emit(self, event: str, **fields: object) -> None:
        record = {"event": event, "time": time.time(), **fields}
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        self._emit("started", total=total, done=done, failed=failed, folder=folder)

    def phase(self, name: str, run: RunRecord | None = None, seconds: float | None = None) -> None:
        self._emit("phase", phase=name, run_id=run.run_id if run else None, seconds=seconds)

    def run_finished(self, run: RunRecord) -> None:
        self._emit("run", **record_row(run))

    def message(self, text: str) -> None:
        self._emit("message", text=text)

    def finished(self, runs: list[RunRecord]) -> None:
        counts = {status: sum(r.status == status for r in runs) for status in ("done", "failed")}
        self._emit("finished", **counts)


class RichReporter(Reporter):
    """A progress bar (run k of N, policy, phase, elapsed, ETA) and a line per finished run."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # Markup off everywhere: run ids, policies ("[mixed]") and errors are not rich markup.
        self.console = Console(stderr=True, highlight=False, markup=False)
        self.progress = Progress(
            TextColumn("{task.fields[phase]:<10}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[run]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("ETA", markup=False),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        self.console.print(_started_line(total, done, folder, failed))
        self.progress.start()
        self.task = self.progress.add_task("runs", total=total, completed=done, phase="", run="")

    def phase(self, name: str, run: RunRecord | None = None, seconds: float | None = None) -> None:
        label = _run_label(run) if run else ""
        if seconds:
            label = f"{label} {seconds:g} s".strip()
        self.progress.update(self.task, phase=name, run=label)

    def run_finished(self, run: RunRecord) -> None:
        from rich.text import Text

        self.progress.advance(self.task)
        self.console.print(Text(_run_summary(run), style="" if run.status == "done" else "red"))

    def message(self, text: str) -> None:
        self.console.print(text)

    def finished(self, runs: list[RunRecord]) -> None:
        self.close()

    def close(self) -> None:
        self.progress.stop()


def _phase_line(
    name: str, record: RunRecord | None, seconds: float | None, run: int, total: int
) -> str:
    """One line as a phase starts, for output that is not a terminal (a log, CI, Slurm's output
    file): without it a 60 s warm-up is a minute of silence that looks like a hang."""
    if name == "training" and record is not None:
        return f"run {run} of {total}: {_run_label(record)} training"
    what = {
        "warm-up": "warm-up (all cores busy)",
        "baseline": "baseline (idle power)",
        "cool-down": "cool-down",
    }.get(name, name)
    length = f" for {seconds:g} s" if seconds else ""
    before = f" before {_run_label(record)}" if record is not None else ""
    return f"{what}{length}{before}"


class PlainReporter(Reporter):
    """Plain lines on stderr, for logs and terminals without a live display: the opening line,
    one line as each phase starts (with its length), one line per finished run."""

    def __init__(self) -> None:
        self.total = 0
        self.run = 0

    def _print(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        self.total, self.run = total, done + failed
        self._print(_started_line(total, done, folder, failed))

    def phase(self, name: str, run: RunRecord | None = None, seconds: float | None = None) -> None:
        if name == "training":
            self.run += 1
        self._print(_phase_line(name, run, seconds, self.run, self.total))

    def run_finished(self, run: RunRecord) -> None:
        self._print(_run_summary(run))

    def message(self, text: str) -> None:
        self._print(text)

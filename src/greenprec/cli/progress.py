"""How ``greenprec compare`` shows where it is: a rich progress bar, plain lines, JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from greenprec.experiment.progress import Reporter, Row


def started_line(total: int, done: int, folder: str, failed: int = 0) -> str:
    """The experiment's opening line: how many runs, how many already done or failed."""
    before = f"{done} already done" + (f", {failed} failed" if failed else "")
    return f"greenprec compare: {total} runs ({before}) -> {folder}"


def run_summary(row: Row) -> str:
    """One line per finished run: energy, duration, accuracy (or the error)."""
    head = f"{row['run_id']} [{row['policy']}]"
    if row["status"] != "done":
        return f"{head} failed: {row.get('error')}"
    label = " (estimated)" if row.get("estimated") else ""
    accuracy = row.get("test_accuracy")
    accuracy_text = f", test_accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
    return (
        f"{head} energy_j {row['energy_j']:.2f}{label}, duration_s {row['duration_s']:.2f}"
        f"{accuracy_text}"
    )


class JsonLinesReporter(Reporter):
    """One JSON object per event on stdout, for scripts."""

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": time.time(), **fields}
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        self._emit("started", total=total, done=done, failed=failed, folder=folder)

    def phase(self, name: str, row: Row | None = None, seconds: float | None = None) -> None:
        self._emit("phase", phase=name, run_id=row["run_id"] if row else None, seconds=seconds)

    def run_finished(self, row: Row) -> None:
        self._emit("run", **row)

    def message(self, text: str) -> None:
        self._emit("message", text=text)

    def finished(self, rows: list[Row]) -> None:
        counts = {status: sum(r["status"] == status for r in rows) for status in ("done", "failed")}
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
        self.console.print(started_line(total, done, folder, failed))
        self.progress.start()
        self.task = self.progress.add_task("runs", total=total, completed=done, phase="", run="")

    def phase(self, name: str, row: Row | None = None, seconds: float | None = None) -> None:
        run = f"{row['run_id']} [{row['policy']}]" if row else ""
        if seconds:
            run = f"{run} {seconds:g} s".strip()
        self.progress.update(self.task, phase=name, run=run)

    def run_finished(self, row: Row) -> None:
        from rich.text import Text

        self.progress.advance(self.task)
        self.console.print(Text(run_summary(row), style="" if row["status"] == "done" else "red"))

    def message(self, text: str) -> None:
        self.console.print(text)

    def finished(self, rows: list[Row]) -> None:
        self.close()

    def close(self) -> None:
        self.progress.stop()


def phase_line(name: str, row: Row | None, seconds: float | None, run: int, total: int) -> str:
    """One line as a phase starts, for output that is not a terminal (a log, CI, Slurm's output
    file): without it a 60 s warm-up is a minute of silence that looks like a hang."""
    if name == "training" and row is not None:
        return f"run {run} of {total}: {row['run_id']} [{row['policy']}] training"
    what = {
        "warm-up": "warm-up (all cores busy)",
        "baseline": "baseline (idle power)",
        "cool-down": "cool-down",
    }.get(name, name)
    length = f" for {seconds:g} s" if seconds else ""
    before = f" before {row['run_id']} [{row['policy']}]" if row is not None else ""
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
        self._print(started_line(total, done, folder, failed))

    def phase(self, name: str, row: Row | None = None, seconds: float | None = None) -> None:
        if name == "training":
            self.run += 1
        self._print(phase_line(name, row, seconds, self.run, self.total))

    def run_finished(self, row: Row) -> None:
        self._print(run_summary(row))

    def message(self, text: str) -> None:
        self._print(text)

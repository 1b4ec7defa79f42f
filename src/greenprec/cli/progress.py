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

        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("{task.fields[phase]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[run]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        self.console.print(started_line(total, done, folder, failed), markup=False)
        self.progress.start()
        self.task = self.progress.add_task("runs", total=total, completed=done, phase="", run="")

    def phase(self, name: str, row: Row | None = None, seconds: float | None = None) -> None:
        run = f"{row['run_id']} [{row['policy']}]" if row else ""
        if seconds:
            run = f"{run} {seconds:g} s".strip()
        self.progress.update(self.task, phase=name, run=run)

    def run_finished(self, row: Row) -> None:
        self.progress.advance(self.task)
        style = "" if row["status"] == "done" else "[red]"
        self.console.print(f"{style}{run_summary(row)}", markup=bool(style))

    def message(self, text: str) -> None:
        self.console.print(text, markup=False)

    def finished(self, rows: list[Row]) -> None:
        self.close()

    def close(self) -> None:
        self.progress.stop()


class PlainReporter(Reporter):
    """Summary lines only, on stderr: for logs and terminals without a live display."""

    def started(self, total: int, done: int, folder: str, failed: int = 0) -> None:
        print(started_line(total, done, folder, failed), file=sys.stderr)

    def run_finished(self, row: Row) -> None:
        print(run_summary(row), file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

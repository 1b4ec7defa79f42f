"""One session of driving an experiment folder: what the runner hands to its executor.

The runner (:mod:`greenprec.experiment.runner`) holds the folder lock, creates or reopens the
experiment, and builds a :class:`Session`; an executor (:mod:`greenprec.experiment.executors`)
drives the session's runs to an end. Everything an executor needs is here, so adding one
takes no new arguments anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from greenprec.errors import GreenprecError
from greenprec.experiment.config import ExperimentConfig
from greenprec.experiment.progress import Reporter
from greenprec.results import ExperimentRecord, ResultsStore, RunRecord

__all__ = ["ExperimentFailed", "InterruptHandler", "Session"]

InterruptHandler = Callable[[Sequence[str]], bool]
"""Asked on Ctrl-C with the ids of the jobs still pending or running: cancel them?"""


class ExperimentFailed(GreenprecError):
    """A run failed under ``fail_fast``; the folder stays resumable."""

    def __init__(self, run_id: str, error: str, folder: Path) -> None:
        self.run_id, self.error, self.folder = run_id, error, folder
        super().__init__(f"run {run_id} failed and fail_fast is set: {error}")


@dataclass
class Session:
    """The experiment being driven, as this session found it, and how to report on it.

    ``runs`` maps each scheduled run id to its record, in schedule order. The executor keeps
    it current as runs end (and removes runs an adaptive stop cuts), so that however the
    session ends, even by Ctrl-C or an error, ``runs`` says how each run stands: the runner
    writes the index and the experiment's status from it.
    """

    store: ResultsStore
    config: ExperimentConfig
    experiment: ExperimentRecord
    runs: dict[str, RunRecord]
    notes: list[str] = field(default_factory=list)
    """Problems found on reopening the folder, shown as warnings when the session starts."""
    retry_failed: bool = False
    """Run failed runs again too (``--retry-failed``), not only those that never ended."""
    reporter: Reporter = field(default_factory=Reporter)
    on_interrupt: InterruptHandler | None = None
    """Asked on Ctrl-C whether to cancel scheduler jobs still queued or running."""
    started: bool = False
    """Set by :meth:`report_start`, once the executor has written the folder's index: a session
    that could not get that far (``runs.csv`` unwritable) ends with nothing else written."""

    @property
    def meters(self) -> list[str]:
        """The meters every run of the experiment is measured with."""
        return self.experiment.meters.used

    def final_runs(self) -> list[RunRecord]:
        return list(self.runs.values())

    def warn(self) -> None:
        """Show the experiment's warnings and this session's notes, once, as it starts."""
        for text in [*self.experiment.warnings, *self.notes]:
            self.reporter.message(f"warning: {text}")

    def report_start(self) -> None:
        self.started = True
        runs = self.runs.values()
        done = sum(run.status == "done" for run in runs)
        failed = sum(run.status == "failed" for run in runs)
        self.reporter.started(len(self.runs), done, str(self.store.path), failed=failed)

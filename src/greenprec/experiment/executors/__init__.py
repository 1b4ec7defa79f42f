"""Executors: what drives an experiment's runs to an end, here or on a cluster.

The runner (:func:`greenprec.experiment.runner.run_experiment`) holds the folder lock,
creates or reopens the experiment, and hands a :class:`~greenprec.experiment.session.Session`
to the executor that ``config.executor`` names in :data:`EXECUTORS`. Adding an executor (a
second scheduler, say) is one module with a class that has the :class:`Executor` shape, and
one entry in :data:`EXECUTORS`; a scheduler whose jobs run blocks only needs a
:class:`~greenprec.experiment.cluster.Scheduler` handed to
:func:`~greenprec.experiment.cluster.drive_blocks`, as :mod:`.slurm` and :mod:`.debug` do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from greenprec.errors import ConfigError
from greenprec.experiment.executors.debug import DebugExecutor
from greenprec.experiment.executors.local import LocalExecutor
from greenprec.experiment.executors.slurm import SlurmExecutor
from greenprec.experiment.session import Session
from greenprec.results import RunRecord

__all__ = [
    "EXECUTORS",
    "DebugExecutor",
    "Executor",
    "LocalExecutor",
    "SlurmExecutor",
    "executor_for",
]


class Executor(Protocol):
    """What an executor does with a session; the runner does the rest.

    **Its job.** :meth:`drive` takes the session's runs that are not done (pending ones, a
    stale ``running`` one, failed ones with ``retry_failed``), runs them to an end, and
    returns every run of the experiment as it ended, in schedule order. It shows the session's
    warnings (:meth:`Session.warn`) and reports its progress through ``session.reporter``
    (``started``, phases, ``run_finished``); the runner closes the reporter, writes the index
    and the experiment's status from the final runs, and reports ``finished``.

    **Files.** Each run's file is written by the process that executes the run
    (:mod:`greenprec.experiment.execute`). The executor may write a run's file to clear it
    before it runs again, or to mark it failed when the run ended without a final record (an
    interrupted run; a job its scheduler ended). It may write ``runs.csv`` (the index), its
    own records (the local baseline and warm-ups in ``experiment.json``; ``jobs/`` and
    ``submissions.json`` for jobs), nothing else.

    **Stopping.** Ctrl-C (KeyboardInterrupt) and SIGTERM (:class:`~greenprec.errors.
    Terminated`) are re-raised once the executor has recorded what they stopped: a run
    stopped on this machine is marked failed (interrupted) and runs again on resume; jobs on
    a scheduler keep running unless ``session.on_interrupt`` asks to cancel them, and the
    exception's message says which. Whatever ends the session, ``session.runs`` is kept
    current so the runner's index says how each run stands.
    """

    @property
    def blocked(self) -> bool:
        """Whether runs go in blocks (one run of each policy) that each run on one machine;
        the schedule is then blocked (:func:`greenprec.experiment.schedule.make_blocked_
        schedule`)."""
        ...

    @property
    def measures_here(self) -> bool:
        """Whether the runs are measured on this machine: its meters are chosen (``auto``)
        and opened here. Otherwise the names are kept and each node opens them."""
        ...

    def drive(self, session: Session) -> list[RunRecord]:
        """Run the session's runs that are not done; every run as it ended."""
        ...


EXECUTORS: dict[str, Callable[[], Executor]] = {
    "local": LocalExecutor,
    "slurm": SlurmExecutor,
    "debug": DebugExecutor,
}
"""Executor name (``config.executor``) -> a factory of the executor."""


def executor_for(name: str) -> Executor:
    """The executor called ``name`` in :data:`EXECUTORS`; ConfigError naming those known."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise ConfigError(
            f"executor: unknown executor {name!r:.40} (known: {', '.join(sorted(EXECUTORS))})"
        )
    return factory()

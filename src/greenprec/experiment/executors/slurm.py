"""The Slurm executor: one Slurm job per block, submitted and watched from this process.

The submitting side is :func:`greenprec.experiment.cluster.drive_blocks` (the ledger in
``submissions.json``, re-attaching, settling the jobs that ended); the jobs run
:func:`greenprec.experiment.block.run_block` on their nodes; the Slurm commands themselves are
:mod:`greenprec.experiment.slurm`, the :class:`~greenprec.experiment.cluster.Scheduler` this
executor hands to the submitter.

The submitter writes ``submissions.json``, the index, and the files of runs whose job ended
before they had a final record; the jobs write everything else. On Ctrl-C the session's
``on_interrupt`` is asked whether to cancel the jobs still pending or running (without it they
keep running); on SIGTERM they keep running. Either way resuming re-attaches to them.
"""

from __future__ import annotations

from greenprec.experiment import slurm
from greenprec.experiment.cluster import drive_blocks
from greenprec.experiment.session import Session
from greenprec.results import RunRecord

__all__ = ["SlurmExecutor"]


class SlurmExecutor:
    """Run each block of the experiment as a Slurm job (``executor = "slurm"``)."""

    name = "slurm"
    blocked = True
    measures_here = False

    def drive(self, session: Session) -> list[RunRecord]:
        return drive_blocks(session, slurm)

"""The local executor: every run on this machine, one after another, driven by this process.

It runs the session's runs through the block loop (:func:`greenprec.experiment.block.
run_block_loop`), the same protocol a Slurm job runs for its block. What is its own: the
baseline and the warm-ups are recorded in ``experiment.json`` (a baseline once per experiment,
a warm-up per session); the index (``runs.csv``) is rewritten before and after each run; a
failed run stops the experiment under ``fail_fast``; an adaptive experiment looks at its data
after each complete block (:mod:`greenprec.experiment.looks`) and may stop there, as does a
recommendation (:mod:`greenprec.experiment.selecting`), which also drops configurations.

Each run's file is written by the run's own executor (:mod:`greenprec.experiment.execute`);
this driver writes a run's file only to clear it before it runs again, and to mark it failed
when Ctrl-C or SIGTERM stops it mid-run (then re-raised: the folder resumes).
"""

from __future__ import annotations

import contextlib

from greenprec.errors import GreenprecError, Interrupted, Terminated
from greenprec.experiment.block import BlockHooks, run_block_loop
from greenprec.experiment.config import run_timeout_for
from greenprec.experiment.phases import measure_phase, warm_up
from greenprec.experiment.session import ExperimentFailed, Session
from greenprec.results import INTERRUPTED, RunRecord
from greenprec.results.records import now_iso

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run the experiment here, in this process's session (``executor = "local"``)."""

    name = "local"
    blocked = False
    measures_here = True

    def drive(self, session: Session) -> list[RunRecord]:
        store = session.store
        if session.config.selection is not None:
            from greenprec.experiment.selecting import selection_look

            # A resumed recommendation: make the look (and the cut) a killed session did not
            # live to make, before deciding what is left to run.
            selection_look(session)
        todo = [run_id for run_id, run in session.runs.items() if _needs_running(session, run)]
        for run_id in todo:
            session.runs[run_id] = session.runs[run_id].cleared()
            store.write_run(session.runs[run_id])
        store.write_index(session.final_runs())
        session.report_start()
        driver = _Driver(session)
        try:
            session.warn()
            run_block_loop(
                store,
                session.config,
                session.meters,
                [session.runs[run_id] for run_id in todo],
                driver.hooks(),
                timeout_s=run_timeout_for(session.config),
            )
        except (KeyboardInterrupt, Terminated) as stop:
            # Re-raised with what it stopped, in words: the CLI's line says it.
            detail = driver.interrupted(stop)
            if isinstance(stop, Terminated):
                raise Terminated(detail) from None
            raise Interrupted(detail) from None
        finally:
            driver.reread_current()
        return session.final_runs()


def _needs_running(session: Session, run: RunRecord) -> bool:
    if run.status == "pending":
        return True
    if run.status == "running":
        # This process holds the lock, so no driver is running it; its executor is gone
        # unless a process of a killed driver is still finishing it (then leave it be).
        return session.store.is_stale(run)
    return run.failed_and_runs_again(session.retry_failed)


def _non_finite_metrics(run: RunRecord) -> list[str]:
    """A warning per metric the run reported as no finite number (a diverged loss): kept in
    the run file by name ("inf"), never as a silent null, and left out of the report."""
    from greenprec.experiment.execute import NON_FINITE_VALUES

    if run.status != "done":
        return []
    return [
        f"warning: run {run.run_id} reported {name} = {value}, not a finite number; it is kept "
        f'as "{value}" in runs/{run.run_id}.json, and the report leaves it out'
        for name, value in run.metrics.items()
        if isinstance(value, str) and value in NON_FINITE_VALUES
    ]


class _Driver:
    """The local side of the block loop: records, index, reports, fail_fast, looks."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.current: str | None = None
        """The run executing now (its file says how it ended if the session stops)."""
        self.executing = False
        self.phase: str | None = None
        """The phase between runs in progress (the baseline, the warm-up, a cool-down)."""

    def hooks(self) -> BlockHooks:
        return BlockHooks(
            baseline_power_w=self.baseline_power_w,
            warm_up=self.warm_up,
            cooling=self.cooling,
            waiting=self.waiting,
            starting=self.starting,
            finished=self.finished,
            skip=self.skip,
        )

    def baseline_power_w(self) -> float | None:
        """Measured once per experiment (a resumed one keeps its baseline)."""
        session, config = self.session, self.session.config
        experiment = session.experiment
        if config.baseline_s > 0 and experiment.baseline is None:
            self.phase = "the idle baseline (it is measured again on resume)"
            session.reporter.phase("baseline", None, config.baseline_s)
            experiment.baseline = measure_phase(
                session.store, config, session.meters, "baseline", config.baseline_s, busy=False
            )
            session.store.write_experiment(experiment)
            self.phase = None
        return experiment.baseline.power_w if experiment.baseline is not None else None

    def warm_up(self) -> None:
        """Before the first run of each session: the machine settles after a resume too."""
        session, config = self.session, self.session.config
        if config.warmup_s <= 0:
            return
        self.phase = "the warm-up"
        session.reporter.phase("warm-up", None, config.warmup_s)
        experiment = session.experiment
        count = len(experiment.warmups)
        name = "warmup" if count == 0 else f"warmup-{count + 1}"
        experiment.warmups.append(warm_up(session.store, config, session.meters, name))
        session.store.write_experiment(experiment)
        self.phase = None

    def cooling(self, run: RunRecord) -> None:
        self.current = run.run_id
        self.phase = f"the cool-down before run {run.run_id}"
        self.session.reporter.phase("cool-down", run, self.session.config.cooldown_s)

    def waiting(self, run: RunRecord, max_s: float) -> None:
        self.current = run.run_id
        self.phase = f"the wait for an idle machine before run {run.run_id}"
        self.session.reporter.phase(f"waiting for an idle machine (at most {max_s:g} s)", run)

    def starting(self, run: RunRecord) -> None:
        session = self.session
        self.current = run.run_id
        # The index shows the run as running now; its file is the executor's to write.
        starting = run.started()
        session.store.write_index(
            [starting if r.run_id == run.run_id else r for r in session.runs.values()]
        )
        session.reporter.phase("training", run)
        self.phase = None
        self.executing = True

    def finished(self, run: RunRecord) -> bool:
        session = self.session
        self.executing = False
        session.reporter.run_finished(run)
        for warning in _non_finite_metrics(run):
            session.reporter.message(warning)
        session.runs[run.run_id] = run
        self.current = None
        session.store.write_index(session.final_runs())
        if run.status == "failed" and session.config.fail_fast:
            raise ExperimentFailed(run.run_id, run.error or "failed", session.store.path)
        if session.config.adaptive:
            from greenprec.experiment.looks import adaptive_look

            # Every question settled (or the maximum reached): the rest of the runs is cut.
            return adaptive_look(session)
        if session.config.selection is not None:
            from greenprec.experiment.selecting import selection_look

            # One configuration left, or the rest within the zone: the rest is cut; a dropped
            # configuration's later runs leave the schedule (skip() then passes them by).
            return selection_look(session)
        return False

    def skip(self, run: RunRecord) -> bool:
        """A run a look cut from the schedule (its configuration was dropped)."""
        return run.run_id not in self.session.runs

    def interrupted(self, stop: KeyboardInterrupt | Terminated) -> str:
        """Ctrl-C or SIGTERM stopped the run executing: it failed, and runs again on resume.
        Returns what was stopped, in words (a phase between runs loses nothing)."""
        if not self.executing or self.current is None:
            what = self.phase or "the experiment between two runs"
            return f"{what} was stopped; no run was running, and nothing recorded is lost"
        store = self.session.store
        run = self.session.runs[self.current]
        signal_name = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        with contextlib.suppress(Exception):
            run = store.read_run(run.run_id)
        store.write_run(
            run.failed(
                f"{INTERRUPTED} ({signal_name}); resuming the experiment runs it again",
                ended_at=now_iso(),
            )
        )
        return f"run {run.run_id} is marked failed (interrupted)"

    def reread_current(self) -> None:
        """Stopped mid-run: the run's file says how it ended."""
        if self.current is not None:
            with contextlib.suppress(GreenprecError, OSError):
                self.session.runs[self.current] = self.session.store.read_run(self.current)

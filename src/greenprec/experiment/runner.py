"""The experiment protocol: schedule, baseline, warm-up, runs with cool-downs, resumable.

The runner is the folder's *driver*: it holds the folder lock (one driver at a time), creates
the experiment record and a pending run file per scheduled run, then hands each run to an
executor (:mod:`greenprec.experiment.execute`), which writes the run's own file. After each
run the driver rebuilds the ``runs.csv`` index. Everything on disk goes through
:class:`greenprec.results.ResultsStore`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenprec.errors import ConfigError, GreenprecError, Terminated
from greenprec.experiment.config import (
    ExperimentConfig,
    run_timeout_for,
    stored_config,
    validate,
)
from greenprec.experiment.environment import environment
from greenprec.experiment.execute import RunSpec
from greenprec.experiment.phases import measure_phase, warm_up
from greenprec.experiment.progress import Reporter
from greenprec.experiment.schedule import make_blocked_schedule, make_schedule
from greenprec.results import (
    INDEX_FILE,
    INTERRUPTED,
    AnswerRecord,
    ExperimentRecord,
    Location,
    LookRecord,
    MetersRecord,
    ResultsStore,
    RunRecord,
    SequentialRecord,
    new_experiment_record,
)
from greenprec.results.lock import LOCK_NAME
from greenprec.results.records import now_iso

SOURCE = "greenprec compare"


class ExperimentFailed(GreenprecError):
    """A run failed under ``fail_fast``; the folder stays resumable."""

    def __init__(self, run_id: str, error: str, folder: Path) -> None:
        self.run_id, self.error, self.folder = run_id, error, folder
        super().__init__(f"run {run_id} failed and fail_fast is set: {error}")


def run_experiment(
    config: ExperimentConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    on_interrupt: Callable[[Sequence[str]], bool] | None = None,
    slurm: Mapping[str, Any] | None = None,
) -> tuple[ResultsStore, list[RunRecord]]:
    """Run (or continue) an experiment into ``out``; return the store and its final runs.

    With ``resume``, the configuration stored in the folder is used and only runs that are
    not done are executed: pending ones, one interrupted mid-run, a stale ``running`` one,
    and failed ones if ``retry_failed``. Without it, a folder that already holds anything is
    refused. A second process driving the same folder is refused while this one runs.

    With the cluster executor, ``on_interrupt`` is asked on Ctrl-C, with the ids of the Slurm
    jobs still pending or running, whether to cancel them (without it, they keep running).
    """
    reporter = reporter or Reporter()
    store = ResultsStore(out)
    if not resume:
        if config is None:
            raise ConfigError("no configuration given")
        store.check_new()
    elif not store.exists():
        raise ConfigError(f"nothing to resume: {store.path} holds no experiment")
    created_dir = not store.path.exists()
    store.path.mkdir(parents=True, exist_ok=True)
    lock = store.lock("greenprec compare" + (" --resume" if resume else ""))
    try:
        lock.acquire()
    except BaseException:
        if created_dir:
            _remove_empty(store.path)
        raise
    try:
        if resume:
            config, experiment, runs, notes = _reopen(store)
            if slurm:
                config, note = _new_slurm_settings(store, config, experiment, slurm)
                notes.append(note)
        else:
            assert config is not None
            store.check_new()  # again, under the lock: another process may have been first
            experiment, runs = _create(store, config)
            notes = []
        if config.executor == "slurm":
            return store, _drive_cluster(
                store, config, experiment, runs, notes, retry_failed, reporter, on_interrupt
            )
        return _drive(store, config, experiment, runs, notes, retry_failed, reporter)
    finally:
        lock.release()


def _new_slurm_settings(
    store: ResultsStore,
    config: ExperimentConfig,
    experiment: ExperimentRecord,
    slurm: Mapping[str, Any],
) -> tuple[ExperimentConfig, str]:
    if config.executor != "slurm":
        raise ConfigError(
            "slurm: this experiment runs with the local executor; its [slurm] settings do not "
            "apply (drop them)"
        )
    before = config.slurm_settings.model_dump()
    updated = validate({**config.model_dump(), "slurm": {**before, **slurm}})
    changed = {
        key: value
        for key, value in updated.slurm_settings.model_dump().items()
        if before.get(key) != value
    }
    experiment.config = updated.model_dump(mode="json")
    store.write_experiment(experiment)
    listed = ", ".join(f"{key} = {value!r}" for key, value in changed.items()) or "none changed"
    return updated, f"[slurm] settings for the jobs submitted from now on: {listed}"


def _drive_cluster(
    store: ResultsStore,
    config: ExperimentConfig,
    experiment: ExperimentRecord,
    runs: list[RunRecord],
    notes: list[str],
    retry_failed: bool,
    reporter: Reporter,
    on_interrupt: Callable[[Sequence[str]], bool] | None,
) -> list[RunRecord]:
    from greenprec.experiment.cluster import drive_cluster

    final = runs
    try:
        final = drive_cluster(
            store, config, experiment, runs, notes, retry_failed, reporter, on_interrupt
        )
    finally:
        reporter.close()
        if final is runs:  # stopped: the runs as their files now say
            with contextlib.suppress(GreenprecError, OSError):
                final = store.load().runs
        _finish(store, experiment, final)
    reporter.finished(final)
    return final


def _finish(store: ResultsStore, experiment: ExperimentRecord, final: list[RunRecord]) -> None:
    """The index and the experiment's status, as the session ends (however it ends)."""
    with contextlib.suppress(OSError):
        store.write_index(final)
    experiment.status = "complete" if all(r.status == "done" for r in final) else "incomplete"
    experiment.updated_at = now_iso()
    store.write_experiment(experiment)


def _drive(
    store: ResultsStore,
    config: ExperimentConfig,
    experiment: ExperimentRecord,
    runs: list[RunRecord],
    notes: list[str],
    retry_failed: bool,
    reporter: Reporter,
) -> tuple[ResultsStore, list[RunRecord]]:
    by_id = {run.run_id: run for run in runs}
    todo = [run.run_id for run in runs if _needs_running(store, run, retry_failed)]
    for run_id in todo:
        by_id[run_id] = by_id[run_id].cleared()
        store.write_run(by_id[run_id])
    store.write_index(list(by_id.values()))
    meters = experiment.meters.used
    done_before = sum(run.status == "done" for run in by_id.values())
    failed_before = sum(run.status == "failed" for run in by_id.values())
    reporter.started(len(by_id), done_before, str(store.path), failed=failed_before)
    current: str | None = None
    try:
        for text in [*experiment.warnings, *notes]:
            reporter.message(f"warning: {text}")
        if todo:
            _baseline(store, experiment, config, meters, reporter)
            _warm_up(store, experiment, config, meters, reporter)
        for index, run_id in enumerate(todo):
            current = run_id
            if index > 0 and config.cooldown_s > 0:
                reporter.phase("cool-down", by_id[run_id], config.cooldown_s)
                time.sleep(config.cooldown_s)
            # The index shows the run as running now; its file is the executor's to write.
            starting = by_id[run_id].started()
            store.write_index([starting if r.run_id == run_id else r for r in by_id.values()])
            by_id[run_id] = _run_one(store, experiment, config, meters, by_id[run_id], reporter)
            current = None
            store.write_index(list(by_id.values()))
            if by_id[run_id].status == "failed" and config.fail_fast:
                raise ExperimentFailed(run_id, by_id[run_id].error or "failed", store.path)
            if config.adaptive and _adaptive_look(store, config, experiment, by_id, reporter):
                break  # every question is settled (or the maximum reached): the rest is cut
    finally:
        reporter.close()
        if current is not None:  # interrupted mid-run: its file says how it ended
            with contextlib.suppress(GreenprecError, OSError):
                by_id[current] = store.read_run(current)
        final = list(by_id.values())
        _finish(store, experiment, final)
    reporter.finished(final)
    return store, final


def _create(
    store: ResultsStore, config: ExperimentConfig
) -> tuple[ExperimentRecord, list[RunRecord]]:
    from greenprec.meters.registry import resolve
    from greenprec.precision import emulation_warnings, support

    requested = config.meters
    if config.executor == "slurm":
        # Measured on the compute nodes, not here: a login node often has no RAPL or GPU. The
        # names were checked with the config; a node that cannot open a meter fails its runs.
        from greenprec.meters.registry import get_meter_class

        classes = [get_meter_class(name) for name in requested]
        used = list(requested)
        estimated = any(cls.estimated for cls in classes)
        simulated = [cls.name for cls in classes if cls.simulated is True]
    else:
        chosen = resolve(requested if requested != ["auto"] else "auto", config.meter_options)
        used = [meter.name for meter in chosen]
        estimated = any(meter.estimated for meter in chosen)
        simulated = [meter.name for meter in chosen if meter.simulated is True]
    if config.executor == "slurm" or config.adaptive:
        # One job per block on one node: policies are compared within nodes (see cluster.py).
        # Adaptive: each look comes after a whole block, one run of every policy more.
        schedule = make_blocked_schedule(config.policies, config.runs, config.seed)
    else:
        schedule = make_schedule(config.policies, config.runs, config.seed, shuffle=config.shuffle)
    framework = _framework(config.workload)
    warnings = list(emulation_warnings(config.policies, framework=framework))
    if estimated:
        warnings.append(
            f"meter {'+'.join(used)} is an estimate, not a measurement: every energy figure "
            "of this experiment is estimated"
        )
    facts = environment()
    experiment = new_experiment_record(
        source=SOURCE,
        config=config.model_dump(mode="json"),
        schedule=schedule,
        meters=MetersRecord(
            requested=requested, used=used, estimated=estimated, simulated=simulated
        ),
        warnings=warnings,
        precision_support=support(framework=framework).to_dict(),
        versions=facts["versions"],
        host=facts["host"],
    )
    if config.adaptive:
        from greenprec.sequential import SequentialDesign

        design = SequentialDesign(max_runs=config.runs, min_runs=config.min_runs)
        experiment.sequential = SequentialRecord(
            method=design.method,
            alpha=design.alpha,
            min_runs=design.min_runs,
            max_runs=design.max_runs,
        )
    runs = [RunRecord.planned(run) for run in schedule]
    store.create(experiment, runs)  # the schedule is on disk before the first run starts
    store.ensure_dirs()
    return experiment, runs


def _framework(workload: str) -> str:
    """The framework whose precision support the experiment records (TensorFlow's by default)."""
    from greenprec.workloads import get_workload
    from greenprec.workloads.core import framework_of

    try:
        return framework_of(get_workload(workload)) or "tensorflow"
    except ConfigError:
        return "tensorflow"


def _reopen(
    store: ResultsStore,
) -> tuple[ExperimentConfig, ExperimentRecord, list[RunRecord], list[str]]:
    """The folder's config and runs; missing or damaged runs come back pending, named."""
    snapshot = store.load()
    experiment = snapshot.experiment
    config = resumable_config(store, experiment)
    usable = {run.run_id: run for run in snapshot.runs}
    notes: list[str] = []
    runs: list[RunRecord] = []
    for planned in experiment.schedule:
        run = usable.get(planned.run_id)
        if run is None:
            run = RunRecord.planned(planned)
            store.write_run(run)
        runs.append(run)
    for problem in snapshot.problems:
        if problem.run_id in usable or problem.location == Location(INDEX_FILE):
            continue
        again = " it runs again" if problem.run_id in {r.run_id for r in runs} else ""
        notes.append(f"{problem};{again}" if again else str(problem))
    if snapshot.legacy:
        notes.append(
            "this folder was written by greenprec 0.1; its runs now have run files in runs/"
        )
        experiment.schema_version = ExperimentRecord.model_fields["schema_version"].default
        store.write_experiment(experiment)
        for run in runs:
            store.write_run(run)
    store.ensure_dirs()
    return config, experiment, runs, notes


def resumable_config(
    store: ResultsStore, experiment: ExperimentRecord | None = None
) -> ExperimentConfig:
    """The settings to continue the experiment in ``store`` with (its ``experiment.json``, or
    ``experiment`` when already read); ConfigError naming the folder when it cannot go on."""
    if experiment is None:
        experiment = store.load().experiment
    if experiment.source != SOURCE:
        raise ConfigError(
            f"{store.path} was made by {experiment.source[:40]}, not greenprec compare; there "
            "is nothing to resume (greenprec report reads it)"
        )
    # Without its settings or its meters, the runs left would be measured differently from
    # the runs done: start again rather than mix two experiments in one folder.
    unusable = (
        "holds no config (the experiment's settings)"
        if not experiment.config
        else "records no meters used"
        if not experiment.meters.used
        else None
    )
    if unusable:
        raise ConfigError(
            f"{store.experiment_file} {unusable}, so the runs left cannot be run like the others; "
            "start a new experiment in another folder (greenprec report still reads this one)"
        )
    try:
        return stored_config(experiment)
    except ConfigError as error:
        problems = "; ".join(str(error).splitlines())
        raise ConfigError(f"cannot continue {store.path}: {problems}") from None


def _needs_running(store: ResultsStore, run: RunRecord, retry_failed: bool) -> bool:
    if run.status == "pending":
        return True
    if run.status == "running":
        # This process holds the lock, so no driver is running it; its executor is gone
        # unless a process of a killed driver is still finishing it (then leave it be).
        return store.is_stale(run)
    return run.failed_and_runs_again(retry_failed)


def _run_one(
    store: ResultsStore,
    experiment: ExperimentRecord,
    config: ExperimentConfig,
    meters: list[str],
    run: RunRecord,
    reporter: Reporter,
) -> RunRecord:
    reporter.phase("training", run)
    baseline = experiment.baseline
    spec = RunSpec.of(
        config,
        run,
        meters,
        baseline_power_w=baseline.power_w if baseline is not None else None,
        timeout_s=run_timeout_for(config),
    )
    try:
        finished = spec.execute(store, config.isolation)
    except (KeyboardInterrupt, Terminated) as stop:
        signal_name = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        with contextlib.suppress(Exception):
            run = store.read_run(run.run_id)
        store.write_run(
            run.failed(
                f"{INTERRUPTED} ({signal_name}); resuming the experiment runs it again",
                ended_at=now_iso(),
            )
        )
        raise
    reporter.run_finished(finished)
    return finished


def _baseline(
    store: ResultsStore,
    experiment: ExperimentRecord,
    config: ExperimentConfig,
    meters: list[str],
    reporter: Reporter,
) -> None:
    if config.baseline_s <= 0 or experiment.baseline is not None:
        return
    reporter.phase("baseline", None, config.baseline_s)
    experiment.baseline = measure_phase(
        store, config, meters, "baseline", config.baseline_s, busy=False
    )
    store.write_experiment(experiment)


def _warm_up(
    store: ResultsStore,
    experiment: ExperimentRecord,
    config: ExperimentConfig,
    meters: list[str],
    reporter: Reporter,
) -> None:
    """Before the first run of each session: the machine settles after a resume too."""
    if config.warmup_s <= 0:
        return
    reporter.phase("warm-up", None, config.warmup_s)
    count = len(experiment.warmups)
    name = "warmup" if count == 0 else f"warmup-{count + 1}"
    experiment.warmups.append(warm_up(store, config, meters, name))
    store.write_experiment(experiment)


def _adaptive_look(
    store: ResultsStore,
    config: ExperimentConfig,
    experiment: ExperimentRecord,
    by_id: dict[str, RunRecord],
    reporter: Reporter,
) -> bool:
    """After a complete block: look at the data; True when the experiment stops here.

    A look is due when every run of the latest block has ended and each policy has at least
    ``min_runs`` runs done. It tests each question at the level the design spends on this look
    (greenprec.sequential) and is recorded in ``experiment.json`` before anything else happens,
    so a resumed experiment knows the looks already made. When it stops, the runs not yet made
    are removed from the schedule: the folder is then a complete experiment of that size.
    """
    from greenprec.sequential import SequentialDesign, look

    record = experiment.sequential
    if record is None or record.reason is not None:
        return record is not None and record.reason is not None
    runs = list(by_id.values())
    blocks = {run.block for run in runs if run.block is not None}
    ended = {
        block
        for block in blocks
        if all(r.status in ("done", "failed") for r in runs if r.block == block)
    }
    latest = max(ended, default=None)
    if latest is None or any(b not in ended for b in blocks if b <= latest):
        return False
    looked = [look_record.block for look_record in record.looks]
    if latest in looked or latest in record.skipped:
        return False
    data = _look_data(config, [r for r in runs if r.block is not None and r.block <= latest])
    counts = [len(data["energy_j"].get(policy, [])) for policy in config.policies]
    runs_per_policy = min(counts) if counts else 0
    last_block = max(blocks)
    if runs_per_policy < record.min_runs and latest < last_block:
        return False
    previous = [look_record.runs_per_policy for look_record in record.looks]
    if runs_per_policy < record.min_runs or (previous and runs_per_policy <= previous[-1]):
        # A failed run: this block added no run of every policy, so a look would add no
        # information (and its boundary is not defined). Skip it; the next block may.
        record.skipped.append(latest)
        message = f"block {latest} added no run of every policy (a run failed): no look after it"
        if latest >= last_block:
            _stop_without_look(record, runs_per_policy)
            message += f"; every planned block has run: {record.reason}"
        store.write_experiment(experiment)
        reporter.message(message)
        return latest >= last_block
    design = SequentialDesign(
        alpha=record.alpha,
        max_runs=record.max_runs,
        min_runs=record.min_runs,
        spending="pocock" if "pocock" in record.method.lower() else "obrien-fleming",
    )
    result = look(
        design,
        runs_per_policy,
        previous,
        data,
        _questions(config, data),
        settled=record.looks[-1].answers if record.looks else (),
    )
    record.looks.append(
        LookRecord(
            block=latest,
            runs_per_policy=runs_per_policy,
            information=result.information,
            alpha_spent=result.alpha_spent,
            level=result.level,
            alpha_share=result.alpha_share,
            answers=[
                AnswerRecord(
                    metric=answer.metric,
                    policy=answer.policy,
                    reference=answer.reference,
                    kind=answer.kind,
                    settled=answer.settled,
                    verdict=answer.verdict,
                    p=answer.p,
                    level=answer.level,
                    margin=answer.margin_abs,
                    margin_value=answer.margin_value,
                    margin_unit=answer.margin_unit,
                    margin_tolerated=answer.margin_tolerated,
                    estimate=answer.estimate,
                    ci_low=answer.ci_low,
                    ci_high=answer.ci_high,
                    confidence=answer.confidence,
                    scale=answer.scale,
                    settled_at=answer.settled_at,
                    carried=answer.carried,
                )
                for answer in result.answers
            ],
        )
    )
    stop = result.stop or latest >= last_block
    cut: list[str] = []
    if stop:
        record.reason = result.reason
        if not result.stop:
            record.reason = (
                f"every planned block has run, with {runs_per_policy} runs per policy done "
                f"(fewer than the maximum of {record.max_runs}: runs failed); {result.reason}"
            )
        record.runs_per_policy = runs_per_policy
        record.stopped_early = result.settled and latest < last_block
        cut = [r.run_id for r in runs if r.block is not None and r.block > latest]
        experiment.schedule = [p for p in experiment.schedule if p.run_id not in cut]
    store.write_experiment(experiment)
    reporter.message(
        f"look after block {latest} ({runs_per_policy} runs per policy): "
        + (result.reason if stop else "not settled yet; going on")
    )
    for run_id in cut:
        store.forget_run(run_id)
        del by_id[run_id]
    return stop


def _stop_without_look(record: SequentialRecord, runs_per_policy: int) -> None:
    """The last block added nothing to look at: the last look's answers stand."""
    last = record.looks[-1] if record.looks else None
    record.runs_per_policy = last.runs_per_policy if last is not None else runs_per_policy
    record.stopped_early = False
    if last is None:
        record.reason = (
            f"every planned block has run, but no policy reached {record.min_runs} done runs "
            "(min_runs): no look was made and no question is answered"
        )
        return
    still = [f"{a.metric} {a.policy} vs {a.reference}" for a in last.answers if not a.settled]
    record.reason = (
        f"every planned block has run; failed runs left {last.runs_per_policy} runs per policy "
        f"at the last look (fewer than the maximum of {record.max_runs}), whose answers stand"
        + (": " + " and ".join(still) + " still open" if still else "")
    )


def _look_data(
    config: ExperimentConfig, runs: list[RunRecord]
) -> dict[str, dict[str, list[float]]]:
    """metric -> policy -> values of the done runs: energy, and each metric with a margin."""
    metrics = ["energy_j", *_margin_metrics(config, runs)]
    data: dict[str, dict[str, list[float]]] = {metric: {} for metric in metrics}
    for run in runs:
        if run.status != "done" or run.energy_j is None:
            continue
        for metric in metrics:
            value = run.energy_j if metric == "energy_j" else run.metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                data[metric].setdefault(run.policy, []).append(float(value))
    return data


def _margin_metrics(config: ExperimentConfig, runs: list[RunRecord]) -> list[str]:
    from greenprec.stats import DEFAULT_ACCURACY_MARGIN

    metrics = [metric for metric in config.margins if metric != "energy_j"]
    default = DEFAULT_ACCURACY_MARGIN.metric
    if default not in config.margins and any(default in run.metrics for run in runs):
        metrics.append(default)
    return metrics


def _questions(config: ExperimentConfig, data: dict[str, dict[str, list[float]]]) -> list[Any]:
    """What the experiment asks of each policy against the reference (the first policy): is
    its energy different, and is each metric with a margin equivalent (or not worse)?"""
    from greenprec.sequential import Question
    from greenprec.stats import DEFAULT_ACCURACY_MARGIN, parse_margin

    reference, *others = config.policies
    questions = []
    for policy in others:
        if "energy_j" in config.margins:
            margin = parse_margin(f"energy_j={config.margins['energy_j']}")
            questions.append(Question("energy_j", reference, policy, margin.kind, margin=margin))
        else:
            questions.append(Question("energy_j", reference, policy, "difference", log_scale=True))
        for metric in data:
            if metric == "energy_j":
                continue
            margin = (
                parse_margin(f"{metric}={config.margins[metric]}")
                if metric in config.margins
                else DEFAULT_ACCURACY_MARGIN
            )
            questions.append(Question(metric, reference, policy, margin.kind, margin=margin))
    return questions


def _remove_empty(path: Path) -> None:
    """Undo a folder this runner created but could not lock (only if nothing else is in it)."""
    with contextlib.suppress(OSError):
        (path / LOCK_NAME).unlink()
        path.rmdir()

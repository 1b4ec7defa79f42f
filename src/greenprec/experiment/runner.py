"""The experiment protocol: schedule, baseline, warm-up, runs with cool-downs, resumable."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from greenprec.errors import ConfigError
from greenprec.experiment.config import ExperimentConfig, validate
from greenprec.experiment.environment import environment
from greenprec.experiment.execute import execute_in_process, execute_inline, run_spec
from greenprec.experiment.folder import (
    DOMAIN_PREFIX,
    INTERRUPTED,
    RUN_COLUMNS,
    ResultsFolder,
    Row,
    join_domains,
)
from greenprec.experiment.progress import Reporter
from greenprec.experiment.schedule import ScheduledRun, make_schedule

FORMAT_VERSION = 1
# What a run measured or reported: cleared before a run is repeated.
RESULT_COLUMNS = RUN_COLUMNS[RUN_COLUMNS.index("started_at") :]


class ExperimentFailed(Exception):
    """A run failed under ``fail_fast``; the folder stays resumable."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def run_experiment(
    config: ExperimentConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
) -> tuple[ResultsFolder, list[Row]]:
    """Run (or continue) an experiment into ``out``; return the folder and its final runs.

    With ``resume``, the configuration stored in the folder is used and only runs that are
    not done are executed: pending ones, one interrupted mid-run, and failed ones if
    ``retry_failed``. Without it, a folder that already holds runs is refused.
    """
    reporter = reporter or Reporter()
    folder = ResultsFolder(out)
    if resume:
        config, experiment, rows = _reopen(folder)
    else:
        if config is None:
            raise ConfigError("no configuration given")
        if folder.exists():
            raise ConfigError(
                f"{folder.path} already holds an experiment; continue it with "
                f"--resume --out {folder.path}, or choose another --out"
            )
        experiment, rows = _create(folder, config)

    todo = [row for row in rows if _needs_running(row, retry_failed)]
    for row in todo:
        _clear(row)
    folder.write_runs(rows)
    meters: list[str] = experiment["meters"]["used"]
    reporter.started(len(rows), len(rows) - len(todo), str(folder.path))
    try:
        for text in experiment.get("warnings", []):
            reporter.message(f"warning: {text}")
        if todo:
            _baseline(folder, experiment, config, meters, reporter)
            _warm_up(folder, experiment, config, meters, reporter)
        for index, row in enumerate(todo):
            if index > 0 and config.cooldown_s > 0:
                reporter.phase("cool-down", row, config.cooldown_s)
                time.sleep(config.cooldown_s)
            _run_one(folder, experiment, config, meters, rows, row, reporter)
            if row["status"] == "failed" and config.fail_fast:
                raise ExperimentFailed(
                    f"run {row['run_id']} failed and --fail-fast is set: {row['error']}; "
                    f"fix it, then continue with --resume --retry-failed --out {folder.path}"
                )
    finally:
        reporter.close()
        done = all(row["status"] == "done" for row in rows)
        experiment["status"] = "complete" if done else "incomplete"
        experiment["updated_at"] = _now()
        folder.write_experiment(experiment)
    reporter.finished(rows)
    return folder, rows


def _create(folder: ResultsFolder, config: ExperimentConfig) -> tuple[dict[str, Any], list[Row]]:
    from greenprec.meters.registry import resolve
    from greenprec.precision import emulation_warnings, support

    requested = config.meters
    chosen = resolve(requested if requested != ["auto"] else "auto", config.meter_options)
    used = [meter.name for meter in chosen]
    schedule = make_schedule(config.policies, config.runs, config.seed, shuffle=config.shuffle)
    estimated = any(meter.estimated for meter in chosen)
    warnings = list(emulation_warnings(config.policies))
    if estimated:
        warnings.append(
            f"meter {'+'.join(used)} is an estimate, not a measurement: every energy figure "
            "of this experiment is estimated"
        )
    experiment: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at": _now(),
        "status": "running",
        "config": config.model_dump(mode="json"),
        "schedule": [run.to_dict() for run in schedule],
        "meters": {"requested": requested, "used": used, "estimated": estimated},
        "precision_support": support().to_dict(),
        "warnings": warnings,
        "baseline": None,
        "warmups": [],
        **environment(),
    }
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_experiment(experiment)  # the schedule is on disk before the first run starts
    rows = [_pending_row(run) for run in schedule]
    folder.write_runs(rows)
    return experiment, rows


def _reopen(folder: ResultsFolder) -> tuple[ExperimentConfig, dict[str, Any], list[Row]]:
    if not folder.exists():
        raise ConfigError(f"nothing to resume: {folder.path} holds no experiment")
    experiment = folder.read_experiment()
    config = validate(experiment["config"])
    return config, experiment, folder.read_runs()


def _pending_row(run: ScheduledRun) -> Row:
    return {**run.to_dict(), "status": "pending"}


def _needs_running(row: Row, retry_failed: bool) -> bool:
    if row["status"] in ("pending", "running"):
        return True  # "running" in a folder means the runner died mid-run: run it again
    if row["status"] == "failed":
        return retry_failed or str(row.get("error") or "").startswith(INTERRUPTED)
    return False


def _clear(row: Row) -> None:
    for key in list(row):
        if key in RESULT_COLUMNS or key.startswith(DOMAIN_PREFIX):
            row[key] = None
    row["status"] = "pending"


def _run_one(
    folder: ResultsFolder,
    experiment: dict[str, Any],
    config: ExperimentConfig,
    meters: list[str],
    rows: list[Row],
    row: Row,
    reporter: Reporter,
) -> None:
    run = ScheduledRun(row["run_id"], row["order"], row["policy"], row["repetition"], row["seed"])
    row.update(status="running", started_at=_now())
    folder.write_runs(rows)
    reporter.phase("training", row)
    spec = run_spec(config, run, meters)
    try:
        if config.isolation == "process":
            outcome = execute_in_process(spec, folder)
        else:
            outcome = execute_inline(spec, folder)
    except KeyboardInterrupt:
        row.update(
            status="failed",
            ended_at=_now(),
            error=f"{INTERRUPTED} (Ctrl-C); continue with --resume --out {folder.path}",
        )
        folder.write_runs(rows)
        raise
    _apply(row, outcome, experiment.get("baseline"))
    folder.write_runs(rows)
    reporter.run_finished(row)


def _apply(row: Row, outcome: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    if outcome["status"] != "done":
        row.update(status="failed", ended_at=_now(), error=outcome.get("error") or "failed")
        return
    measurement = outcome["measurement"]
    metrics = dict(outcome.get("metrics") or {})
    row.update(
        status="done",
        started_at=measurement["started_at"],
        ended_at=measurement["ended_at"],
        duration_s=measurement["duration_s"],
        energy_j=measurement["energy_j"],
        mean_power_w=measurement["mean_power_w"],
        meter=measurement["meter"],
        estimated=measurement["estimated"],
        counted_domains=join_domains(measurement.get("counted_domains") or []),
        test_accuracy=metrics.pop("test_accuracy", None),
        test_loss=metrics.pop("test_loss", None),
        error=None,
    )
    if baseline:
        row["net_energy_j"] = row["energy_j"] - baseline["power_w"] * row["duration_s"]
    for domain, energy_j in measurement["domains"].items():
        row[f"{DOMAIN_PREFIX}{domain}"] = energy_j
    row.update(metrics)


def _measure_phase(
    folder: ResultsFolder,
    config: ExperimentConfig,
    meters: list[str],
    name: str,
    seconds: float,
    busy: bool,
) -> dict[str, Any]:
    from greenprec.measurement import measure

    with measure(meters, interval=config.interval_s, meter_options=config.meter_options) as m:
        if busy:
            _busy_loop(seconds)
        else:
            time.sleep(seconds)
    folder.write_samples(name, m.samples.itertuples(index=False, name=None))
    return {
        "samples": f"samples/{name}.csv",
        "started_at": m.started_at.isoformat(),
        "duration_s": m.duration_s,
        "energy_j": m.energy_j,
        "power_w": m.mean_power_w,
        "estimated": m.estimated,
        "domains": m.domains,
    }


def _baseline(
    folder: ResultsFolder,
    experiment: dict[str, Any],
    config: ExperimentConfig,
    meters: list[str],
    reporter: Reporter,
) -> None:
    if config.baseline_s <= 0 or experiment.get("baseline"):
        return
    reporter.phase("baseline", None, config.baseline_s)
    experiment["baseline"] = _measure_phase(
        folder, config, meters, "baseline", config.baseline_s, busy=False
    )
    folder.write_experiment(experiment)


def _warm_up(
    folder: ResultsFolder,
    experiment: dict[str, Any],
    config: ExperimentConfig,
    meters: list[str],
    reporter: Reporter,
) -> None:
    """Before the first run of each session: the machine settles after a resume too."""
    if config.warmup_s <= 0:
        return
    reporter.phase("warm-up", None, config.warmup_s)
    count = len(experiment.setdefault("warmups", []))
    name = "warmup" if count == 0 else f"warmup-{count + 1}"
    experiment["warmups"].append(
        _measure_phase(folder, config, meters, name, config.warmup_s, busy=True)
    )
    folder.write_experiment(experiment)


def _busy_loop(seconds: float) -> None:
    """Keep every core busy: BLAS matrix products run on all threads and release the GIL."""
    import numpy as np

    matrix = np.random.default_rng(0).random((512, 512))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        matrix = matrix @ matrix
        matrix /= float(np.abs(matrix).max())

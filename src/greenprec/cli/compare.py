"""``greenprec compare``: the experiment protocol, and its progress on the terminal."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from greenprec.cli._common import (
    MeterOption,
    OptionOption,
    fail,
    make_console,
    parse_options,
    parse_params,
)
from greenprec.errors import GreenprecError


def compare_command(
    policies: Annotated[
        list[str] | None,
        typer.Argument(
            help="Precision policies to compare: fp32, mixed, bf16.", show_default=False
        ),
    ] = None,
    workload: Annotated[
        str | None, typer.Option(help="Workload name or module.path:function.")
    ] = None,
    runs: Annotated[int | None, typer.Option(help="Runs per policy.")] = None,
    seed: Annotated[int | None, typer.Option(help="Experiment seed (schedule and runs).")] = None,
    warmup: Annotated[
        float | None, typer.Option(help="CPU warm-up before the first run, seconds.")
    ] = None,
    cooldown: Annotated[float | None, typer.Option(help="Rest between runs, seconds.")] = None,
    baseline: Annotated[
        float | None, typer.Option(help="Measure idle power this long first, seconds.")
    ] = None,
    meter: MeterOption = None,
    option: OptionOption = None,
    interval: Annotated[float | None, typer.Option(help="Sampling interval, seconds.")] = None,
    run_timeout: Annotated[
        float | None,
        typer.Option(
            help="Stop a run still going after this many seconds (recorded as failed: timed "
            "out). Default: the workload's own generous limit (digits-cnn 1800 s)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default: greenprec-results/<time>).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the experiment in --out.")] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="With --resume, also run failed runs again.")
    ] = False,
    no_shuffle: Annotated[
        bool, typer.Option("--no-shuffle", help="Run in policy order, not seeded random order.")
    ] = False,
    isolation: Annotated[
        str | None, typer.Option(help="process (a fresh Python per run) or inline.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Workload epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Workload batch size.")] = None,
    data: Annotated[str | None, typer.Option(help="Workload data path (e.g. CIFAR-10).")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Workload parameter KEY=VALUE (repeatable).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with the same fields.")] = None,
    quick: Annotated[
        bool, typer.Option(help="digits-cnn, 3 runs per policy, no warm-up: about a minute.")
    ] = False,
    protocol: Annotated[
        str | None, typer.Option(help="paper: the published study's settings.")
    ] = None,
    deterministic: Annotated[
        bool | None, typer.Option("--deterministic", help="Enable TensorFlow op determinism.")
    ] = None,
    fail_fast: Annotated[
        bool | None, typer.Option("--fail-fast", help="Stop at the first failed run.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Progress as JSON lines on stdout.")
    ] = False,
) -> None:
    """Run the experiment protocol: seeded schedule, warm-up, cool-downs, every run measured."""
    from greenprec.experiment.config import load_config
    from greenprec.experiment.runner import ExperimentFailed, Terminated, run_experiment
    from greenprec.results import ExperimentExists

    if quick and protocol:
        fail("--quick and --protocol are alternatives; give one")
    if resume and out is None:
        fail("--resume needs --out DIR, the folder of the experiment to continue")
    if not resume and not policies and config is None:
        fail("no policies given; write e.g. greenprec compare fp32 mixed")
    overrides: dict[str, Any] = {
        "policies": policies or None,
        "protocol": "quick" if quick else protocol,
        "workload": workload,
        "runs": runs,
        "seed": seed,
        "warmup_s": warmup,
        "cooldown_s": cooldown,
        "baseline_s": baseline,
        "meters": meter or None,
        "meter_options": parse_options(option) or None,
        "interval_s": interval,
        "run_timeout_s": run_timeout,
        "shuffle": False if no_shuffle else None,
        "isolation": isolation,
        "epochs": epochs,
        "batch_size": batch_size,
        "data": data,
        "params": parse_params(param) or None,
        "deterministic": deterministic,
        "fail_fast": fail_fast,
    }
    experiment_config = None
    if not resume:
        experiment_config = load_config(overrides, config)
    elif any(value is not None for key, value in overrides.items()) or config is not None:
        fail("--resume continues with the folder's own settings; give only --out (and --quiet)")
    if out is None:
        out = Path("greenprec-results") / datetime.now().strftime("%Y%m%d-%H%M%S")
    reporter = _reporter(quiet=quiet, jsonl=jsonl)
    previous = _terminate_like_ctrl_c()
    try:
        store, records = run_experiment(
            experiment_config, out, resume=resume, retry_failed=retry_failed, reporter=reporter
        )
    except ExperimentExists as error:
        fail(f"{error}; continue it with --resume --out {error.path}, or choose another --out")
    except ExperimentFailed as error:
        fail(
            f"{error}; fix it, then continue with --resume --retry-failed --out {error.folder}",
            code=1,
        )
    except (KeyboardInterrupt, Terminated) as stop:
        by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        typer.echo(
            f"greenprec: interrupted ({by}); the current run is marked failed (interrupted). "
            f"Continue with: greenprec compare --resume --out {out}",
            err=True,
        )
        # 128 + the signal's number, as a shell reports a process killed by it.
        raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    from greenprec.results import record_row

    rows = [record_row(record) for record in records]
    if not jsonl:
        _summarise(store.path, rows)
    failed = [row for row in rows if row["status"] != "done"]
    if failed:
        typer.echo(
            f"greenprec: {len(failed)} run(s) failed; see runs.csv and logs/ in {store.path}; "
            f"run them again with --resume --retry-failed --out {store.path}",
            err=True,
        )
        raise typer.Exit(1)


def _terminate_like_ctrl_c() -> Any:
    """SIGTERM (what Slurm, systemd and ``timeout`` send) stops the experiment as Ctrl-C does;
    returns the handler it replaced (None where signals cannot be set: not the main thread)."""

    from greenprec.experiment.runner import Terminated

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _summarise(folder: Path, rows: list[dict[str, Any]]) -> None:
    """The full report when any run is done; the runs summary otherwise."""
    from greenprec.cli.tables import summary_table

    if any(row["status"] == "done" for row in rows):
        from greenprec.cli.report import report_command

        try:
            report_command(folder)
            return
        except GreenprecError as error:
            typer.echo(f"greenprec: warning: no report ({error}); the runs are saved", err=True)
    make_console().print(summary_table(rows, title=f"greenprec compare: {folder}"))


def _reporter(*, quiet: bool, jsonl: bool) -> Any:
    from greenprec.cli import progress
    from greenprec.experiment.progress import Reporter

    if jsonl:
        return progress.JsonLinesReporter()
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return progress.RichReporter()
    return progress.PlainReporter()


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)

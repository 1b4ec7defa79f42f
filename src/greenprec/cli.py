"""The ``greenprec`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from greenprec._version import __version__
from greenprec.errors import ConfigError, GreenprecError, GreenprecWarning, MeterError

app = typer.Typer(
    name="greenprec",
    help="Measure what numerical precision costs in energy when you train neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback: the problem and the fix."""
    typer.echo(f"greenprec: error: {message}", err=True)
    raise typer.Exit(code)


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``-o KEY=VALUE`` pairs to a dict; values stay strings, meters convert them."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed option {pair!r}; write -o KEY=VALUE, e.g. -o power_w=42")
        options[key.strip()] = value
    return options


def _version(value: bool) -> None:
    if value:
        typer.echo(f"greenprec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Measure what numerical precision costs in energy when you train neural networks."""


MeterOption = Annotated[
    list[str] | None,
    typer.Option("--meter", "-m", help="Meter name (repeatable); default: auto."),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Meter option KEY=VALUE (repeatable), e.g. root=/sys/..."),
]
IntervalOption = Annotated[
    float, typer.Option("--interval", help="Sampling interval in seconds.", min=0.001)
]


@app.command("meters")
def meters_command(
    option: OptionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered meter: available here or not (and why), measured or estimated."""
    from greenprec.meters.base import Probe
    from greenprec.meters.registry import meter_classes, options_for, probe
    from greenprec.plugins import plugin_errors

    options = parse_options(option)
    rows: list[dict[str, Any]] = []
    for name, cls in sorted(meter_classes().items()):
        try:
            result = probe(cls, options_for(cls, options))
        except ConfigError as error:
            result = Probe(False, str(error))
        rows.append(
            {
                "name": name,
                "available": result.available,
                "kind": "estimated" if cls.estimated else "measured",
                "auto": cls.auto,
                "domains": result.domains,
                "reason": result.reason,
                "description": cls.description,
            }
        )
    if as_json:
        typer.echo(json.dumps({"meters": rows, "plugin_errors": plugin_errors}, indent=2))
        return
    from rich.table import Table

    table = Table(title="greenprec meters")
    for column in ("meter", "available", "kind", "in auto", "domains here", "reason / notes"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            "[green]yes[/]" if row["available"] else "[red]no[/]",
            row["kind"],
            "yes" if row["auto"] else "no",
            ", ".join(row["domains"]),
            row["reason"] or row["description"],
        )
    console = _console()
    console.print(table)
    for plugin, problem in plugin_errors.items():
        console.print(f"[yellow]plugin {plugin!r} {problem}[/]")


@app.command(
    "measure",
    context_settings={"allow_interspersed_args": False},
)
def measure_command(
    command: Annotated[
        list[str] | None, typer.Argument(help="The command to run, after --.", show_default=False)
    ] = None,
    meter: MeterOption = None,
    option: OptionOption = None,
    interval: IntervalOption = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measurement as JSON.")] = False,
) -> None:
    """Run COMMAND and measure its energy: greenprec measure -- python train.py"""
    from greenprec.measurement import measure

    if not command:
        fail("no command given; write: greenprec measure [OPTIONS] -- COMMAND [ARGS...]")
    if shutil.which(command[0]) is None:
        fail(f"cannot run {command[0]!r}: no such executable; check the command and PATH")
    measurement = measure(meter or "auto", interval=interval, meter_options=parse_options(option))
    measurement.start()
    try:
        completed = subprocess.run(command, check=False)
    except OSError as error:
        measurement.stop()
        fail(f"cannot run {command[0]!r}: {error.strerror or error}; check the command and PATH")
    except KeyboardInterrupt:
        measurement.stop()
        raise
    measurement.stop()
    if as_json:
        # to_json never writes NaN or Infinity (not JSON); a value it cannot give is null.
        record = {
            "command": command,
            "exit_code": completed.returncode,
            **json.loads(measurement.to_json()),
        }
        typer.echo(json.dumps(record, indent=2, allow_nan=False))
    else:
        _print_measurement(measurement)
    raise typer.Exit(completed.returncode)


def _print_measurement(measurement: Any) -> None:
    from rich.table import Table

    estimated = " (estimated)" if measurement.estimated else ""
    table = Table(title=f"greenprec measure: {measurement.meter}{estimated}")
    table.add_column("domain")
    table.add_column("energy_j" + estimated, justify="right")
    table.add_column("mean_power_w" + estimated, justify="right")
    table.add_column("in total")
    duration_s = measurement.duration_s
    counted = set(measurement.counted_domains)
    for domain, energy_j in measurement.domains.items():
        power_w = energy_j / duration_s if duration_s > 0 else float("nan")
        table.add_row(
            domain, f"{energy_j:.3f}", f"{power_w:.2f}", "yes" if domain in counted else "no"
        )
    table.add_row(
        "[bold]total[/]",
        f"[bold]{measurement.energy_j:.3f}[/]",
        f"[bold]{measurement.mean_power_w:.2f}[/]",
        "",
    )
    console = _console()
    console.print(table)
    console.print(f"duration_s: {duration_s:.3f}")


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``--param KEY=VALUE`` pairs; values read as JSON where they can be (numbers, booleans)."""
    params: dict[str, Any] = {}
    for key, value in parse_options(pairs).items():
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@app.command("compare")
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
    from greenprec.experiment.runner import ExperimentFailed, run_experiment
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
    except KeyboardInterrupt:
        typer.echo(
            f"greenprec: interrupted; the current run is marked failed (interrupted). "
            f"Continue with: greenprec compare --resume --out {out}",
            err=True,
        )
        raise typer.Exit(130) from None
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


def _summarise(folder: Path, rows: list[dict[str, Any]]) -> None:
    """The full report when any run is done; the runs summary otherwise."""
    from greenprec.experiment.tables import summary_table

    if any(row["status"] == "done" for row in rows):
        from greenprec.report.commands import report_command

        try:
            report_command(folder)
            return
        except GreenprecError as error:
            typer.echo(f"greenprec: warning: no report ({error}); the runs are saved", err=True)
    _console().print(summary_table(rows, title=f"greenprec compare: {folder}"))


def _reporter(*, quiet: bool, jsonl: bool) -> Any:
    from greenprec.experiment import progress

    if jsonl:
        return progress.JsonLinesReporter()
    if quiet:
        return progress.Reporter()
    if sys.stderr.isatty():
        return progress.RichReporter()
    return progress.PlainReporter()


@app.command("workloads")
def workloads_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the workloads compare can train: built-in and from plugins."""
    from greenprec.workloads import available_workloads, workload_errors

    workloads = available_workloads()
    if as_json:
        rows = [
            {"name": info.name, "description": info.description, "source": info.source}
            for info in workloads.values()
        ]
        typer.echo(json.dumps({"workloads": rows, "errors": workload_errors}, indent=2))
        return
    from rich.table import Table

    table = Table(title="greenprec workloads")
    for column in ("workload", "source", "description"):
        table.add_column(column)
    for info in workloads.values():
        table.add_row(info.name, info.source, info.description)
    console = _console()
    console.print(table)
    console.print("Any module.path:function taking a context also works: --workload pkg.mod:fn")
    for source, problem in workload_errors.items():
        console.print(f"[yellow]workload {source!r} {problem}[/]")


@app.command("runs")
def runs_command(
    folder: Annotated[Path, typer.Argument(help="A results folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print runs as JSON.")] = False,
) -> None:
    """Print the runs table of a results folder: status, energy, duration, accuracy."""
    from greenprec.experiment.tables import runs_table, summary_table
    from greenprec.results import ResultsStore, record_row

    snapshot = ResultsStore(folder).load()
    rows = [record_row(run) for run in snapshot.runs]
    for problem in snapshot.problems:
        typer.echo(f"greenprec: warning: {problem}", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    console = _console()
    console.print(runs_table(rows, title=str(folder)))
    console.print(summary_table(rows))


def _register_report_commands() -> None:
    from greenprec.report.commands import import_energibridge_command, report_command

    app.command("report")(report_command)
    import_app = typer.Typer(
        help="Turn other tools' recordings into a greenprec results folder.",
        no_args_is_help=True,
    )
    import_app.command("energibridge")(import_energibridge_command)
    app.add_typer(import_app, name="import")


_register_report_commands()


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    if issubclass(category, GreenprecWarning):
        typer.echo(f"greenprec: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, *args, **kwargs)


_default_showwarning = warnings.showwarning


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except MeterError as error:
        # A meter that failed mid-measurement is a failed measurement (1), not bad input (2).
        typer.echo(f"greenprec: error: {error}", err=True)
        sys.exit(1)
    except GreenprecError as error:
        typer.echo(f"greenprec: error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("greenprec: interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        # Usage errors from the (vendored) click layer: duck-typed so any typer version works.
        exit_code = getattr(error, "exit_code", None)
        if hasattr(error, "format_message") and isinstance(exit_code, int):
            typer.echo(
                f"greenprec: error: {error.format_message()} (see greenprec --help)", err=True
            )
            sys.exit(exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)

"""The ``greenprec`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from typing import Annotated, Any, NoReturn

import typer

from greenprec._version import __version__
from greenprec.errors import ConfigError, GreenprecError, GreenprecWarning

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
        record = {"command": command, "exit_code": completed.returncode, **measurement.to_dict()}
        typer.echo(json.dumps(record, indent=2))
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

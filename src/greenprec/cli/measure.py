"""``greenprec measure -- CMD``: the energy of any command."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Annotated, Any

import typer

from greenprec.cli._common import (
    IntervalOption,
    MeterOption,
    OptionOption,
    fail,
    make_console,
    parse_options,
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
    console = make_console()
    console.print(table)
    console.print(f"duration_s: {duration_s:.3f}")


def register(app: typer.Typer) -> None:
    app.command("measure", context_settings={"allow_interspersed_args": False})(measure_command)

"""``greenprec measure -- CMD``: the energy of any command."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING, Annotated

import typer

from greenprec.cli._common import (
    FLAG,
    Command,
    IntervalOption,
    MeterOption,
    OptionOption,
    add_column,
    fail,
    make_console,
    make_table,
    parse_options,
)
from greenprec.errors import GreenprecError, Terminated

if TYPE_CHECKING:
    from greenprec.measurement import Measurement

__all__ = ["register"]


def _measure_command(
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="COMMAND", help="The command to run, after --.", show_default=False),
    ] = None,
    meter: MeterOption = None,
    option: OptionOption = None,
    interval: IntervalOption = 0.2,
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print the measurement as JSON.")
    ] = False,
) -> None:
    """Run COMMAND and measure its energy: greenprec measure -- python train.py"""
    from greenprec.cli.compare import terminate_like_ctrl_c
    from greenprec.experiment.config import unused_meter_options
    from greenprec.measurement import measure
    from greenprec.meters.registry import resolve

    if not command:
        fail("no command given; write: greenprec measure [OPTIONS] -- COMMAND [ARGS...]")
    if shutil.which(command[0]) is None:
        fail(f"cannot run {command[0]!r}: no such executable; check the command and PATH")
    options = parse_options(option)
    # Resolved here, not inside measure(): an option aimed at a meter that is not measuring
    # is refused before the command runs rather than dropped without a word.
    meters = resolve(meter or "auto", options)
    unused = unused_meter_options(
        options, [m.name for m in meters], auto=not meter or meter == ["auto"]
    )
    if unused:
        fail(f"-o: {unused[0]}")
    measurement = measure(meters, interval=interval)
    measurement.start()
    previous = terminate_like_ctrl_c()
    try:
        completed = subprocess.run(command, check=False)
    except OSError as error:
        measurement.stop()
        fail(f"cannot run {command[0]!r}: {error.strerror or error}; check the command and PATH")
    except (KeyboardInterrupt, Terminated) as stop:
        # typer would turn the interrupt into a silent exit 130: say what was stopped, and
        # give what was measured up to then (the command's energy so far is still a result).
        by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        what = f"greenprec: interrupted ({by}) while measuring {shlex.join(command)[:200]}"
        try:
            measurement.stop()
        except GreenprecError as error:
            typer.echo(f"{what}; nothing was measured: {error}", err=True)
        else:
            _show(measurement, command, None, as_json, interrupted=by)
            typer.echo(
                f"{what}; the figures above cover its first {measurement.duration_s:.1f} s only",
                err=True,
            )
        # 128 + the signal's number, as a shell reports a process killed by it.
        raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    measurement.stop()
    _show(measurement, command, completed.returncode, as_json)
    raise typer.Exit(completed.returncode)


def _show(
    measurement: Measurement,
    command: list[str],
    exit_code: int | None,
    as_json: bool,
    interrupted: str | None = None,
) -> None:
    if as_json:
        # to_json never writes NaN or Infinity (not JSON); a value it cannot give is null.
        record = {
            "command": command,
            "exit_code": exit_code,
            **({"interrupted": interrupted} if interrupted else {}),
            **json.loads(measurement.to_json()),
        }
        typer.echo(json.dumps(record, indent=2, allow_nan=False))
    else:
        _print_measurement(measurement)


def _print_measurement(measurement: Measurement) -> None:
    from rich.text import Text

    estimated = " (estimated)" if measurement.estimated else ""
    table = make_table(f"greenprec measure: {measurement.meter}{estimated}")
    add_column(table, "domain")
    add_column(table, "energy_j" + estimated, right=True)
    add_column(table, "mean_power_w" + estimated, right=True)
    add_column(table, "in total")
    duration_s = measurement.duration_s
    counted = set(measurement.counted_domains)
    for domain, energy_j in measurement.domains.items():
        power_w = energy_j / duration_s if duration_s > 0 else float("nan")
        table.add_row(
            domain, f"{energy_j:.3f}", f"{power_w:.2f}", "yes" if domain in counted else "no"
        )
    table.add_row(
        Text("total", style="bold"),
        Text(f"{measurement.energy_j:.3f}", style="bold"),
        Text(f"{measurement.mean_power_w:.2f}", style="bold"),
        "",
    )
    console = make_console()
    console.print(table)
    console.print(f"duration_s: {duration_s:.3f}")


def register(app: typer.Typer) -> None:
    app.command("measure", cls=Command, context_settings={"allow_interspersed_args": False})(
        _measure_command
    )

"""``greenprec meters``: which meters work here, and why not."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from greenprec.cli._common import (
    FLAG,
    Command,
    OptionOption,
    add_column,
    make_console,
    make_table,
    parse_options,
)
from greenprec.errors import ConfigError

if TYPE_CHECKING:
    from greenprec.meters.base import Meter

__all__ = ["register"]


def _meters_command(
    option: OptionOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List every registered meter: available here or not (and why), and what its figures are."""
    from greenprec.meters.base import Probe
    from greenprec.meters.registry import meter_classes, option_docs, options_for, probe
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
                "kind": _kind(cls),
                "auto": cls.auto,
                "domains": result.domains,
                "reason": result.reason,
                "description": cls.description,
                "options": [dataclasses.asdict(doc) for doc in option_docs(cls)],
            }
        )
    if as_json:
        typer.echo(json.dumps({"meters": rows, "plugin_errors": plugin_errors}, indent=2))
        return
    from rich.text import Text

    # Markup off, and every column folds rather than cuts: a reason is an install hint
    # ("pip install 'greenprec[nvidia]'") that must print whole, brackets included.
    table = make_table("greenprec meters")
    for column in ("meter", "available", "kind", "in auto", "domains here", "reason / notes"):
        add_column(table, column)
    for row in rows:
        table.add_row(
            row["name"],
            Text("yes", style="green") if row["available"] else Text("no", style="red"),
            row["kind"],
            "yes" if row["auto"] else "no",
            ", ".join(row["domains"]),
            row["reason"] or row["description"],
        )
    console = make_console()
    console.print(table)
    for plugin, problem in plugin_errors.items():
        console.print(Text(f"plugin {plugin!r} {problem}", style="yellow"))


def _kind(cls: type[Meter]) -> str:
    """What a meter's figures are: a simulated meter makes its power up, whatever else it says."""
    if cls.simulated:
        return "simulated"
    return "estimated" if cls.estimated else "measured"


def register(app: typer.Typer) -> None:
    app.command("meters", cls=Command)(_meters_command)

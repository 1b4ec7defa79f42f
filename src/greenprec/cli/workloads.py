"""``greenprec workloads``: what compare can train."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from greenprec.cli._common import FLAG, Command, add_column, make_console, make_table


def workloads_command(
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of a table.")
    ] = False,
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
    from rich.text import Text

    table = make_table("greenprec workloads")
    for column in ("workload", "source", "description"):
        add_column(table, column)
    for info in workloads.values():
        table.add_row(info.name, info.source, info.description)
    console = make_console()
    console.print(table)
    console.print("Any module.path:function taking a context also works: --workload pkg.mod:fn")
    for source, problem in workload_errors.items():
        console.print(Text(f"workload {source!r} {problem}", style="yellow"))


def register(app: typer.Typer) -> None:
    app.command("workloads", cls=Command)(workloads_command)

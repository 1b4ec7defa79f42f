"""``greenprec workloads``: what compare can train."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from greenprec.cli._common import FLAG, Command, add_column, make_console, make_table

__all__ = ["register"]


def _workloads_command(
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List the workloads compare can train: built-in and from plugins."""
    from greenprec.workloads import available_workloads, requirements, workload_errors
    from greenprec.workloads.core import framework_of

    workloads = available_workloads()
    needs = {name: requirements(info.function) for name, info in workloads.items()}
    if as_json:
        rows = [
            {
                "name": info.name,
                "description": info.description,
                "source": info.source,
                "framework": framework_of(info.function),
                "needs": [
                    {"module": r.module, "extra": r.extra, "installed": r.installed}
                    for r in needs[info.name]
                ],
                "ready": all(r.installed for r in needs[info.name]),
            }
            for info in workloads.values()
        ]
        typer.echo(json.dumps({"workloads": rows, "errors": workload_errors}, indent=2))
        return
    from rich.text import Text

    table = make_table("greenprec workloads")
    for column in ("workload", "needs", "source", "description"):
        add_column(table, column)
    for info in workloads.values():
        missing = [r for r in needs[info.name] if not r.installed]
        if not needs[info.name]:
            status = "nothing more"
        elif missing:
            extras = " ".join(sorted({f"'greenprec[{r.extra}]'" for r in missing}))
            status = f"not installed: pip install {extras}"
        else:
            status = "installed: " + ", ".join(r.module for r in needs[info.name])
        table.add_row(info.name, status, info.source, info.description)
    console = make_console()
    console.print(table)
    console.print("Any module.path:function taking a context also works: --workload pkg.mod:fn")
    for source, problem in workload_errors.items():
        console.print(Text(f"workload {source!r} {problem}", style="yellow"))


def register(app: typer.Typer) -> None:
    app.command("workloads", cls=Command)(_workloads_command)

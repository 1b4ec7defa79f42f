"""``greenprec runs DIR``: the runs table of a results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from greenprec.cli._common import FLAG, Command, make_console, os_error_line
from greenprec.errors import ConfigError


def runs_command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A results folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print runs as JSON.")
    ] = False,
) -> None:
    """Print the runs table of a results folder: status, energy, duration, accuracy."""
    from greenprec.cli.tables import runs_table, summary_table
    from greenprec.results import ResultsStore, record_row

    try:
        snapshot = ResultsStore(folder).load()
    except OSError as error:
        raise ConfigError(
            os_error_line(error, "check the folder's permissions (greenprec runs only reads)")
        ) from None
    rows = [record_row(run) for run in snapshot.runs]
    for problem in snapshot.problems:
        typer.echo(f"greenprec: warning: {problem}", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    console = make_console()
    console.print(runs_table(rows, title=str(folder)))
    console.print(summary_table(rows))


def register(app: typer.Typer) -> None:
    app.command("runs", cls=Command)(runs_command)

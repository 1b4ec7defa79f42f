"""``greenprec runs DIR``: the runs table of a results folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from greenprec.cli._common import FLAG, Command, make_console, os_error_line
from greenprec.errors import ConfigError

if TYPE_CHECKING:
    from greenprec.results import ResultsStore

__all__ = ["register"]


def _runs_command(
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
    jobs = _job_states(ResultsStore(folder))
    for row in rows:
        if row["run_id"] in jobs:
            row["job"] = jobs[row["run_id"]]
    for problem in snapshot.problems:
        typer.echo(f"greenprec: warning: {problem}", err=True)
    if as_json:
        typer.echo(json.dumps([_strict(row) for row in rows], indent=2, default=str))
        return
    console = make_console()
    console.print(runs_table(rows, title=str(folder)))
    console.print(summary_table(rows))


def _strict(row: dict[str, object]) -> dict[str, object]:
    """``row`` as strict JSON can hold it: a NaN or infinite metric (a workload may return
    one) becomes null, as in runs.csv, instead of ``NaN``, which no JSON parser but Python's
    reads."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in row.items()
    }


def _job_states(store: ResultsStore) -> dict[str, str]:
    """Each run's latest Slurm job state (a cluster experiment): Slurm's word now for a job
    still pending or running, when Slurm answers; the state last recorded otherwise."""
    from greenprec.experiment.cluster import latest_jobs
    from greenprec.experiment.slurm import SlurmError, job_states

    try:
        latest = latest_jobs(store)
    except ConfigError as error:
        typer.echo(f"greenprec: warning: {error}", err=True)
        return {}
    live = sorted({j.job_id for j in latest.values() if j.job_id and not j.final})
    now = {}
    if live:
        try:
            now = {job_id: state.state for job_id, state in job_states(live).items()}
        except SlurmError as error:
            typer.echo(f"greenprec: warning: job states as last recorded ({error})", err=True)
    return {
        run_id: now.get(job.job_id or "", job.state) if job.job_id else job.state
        for run_id, job in latest.items()
    }


def register(app: typer.Typer) -> None:
    app.command("runs", cls=Command)(_runs_command)

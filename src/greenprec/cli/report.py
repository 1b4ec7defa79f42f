"""``greenprec report DIR``: statistics, report.md/html and figures of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    folder: Annotated[
        Path, typer.Argument(help="A results folder (greenprec compare --out, or an import).")
    ],
    no_outliers: Annotated[
        bool,
        typer.Option(
            "--no-outliers", help="Keep the runs the study's |z| > 3 energy rule would remove."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the paths written.")
    ] = False,
) -> None:
    """Write stats.json, report.md, report.html and figures/ into FOLDER; print the summary."""
    from rich.console import Console

    from greenprec.report.build import build_report

    report = build_report(folder, outliers=not no_outliers)
    # Every run (or value) the analysis left out is named on stderr too, also with --quiet:
    # a figure computed from fewer runs than the folder holds must never go unnoticed.
    whole = [e for e in report.excluded if e.column is None]
    if report.excluded:
        total = report.stats["runs"]["total"]
        typer.echo(
            f"greenprec: {len(whole)} of {total} runs not used"
            + (
                f", and {len(report.excluded) - len(whole)} single values"
                if len(whole) < len(report.excluded)
                else ""
            )
            + ":",
            err=True,
        )
        for entry in report.excluded:
            typer.echo(f"greenprec:   {entry.text()}", err=True)
    console = Console(highlight=False)
    if not quiet:
        console.print(report.summary_table())
        for line in report.stats["verdict"]:
            console.print(f"[bold]{line}[/]", markup=True)
        for line in report.warnings:
            console.print(f"[yellow]warning:[/] {line}", markup=True)
    console.print(f"wrote {report.html_path}", markup=False)
    console.print(f"wrote {report.markdown_path}", markup=False)
    console.print(f"wrote {report.stats_path}", markup=False)
    if report.figures:
        console.print(
            f"wrote {len(report.figures)} figures (PNG and SVG) to {report.folder / 'figures'}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)

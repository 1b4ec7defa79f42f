"""``greenprec report DIR``: statistics, report.md/html and figures of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from greenprec.cli._common import FLAG, Command, folder_problem, make_console, os_error_line
from greenprec.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from greenprec.report.build import Report
    from greenprec.stats import Margin

__all__ = ["register", "report_command"]


def report_command(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="A results folder (greenprec compare --out, or an import)."
        ),
    ],
    no_outliers: Annotated[
        bool,
        typer.Option(
            "--no-outliers",
            metavar=FLAG,
            help="Keep the runs the study's |z| > 3 energy rule would remove.",
        ),
    ] = False,
    margin: Annotated[
        list[str] | None,
        typer.Option(
            "--margin",
            metavar="METRIC=SPEC",
            help="Equivalence margin, repeatable: test_accuracy=1pp (within ±1 pp), "
            "test_accuracy=-1pp (not worse than −1 pp), energy_j=+5% (not more than +5%), "
            "test_loss=0.02 (own units); an accuracy needs its unit (pp or %, or a fraction "
            "below 1). Default: the experiment's margins, else ±1 pp for test accuracy.",
        ),
    ] = None,
    sesoi: Annotated[
        list[str] | None,
        typer.Option(
            "--sesoi",
            metavar="METRIC=SPEC",
            help="Smallest effect of interest the runs needed are planned for, e.g. "
            "energy_j=5% (of the reference mean). Default: the experiment's, else energy's "
            "margin; without either, no runs-needed figure for energy.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", metavar=FLAG, help="Print only the paths written.")
    ] = False,
) -> None:
    """Write stats.json, report.md, report.html and figures/ into DIR; print the summary."""
    margins, effects = _parsed_margins(margin or [], sesoi or [])
    report = _built_report(folder, outliers=not no_outliers, margins=margins, sesoi=effects)
    _echo_excluded(report)
    # Markup off: policies, folder names and install hints ('greenprec[nvidia]') print as
    # they are; greenprec's own emphasis is a Text style.
    console = make_console()
    if not quiet:
        _print_summary(console, report)
    console.print(f"wrote {report.html_path}")
    console.print(f"wrote {report.markdown_path}")
    console.print(f"wrote {report.stats_path}")
    if report.figures:
        console.print(
            f"wrote {len(report.figures)} figures (PNG and SVG) to {report.folder / 'figures'}"
        )


def _parsed_margins(margin: list[str], sesoi: list[str]) -> tuple[list[Margin], list[Margin]]:
    """The ``--margin`` and ``--sesoi`` options, parsed."""
    from greenprec.stats import parse_margin, parse_sesoi

    # A bad margin is one line (the parse error) and exit 2, before the folder is touched.
    try:
        margins = [parse_margin(text) for text in margin]
    except ConfigError as error:
        raise ConfigError(f"--margin: {error}") from None
    try:
        effects = [parse_sesoi(text) for text in sesoi]
    except ConfigError as error:
        raise ConfigError(f"--sesoi: {error}") from None
    return margins, effects


def _built_report(
    folder: Path, *, outliers: bool, margins: list[Margin], sesoi: list[Margin]
) -> Report:
    """The report written into ``folder``; a folder that cannot be read or written is one
    ConfigError line."""
    from greenprec.report.build import build_report

    problem = folder_problem(folder, create=False) if folder.is_dir() else None
    if problem is not None:
        # Before the analysis, not after it: the report is written into FOLDER itself.
        raise ConfigError(f"{problem}; the report is written into the folder: {_WRITABLE_FIX}")
    try:
        return build_report(folder, outliers=outliers, margins=margins, sesoi=sesoi)
    except OSError as error:
        # A file of the folder that cannot be read (a folder where a samples file belongs) or
        # written: one line, and a ConfigError, so that compare's summary can carry on.
        raise ConfigError(os_error_line(error, _WRITABLE_FIX)) from None


def _echo_excluded(report: Report) -> None:
    # Every run (or value) the analysis left out is named on stderr too, also with --quiet:
    # a figure computed from fewer runs than the folder holds must never go unnoticed.
    if not report.excluded:
        return
    whole = [e for e in report.excluded if e.column is None]
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


def _print_summary(console: Console, report: Report) -> None:
    """The recommendation (a selection folder), the summary table, the verdict, the warnings and
    a hint when the default margin was used."""
    from rich.text import Text

    if report.recommendation is not None:
        # A recommendation's folder: its answer first, as at the top of report.md.
        from greenprec.cli.recommendation import recommendation_lines, recommendation_table

        console.print(recommendation_table(report.recommendation))
        for answer in recommendation_lines(report.recommendation):
            console.print(answer)
    console.print(report.summary_table())
    for line in report.stats["verdict"]:
        console.print(Text(line, style="bold"))
    for line in report.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", line))
    if any(use.source == "default" for use in report.analysis.margins.values()):
        console.print(
            "margin: the default ±1 pp for test accuracy was used; set your own with "
            "--margin test_accuracy=SPEC (e.g. test_accuracy=0.5pp)"
        )


_WRITABLE_FIX = "make the folder writable (chmod -R u+w), or copy it (cp -r) and report on the copy"


def register(app: typer.Typer) -> None:
    app.command("report", cls=Command)(report_command)

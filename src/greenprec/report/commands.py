"""Typer command functions for ``greenprec report`` and ``greenprec import energibridge``.

They are registered by ``greenprec.cli``; a ConfigError they raise becomes one line on stderr
and exit code 2 there (``greenprec.cli.main``).
"""

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


def import_energibridge_command(
    group: Annotated[
        list[str],
        typer.Option(
            "--group",
            "-g",
            help="NAME=GLOB: the EnergiBridge CSVs of one policy (repeatable; the first is "
            "the baseline). Quote the glob.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="The results folder to create.", show_default=False),
    ],
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            help="GLOB of CSVs with a run_id column (test_accuracy, test_loss, ...), joined to "
            "the run whose id equals run_id or ends in _<run_id> or -<run_id>.",
        ),
    ] = None,
    counter_range_j: Annotated[
        list[str] | None,
        typer.Option(
            "--counter-range-j",
            help="Wrap range of the energy counters in J: one number for all, or COLUMN=J for "
            "one column (repeatable), e.g. --counter-range-j 'PACKAGE_ENERGY (J)=262144'. "
            "Default: inferred at each drop (the smallest power of two above the values "
            "seen), which is right for Intel (262144) and for AMD, whose range depends on the "
            "EnergiBridge release (some write CPU_ENERGY values of megajoules: 65536 is wrong "
            "for them).",
            show_default=False,
        ),
    ] = None,
    separator: Annotated[
        str | None,
        typer.Option(
            "--separator",
            help="Column separator of the CSVs (',', ';' or 'tab'); default: detected from "
            "each file's header.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Turn EnergiBridge CSVs into a greenprec results folder: one run per file."""
    from rich.console import Console
    from rich.markup import escape

    from greenprec.energibridge import parse_counter_ranges
    from greenprec.experiment.tables import summary_table
    from greenprec.importers.energibridge import import_energibridge

    result = import_energibridge(
        group,
        out,
        metrics=metrics,
        counter_range_j=parse_counter_ranges(counter_range_j or []),
        separator=separator,
    )
    console = Console(highlight=False)
    console.print(summary_table(result.rows, title=f"imported into {result.folder.path}"))
    for line in result.warnings:
        # Escaped: file paths and column names may hold brackets that rich reads as markup.
        console.print(f"[yellow]warning:[/] {escape(line)}", markup=True)
    console.print(f"next: greenprec report {result.folder.path}", markup=False)

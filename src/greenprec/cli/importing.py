"""``greenprec import TOOL``: other tools' recordings as a greenprec results folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from greenprec.cli._common import Command, Group, fail, folder_problem, make_console, os_error_line

if TYPE_CHECKING:
    from greenprec.importers.codecarbon import CodeCarbonImport
    from greenprec.importers.energibridge import ImportResult

__all__ = ["import_codecarbon_command", "import_energibridge_command", "register"]

SOURCES = ("energibridge", "codecarbon")
"""The tools ``greenprec import`` reads, in the order its help lists them."""


class _ImportGroup(Group):
    """``greenprec import``: an unknown tool is answered with the tools it knows, on one line."""

    # click's context and command: typer vendors click, under a private module name.
    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        from greenprec.errors import ConfigError

        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            known = ", ".join(sorted(self.list_commands(ctx), key=_source_order))
            # A ConfigError: one line and exit code 2, as every bad input of greenprec's.
            raise ConfigError(f"unknown source {name[:40]!r}; greenprec import reads: {known}")
        return super().resolve_command(ctx, args)


def _source_order(name: str) -> tuple[int, str]:
    return (SOURCES.index(name) if name in SOURCES else len(SOURCES), name)


def import_energibridge_command(
    group: Annotated[
        list[str],
        typer.Option(
            "--group",
            "-g",
            metavar="NAME=GLOB",
            help="NAME=GLOB: the EnergiBridge CSVs of one policy (repeatable; the first is "
            "the reference). Quote the glob.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="The results folder to create.", show_default=False
        ),
    ],
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            metavar="GLOB",
            help="GLOB of CSVs with a run_id column (test_accuracy, test_loss, ...), joined to "
            "the run whose id equals run_id or ends in _<run_id> or -<run_id>.",
        ),
    ] = None,
    counter_range_j: Annotated[
        list[str] | None,
        typer.Option(
            "--counter-range-j",
            metavar="J|COLUMN=J",
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
            metavar="SEP",
            help="Column separator of the CSVs (',', ';' or 'tab'); default: detected from "
            "each file's header.",
            show_default=False,
        ),
    ] = None,
    before_line: Annotated[
        list[str] | None,
        typer.Option(
            "--before-line",
            metavar="FILE=LINE",
            help="Read FILE only up to the line before LINE (repeatable): its rows before a "
            "line that cannot be read, such as one where a sensor appeared mid-run (the error "
            "gives the exact command).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Turn EnergiBridge CSVs into a greenprec results folder: one run per file."""
    # Checked before the files are read: a read-only parent, or --out below a file, would
    # otherwise be found only after every CSV was parsed.
    problem = folder_problem(out, create=True)
    if problem is not None:
        fail(f"--out: {problem}; choose another --out")
    result = _imported(
        group,
        out,
        metrics=metrics,
        counter_range_j=counter_range_j or [],
        separator=separator,
        before_line=before_line or [],
    )
    _print_imported(result)


def _imported(
    group: list[str],
    out: Path,
    *,
    metrics: str | None,
    counter_range_j: list[str],
    separator: str | None,
    before_line: list[str],
) -> ImportResult:
    """The import itself; a CSV with new columns mid-file is one ConfigError that names the
    command to import the rows before them."""
    from greenprec.errors import ConfigError
    from greenprec.formats.energibridge_csv import NewColumnsError, parse_counter_ranges
    from greenprec.importers.energibridge import import_energibridge

    cuts = _parse_before_lines(before_line)
    try:
        return import_energibridge(
            group,
            out,
            metrics=metrics,
            counter_range_j=parse_counter_ranges(counter_range_j),
            separator=separator,
            before_line=cuts,
        )
    except NewColumnsError as error:
        command = _import_command(
            group,
            out,
            metrics=metrics,
            counter_range_j=counter_range_j,
            separator=separator,
            before_line=[*before_line, f"{error.source}={error.lineno}"],
        )
        raise ConfigError(f"{error}; to import them: {command}") from None
    except OSError as error:
        # The import is staged beside --out and moved in whole: nothing half-written stays.
        fail(os_error_line(error, "choose another --out, or check the files' permissions"))


def _print_imported(result: ImportResult | CodeCarbonImport) -> None:
    """The imported runs' table, the notes and warnings, and the next command."""
    from rich.text import Text

    from greenprec.cli.tables import summary_table
    from greenprec.results import record_row

    console = make_console()
    rows = [record_row(run) for run in result.runs]
    console.print(summary_table(rows, title=f"imported into {result.store.path}"))
    for line in result.notes:
        console.print(Text.assemble(("note:", "cyan"), " ", line))
    for line in result.warnings:
        # On stderr, as every greenprec warning: the table on stdout stays the result alone.
        typer.echo(f"greenprec: warning: {line}", err=True)
    console.print(f"next: greenprec report {result.store.path}")


def _parse_before_lines(specs: list[str]) -> dict[str, int]:
    """``--before-line FILE=LINE`` values: file -> line (the last ``=`` splits)."""
    from greenprec.errors import ConfigError

    cuts: dict[str, int] = {}
    for spec in specs:
        name, sep, number = spec.rpartition("=")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise ConfigError(
                f"malformed value {spec[:80]!r}; write FILE=LINE, e.g. 'runs/run_3.csv=812'",
                param="before_line",
            )
        if name.strip() in cuts:
            raise ConfigError(f"{name.strip()[:80]!r} given twice", param="before_line")
        cuts[name.strip()] = int(number)
    return cuts


def _import_command(
    groups: list[str],
    out: Path,
    *,
    metrics: str | None,
    counter_range_j: list[str],
    separator: str | None,
    before_line: list[str],
) -> str:
    """The ``greenprec import energibridge`` command line for these options, shell-quoted."""
    import shlex

    words = ["greenprec", "import", "energibridge"]
    for spec in groups:
        words += ["--group", spec]
    if metrics is not None:
        words += ["--metrics", metrics]
    for spec in counter_range_j:
        words += ["--counter-range-j", spec]
    if separator is not None:
        words += ["--separator", separator]
    for spec in before_line:
        words += ["--before-line", spec]
    words += ["--out", str(out)]
    return shlex.join(words)


def import_codecarbon_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="The results folder to create.", show_default=False
        ),
    ],
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            metavar="NAME=GLOB",
            help="NAME=GLOB: the emissions.csv files of one policy; every row is a run "
            "(repeatable; the first is the reference). Quote the glob.",
            show_default=False,
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="COLUMN",
            help="Instead of --group: the column whose value is each row's policy "
            "(project_name, experiment_id or task_name), with --files; the value seen first "
            "is the reference.",
            show_default=False,
        ),
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--files",
            metavar="GLOB",
            help="With --group-by: the emissions.csv files to read (repeatable).",
            show_default=False,
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            metavar="VALUE",
            help="With --group-by: the policy the others are compared with (default: the "
            "value seen first).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Turn CodeCarbon emissions.csv files into a greenprec results folder: one run per row."""
    from greenprec.importers.codecarbon import import_codecarbon

    if not group and group_by is None:
        fail("give --group NAME=GLOB per policy, or --group-by COLUMN with --files GLOB")
    problem = folder_problem(out, create=True)
    if problem is not None:
        fail(f"--out: {problem}; choose another --out")
    try:
        result = import_codecarbon(
            group or [], out, files=files or [], group_by=group_by, reference=reference
        )
    except OSError as error:
        fail(os_error_line(error, "choose another --out, or check the files' permissions"))
    _print_imported(result)


def register(app: typer.Typer) -> None:
    import_app = typer.Typer(
        cls=_ImportGroup,
        help="Turn other tools' recordings into a greenprec results folder.",
        no_args_is_help=True,
    )
    import_app.command("energibridge", cls=Command)(import_energibridge_command)
    import_app.command("codecarbon", cls=Command)(import_codecarbon_command)
    app.add_typer(import_app, name="import")

"""What every command shares: one-line failures, consoles, tables, the -o and --param parsers."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from greenprec.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "FLAG",
    "Command",
    "Group",
    "IntervalOption",
    "MeterOption",
    "OptionOption",
    "add_column",
    "fail",
    "folder_problem",
    "make_console",
    "make_table",
    "os_error_line",
    "parse_options",
    "parse_params",
]

_NOT_A_TERMINAL_WIDTH = 1_000
"""Columns a console gets when its output is a file, a pipe or CI: rich would take 80 (or
$COLUMNS) and cut table values to fit ("estimat…"), but nobody reads a log file 80 columns
wide, and a value cut in a log is lost for good."""


def make_console(stderr: bool = False) -> Console:
    """A rich console for greenprec's output: markup off, so text from users, workloads and
    files ("missing [/data/cifar-10]", a policy "[mixed]", "pip install 'greenprec[nvidia]'")
    prints as it is; greenprec styles its own text with ``rich.text.Text``."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, markup=False)
    if not console.is_terminal:
        console.width = _NOT_A_TERMINAL_WIDTH
    return console


def make_table(title: str | None = None, caption: str | None = None) -> Table:
    """A rich table for :func:`add_column`; titles are printed as they are (no markup)."""
    from rich.table import Table
    from rich.text import Text

    return Table(
        title=Text(title) if title is not None else None,
        caption=Text(caption) if caption is not None else None,
    )


def add_column(table: Table, header: str, *, right: bool = False) -> None:
    """A column that never cuts a value: one too long for the terminal is folded onto the
    next line instead of ending in "…" (a run id or an error cut short is useless)."""
    table.add_column(header, justify="right" if right else "left", overflow="fold")


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback: the problem and the fix."""
    typer.echo(f"greenprec: error: {message}", err=True)
    raise typer.Exit(code)


def parse_options(
    pairs: list[str] | None, flag: str = "-o", example: str = "power_w=42"
) -> dict[str, str]:
    """``KEY=VALUE`` pairs to a dict; values stay strings, meters convert them. ``flag`` is the
    flag the pairs came from, so a malformed one is told how to write *that* flag."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            what = "option" if flag == "-o" else "parameter"
            raise ConfigError(
                f"malformed {what} {pair!r}; write {flag} KEY=VALUE, e.g. {flag} {example}"
            )
        options[key.strip()] = value
    return options


def parse_params(pairs: list[str] | None) -> dict[str, object]:
    """``--param KEY=VALUE`` pairs; values read as JSON where they can be (numbers, booleans)."""
    from greenprec.workloads.params import read_param_value

    options = parse_options(pairs, flag="--param", example="epochs=3")
    return {key: read_param_value(value) for key, value in options.items()}


def os_error_line(error: OSError, fix: str) -> str:
    """An OSError as one line: the path, what went wrong, and ``fix`` (unless the error itself
    says what to do: a folder where a file belongs, a full disk)."""
    # A failed rename names its target second: that path is the user's, the first a temporary.
    path = next((name for name in (error.filename2, error.filename) if name), "a file")
    reason = error.strerror or str(error)
    if error.errno == errno.EISDIR:
        fix = "a file belongs there, not a folder: move the folder away"
    elif error.errno == errno.ENOTDIR:
        fix = "a part of that path is a file, not a folder: choose another path"
    elif error.errno == errno.ENOSPC:
        fix = "free some space, or choose a folder on another disk"
    return f"{path}: {reason}; {fix}"


def folder_problem(folder: Path, *, create: bool) -> str | None:
    """Why a results folder cannot be written (None: it can, as far as can be told without
    writing): it is a file, lies below a file, or it (or, to ``create`` it, the folder it
    would go into) is not writable. Checked before any work starts, so nothing is measured
    only to fail when the first file is written."""
    if folder.exists():
        if not folder.is_dir():
            return f"{folder} exists and is not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is read-only (no permission to write into it)"
        return None
    if not create:
        return None
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{folder} would be inside {ancestor}, which is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {folder}: {ancestor} is read-only"
    return None


MeterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--meter",
        "-m",
        metavar="NAME",
        help="Meter name (repeatable); default: auto.",
        rich_help_panel="Meters",
    ),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="Meter option (repeatable), e.g. -o root=/sys/... or -o rapl.root=/sys/... for "
        "one meter.",
        rich_help_panel="Meters",
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option("--interval", metavar="S", help="Sampling interval in seconds.", min=0.001),
]
FLAG = ""
"""The metavar of an on/off flag: nothing (typer would tag it ``<bool>``)."""


def _untyped_help(option: TyperOption | None) -> TyperOption | None:
    if option is not None:
        option.metavar = FLAG
    return option


class Command(TyperCommand):
    """A greenprec command: its ``--help`` flag is not tagged ``<bool>`` in the help."""

    # click's context: typer vendors click, under a private module name.
    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _untyped_help(super().get_help_option(ctx))


class Group(TyperGroup):
    """The ``greenprec`` group (and ``greenprec import``), with :class:`Command`'s help flag."""

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _untyped_help(super().get_help_option(ctx))

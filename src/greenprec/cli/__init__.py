"""The ``greenprec`` command line: one module per command, registered on one typer app.

Library code raises :class:`greenprec.GreenprecError` with messages about data and settings;
this package turns them into one line on stderr and an exit code (0 success, 1 failed runs or
a failed measurement, 2 bad input, 130 interrupted, 143 terminated), and is the only code that
names a flag.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Annotated, TextIO

import typer

from greenprec._version import __version__
from greenprec.cli import (
    compare,
    importing,
    measure,
    meters,
    recommend,
    report,
    runs,
    workloads,
)
from greenprec.cli._common import FLAG, Group, fail, os_error_line, parse_options, parse_params
from greenprec.errors import GreenprecError, GreenprecWarning, MeterError

__all__ = ["app", "fail", "main", "parse_options", "parse_params"]

app = typer.Typer(
    cls=Group,
    name="greenprec",
    help="Measure what numerical precision costs in energy when you train neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"greenprec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar=FLAG, callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Measure what numerical precision costs in energy when you train neural networks."""


for _module in (meters, measure, compare, recommend, report, runs, workloads, importing):
    _module.register(app)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if issubclass(category, GreenprecWarning):
        typer.echo(f"greenprec: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning

# The library names the argument that bad input came through (ConfigError.param); on the
# command line that argument is a flag, named here and only here.
_PARAM_FLAGS = {
    "groups": "--group",
    "out": "--out",
    "metrics": "--metrics",
    "counter_range_j": "--counter-range-j",
    "separator": "--separator",
    "before_line": "--before-line",
    "config": "--config",
    "group_by": "--group-by",
    "files": "--files",
    "reference": "--reference",
}


def _with_flag(error: GreenprecError) -> str:
    param = getattr(error, "param", None)
    flag = _PARAM_FLAGS.get(param) if isinstance(param, str) else None
    return f"{flag}: {error}" if flag else str(error)


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except MeterError as error:
        # A meter that failed mid-measurement is a failed measurement (1), not bad input (2).
        typer.echo(f"greenprec: error: {error}", err=True)
        sys.exit(1)
    except GreenprecError as error:
        typer.echo(f"greenprec: error: {_with_flag(error)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("greenprec: interrupted", err=True)
        sys.exit(130)
    except OSError as error:
        if error.errno == errno.EPIPE:
            # The reader went away (greenprec runs DIR | head): nothing to report; silence the
            # flush at exit too, which would fail the same way.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE, as a shell reports it
        # A file or folder a command did not expect to fail on (each command turns the ones it
        # expects into a line of its own): still one line, not a traceback.
        typer.echo(
            f"greenprec: error: {os_error_line(error, 'check that path and its permissions')}",
            err=True,
        )
        sys.exit(2)
    except Exception as error:
        # Usage errors from the (vendored) click layer: duck-typed so any typer version works.
        exit_code = getattr(error, "exit_code", None)
        if hasattr(error, "format_message") and isinstance(exit_code, int):
            typer.echo(
                f"greenprec: error: {error.format_message()} (see greenprec --help)", err=True
            )
            sys.exit(exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)

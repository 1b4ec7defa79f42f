"""What every command shares: one-line failures, consoles, the -o and --param parsers."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

from greenprec.errors import ConfigError


def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback: the problem and the fix."""
    typer.echo(f"greenprec: error: {message}", err=True)
    raise typer.Exit(code)


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``-o KEY=VALUE`` pairs to a dict; values stay strings, meters convert them."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed option {pair!r}; write -o KEY=VALUE, e.g. -o power_w=42")
        options[key.strip()] = value
    return options


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``--param KEY=VALUE`` pairs; values read as JSON where they can be (numbers, booleans)."""
    params: dict[str, Any] = {}
    for key, value in parse_options(pairs).items():
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


MeterOption = Annotated[
    list[str] | None,
    typer.Option("--meter", "-m", help="Meter name (repeatable); default: auto."),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Meter option KEY=VALUE (repeatable), e.g. root=/sys/..."),
]
IntervalOption = Annotated[
    float, typer.Option("--interval", help="Sampling interval in seconds.", min=0.001)
]

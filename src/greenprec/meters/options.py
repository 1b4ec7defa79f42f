"""Meter options arrive as strings from ``-o KEY=VALUE`` and TOML; these turn them into values
or one-line ConfigErrors naming the meter, the option and what it takes."""

from __future__ import annotations

import math

from greenprec.errors import ConfigError

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def boolean(value: bool | str | int, meter: str, option: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    raise ConfigError(
        f"{meter} option {option} must be true or false (or 1/0, yes/no), got {value!r}"
    )


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def positive_number(
    value: float | str, meter: str, option: str, *, unit: str = "", allow_zero: bool = False
) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``)."""
    number = _number(value)
    in_range = number >= 0 if allow_zero else number > 0
    if not (math.isfinite(number) and in_range):
        bound = "zero or positive" if allow_zero else "positive"
        of_unit = f" of {unit}" if unit else ""
        raise ConfigError(
            f"{meter} option {option} must be a {bound} number{of_unit}, got {value!r}"
        )
    return number


def whole_number(value: int | str, meter: str, option: str, *, unit: str = "") -> int:
    """A whole number >= 1."""
    number = _number(value)
    if not math.isfinite(number) or number < 1 or number != int(number):
        of_unit = f" of {unit}" if unit else ""
        raise ConfigError(
            f"{meter} option {option} must be a whole number{of_unit} >= 1, got {value!r}"
        )
    return int(number)

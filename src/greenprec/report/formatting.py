"""Numbers as people read them: magnitudes, signed changes, p-values."""

from __future__ import annotations

import math

__all__ = [
    "MINUS",
    "NOT_AVAILABLE",
    "coverage",
    "in_unit",
    "mean_sd",
    "num",
    "percent_ci",
    "plural",
    "pvalue",
    "signed",
    "stat",
]

MINUS = "\u2212"
_DASH = "\u2013"
NOT_AVAILABLE = _DASH


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def num(value: object, digits: int | None = None) -> str:
    """A magnitude: fixed decimals when given, else about four significant figures."""
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    if digits is not None:
        text = f"{number:,.{digits}f}"
    else:
        size = abs(number)
        if size >= 1000:
            text = f"{number:,.0f}"
        elif size >= 100:
            text = f"{number:.1f}"
        elif size >= 1:
            text = f"{number:.2f}"
        elif size == 0:
            text = "0"
        elif size >= 1e-3:
            text = f"{number:.4f}"
        else:
            text = f"{number:.3g}"
    return text.replace("-", MINUS, 1) if text.startswith("-") else text


def signed(value: object, digits: int = 2, suffix: str = "") -> str:
    """A difference with its sign always shown: +1.20, −0.96."""
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    text = f"{number:+.{digits}f}"
    return (MINUS + text[1:] if text.startswith("-") else text) + suffix


def in_unit(value: object, unit: str) -> str:
    """A signed estimate in its unit: ``−12.6%`` (one decimal for a percentage), ``−0.96 pp``
    or ``+0.02`` (two decimals otherwise); ``unit`` is ``"%"``, ``" pp"`` or ``""``."""
    return signed(value, 1 if unit == "%" else 2, unit)


def coverage(level: float) -> str:
    """An interval's coverage: ``95%``, ``97.5%``, ``99.79%``, ``99.99926%`` — as many
    decimals as tell it from 100% (a sequential design's levels are that close to it)."""
    miss = 100.0 * (1.0 - level)
    decimals = 2 if miss >= 0.1 else min(8, math.ceil(-math.log10(max(miss, 1e-12))) + 1)
    text = f"{100.0 * level:.{decimals}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def stat(value: object) -> str:
    """A test statistic: three significant figures, typographic minus."""
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    text = f"{number:.3g}" if abs(number) < 1e4 else f"{number:.4g}"
    return MINUS + text[1:] if text.startswith("-") else text


def pvalue(p: object, *, prefix: bool = True) -> str:
    """``p = 0.09``, ``p = 2.1e-5`` or ``p < 1e-70``; without ``prefix``: ``0.09``, ``< 1e-70``.

    Below 1e-10 the digits of p are below the precision of any test's assumptions, so only
    the order of magnitude is stated, rounded towards the safe side.
    """
    number = _finite(p)
    if number is None:
        return "p not computed" if prefix else NOT_AVAILABLE
    if number <= 0.0:
        bound = "< 1e-300"
    elif number < 1e-10:
        bound = f"< 1e{math.floor(math.log10(number)) + 1}"
    elif number < 1e-3:
        mantissa, exponent_text = f"{number:.1e}".split("e")
        bound = f"= {mantissa}e{int(exponent_text)}"
    elif number < 0.01:
        bound = f"= {number:.3f}"
    else:
        bound = f"= {min(number, 1.0):.2f}"
    if prefix:
        return f"p {bound}"
    return bound.removeprefix("= ")


def _digits_for(value: float) -> int:
    size = abs(value)
    if size >= 1000:
        return 0
    if size >= 100:
        return 1
    if size >= 1:
        return 2
    return 4


def mean_sd(mean: object, sd: object, digits: int | None = None) -> str:
    """``32,026 ± 219``: both at the precision the mean's magnitude calls for."""
    number = _finite(mean)
    if digits is None and number is not None:
        digits = _digits_for(number)
    m = num(mean, digits)
    if m == NOT_AVAILABLE:
        return m
    if _finite(sd) is None:
        return m
    return f"{m} ± {num(sd, digits)}"


def percent_ci(ci: object) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return NOT_AVAILABLE
    lo, hi = (signed(v, 1, "%") for v in ci)
    return f"{lo} to {hi}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"

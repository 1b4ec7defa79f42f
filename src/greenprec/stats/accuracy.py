"""Accuracy's unit (fraction or percent) and energy per accuracy point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from greenprec.errors import ConfigError
from greenprec.stats._common import FloatArray, _as_1d

__all__ = [
    "accuracy_scale",
    "energy_per_accuracy_point",
]

# -- energy per accuracy ---------------------------------------------------------------------------


@overload
def energy_per_accuracy_point(
    energy_j: float,
    accuracy: float,
    *,
    scale: Literal["auto", "fraction", "percent"] = "auto",
) -> float: ...


@overload
def energy_per_accuracy_point(
    energy_j: ArrayLike,
    accuracy: ArrayLike,
    *,
    scale: Literal["auto", "fraction", "percent"] = "auto",
) -> FloatArray: ...


def energy_per_accuracy_point(
    energy_j: ArrayLike,
    accuracy: ArrayLike,
    *,
    scale: Literal["auto", "fraction", "percent"] = "auto",
) -> float | FloatArray:
    """Joules per percentage point of test accuracy: ``energy_j / (100 * accuracy)``.

    ``scale="auto"`` decides once for all values with :func:`accuracy_scale` (a mix of
    fractions and percentages is a ConfigError); pass ``"fraction"`` or ``"percent"`` to be
    explicit. Zero accuracy gives NaN.
    """
    if scale not in ("auto", "fraction", "percent"):
        raise ConfigError(f"scale must be 'auto', 'fraction' or 'percent', got {scale!r}")
    scalar = np.ndim(energy_j) == 0 and np.ndim(accuracy) == 0
    try:
        energy = np.asarray(energy_j, dtype=np.float64)
        acc = np.asarray(accuracy, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError("energy_j and accuracy must be numbers") from error
    if (energy < 0).any():
        raise ConfigError("energy_j must not be negative")
    if (acc < 0).any():
        raise ConfigError("accuracy must not be negative")
    finite_acc = acc[np.isfinite(acc)]
    if scale == "auto":
        scale = accuracy_scale(acc.ravel()) or "fraction"
    ceiling = 1.0 if scale == "fraction" else 100.0
    if (finite_acc > ceiling).any():
        raise ConfigError(f"accuracy given as a {scale} must be at most {ceiling:g}")
    points = acc * 100.0 if scale == "fraction" else acc
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = np.where(points > 0, energy / np.where(points > 0, points, 1.0), np.nan)
    except ValueError as error:
        raise ConfigError("energy_j and accuracy have incompatible shapes") from error
    result = np.where(np.isnan(points) | np.isnan(energy), np.nan, result)
    if scalar:
        return float(result)
    return np.asarray(result, dtype=np.float64)


def accuracy_scale(
    values: ArrayLike, ids: Sequence[object] | None = None
) -> Literal["fraction", "percent"] | None:
    """The unit of an accuracy column, decided once from all its values (NaNs ignored).

    Every value in [0, 1]: ``"fraction"``. Every non-zero value in (1, 100]: ``"percent"``
    (0 reads the same in both). Non-zero values at or below 1 beside values above 1 are a
    mix of fractions and percentages, which no single unit reads right (0.45 and 95.0):
    ConfigError naming the values of the smaller side, by ``ids`` when given (else by
    position). Values outside [0, 100] are ConfigError too. No finite value: None.
    """
    x = _as_1d(values, "accuracy")
    names = list(range(x.size)) if ids is None else list(ids)
    if len(names) != x.size:
        raise ConfigError(f"ids has {len(names)} entries but accuracy has {x.size}")
    finite = np.isfinite(x)
    if not finite.any():
        return None
    outside = np.flatnonzero(finite & ((x < 0) | (x > 100)))
    if outside.size:
        shown = ", ".join(f"{names[i]} ({x[i]:g})" for i in outside[:10])
        raise ConfigError(f"accuracy must lie between 0 and 1 or 0 and 100; not {shown}")
    fractions = np.flatnonzero(finite & (x > 0) & (x <= 1))
    percents = np.flatnonzero(finite & (x > 1))
    if fractions.size and percents.size:
        if fractions.size <= percents.size:
            few, few_kind, many_kind = fractions, "fractions", "percentages"
        else:
            few, few_kind, many_kind = percents, "percentages", "fractions"
        shown = ", ".join(f"{names[i]} ({x[i]:g})" for i in few[:10])
        more = f" and {few.size - 10} more" if few.size > 10 else ""
        raise ConfigError(
            f"accuracy mixes fractions (<= 1) and percentages (> 1): {few.size} value(s) "
            f"read as {few_kind} among {fractions.size + percents.size - few.size} "
            f"{many_kind}: {shown}{more}"
        )
    return "percent" if percents.size else "fraction"

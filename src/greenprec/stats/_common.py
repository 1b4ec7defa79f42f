"""What every part of :mod:`greenprec.stats` shares: the result base class and its JSON form,
input checks, the sample SD, and the small tests and fits that several parts use.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from greenprec.errors import ConfigError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


# -- JSON helpers ----------------------------------------------------------------------------------


def _jsonable(value: object) -> Any:
    """Turn numpy scalars, arrays, tuples and nested results into plain JSON types."""
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _json_key(key: object) -> str:
    return key if isinstance(key, str) else str(_jsonable(key))


class _Result:
    """Mixin for the result dataclasses: JSON-ready ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _fmt(p: float) -> str:
    return f"{p:.3g}"


# -- input handling --------------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str) -> FloatArray:
    """Values as a 1-D float array (NaN kept); ConfigError for anything else."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be numbers, got {values!r:.80}") from error
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {array.shape}")
    if np.isinf(array).any():
        # An infinite energy or time is a broken measurement, not an outlier to be tested.
        raise ConfigError(f"{name} contains infinite values; remove or fix those runs")
    return array


def _clean(values: ArrayLike, name: str, notes: list[str]) -> FloatArray:
    """Values without NaNs; how many were dropped goes into ``notes``."""
    array = _as_1d(values, name)
    nan = np.isnan(array)
    n_nan = int(nan.sum())
    if n_nan:
        notes.append(f"dropped {n_nan} NaN value{'s' if n_nan != 1 else ''} from {name}")
    return array[~nan]


def _check_probability(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _constant(x: FloatArray) -> bool:
    return bool(x.size > 0 and np.ptp(x) == 0.0)


def _sd(x: FloatArray) -> float:
    """The sample SD, exactly 0 for identical values: numpy's two-pass formula leaves ~1e-16
    there (the mean of [1.1, 1.1, 1.1] is not exactly 1.1), which would make a CI appear or
    vanish with the unit the data are in."""
    return 0.0 if _constant(x) else float(x.std(ddof=1))


# -- shared tests and fits -------------------------------------------------------------------------


def _t_test(
    estimate: float, se: float, df: float, alpha: float
) -> tuple[float, float, float, bool]:
    """The two-sided t-test of ``estimate`` = 0: t, p, the half-width of the 1 − alpha interval,
    and whether that interval excludes 0. Significance is read off the interval, and p follows
    it where scipy's sf and isf disagree in the last bit at the boundary (as in
    :func:`welch_log_ratio`), so the two never contradict."""
    from scipy import stats

    t_stat = estimate / se
    half = float(stats.t.isf(alpha / 2.0, df)) * se
    p_val = min(2.0 * float(stats.t.sf(abs(t_stat), df)), 1.0)
    significant = abs(estimate) > half
    if significant and p_val >= alpha:
        p_val = float(np.nextafter(alpha, 0.0))
    elif not significant and p_val < alpha:
        p_val = alpha
    return t_stat, p_val, half, significant


def _labels(values: Sequence[Hashable] | ArrayLike, name: str, n: int) -> list[Hashable]:
    if isinstance(values, (list, tuple)):
        labels = list(values)  # as given: numpy would split tuple labels into their parts
    else:
        labels = list(np.asarray(values, dtype=object).reshape(-1).tolist())
    if len(labels) != n:
        raise ConfigError(f"{name} must be one block label per value ({n}), got {len(labels)}")
    for label in labels:
        try:
            hash(label)
        except TypeError as error:
            raise ConfigError(f"{name} must be hashable labels, got {label!r:.60}") from error
    return labels


def _demean(x: FloatArray, codes: NDArray[np.intp], h: int) -> FloatArray:
    counts = np.bincount(codes, minlength=h).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(codes, weights=x, minlength=h) / counts
    return np.asarray(x - means[codes], dtype=np.float64)


def _zero_floor(y: FloatArray) -> float:
    """Residual SDs at or below this are rounding (the logs of 1.1 and 3.3 are not exact)."""
    return 64.0 * float(np.finfo(np.float64).eps) * max(1.0, float(np.max(np.abs(y))))


def _check_margin(margin: float) -> float:
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float, np.integer, np.floating))
        or not math.isfinite(float(margin))
        or float(margin) <= 0
    ):
        raise ConfigError(
            f"margin must be a positive finite number in the metric's units, got {margin!r:.60}"
        )
    return float(margin)


def _welch_parts(
    xa: FloatArray, xb: FloatArray, label_a: str, label_b: str
) -> tuple[float, float, float, str | None]:
    """difference b − a, its Welch SE and df; or a reason they cannot be computed."""
    na, nb = xa.size, xb.size
    if na < 2 or nb < 2:
        few = [f"{label} has {n}" for label, n in ((label_a, na), (label_b, nb)) if n < 2]
        diff = float(xb.mean() - xa.mean()) if na and nb else math.nan
        return (
            diff,
            math.nan,
            math.nan,
            "needs at least 2 values per group (" + ", ".join(few) + ")",
        )
    diff = float(xb.mean() - xa.mean())
    va, vb = _sd(xa) ** 2, _sd(xb) ** 2
    ua, ub = va / na, vb / nb
    if ua + ub == 0.0:
        return diff, math.nan, math.nan, "both groups have zero variance; the test is undefined"
    # Welch–Satterthwaite written with the share r of the variance, so that tiny variances do
    # not underflow when squared.
    r = ua / (ua + ub)
    df = 1.0 / (r * r / (na - 1) + (1.0 - r) * (1.0 - r) / (nb - 1))
    return diff, math.sqrt(ua + ub), df, None

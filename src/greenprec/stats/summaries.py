"""One group's numbers: a description (mean, SD, CV, median, IQR, CI) and a normality test."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from greenprec.stats._common import _as_1d, _check_probability, _clean, _constant, _Result

__all__ = [
    "Description",
    "NormalityResult",
    "describe",
    "normality",
]

# -- description and normality ---------------------------------------------------------------------


@dataclass(frozen=True)
class Description(_Result):
    """Result of :func:`describe`."""

    n: int
    n_nan: int
    mean: float | None
    sd: float | None
    cv_pct: float | None
    median: float | None
    iqr: float | None
    ci95: tuple[float, float] | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def describe(values: ArrayLike) -> Description:
    """n, mean, sd (ddof=1), CV in %, median, IQR and the t-based 95% CI of the mean."""
    raw = _as_1d(values, "values")
    notes: list[str] = []
    x = _clean(raw, "values", notes)
    n = x.size
    missing: dict[str, str] = {}
    if n == 0:
        reason = "no values"
        for name in ("mean", "sd", "cv_pct", "median", "iqr", "ci95"):
            missing[name] = reason
        return Description(0, raw.size, None, None, None, None, None, None, missing, notes)
    mean = float(x.mean())
    q25, median, q75 = (float(q) for q in np.percentile(x, [25, 50, 75]))
    sd: float | None = None
    cv: float | None = None
    ci: tuple[float, float] | None = None
    if n < 2:
        for name in ("sd", "cv_pct", "ci95"):
            missing[name] = "needs at least 2 values"
    else:
        from scipy import stats

        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
        if mean == 0.0:
            missing["cv_pct"] = "mean is zero"
        else:
            cv = 100.0 * sd / abs(mean)
        if sd == 0.0:
            notes.append("zero variance: the CI has zero width")
    return Description(n, raw.size - n, mean, sd, cv, median, q75 - q25, ci, missing, notes)


@dataclass(frozen=True)
class NormalityResult(_Result):
    """Result of :func:`normality`: Shapiro–Wilk W and p; ``normal`` is ``p >= alpha``."""

    n: int
    w: float | None
    p: float | None
    alpha: float
    normal: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def normality(values: ArrayLike, alpha: float = 0.05) -> NormalityResult:
    """Shapiro–Wilk test; "not computed" for n < 3 or zero variance."""
    alpha = _check_probability(alpha, "alpha")
    notes: list[str] = []
    x = _clean(values, "values", notes)
    reason = None
    if x.size < 3:
        reason = f"Shapiro–Wilk needs at least 3 values, got {x.size}"
    elif _constant(x):
        reason = "zero variance"
    if reason is not None:
        return NormalityResult(
            x.size, None, None, alpha, None, {"w": reason, "p": reason, "normal": reason}, notes
        )
    from scipy import stats

    if x.size > 5000:
        notes.append("n > 5000: scipy warns that the Shapiro–Wilk p-value may be inaccurate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = stats.shapiro(x)
    w, p = float(result.statistic), float(result.pvalue)
    return NormalityResult(x.size, w, p, alpha, p >= alpha, {}, notes)

"""Drift over the run order: a common slope of ln(value) on the order, within groups."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from greenprec.errors import ConfigError
from greenprec.stats._common import (
    FloatArray,
    _as_1d,
    _check_probability,
    _demean,
    _labels,
    _Result,
    _t_test,
    _zero_floor,
)

__all__ = [
    "RunOrderTrend",
    "run_order_trend",
]

# -- drift over run order -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOrderTrend(_Result):
    """Result of :func:`run_order_trend`: the common slope of ``ln(value)`` on the run order.

    ``slope`` is γ of the OLS fit ``ln(value) ~ group + order`` (one intercept per group, one
    slope), ``pct_per_run`` its change per run ``100 · (exp(γ) − 1)`` with the ``1 − alpha``
    interval ``pct_per_run_ci`` that inverts the t-test (df = N − G − 1): ``p < alpha`` exactly
    when the interval excludes 0.
    """

    n: int
    n_groups: int
    slope: float | None
    se: float | None
    df: int | None
    t: float | None
    p: float | None
    pct_per_run: float | None
    pct_per_run_ci: tuple[float, float] | None
    alpha: float
    significant: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_order_trend(
    values: ArrayLike,
    order: ArrayLike,
    groups: Sequence[Hashable] | ArrayLike,
    *,
    alpha: float = 0.05,
) -> RunOrderTrend:
    """A trend of ``values`` over the run order, within groups (policies): OLS of ``ln(value)``
    on ``order`` with one intercept per group and a common slope, equal to statsmodels'
    ``ols("np.log(value) ~ C(group) + order")``. By Frisch–Waugh–Lovell:

        γ  = Σ õ ỹ / Σ õ²,   SE = sqrt(RSS / df / Σ õ²),   df = N − G − 1

    (õ, ỹ: order and ln(value) less their group means). Pairs with a NaN value or order are
    dropped (counted in ``notes``); non-positive values, df < 1, an order that does not vary
    within any group and zero residuals are "not computed" with the reason.
    """
    alpha = _check_probability(alpha, "alpha")
    runs = _kept_runs(values, order, groups)
    missing: dict[str, str] = {}
    out: _TrendFields = {}
    _fit_trend(runs, alpha, out, missing)
    return RunOrderTrend(
        n=int(runs.x.size),
        n_groups=runs.g,
        slope=out.get("slope"),
        se=out.get("se"),
        df=out.get("df"),
        t=out.get("t"),
        p=out.get("p"),
        pct_per_run=out.get("pct_per_run"),
        pct_per_run_ci=out.get("pct_per_run_ci"),
        alpha=alpha,
        significant=out.get("significant"),
        not_computed=missing,
        notes=runs.notes,
    )


@dataclass(frozen=True)
class _Runs:
    """The runs with both a value and an order, and each one's group index."""

    x: FloatArray
    o: FloatArray
    codes: NDArray[np.intp]
    g: int  # number of groups
    notes: list[str]


class _TrendFields(TypedDict, total=False):
    """What :func:`run_order_trend` computed; an absent key was not computed."""

    slope: float
    se: float
    df: int
    t: float
    p: float
    pct_per_run: float
    pct_per_run_ci: tuple[float, float]
    significant: bool


def _kept_runs(
    values: ArrayLike, order: ArrayLike, groups: Sequence[Hashable] | ArrayLike
) -> _Runs:
    raw = _as_1d(values, "values")
    raw_order = _as_1d(order, "order")
    if raw_order.size != raw.size:
        raise ConfigError(f"order must be one number per value ({raw.size}), got {raw_order.size}")
    labels = _labels(groups, "groups", raw.size)
    keep = ~(np.isnan(raw) | np.isnan(raw_order))
    notes: list[str] = []
    dropped = int((~keep).sum())
    if dropped:
        notes.append(f"dropped {dropped} run{'s' if dropped != 1 else ''} with no value or order")
    kept_labels = [label for label, k in zip(labels, keep.tolist(), strict=True) if k]
    position = {label: index for index, label in enumerate(dict.fromkeys(kept_labels))}
    codes = np.array([position[label] for label in kept_labels], dtype=np.intp)
    return _Runs(raw[keep], raw_order[keep], codes, len(position), notes)


def _fit_trend(runs: _Runs, alpha: float, out: _TrendFields, missing: dict[str, str]) -> None:
    """The within-group OLS slope, its t-test and interval into ``out``; why not into
    ``missing``."""
    x, g = runs.x, runs.g
    everything = ("slope", "se", "df", "t", "p", "pct_per_run", "pct_per_run_ci", "significant")
    reason: str | None = None
    dof = int(x.size) - g - 1
    if (x <= 0).any():
        reason = "zero or negative values; the log is undefined"
    elif dof < 1:
        reason = (
            f"needs more runs than groups + 1 ({x.size} runs in {g} "
            f"group{'s' if g != 1 else ''} leave {dof} residual degrees of freedom)"
        )
    if reason is not None:
        missing.update(dict.fromkeys(everything, reason))
        return
    y = np.log(x)
    y_tilde = _demean(y, runs.codes, g)
    o_tilde = _demean(runs.o, runs.codes, g)
    soo = float(np.dot(o_tilde, o_tilde))
    if soo <= 0.0:
        missing.update(dict.fromkeys(everything, "the run order does not vary within any group"))
        return
    slope = float(np.dot(o_tilde, y_tilde)) / soo
    residuals = y_tilde - slope * o_tilde
    rss = float(np.dot(residuals, residuals))
    out.update({"slope": slope, "df": dof, "pct_per_run": 100.0 * math.expm1(slope)})
    if math.sqrt(rss / dof) <= _zero_floor(y):
        reason = "the residuals are zero: the values lie exactly on the trend"
        missing.update(dict.fromkeys(("se", "t", "p", "pct_per_run_ci", "significant"), reason))
        return
    se = math.sqrt(rss / dof / soo)
    t_stat, p_val, half, sig = _t_test(slope, se, dof, alpha)
    out.update(
        {
            "se": se,
            "t": t_stat,
            "p": p_val,
            "significant": sig,
            "pct_per_run_ci": (100.0 * math.expm1(slope - half), 100.0 * math.expm1(slope + half)),
        }
    )

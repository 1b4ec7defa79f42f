"""How many runs: the power of the two-sample t-test and of TOST, and the runs each needs."""

from __future__ import annotations

import math

import numpy as np

from greenprec.errors import ConfigError
from greenprec.stats._common import _check_margin, _check_probability

__all__ = [
    "achieved_power",
    "runs_needed",
    "runs_needed_equivalence",
    "tost_power",
]

# Above this many runs per group the noncentral t is indistinguishable from the normal and
# scipy's nct gets slow; runs_needed gives up rather than answer with a meaningless number.
_MAX_RUNS = 10**8


# -- planning --------------------------------------------------------------------------------------


def _effect_size(cv_pct: float, relative_change_pct: float) -> float:
    for name, value in (("cv_pct", cv_pct), ("relative_change_pct", relative_change_pct)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if cv_pct <= 0:
        raise ConfigError(f"cv_pct must be positive, got {cv_pct!r}")
    if relative_change_pct == 0:
        raise ConfigError("relative_change_pct must not be zero: no sample size detects no change")
    return abs(relative_change_pct) / cv_pct


def _power(n_a: int, n_b: int, d: float, alpha: float) -> float:
    from scipy import stats

    df = n_a + n_b - 2
    ncp = d / math.sqrt(1.0 / n_a + 1.0 / n_b)
    t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    upper = float(stats.nct.sf(t_crit, df, ncp))
    # P(T < -t*) for T ~ nct(df, ncp) is P(T' > t*) for T' = -T ~ nct(df, -ncp). scipy's
    # nct.cdf returns NaN far in the lower tail (large effects: achieved_power(30, 1, 2.5)),
    # while sf with the mirrored noncentrality stays finite there.
    lower = float(stats.nct.sf(t_crit, df, -ncp))
    # For effects far beyond that (near-constant runs: d ~ 1e15) nct gives NaN outright.
    # T = (Z + ncp) / S with S = sqrt(V / df): T <= t* needs Z <= -ncp/2 or t* S >= ncp/2, and
    # T < -t* needs Z < -ncp. When these bounds are below double precision, the tails are 1
    # and 0 to the last bit.
    if not math.isfinite(upper):
        miss = float(stats.norm.cdf(-ncp / 2) + stats.chi2.sf(df * (ncp / (2 * t_crit)) ** 2, df))
        if miss < 1e-16:
            upper = 1.0
    if not math.isfinite(lower) and float(stats.norm.cdf(-ncp)) < 1e-16:
        lower = 0.0
    power = upper + lower
    if not math.isfinite(power):
        raise ConfigError(
            f"the power for d = {d:g} with {n_a} and {n_b} runs is beyond scipy's noncentral t"
        )
    return min(power, 1.0)


def achieved_power(
    n: int | tuple[int, int],
    cv_pct: float,
    relative_change_pct: float,
    alpha: float = 0.05,
) -> float:
    """Power of a two-sided two-sample t-test with ``n`` runs per group (or ``(n_a, n_b)``).

    The effect size is d = relative_change_pct / cv_pct (a common SD of cv_pct % of the mean).
    """
    alpha = _check_probability(alpha, "alpha")
    d = _effect_size(cv_pct, relative_change_pct)
    n_a, n_b = (n, n) if not isinstance(n, tuple) else n
    for value in (n_a, n_b):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ConfigError(f"n must be an integer of at least 2 runs per group, got {n!r}")
    return _power(int(n_a), int(n_b), d, alpha)


def runs_needed(
    cv_pct: float,
    relative_change_pct: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Runs per policy for a two-sided two-sample t-test to detect the change with this power.

    Solved exactly with the noncentral t distribution (smallest n with power >= target); at
    least 2.
    """
    alpha = _check_probability(alpha, "alpha")
    target = _check_probability(power, "power")
    d = _effect_size(cv_pct, relative_change_pct)
    low, high = 1, 2  # power(low) < target <= power(high), with low = 1 standing for "too few"
    while _power(high, high, d, alpha) < target:
        low, high = high, high * 2
        if high > _MAX_RUNS:
            raise ConfigError(
                f"detecting a {relative_change_pct:g}% change at CV {cv_pct:g}% needs more than "
                f"{_MAX_RUNS} runs per policy"
            )
    # Power rises with n, so bisection finds the smallest sufficient n.
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= 2 and _power(middle, middle, d, alpha) >= target:
            high = middle
        else:
            low = middle
    return high


# -- equivalence -----------------------------------------------------------------------------------


def _tost_power(n: int, sd: float, margin: float, delta: float, alpha: float) -> float:
    """Exact power of the pooled-variance TOST with n runs per group and a common SD.

    D ~ N(delta, σ_D²) with σ_D = sd·sqrt(2/n), and independently S²/σ_D² ~ χ²_df / df with
    df = 2n − 2. TOST rejects when −margin + t·S < D < margin − t·S (t = t(1 − alpha; df)), so

        power = ∫ [Φ((margin − delta)/σ_D − t·u) − Φ((−margin − delta)/σ_D + t·u)]⁺ dF(u)

    over u = S/σ_D, integrated numerically over the χ² density (Owen 1965's approach). Beyond
    df = 10⁴ the spread of S is negligible and S = σ_D is used.
    """
    from scipy import integrate, stats

    df = 2 * n - 2
    sigma = sd * math.sqrt(2.0 / n)
    t_crit = float(stats.t.isf(alpha, df))
    upper = (margin - delta) / sigma
    lower = (-margin - delta) / sigma

    def inside(u: float) -> float:
        return max(
            0.0, float(stats.norm.cdf(upper - t_crit * u) - stats.norm.cdf(lower + t_crit * u))
        )

    u_max = margin / (t_crit * sigma)  # beyond it the acceptance region is empty
    if df > 10_000:
        return inside(1.0)
    v_max = df * u_max * u_max

    def integrand(v: float) -> float:
        return inside(math.sqrt(v / df)) * float(stats.chi2.pdf(v, df))

    # The χ² density sits around df with spread sqrt(2 df); tell quad where to look.
    centre = float(df)
    points = [
        p
        for p in (centre - 4 * math.sqrt(2 * df), centre, centre + 4 * math.sqrt(2 * df))
        if 0 < p < v_max
    ]
    value, _ = integrate.quad(integrand, 0.0, v_max, points=points or None, limit=200)
    return min(max(float(value), 0.0), 1.0)


def tost_power(
    n: int, sd: float, margin: float, true_difference: float = 0.0, alpha: float = 0.05
) -> float:
    """Power of TOST to show equivalence within ±``margin`` with ``n`` runs per policy.

    Both policies have standard deviation ``sd`` (metric units) and their means differ by
    ``true_difference``; computed exactly for the pooled-variance TOST (see
    :func:`runs_needed_equivalence`).
    """
    alpha = _check_probability(alpha, "alpha")
    sd, margin, delta = _check_equivalence_plan(sd, margin, true_difference)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n must be an integer of at least 2 runs per policy, got {n!r}")
    return _tost_power(int(n), sd, margin, delta, alpha)


def _check_equivalence_plan(
    sd: float, margin: float, true_difference: float
) -> tuple[float, float, float]:
    for name, value in (("sd", sd), ("true_difference", true_difference)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(float(value))
        ):
            raise ConfigError(f"{name} must be a finite number, got {value!r:.60}")
    if float(sd) <= 0:
        raise ConfigError(f"sd must be positive, got {sd!r}")
    return float(sd), _check_margin(margin), float(true_difference)


def runs_needed_equivalence(
    sd: float,
    margin: float,
    true_difference: float = 0.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int | None:
    """Runs per policy for TOST to show equivalence within ±``margin`` with this power.

    ``sd`` is the runs' standard deviation (taken as the same in both policies), ``margin`` and
    ``true_difference`` (mean of the policy minus mean of the reference) are in the metric's
    units. The power is exact for the pooled-variance TOST (df = 2n − 2), integrating the
    normal difference over the χ² distribution of the variance (see :func:`tost_power`); the
    Welch TOST that :func:`tost_welch` runs has the same power to within Monte Carlo error when
    the SDs are equal (tested). Smallest n ≥ 2 with power ≥ ``power``; None when no number of
    runs can show equivalence (``|true_difference| ≥ margin``) or more than 10⁸ would be needed.
    """
    alpha = _check_probability(alpha, "alpha")
    target = _check_probability(power, "power")
    sd, margin, delta = _check_equivalence_plan(sd, margin, true_difference)
    if abs(delta) >= margin:
        return None
    low, high = 1, 2
    while _tost_power(high, sd, margin, delta, alpha) < target:
        low, high = high, high * 2
        if high > _MAX_RUNS:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= 2 and _tost_power(middle, sd, margin, delta, alpha) >= target:
            high = middle
        else:
            low = middle
    return high

"""Two groups and several policies: Welch's t on the log ratio and on the difference,
Student's t, Mann–Whitney U, effect sizes, the relative change, Holm's correction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from greenprec.errors import ConfigError
from greenprec.stats._common import (
    BoolArray,
    FloatArray,
    _check_probability,
    _clean,
    _constant,
    _Result,
    _sd,
    _welch_parts,
)
from greenprec.stats.summaries import Description, describe, normality

__all__ = [
    "DIFFERENCE_REASON",
    "PRIMARY_REASON",
    "CompareResult",
    "LogRatioTest",
    "PolicyComparison",
    "Primary",
    "compare_groups",
    "compare_policies",
    "holm",
    "welch_log_ratio",
]

# z_{0.975}; written out so that the effect-size CIs need no scipy call.
_Z975 = 1.959963984540054


# -- comparing groups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRatioTest:
    """Result of :func:`welch_log_ratio`; every field has the broadcast shape of the inputs.

    ``ci_lo_pct``/``ci_hi_pct`` bound the relative change ``100 * (mean_b / mean_a - 1)`` at
    level ``1 - alpha``; ``significant`` is ``p < alpha``, which holds exactly when that
    interval excludes 0. Entries the inputs do not allow (fewer than 2 values, a zero or
    opposite-signed mean, both variances zero) are NaN (``significant`` False there).
    """

    log_ratio: FloatArray
    se: FloatArray
    df: FloatArray
    t: FloatArray
    p: FloatArray
    ci_lo_pct: FloatArray
    ci_hi_pct: FloatArray
    significant: BoolArray


def welch_log_ratio(
    mean_a: ArrayLike,
    sd_a: ArrayLike,
    n_a: ArrayLike,
    mean_b: ArrayLike,
    sd_b: ArrayLike,
    n_b: ArrayLike,
    *,
    alpha: float = 0.05,
) -> LogRatioTest:
    """Welch's t-test on the log ratio of two means, and the interval that inverts it.

    From summary statistics (numpy-broadcast, so a simulation can pass whole arrays):

        L  = ln(mean_b / mean_a)
        SE = sqrt(sd_a² / (n_a mean_a²) + sd_b² / (n_b mean_b²))       (delta method)
        df = Welch–Satterthwaite on those two variance components
        t  = L / SE,   p = 2 P(T_df > |t|)
        CI = 100 · (exp(L ∓ t(1 − alpha/2; df) · SE) − 1)  in % of mean_a

    The test and the interval share L, SE, df and the critical value, so ``p < alpha`` exactly
    when the interval excludes 0 (a last-bit disagreement between scipy's ``sf`` and ``ppf``
    is resolved in favour of the interval).
    """
    alpha = _check_probability(alpha, "alpha")
    from scipy import stats

    ma, sa, na, mb, sb, nb = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (mean_a, sd_a, n_a, mean_b, sd_b, n_b))
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = mb / ma
        # Variance of ln(mean) ~ Var(mean) / mean^2 (delta method), one component per group.
        ua = sa * sa / (na * ma * ma)
        ub = sb * sb / (nb * mb * mb)
        var = ua + ub
    # NaN compares False, so missing inputs fall out here too.
    usable = (na >= 2) & (nb >= 2) & (ratio > 0) & np.isfinite(ratio) & (var > 0)
    usable &= np.isfinite(var)
    log_ratio, se, df, t, p, lo, hi = (np.full(ma.shape, np.nan) for _ in range(7))
    significant = np.zeros(ma.shape, dtype=np.bool_)
    if usable.any():
        u_a, u_b, n_a_, n_b_ = ua[usable], ub[usable], na[usable], nb[usable]
        v = var[usable]
        dof = v * v / (u_a * u_a / (n_a_ - 1) + u_b * u_b / (n_b_ - 1))
        s_e = np.sqrt(v)
        lr = np.log(ratio[usable])
        t_stat = lr / s_e
        half = stats.t.isf(alpha / 2.0, dof) * s_e
        p_val = np.minimum(2.0 * stats.t.sf(np.abs(t_stat), dof), 1.0)
        # Significance is read off the interval: lo > 0 or hi < 0 exactly when |L| > half
        # (a correctly rounded subtraction has the sign of the comparison, and expm1 keeps
        # the sign of tiny arguments). sf and isf can disagree in the last bit right at the
        # boundary; p is then moved to the interval's side so the two never contradict.
        sig = np.abs(lr) > half
        p_val = np.where(sig & (p_val >= alpha), np.nextafter(alpha, 0.0), p_val)
        p_val = np.where(~sig & (p_val < alpha), alpha, p_val)
        log_ratio[usable], se[usable], df[usable], t[usable], p[usable] = (
            lr,
            s_e,
            dof,
            t_stat,
            p_val,
        )
        # Very variable data give a half-width beyond exp's range: the bound is +inf, which
        # the callers report as an interval that could not be bounded, never as a number.
        with np.errstate(over="ignore"):
            lo[usable] = 100.0 * np.expm1(lr - half)
            hi[usable] = 100.0 * np.expm1(lr + half)
        significant[usable] = sig
    return LogRatioTest(log_ratio, se, df, t, p, lo, hi, significant)


@dataclass(frozen=True)
class CompareResult(_Result):
    """Result of :func:`compare_groups`: ``b`` against ``a``; positive means ``b`` is larger.

    The primary test is fixed in advance by the metric's scale (``primary``): for a ratio-scale
    metric such as energy, Welch's t on the log ratio of the means (``log_ratio_*``), whose
    inversion is ``relative_change_ci``; for a difference-scale metric such as accuracy,
    Welch's t on the difference of the means (``welch_*``), whose inversion is
    ``difference_ci``. Either way ``primary_p < alpha`` exactly when the primary interval
    (``primary_ci``) excludes 0. Student's t and Mann–Whitney U are reported beside it;
    Mann–Whitney is the robustness check. ``holm_p`` is filled in by :func:`compare_policies`.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    sd_a: float | None
    sd_b: float | None
    welch_t: float | None
    welch_df: float | None
    welch_p: float | None
    student_t: float | None
    student_p: float | None
    mannwhitney_u: float | None
    mannwhitney_p: float | None
    mannwhitney_min_p: float | None
    cohens_d: float | None
    cohens_d_ci: tuple[float, float] | None
    hedges_g: float | None
    hedges_g_ci: tuple[float, float] | None
    relative_change_pct: float | None
    relative_change_ci: tuple[float, float] | None
    log_ratio_t: float | None
    log_ratio_df: float | None
    log_ratio_p: float | None
    shapiro_p_a: float | None
    shapiro_p_b: float | None
    primary_test: Literal["welch_log_ratio", "host_blocked_log_ratio", "welch_difference"]
    primary_reason: str
    primary_p: float | None
    alpha: float
    holm_p: float | None = None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    difference: float | None = None  # mean(b) − mean(a)
    difference_ci: tuple[float, float] | None = None  # Welch's 1 − alpha interval of it

    @property
    def primary_ci(self) -> tuple[float, float] | None:
        """The interval that inverts the primary test: % change, or the difference."""
        if self.primary_test == "welch_difference":
            return self.difference_ci
        return self.relative_change_ci


PRIMARY_REASON = (
    "Welch's t-test on the log ratio of the means, chosen before the data; the relative-change "
    "CI inverts the same test, so p < alpha exactly when the CI excludes 0"
)
DIFFERENCE_REASON = (
    "Welch's t-test on the difference of the means, chosen before the data for a metric on a "
    "difference scale (such as accuracy, compared in percentage points); the difference CI "
    "inverts the same test, so p < alpha exactly when the CI excludes 0"
)
Primary = Literal["log_ratio", "difference"]


def compare_groups(
    a: ArrayLike,
    b: ArrayLike,
    *,
    label_a: str = "a",
    label_b: str = "b",
    alpha: float = 0.05,
    primary: Primary = "log_ratio",
) -> CompareResult:
    """Compare policy ``b`` with baseline ``a``: t-tests, Mann–Whitney U, effect sizes, change.

    ``primary`` fixes the primary test before the data: ``"log_ratio"`` (Welch's t on the log
    ratio of the means, for ratio-scale metrics: energy, duration, power) or ``"difference"``
    (Welch's t on the difference, for metrics compared by their difference: accuracy, loss).
    ``alpha`` is the level of the primary test; ``relative_change_ci`` and ``difference_ci``
    have level 1 - alpha to match it. The CIs of Cohen's d and Hedges' g are always 95%.
    """
    alpha = _check_probability(alpha, "alpha")
    if primary not in ("log_ratio", "difference"):
        raise ConfigError(f"primary must be 'log_ratio' or 'difference', got {primary!r:.40}")
    notes: list[str] = []
    xa = _clean(a, label_a, notes)
    xb = _clean(b, label_b, notes)
    na, nb = xa.size, xb.size
    missing: dict[str, str] = {}
    out: _Fields = {}
    _moments(xa, xb, label_a, label_b, out, missing)
    _t_tests_and_effect_sizes(xa, xb, label_a, label_b, alpha, out, missing)
    _mann_whitney(xa, xb, label_a, label_b, out, missing)
    _relative_change(xa, xb, label_a, label_b, alpha, out, missing)
    _shapiro(xa, xb, label_a, label_b, alpha, out, missing)
    primary_p = _primary_p(primary, out, missing)

    return CompareResult(
        a=label_a,
        b=label_b,
        n_a=na,
        n_b=nb,
        mean_a=out["mean_a"],
        mean_b=out["mean_b"],
        sd_a=out["sd_a"],
        sd_b=out["sd_b"],
        welch_t=out.get("welch_t"),
        welch_df=out.get("welch_df"),
        welch_p=out.get("welch_p"),
        student_t=out.get("student_t"),
        student_p=out.get("student_p"),
        mannwhitney_u=out.get("mannwhitney_u"),
        mannwhitney_p=out.get("mannwhitney_p"),
        mannwhitney_min_p=out.get("mannwhitney_min_p"),
        cohens_d=out.get("cohens_d"),
        cohens_d_ci=out.get("cohens_d_ci"),
        hedges_g=out.get("hedges_g"),
        hedges_g_ci=out.get("hedges_g_ci"),
        relative_change_pct=out.get("relative_change_pct"),
        relative_change_ci=out.get("relative_change_ci"),
        log_ratio_t=out.get("log_ratio_t"),
        log_ratio_df=out.get("log_ratio_df"),
        log_ratio_p=out.get("log_ratio_p"),
        shapiro_p_a=out["shapiro_p_a"],
        shapiro_p_b=out["shapiro_p_b"],
        primary_test="welch_difference" if primary == "difference" else "welch_log_ratio",
        primary_reason=DIFFERENCE_REASON if primary == "difference" else PRIMARY_REASON,
        primary_p=primary_p,
        alpha=alpha,
        not_computed=missing,
        notes=notes,
        difference=float(xb.mean() - xa.mean()) if na and nb else None,
        difference_ci=out.get("difference_ci"),
    )


class _Fields(TypedDict, total=False):
    """The statistics :func:`compare_groups` computes, filled in step by step; a key that is
    absent was not computed (its reason is in ``missing``)."""

    mean_a: float | None
    mean_b: float | None
    sd_a: float | None
    sd_b: float | None
    welch_t: float
    welch_df: float
    welch_p: float
    student_t: float
    student_p: float
    difference_ci: tuple[float, float]
    cohens_d: float
    cohens_d_ci: tuple[float, float]
    hedges_g: float
    hedges_g_ci: tuple[float, float]
    mannwhitney_u: float
    mannwhitney_p: float
    mannwhitney_min_p: float
    relative_change_pct: float
    relative_change_ci: tuple[float, float]
    log_ratio_t: float
    log_ratio_df: float
    log_ratio_p: float
    shapiro_p_a: float | None
    shapiro_p_b: float | None


def _moments(
    xa: FloatArray,
    xb: FloatArray,
    label_a: str,
    label_b: str,
    out: _Fields,
    missing: dict[str, str],
) -> None:
    """Each group's mean and sd into ``out``, or why not into ``missing``."""
    na, nb = xa.size, xb.size
    out["mean_a"] = float(xa.mean()) if na else None
    out["mean_b"] = float(xb.mean()) if nb else None
    out["sd_a"] = float(xa.std(ddof=1)) if na >= 2 else None
    out["sd_b"] = float(xb.std(ddof=1)) if nb >= 2 else None
    for key, n, label in (("mean_a", na, label_a), ("mean_b", nb, label_b)):
        if n == 0:
            missing[key] = f"{label} has no values"
    for key, n, label in (("sd_a", na, label_a), ("sd_b", nb, label_b)):
        if n < 2:
            missing[key] = f"{label} has {n} value{'s' if n != 1 else ''}; sd needs 2"


def _t_tests_and_effect_sizes(
    xa: FloatArray,
    xb: FloatArray,
    label_a: str,
    label_b: str,
    alpha: float,
    out: _Fields,
    missing: dict[str, str],
) -> None:
    """Welch's and Student's t, the difference CI, Cohen's d and Hedges' g into ``out``."""
    na, nb = xa.size, xb.size
    few = [f"{label} has {n}" for label, n in ((label_a, na), (label_b, nb)) if n < 2]
    t_fields = ("welch_t", "welch_df", "welch_p", "student_t", "student_p")
    d_fields = ("cohens_d", "cohens_d_ci", "hedges_g", "hedges_g_ci")
    if few:
        reason = "needs at least 2 values per group (" + ", ".join(few) + ")"
        missing.update(dict.fromkeys(t_fields + d_fields, reason))
        return
    if _constant(xa) and _constant(xb):
        reason = "both groups have zero variance; the statistic is undefined"
        missing.update(dict.fromkeys(t_fields + d_fields, reason))
        return
    from scipy import stats

    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    # From summary statistics: ttest_ind itself warns about precision loss whenever one
    # group is constant, which is a legitimate input here (the other group has spread).
    summary = (float(xb.mean()), math.sqrt(vb), nb, float(xa.mean()), math.sqrt(va), na)
    welch = stats.ttest_ind_from_stats(*summary, equal_var=False)
    student = stats.ttest_ind_from_stats(*summary, equal_var=True)
    out["welch_t"], out["welch_p"] = float(welch.statistic), float(welch.pvalue)
    out["student_t"], out["student_p"] = float(student.statistic), float(student.pvalue)
    out["welch_df"] = (va / na + vb / nb) ** 2 / (
        (va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)
    )
    _difference_ci(xa, xb, alpha, out)
    pooled_sd = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    d = (float(xb.mean()) - float(xa.mean())) / pooled_sd
    se_d = math.sqrt((na + nb) / (na * nb) + d * d / (2 * (na + nb)))
    j = 1.0 - 3.0 / (4 * (na + nb) - 9)
    g = j * d
    out["cohens_d"], out["cohens_d_ci"] = d, (d - _Z975 * se_d, d + _Z975 * se_d)
    out["hedges_g"], out["hedges_g_ci"] = g, (g - _Z975 * j * se_d, g + _Z975 * j * se_d)


def _mann_whitney(
    xa: FloatArray,
    xb: FloatArray,
    label_a: str,
    label_b: str,
    out: _Fields,
    missing: dict[str, str],
) -> None:
    """Mann–Whitney U, its p and the smallest p these group sizes allow into ``out``."""
    na, nb = xa.size, xb.size
    if na == 0 or nb == 0:
        empty = label_a if na == 0 else label_b
        missing["mannwhitney_u"] = missing["mannwhitney_p"] = f"{empty} has no values"
        missing["mannwhitney_min_p"] = missing["mannwhitney_p"]
        return
    from scipy import stats

    # The most extreme ordering without ties: no data can give Mann–Whitney a smaller p
    # at these group sizes (0.1 with 3 and 3 runs), which is why it cannot be primary.
    extreme = stats.mannwhitneyu(
        np.arange(nb, dtype=np.float64),
        np.arange(nb, nb + na, dtype=np.float64),
        alternative="two-sided",
    )
    out["mannwhitney_min_p"] = float(extreme.pvalue)
    if _constant(np.concatenate([xa, xb])):
        reason = "all values are identical; the ranks carry no information"
        missing["mannwhitney_u"] = missing["mannwhitney_p"] = reason
    else:
        mwu = stats.mannwhitneyu(xb, xa, alternative="two-sided")
        out["mannwhitney_u"], out["mannwhitney_p"] = float(mwu.statistic), float(mwu.pvalue)


def _shapiro(
    xa: FloatArray,
    xb: FloatArray,
    label_a: str,
    label_b: str,
    alpha: float,
    out: _Fields,
    missing: dict[str, str],
) -> None:
    """Each group's Shapiro–Wilk p into ``out`` (None, with the reason, where not computed)."""
    norm_a = normality(xa, alpha)
    norm_b = normality(xb, alpha)
    out["shapiro_p_a"] = norm_a.p
    out["shapiro_p_b"] = norm_b.p
    for key, result, label in (("shapiro_p_a", norm_a, label_a), ("shapiro_p_b", norm_b, label_b)):
        if result.p is None:
            missing[key] = f"{label}: {result.not_computed['p']}"


def _primary_p(primary: Primary, out: _Fields, missing: dict[str, str]) -> float | None:
    """The primary test's p, fixed by the metric's scale; why not into ``missing``."""
    if primary == "difference":
        primary_p = out.get("welch_p")
        if primary_p is None:
            missing["primary_p"] = missing["welch_p"]
        if "difference_ci" not in out and "welch_p" in missing:
            missing["difference_ci"] = missing["welch_p"]
        return primary_p
    primary_p = out.get("log_ratio_p")
    if primary_p is None:
        missing["primary_p"] = missing["log_ratio_p"]
    return primary_p


def _difference_ci(xa: FloatArray, xb: FloatArray, alpha: float, out: _Fields) -> None:
    """Welch's 1 − alpha interval of mean(b) − mean(a) into ``out``, and welch_p moved to its
    side where scipy's sf and isf disagree in the last bit (as in :func:`welch_log_ratio`)."""
    diff, se, df, reason = _welch_parts(xa, xb, "a", "b")
    if reason is not None:
        return
    from scipy import stats

    half = float(stats.t.isf(alpha / 2.0, df)) * se
    out["difference_ci"] = (diff - half, diff + half)
    significant = abs(diff) > half
    p = out.get("welch_p")
    if p is not None:
        if significant and p >= alpha:
            out["welch_p"] = float(np.nextafter(alpha, 0.0))
        elif not significant and p < alpha:
            out["welch_p"] = alpha


def _relative_change(
    xa: FloatArray,
    xb: FloatArray,
    label_a: str,
    label_b: str,
    alpha: float,
    out: _Fields,
    missing: dict[str, str],
) -> None:
    """The relative change, its CI and the primary test (Welch on the log ratio) into ``out``."""
    na, nb = xa.size, xb.size
    test_fields = ("relative_change_ci", "log_ratio_t", "log_ratio_df", "log_ratio_p")
    if na == 0 or nb == 0:
        missing.update(
            dict.fromkeys(("relative_change_pct", *test_fields), "needs at least 1 value per group")
        )
        return
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    if mean_a == 0.0:
        missing.update(
            dict.fromkeys(("relative_change_pct", *test_fields), f"mean of {label_a} is zero")
        )
        return
    out["relative_change_pct"] = 100.0 * (mean_b / mean_a - 1.0)
    reason: str | None = None
    if na < 2 or nb < 2:
        few = [f"{label} has {n}" for label, n in ((label_a, na), (label_b, nb)) if n < 2]
        reason = "needs at least 2 values per group (" + ", ".join(few) + ")"
    elif mean_b == 0.0 or (mean_a > 0) != (mean_b > 0):
        reason = (
            f"the means of {label_a} and {label_b} are not both positive or both negative; "
            "the log ratio is undefined"
        )
    elif _constant(xa) and _constant(xb):
        reason = "both groups have zero variance; the test and its interval are undefined"
    if reason is not None:
        missing.update(dict.fromkeys(test_fields, reason))
        return
    test = welch_log_ratio(mean_a, _sd(xa), na, mean_b, _sd(xb), nb, alpha=alpha)
    if not (math.isfinite(float(test.ci_lo_pct)) and math.isfinite(float(test.ci_hi_pct))):
        missing["relative_change_ci"] = (
            "the runs vary too much for the interval to be bounded (its upper end is beyond "
            "any finite change); more runs, or a less variable metric, are needed"
        )
    else:
        out["relative_change_ci"] = (float(test.ci_lo_pct), float(test.ci_hi_pct))
    out["log_ratio_t"] = float(test.t)
    out["log_ratio_df"] = float(test.df)
    out["log_ratio_p"] = float(test.p)


# -- several policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyComparison(_Result):
    """Result of :func:`compare_policies`: every policy against the baseline."""

    baseline: str
    policies: list[str]
    describe: dict[str, Description]
    comparisons: dict[str, CompareResult]
    holm_p: dict[str, float | None]
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def compare_policies(
    groups: Mapping[str, ArrayLike],
    baseline: str | None = None,
    *,
    alpha: float = 0.05,
    primary: Primary = "log_ratio",
) -> PolicyComparison:
    """Each policy against ``baseline`` (default: the first), Holm-correcting the primary p.

    ``primary`` is the metric's primary test (see :func:`compare_groups`)."""
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError("groups must be a non-empty mapping of policy name to values")
    policies = [str(name) for name in groups]
    values = {str(name): v for name, v in groups.items()}
    if baseline is None:
        baseline = policies[0]
    elif baseline not in values:
        raise ConfigError(f"baseline {baseline!r} is not one of the policies {policies}")
    described = {name: describe(values[name]) for name in policies}
    comparisons = {
        name: compare_groups(
            values[baseline],
            values[name],
            label_a=baseline,
            label_b=name,
            alpha=alpha,
            primary=primary,
        )
        for name in policies
        if name != baseline
    }
    missing: dict[str, str] = {}
    notes: list[str] = []
    if not comparisons:
        missing["comparisons"] = missing["holm_p"] = "only one policy; nothing to compare"
    raw = [c.primary_p for c in comparisons.values()]
    adjusted = holm(raw)
    if any(p is None for p in raw) and comparisons:
        skipped = [name for name, c in comparisons.items() if c.primary_p is None]
        notes.append(
            "Holm correction over the comparisons with a p-value only; not computed for "
            + ", ".join(skipped)
        )
    holm_p = dict(zip(comparisons, adjusted, strict=True))
    comparisons = {name: replace(c, holm_p=holm_p[name]) for name, c in comparisons.items()}
    return PolicyComparison(baseline, policies, described, comparisons, holm_p, missing, notes)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in input order; None or NaN entries stay None.

    The family is the entries that have a p-value.
    """
    items: list[object] = list(pvalues)
    present: list[tuple[int, float]] = []
    for i, p in enumerate(items):
        if p is None or (isinstance(p, (float, np.floating)) and math.isnan(p)):
            continue
        if not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"p-values must be numbers in [0, 1], got {p!r} at index {i}")
        present.append((i, float(p)))
    adjusted: list[float | None] = [None] * len(items)
    m = len(present)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(present, key=lambda item: item[1])):
        # Taking the running maximum keeps adjusted p-values in the order of the raw ones.
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted

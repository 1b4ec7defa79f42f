"""Statistics for energy experiments: outliers, summaries, comparisons, power traces, planning.

Every function is pure: arrays or frames in, a frozen dataclass (or a frame, or a number) out.
Result dataclasses have ``to_dict()`` returning JSON-ready values (NaN and infinity become
``None``, tuples become lists). Whatever cannot be computed from the data (too few runs, zero
variance, an empty group) is ``None`` in the result, with the reason under
``not_computed[field]``; NaN inputs are dropped and counted in ``notes``. Exceptions are kept for
arguments that make no sense (``ConfigError``), never raised from inside scipy.

Conventions: ``a`` is the baseline (FP32 in the study), ``b`` the policy compared with it; every
signed statistic (t, U, Cohen's d, Hedges' g, relative change) is positive when ``b`` is larger.
Formulas and references: ``docs/stats.md``.

scipy is imported inside the functions that need it so that ``import greenprec.stats`` stays
cheap.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from greenprec.errors import ConfigError

__all__ = [
    "DEFAULT_ACCURACY_MARGIN",
    "BlockInteraction",
    "BlockedLogRatio",
    "CompareResult",
    "Description",
    "EquivalenceResult",
    "LogRatioTest",
    "Margin",
    "NonInferiorityResult",
    "NormalityResult",
    "OutlierResult",
    "PolicyComparison",
    "RunOrderTrend",
    "accuracy_like",
    "accuracy_scale",
    "achieved_power",
    "binned_power",
    "block_interaction",
    "blocked_log_ratio",
    "compare_groups",
    "compare_policies",
    "describe",
    "energy_per_accuracy_point",
    "equivalence_verdict",
    "holm",
    "mean_power_trace",
    "noninferiority_log_ratio",
    "noninferiority_welch",
    "normality",
    "parse_margin",
    "parse_sesoi",
    "run_order_trend",
    "runs_needed",
    "runs_needed_equivalence",
    "tost_log_ratio",
    "tost_power",
    "tost_welch",
    "welch_log_ratio",
    "zscore_outliers",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# z_{0.975}; written out so that the effect-size CIs need no scipy call.
_Z975 = 1.959963984540054
# Above this many runs per group the noncentral t is indistinguishable from the normal and
# scipy's nct gets slow; runs_needed gives up rather than answer with a meaningless number.
_MAX_RUNS = 10**8


# -- JSON helpers ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
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


def _json_key(key: Any) -> str:
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


# -- outliers --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutlierResult(_Result):
    """Result of :func:`zscore_outliers`; arrays are aligned with the input values."""

    threshold: float
    n: int
    n_removed: int
    n_nan: int
    kept_mask: BoolArray
    kept: FloatArray
    z: FloatArray
    removed_ids: list[Any]
    removed_values: list[float]
    removed_z: list[float]
    removed_groups: list[Any] | None
    nan_ids: list[Any]
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def zscore_outliers(
    values: ArrayLike,
    threshold: float = 3.0,
    ids: Sequence[Any] | ArrayLike | None = None,
    groups: Sequence[Any] | ArrayLike | None = None,
) -> OutlierResult:
    """The study's outlier rule: drop values whose population z-score exceeds ``threshold``.

    z = (x - mean) / sd with ddof=0 (as ``scipy.stats.zscore``), per group when ``groups`` is
    given, in one pass (not iterated). NaNs are not outliers: they stay in ``kept_mask`` and are
    listed in ``nan_ids``. A group with zero variance has no outliers.
    """
    x = _as_1d(values, "values")
    if not isinstance(threshold, (int, float)) or not threshold > 0 or math.isinf(threshold):
        raise ConfigError(f"threshold must be a positive number, got {threshold!r}")
    n = x.size
    id_list = list(range(n)) if ids is None else list(np.asarray(ids, dtype=object).tolist())
    if len(id_list) != n:
        raise ConfigError(f"ids has {len(id_list)} entries but values has {n}")
    if groups is None:
        codes = np.zeros(n, dtype=np.intp)
        uniques: list[Any] = [None]
    else:
        group_array = np.asarray(groups, dtype=object)
        if group_array.ndim != 1 or group_array.size != n:
            raise ConfigError(f"groups must be one label per value ({n}), got {group_array.size}")
        raw_codes, raw_uniques = pd.factorize(pd.Series(group_array), use_na_sentinel=False)
        codes = np.asarray(raw_codes, dtype=np.intp)
        uniques = list(raw_uniques)

    notes: list[str] = []
    z = np.full(n, np.nan)
    for code, label in enumerate(uniques):
        members = np.flatnonzero(codes == code)
        finite = members[~np.isnan(x[members])]
        where = "" if groups is None else f" in group {label!r}"
        if finite.size == 0:
            continue
        if _constant(x[finite]):
            # scipy would give 0/0 = NaN; no spread means no value is unusual.
            z[finite] = 0.0
            notes.append(f"zero variance{where}: nothing removed")
            continue
        from scipy import stats

        with warnings.catch_warnings(record=True) as caught:
            # Nearly equal values make scipy warn about cancellation; the z-scores are still
            # the rule's, so the caveat becomes a note instead of a warning.
            warnings.simplefilter("always", RuntimeWarning)
            z[finite] = stats.zscore(x[finite], ddof=0)
        if any(issubclass(w.category, RuntimeWarning) for w in caught):
            notes.append(f"values{where} are nearly identical; z-scores are dominated by rounding")
        # With ddof=0 no |z| can exceed sqrt(n - 1) (one value apart from n - 1 equal ones), so
        # a small group cannot have outliers: at threshold 3 that is any group of 10 or fewer.
        ceiling = math.sqrt(finite.size - 1)
        if ceiling <= threshold:
            notes.append(
                f"{finite.size} values{where}: |z| cannot exceed {ceiling:.3g} <= threshold "
                f"{threshold:g}, so no value can be removed"
            )

    removed = np.abs(z) > threshold  # NaN compares False: NaNs are never removed
    nan_mask = np.isnan(x)
    n_nan = int(nan_mask.sum())
    if n_nan:
        notes.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''} kept, not tested")
    idx = np.flatnonzero(removed)
    return OutlierResult(
        threshold=float(threshold),
        n=n,
        n_removed=int(idx.size),
        n_nan=n_nan,
        kept_mask=~removed,
        kept=x[~removed],
        z=z,
        removed_ids=[id_list[i] for i in idx],
        removed_values=[float(x[i]) for i in idx],
        removed_z=[float(z[i]) for i in idx],
        removed_groups=None if groups is None else [uniques[codes[i]] for i in idx],
        nan_ids=[id_list[i] for i in np.flatnonzero(nan_mask)],
        notes=notes,
    )


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
    out: dict[str, Any] = {}

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

    few = [f"{label} has {n}" for label, n in ((label_a, na), (label_b, nb)) if n < 2]
    t_fields = ("welch_t", "welch_df", "welch_p", "student_t", "student_p")
    d_fields = ("cohens_d", "cohens_d_ci", "hedges_g", "hedges_g_ci")
    from scipy import stats

    if few:
        reason = "needs at least 2 values per group (" + ", ".join(few) + ")"
        missing.update(dict.fromkeys(t_fields + d_fields, reason))
    elif _constant(xa) and _constant(xb):
        reason = "both groups have zero variance; the statistic is undefined"
        missing.update(dict.fromkeys(t_fields + d_fields, reason))
    else:
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

    if na == 0 or nb == 0:
        empty = label_a if na == 0 else label_b
        missing["mannwhitney_u"] = missing["mannwhitney_p"] = f"{empty} has no values"
        missing["mannwhitney_min_p"] = missing["mannwhitney_p"]
    else:
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

    _relative_change(xa, xb, label_a, label_b, alpha, out, missing)

    norm_a = normality(xa, alpha)
    norm_b = normality(xb, alpha)
    for key, result, label in (("shapiro_p_a", norm_a, label_a), ("shapiro_p_b", norm_b, label_b)):
        out[key] = result.p
        if result.p is None:
            missing[key] = f"{label}: {result.not_computed['p']}"
    if primary == "difference":
        primary_p = out.get("welch_p")
        if primary_p is None:
            missing["primary_p"] = missing["welch_p"]
        if "difference_ci" not in out and "welch_p" in missing:
            missing["difference_ci"] = missing["welch_p"]
    else:
        primary_p = out.get("log_ratio_p")
        if primary_p is None:
            missing["primary_p"] = missing["log_ratio_p"]

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


def _difference_ci(xa: FloatArray, xb: FloatArray, alpha: float, out: dict[str, Any]) -> None:
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
    out: dict[str, Any],
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


# -- blocked designs ------------------------------------------------------------------------------

BlockedVariance = Literal["per_policy", "pooled"]


@dataclass(frozen=True)
class BlockedLogRatio(_Result):
    """Result of :func:`blocked_log_ratio`: ``b`` against ``a`` within blocks (hosts).

    ``log_ratio`` is β of the OLS fit ``ln(value) ~ policy + block`` (one fixed effect per
    block, on the blocks that have runs of both policies), ``se`` its standard error and ``df``
    its degrees of freedom. ``variance`` says how ``se`` was estimated: ``"per_policy"`` (each
    policy's own within-block variance, Welch–Satterthwaite ``df``) or ``"pooled"`` (one
    residual variance, ``df`` = N − H − 1: the paired t-test with one run of each policy per
    block), and ``variance_reason`` why. ``relative_change_pct`` is ``100 · (exp(β) − 1)`` and
    ``relative_change_ci_pct`` the ``1 − alpha`` interval ``100 · (exp(β ∓ t·SE) − 1)``, which
    inverts the t-test: ``p < alpha`` exactly when the interval excludes 0. ``blocks_left_out``
    lists the blocks with runs of only one policy; their ``n_left_out_a`` + ``n_left_out_b``
    runs are not in the fit.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    blocks: list[Any]
    blocks_left_out: list[Any]
    n_left_out_a: int
    n_left_out_b: int
    log_ratio: float | None
    se: float | None
    df: float | None
    t: float | None
    p: float | None
    relative_change_pct: float | None
    relative_change_ci_pct: tuple[float, float] | None
    alpha: float
    significant: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    variance: BlockedVariance | None = None
    variance_reason: str | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


_BLOCKED_TEST_FIELDS = ("se", "t", "p", "relative_change_ci_pct", "significant")
PER_POLICY_VARIANCE_REASON = (
    "each policy's own within-host variance (Welch–Satterthwaite df): the policies' spreads "
    "may differ, and one pooled variance would then give intervals that are too narrow"
)


def _labels(values: Sequence[Any] | ArrayLike, name: str, n: int) -> list[Any]:
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


@dataclass(frozen=True)
class _Blocked:
    """Two policies' values on the blocks that ran both: what the blocked fits share."""

    n_a: int
    n_b: int
    n_all_a: int  # values (not NaN) before blocks with one policy were left out
    n_all_b: int
    blocks: list[Any]
    left_out: list[Any]
    notes: list[str]
    problem: str | None  # why nothing can be fitted
    y: FloatArray  # ln(value): the a values, then the b values
    d: FloatArray  # 1 for b
    codes: NDArray[np.intp]  # block index of each value

    @property
    def h(self) -> int:
        return len(self.blocks)


def _blocked_data(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Any] | ArrayLike,
    blocks_b: Sequence[Any] | ArrayLike,
    label_a: str,
    label_b: str,
) -> _Blocked:
    notes: list[str] = []
    raw_a = _as_1d(values_a, label_a)
    raw_b = _as_1d(values_b, label_b)
    labels_a = _labels(blocks_a, "blocks_a", raw_a.size)
    labels_b = _labels(blocks_b, "blocks_b", raw_b.size)
    keep_a, keep_b = ~np.isnan(raw_a), ~np.isnan(raw_b)
    for name, keep in ((label_a, keep_a), (label_b, keep_b)):
        dropped = int((~keep).sum())
        if dropped:
            notes.append(f"dropped {dropped} NaN value{'s' if dropped != 1 else ''} from {name}")
    xa, xb = raw_a[keep_a], raw_b[keep_b]
    ba = [label for label, k in zip(labels_a, keep_a.tolist(), strict=True) if k]
    bb = [label for label, k in zip(labels_b, keep_b.tolist(), strict=True) if k]
    in_a, in_b = dict.fromkeys(ba), dict.fromkeys(bb)
    blocks = [block for block in dict.fromkeys([*ba, *bb]) if block in in_a and block in in_b]
    both = set(blocks)
    left_out = [block for block in dict.fromkeys([*ba, *bb]) if block not in both]
    use_a = np.array([label in both for label in ba], dtype=np.bool_)
    use_b = np.array([label in both for label in bb], dtype=np.bool_)
    ya_raw, yb_raw = xa[use_a], xb[use_b]
    problem: str | None = None
    if not blocks:
        problem = f"no block has runs of both {label_a} and {label_b}"
    else:
        bad = [name for name, y in ((label_a, ya_raw), (label_b, yb_raw)) if (y <= 0).any()]
        if bad:
            problem = (
                f"{' and '.join(bad)} {'has' if len(bad) == 1 else 'have'} zero or negative "
                "values; the log ratio is undefined"
            )
    position = {block: index for index, block in enumerate(blocks)}
    used_labels = [label for label in [*ba, *bb] if label in both]
    codes = np.array([position[label] for label in used_labels], dtype=np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.concatenate([ya_raw, yb_raw]))
    d = np.concatenate([np.zeros(ya_raw.size), np.ones(yb_raw.size)])
    return _Blocked(
        n_a=int(ya_raw.size),
        n_b=int(yb_raw.size),
        n_all_a=int(xa.size),
        n_all_b=int(xb.size),
        blocks=blocks,
        left_out=left_out,
        notes=notes,
        problem=problem,
        y=y,
        d=d,
        codes=codes,
    )


def _demean(x: FloatArray, codes: NDArray[np.intp], h: int) -> FloatArray:
    counts = np.bincount(codes, minlength=h).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(codes, weights=x, minlength=h) / counts
    return np.asarray(x - means[codes], dtype=np.float64)


def _zero_floor(y: FloatArray) -> float:
    """Residual SDs at or below this are rounding (the logs of 1.1 and 3.3 are not exact)."""
    return 64.0 * float(np.finfo(np.float64).eps) * max(1.0, float(np.max(np.abs(y))))


def _t_test_and_interval(
    beta: float,
    se: float,
    dof: float,
    alpha: float,
    values: dict[str, Any],
    missing: dict[str, str],
) -> None:
    """t, p and the 1 − alpha relative-change interval that inverts the test, into ``values``."""

    t_stat, p_val, half, sig = _t_test(beta, se, dof, alpha)
    values.update(df=dof, se=se, t=t_stat, p=p_val, significant=sig)
    if beta + half >= 709.0 or beta - half >= 709.0:
        missing["relative_change_ci_pct"] = (
            "the runs vary too much for the interval to be bounded (its upper end is beyond "
            "any finite change); more runs, or a less variable metric, are needed"
        )
    else:
        values["relative_change_ci_pct"] = (
            100.0 * math.expm1(beta - half),
            100.0 * math.expm1(beta + half),
        )


def _policy_variances(
    data: _Blocked,
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Each policy's pooled within-block variance of ln(value), and its degrees of freedom
    (runs − blocks): the residuals of the cell-means model, policy by policy."""
    h = data.h
    out = []
    for policy in (0.0, 1.0):
        mine = data.d == policy
        residuals = _demean(data.y[mine], data.codes[mine], h)
        dof = int(mine.sum()) - h
        ss = float(np.dot(residuals, residuals))
        out.append((ss / dof if dof >= 1 else math.nan, dof))
    return out[0], out[1]


def blocked_log_ratio(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Any] | ArrayLike,
    blocks_b: Sequence[Any] | ArrayLike,
    *,
    alpha: float = 0.05,
    label_a: str = "a",
    label_b: str = "b",
) -> BlockedLogRatio:
    """The log ratio of ``b`` to ``a`` within blocks: OLS with block fixed effects, and a
    standard error that lets the two policies vary differently.

    The model is ``ln(value) = α_block + β · [policy is b] + ε`` fitted to the blocks that
    have at least one run of each policy (the others cannot say anything about β and are
    listed in ``blocks_left_out``). By Frisch–Waugh–Lovell, β is the slope of the
    block-demeaned log values on the block-demeaned indicator d̃, a weighted sum of the runs:

        β = Σ c_i y_i,   c_i = d̃_i / Σ d̃²

    **Per-policy variances** (``variance="per_policy"``, whenever each policy has more runs
    than blocks): ``Var(β) = σ_a² Σ_{i∈a} c_i² + σ_b² Σ_{i∈b} c_i²``, each σ² estimated by that
    policy's pooled within-block variance (df = runs − blocks), and the t-test uses the
    Welch–Satterthwaite df of those two components (Satterthwaite 1946; Welch 1947). With one
    block this is exactly Welch's t-test on the logs. It is used instead of the one residual
    variance of OLS because the policies' spreads differ (mixed precision may vary more than
    FP32): with 8 and 2 runs per host on two hosts and log SDs 0.005 / 0.05 the pooled-variance
    interval covers 61 %, HC3 (Long & Ervin 2000) with df N − H − 1 covers 91 %, and this one
    95 % (``benchmarks/host_blocked_coverage.py``).

    **Pooled** (``variance="pooled"``, when a policy has only one run per block, so its own
    variance cannot be estimated): ``SE = sqrt(RSS / df / Σ d̃²)``, ``df = N − H − 1``; with
    exactly one run of each policy per block this is the paired t-test on the per-block log
    differences (``scipy.stats.ttest_rel``), and in general statsmodels'
    ``ols("np.log(y) ~ C(policy) + C(block)")``.

    Either way ``t = β / SE``, ``p = 2 P(T_df > |t|)`` and
    ``CI = 100 · (exp(β ∓ t(1 − alpha/2; df) · SE) − 1)`` in %. NaN values are dropped with
    their labels (and counted in ``notes``); a non-positive value, df < 1, a spread that is all
    zero and an interval beyond exp's range are "not computed" with the reason.
    """
    alpha = _check_probability(alpha, "alpha")
    data = _blocked_data(values_a, values_b, blocks_a, blocks_b, label_a, label_b)
    missing: dict[str, str] = {}
    chosen: dict[str, Any] = {}

    def result(**values: Any) -> BlockedLogRatio:
        return BlockedLogRatio(
            a=label_a,
            b=label_b,
            n_a=data.n_a,
            n_b=data.n_b,
            blocks=data.blocks,
            blocks_left_out=data.left_out,
            n_left_out_a=data.n_all_a - data.n_a,
            n_left_out_b=data.n_all_b - data.n_b,
            log_ratio=values.get("log_ratio"),
            se=values.get("se"),
            df=values.get("df"),
            t=values.get("t"),
            p=values.get("p"),
            relative_change_pct=values.get("relative_change_pct"),
            relative_change_ci_pct=values.get("relative_change_ci_pct"),
            alpha=alpha,
            significant=values.get("significant"),
            not_computed=missing,
            notes=data.notes,
            variance=chosen.get("variance"),
            variance_reason=chosen.get("reason"),
        )

    everything = ("log_ratio", "relative_change_pct", "df", *_BLOCKED_TEST_FIELDS)
    if data.problem is not None:
        missing.update(dict.fromkeys(everything, data.problem))
        return result()
    y, h = data.y, data.h
    y_tilde = _demean(y, data.codes, h)
    d_tilde = _demean(data.d, data.codes, h)
    sxx = float(np.dot(d_tilde, d_tilde))
    beta = float(np.dot(d_tilde, y_tilde)) / sxx
    values: dict[str, Any] = {"log_ratio": beta}
    change = 100.0 * math.expm1(beta) if beta < 709.0 else math.inf
    if math.isfinite(change):
        values["relative_change_pct"] = change
    else:
        missing["relative_change_pct"] = "the log ratio is beyond exp's range"
    (var_a, df_a), (var_b, df_b) = _policy_variances(data)
    floor = _zero_floor(y)
    per_policy = df_a >= 1 and df_b >= 1
    reason: str | None = None
    if per_policy:
        chosen.update(variance="per_policy", reason=PER_POLICY_VARIANCE_REASON)
        weights = d_tilde / sxx
        u_a = var_a * float(np.dot(weights[: data.n_a], weights[: data.n_a]))
        u_b = var_b * float(np.dot(weights[data.n_a :], weights[data.n_a :]))
        if math.sqrt(max(var_a, var_b)) <= floor:
            reason = (
                "the runs of each policy on each host are identical: the within-host spread "
                "is zero; the test and its interval are undefined"
            )
        else:
            se = math.sqrt(u_a + u_b)
            dof = (u_a + u_b) ** 2 / (u_a * u_a / df_a + u_b * u_b / df_b)
    else:
        alone = [name for name, dof_p in ((label_a, df_a), (label_b, df_b)) if dof_p < 1]
        chosen.update(
            variance="pooled",
            reason=(
                f"{' and '.join(alone)} {'has' if len(alone) == 1 else 'have'} one run per "
                "host, so a variance per policy cannot be estimated: one residual variance is "
                "assumed for both policies" + (" (the paired t-test)" if len(alone) == 2 else "")
            ),
        )
        n_dof = y.size - h - 1
        if n_dof < 1:
            reason = (
                f"needs more runs than blocks + 1 ({y.size} runs in {h} "
                f"block{'s' if h != 1 else ''} leave {n_dof} residual degrees of freedom)"
            )
            missing["df"] = reason
        else:
            residuals = y_tilde - beta * d_tilde
            rss = float(np.dot(residuals, residuals))
            dof = float(n_dof)
            if math.sqrt(rss / n_dof) <= floor:
                values["df"] = dof
                reason = (
                    "the residuals are zero: every block shows the same difference; the test "
                    "and its interval are undefined"
                )
            else:
                se = math.sqrt(rss / n_dof / sxx)
    if reason is not None:
        missing.update(dict.fromkeys(_BLOCKED_TEST_FIELDS, reason))
        return result(**values)
    _t_test_and_interval(beta, se, dof, alpha, values, missing)
    return result(**values)


@dataclass(frozen=True)
class BlockInteraction(_Result):
    """Result of :func:`block_interaction`: does the ratio of ``b`` to ``a`` differ by block?

    ``change_pct`` is each block's own relative change ``100 · (exp(mean ln b − mean ln a) − 1)``
    (the geometric means' ratio on that block). ``f``/``df_num``/``df_den``/``p`` are the F-test
    of the model with a policy × block interaction against the additive one
    ``ln(value) ~ policy + block`` (``anova_lm`` of the two statsmodels fits);
    ``significant`` is ``p < alpha``. It needs at least two blocks and two runs of each policy
    on each of them.
    """

    a: str
    b: str
    blocks: list[Any]
    change_pct: dict[str, float]
    f: float | None
    df_num: int | None
    df_den: int | None
    p: float | None
    alpha: float
    significant: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spread_pct(self) -> float | None:
        """Largest minus smallest per-block change, in percentage points."""
        changes = list(self.change_pct.values())
        return max(changes) - min(changes) if len(changes) >= 2 else None


def block_interaction(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Any] | ArrayLike,
    blocks_b: Sequence[Any] | ArrayLike,
    *,
    alpha: float = 0.05,
    label_a: str = "a",
    label_b: str = "b",
) -> BlockInteraction:
    """The policy × block interaction of ``ln(value)``: F = ((RSS_add − RSS_full) / (H − 1)) /
    (RSS_full / (N − 2H)), where RSS_full is the spread of each (block, policy) cell around its
    own mean and RSS_add the residuals of ``ln(value) ~ policy + block`` (blocks that ran only one
    policy are left out, as in :func:`blocked_log_ratio`)."""
    alpha = _check_probability(alpha, "alpha")
    data = _blocked_data(values_a, values_b, blocks_a, blocks_b, label_a, label_b)
    missing: dict[str, str] = {}
    changes: dict[str, float] = {}
    values: dict[str, Any] = {}

    def result() -> BlockInteraction:
        return BlockInteraction(
            a=label_a,
            b=label_b,
            blocks=data.blocks,
            change_pct=changes,
            f=values.get("f"),
            df_num=values.get("df_num"),
            df_den=values.get("df_den"),
            p=values.get("p"),
            alpha=alpha,
            significant=values.get("significant"),
            not_computed=missing,
            notes=data.notes,
        )

    test_fields = ("f", "df_num", "df_den", "p", "significant")
    if data.problem is not None:
        missing.update(dict.fromkeys(("change_pct", *test_fields), data.problem))
        return result()
    h = data.h
    cells = data.codes * 2 + data.d.astype(np.intp)
    counts = np.bincount(cells, minlength=2 * h)
    means = np.bincount(cells, weights=data.y, minlength=2 * h) / np.maximum(counts, 1)
    for index, block in enumerate(data.blocks):
        log_change = float(means[2 * index + 1] - means[2 * index])
        changes[str(block)] = 100.0 * math.expm1(log_change) if log_change < 709.0 else math.inf
    if h < 2:
        missing.update(dict.fromkeys(test_fields, "needs at least two blocks with both policies"))
        return result()
    if int(counts.min()) < 2:
        missing.update(
            dict.fromkeys(
                test_fields,
                f"needs at least 2 runs of each of {label_a} and {label_b} on every block",
            )
        )
        return result()
    full = data.y - means[cells]
    rss_full = float(np.dot(full, full))
    y_tilde = _demean(data.y, data.codes, h)
    d_tilde = _demean(data.d, data.codes, h)
    beta = float(np.dot(d_tilde, y_tilde)) / float(np.dot(d_tilde, d_tilde))
    additive = y_tilde - beta * d_tilde
    rss_add = float(np.dot(additive, additive))
    df_num, df_den = h - 1, int(data.y.size) - 2 * h
    if math.sqrt(rss_full / df_den) <= _zero_floor(data.y):
        missing.update(
            dict.fromkeys(
                ("f", "p", "significant"),
                "the runs of each policy on each block are identical: the F-test is undefined",
            )
        )
        values.update(df_num=df_num, df_den=df_den)
        return result()
    from scipy import stats

    f_stat = max(rss_add - rss_full, 0.0) / df_num / (rss_full / df_den)
    p_val = float(stats.f.sf(f_stat, df_num, df_den))
    values.update(f=f_stat, df_num=df_num, df_den=df_den, p=p_val, significant=p_val < alpha)
    return result()


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
    groups: Sequence[Any] | ArrayLike,
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
    x, o = raw[keep], raw_order[keep]
    kept_labels = [label for label, k in zip(labels, keep.tolist(), strict=True) if k]
    position = {label: index for index, label in enumerate(dict.fromkeys(kept_labels))}
    codes = np.array([position[label] for label in kept_labels], dtype=np.intp)
    g = len(position)
    missing: dict[str, str] = {}
    out: dict[str, Any] = {}

    def result() -> RunOrderTrend:
        return RunOrderTrend(
            n=int(x.size),
            n_groups=g,
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
            notes=notes,
        )

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
        return result()
    y = np.log(x)
    y_tilde = _demean(y, codes, g)
    o_tilde = _demean(o, codes, g)
    soo = float(np.dot(o_tilde, o_tilde))
    if soo <= 0.0:
        missing.update(dict.fromkeys(everything, "the run order does not vary within any group"))
        return result()
    slope = float(np.dot(o_tilde, y_tilde)) / soo
    residuals = y_tilde - slope * o_tilde
    rss = float(np.dot(residuals, residuals))
    out.update(slope=slope, df=dof, pct_per_run=100.0 * math.expm1(slope))
    if math.sqrt(rss / dof) <= _zero_floor(y):
        reason = "the residuals are zero: the values lie exactly on the trend"
        missing.update(dict.fromkeys(("se", "t", "p", "pct_per_run_ci", "significant"), reason))
        return result()

    se = math.sqrt(rss / dof / soo)
    t_stat, p_val, half, sig = _t_test(slope, se, dof, alpha)
    out.update(
        se=se,
        t=t_stat,
        p=p_val,
        significant=sig,
        pct_per_run_ci=(100.0 * math.expm1(slope - half), 100.0 * math.expm1(slope + half)),
    )
    return result()


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
    items: list[Any] = list(pvalues)
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
    values: ArrayLike, ids: Sequence[Any] | None = None
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


# -- power traces ----------------------------------------------------------------------------------


def binned_power(
    samples: pd.DataFrame,
    bin_s: float = 0.5,
    *,
    domains: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One run's power samples averaged into ``bin_s``-second bins.

    With a ``domain`` column, each counted domain is binned on its own (mean of its readings
    in the bin) and the domains' bin means are added: ``domains`` when given, else those with
    ``in_total`` true when that column exists, else all of them. Meters stamp readings with
    their own clock reads, so two meters never share a timestamp; binning per domain first
    makes their sum independent of that. A bin in which some counted domain has no finite
    reading is left out rather than undercounted (``domains`` given but absent from the
    samples: no bin at all). Returns ``t_s`` (bin start), ``power_w``, ``n_samples`` (the
    fewest readings any counted domain has in the bin); empty bins are left out.
    """
    bin_s = _check_bin(bin_s)
    if not isinstance(samples, pd.DataFrame):
        raise ConfigError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    for column in ("t_s", "power_w"):
        if column not in samples.columns:
            raise ConfigError(f"samples needs a {column!r} column; it has {list(samples.columns)}")
    t = samples["t_s"].to_numpy(dtype=np.float64)
    power = samples["power_w"].to_numpy(dtype=np.float64)
    if "domain" in samples.columns:
        domain = samples["domain"].astype(str).to_numpy()
        if domains is not None:
            wanted = list(dict.fromkeys(str(d) for d in domains))
        elif "in_total" in samples.columns:
            in_total = samples["in_total"].astype(bool).to_numpy()
            wanted = list(dict.fromkeys(domain[in_total].tolist()))
        else:
            wanted = list(dict.fromkeys(domain.tolist()))
    else:
        domain = np.zeros(t.size, dtype=object)
        wanted = [domain[0]] if t.size else []
    # The small epsilon keeps a timestamp such as 0.3 with bin 0.1 in bin 3, not 2.99... -> 2.
    with np.errstate(invalid="ignore"):
        bins = np.floor(t / bin_s + 1e-9)
    ok = np.isfinite(t) & np.isfinite(power)
    per_domain = []
    for name in wanted:
        mine = ok & (domain == name)
        grouped = (
            pd.DataFrame({"bin": bins[mine].astype(np.int64), "power_w": power[mine]})
            .groupby("bin", sort=True)["power_w"]
            .agg(["mean", "size"])
        )
        per_domain.append(grouped)
    if per_domain:
        # Only bins every counted domain reaches: a missing domain would undercount the total.
        common = per_domain[0].index
        for grouped in per_domain[1:]:
            common = common.intersection(grouped.index)
        common = common.sort_values()
        total = np.zeros(len(common))
        fewest = np.full(len(common), np.iinfo(np.int64).max, dtype=np.int64)
        for grouped in per_domain:
            total += grouped.loc[common, "mean"].to_numpy(dtype=np.float64)
            fewest = np.minimum(fewest, grouped.loc[common, "size"].to_numpy(dtype=np.int64))
        index = common.to_numpy(dtype=np.float64)
    else:
        index, total, fewest = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    result: pd.DataFrame = pd.DataFrame(
        {"t_s": index * bin_s, "power_w": total, "n_samples": fewest.astype(np.int64)}
    )
    return result


def mean_power_trace(
    runs: Mapping[Any, pd.DataFrame] | Sequence[pd.DataFrame],
    bin_s: float = 0.5,
    *,
    domains: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean power over time across runs, with a t-based 95% band per bin.

    Each run is binned with :func:`binned_power`; per bin the runs that reach it are averaged.
    Returns ``t_s, mean_power_w, ci_lo_w, ci_hi_w, n_runs``; the band is NaN where fewer than
    2 runs reach a bin, so late bins of runs of unequal length are visible in ``n_runs``.
    """
    bin_s = _check_bin(bin_s)
    frames = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    columns = ["t_s", "mean_power_w", "ci_lo_w", "ci_hi_w", "n_runs"]
    per_run = []
    for frame in frames:
        binned = binned_power(frame, bin_s, domains=domains)
        if len(binned):
            per_run.append(binned.set_index("t_s")["power_w"])
    if not per_run:
        empty: pd.DataFrame = pd.DataFrame(
            {c: pd.Series(dtype=np.int64 if c == "n_runs" else np.float64) for c in columns}
        )
        return empty
    wide = pd.concat(per_run, axis=1).sort_index()
    matrix = wide.to_numpy(dtype=np.float64)
    n_runs = np.sum(~np.isnan(matrix), axis=1)
    mean = np.nanmean(matrix, axis=1)
    from scipy import stats

    many = n_runs >= 2
    half = np.full(mean.shape, np.nan)
    if many.any():
        sd = np.nanstd(matrix[many], axis=1, ddof=1)
        half[many] = stats.t.ppf(0.975, n_runs[many] - 1) * sd / np.sqrt(n_runs[many])
    trace: pd.DataFrame = pd.DataFrame(
        {
            "t_s": wide.index.to_numpy(dtype=np.float64),
            "mean_power_w": mean,
            "ci_lo_w": mean - half,
            "ci_hi_w": mean + half,
            "n_runs": n_runs.astype(np.int64),
        }
    )
    return trace


def _check_bin(bin_s: float) -> float:
    if not isinstance(bin_s, (int, float)) or not bin_s > 0 or math.isinf(bin_s):
        raise ConfigError(f"bin_s must be a positive number of seconds, got {bin_s!r}")
    return float(bin_s)


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


# -- equivalence and non-inferiority ---------------------------------------------------------------

_METRIC_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MARGIN_SPEC = (
    r"(?P<sign>[+\-−±]|\+/-|\+-)?\s*"
    r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?)\s*"
    r"(?P<unit>pp|%)?"
)


_MAX_NAME = 100


def _plain_name(name: str) -> bool:
    """A metric name a margin may use: an ASCII identifier of at most 100 characters."""
    return len(name) <= _MAX_NAME and re.fullmatch(_METRIC_NAME, name) is not None


_accuracy_scale_of = accuracy_scale  # Margin.absolute's parameter shadows the function's name

_ACCURACY_NAME = re.compile(r"(?:^|_)(?:top[0-9]+_?)?acc(?:uracy)?[0-9]*(?:_|$)")


def accuracy_like(metric: str) -> bool:
    """Whether ``metric`` names an accuracy, whose scale is ambiguous (a fraction of 1, or a
    percentage): ``test_accuracy``, ``val_accuracy``, ``top1_acc``, ``acc5``."""
    return isinstance(metric, str) and _ACCURACY_NAME.search(metric.lower()) is not None


_OWN_UNITS = {"_j": "J", "_s": "s", "_w": "W"}


def _own_unit(metric: str) -> str:
    """The unit of a metric named like ``energy_j`` (J), ``duration_s`` (s), ``power_w`` (W)."""
    return next((unit for end, unit in _OWN_UNITS.items() if metric.endswith(end)), "")


def _fmt_margin(value: float) -> str:
    return f"{value:.6g}"


def _fmt_own(value: float) -> str:
    """A margin in the metric's own units, to two significant digits (0.010, 0.93, 51.2)."""
    size = abs(value)
    if size >= 10:
        return f"{value:.3g}" if size < 1000 else f"{value:.0f}"
    return f"{value:#.2g}".rstrip(".")


def _bare_accuracy_problem(metric: str, number: str, sign: str) -> str:
    """The one line refusing a unit-less accuracy margin that cannot be a fraction of 1."""
    value = float(number)
    fraction = _fmt_margin(value / 100.0)
    return (
        f"margin {metric}={sign}{number} has no unit, and {number} cannot be a fraction of 1 "
        f"(that would be {_fmt_margin(value * 100.0)} pp); write {metric}={sign}{number}pp "
        f"(percentage points), {metric}={sign}{number}% (% of the reference mean) or "
        f"{metric}={sign}{fraction} (a fraction of 1, = {number} pp)"
    )


@dataclass(frozen=True)
class Margin(_Result):
    """How far a policy may be from the reference and still count as the same (or as not worse).

    ``value`` is a positive number in ``unit``: ``"pp"`` percentage points of an accuracy,
    ``"%"`` percent of the reference mean, ``"abs"`` the metric's own units. An accuracy's
    scale is ambiguous (:func:`accuracy_like`), so for an accuracy ``"abs"`` is a fraction of 1
    (0.01 = 1 pp, whether the runs record fractions or percentages), and a value of 1 or more
    is a ConfigError that offers the forms probably meant (``1pp``, ``1%``, ``0.01``). ``kind`` is
    ``"equivalence"`` (the region (−margin, +margin) around the reference) or
    ``"noninferiority"`` (one side only); ``tolerated`` is the direction of the change a
    non-inferiority margin tolerates: −1 = the policy may be lower by at most the margin (higher
    is better, e.g. accuracy), +1 = it may be higher by at most the margin (lower is better, e.g.
    energy). ``None`` for equivalence. Build one with :func:`parse_margin`.
    """

    metric: str
    value: float
    unit: Literal["pp", "%", "abs"]
    kind: Literal["equivalence", "noninferiority"]
    tolerated: Literal[-1, 1] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not _plain_name(self.metric):
            raise ConfigError(
                f"margin metric must be a plain name such as test_accuracy, got {self.metric!r:.60}"
            )
        value = self.value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(
                f"margin for {self.metric} must be a positive finite number, got {value!r:.60}"
            )
        if self.unit not in ("pp", "%", "abs"):
            raise ConfigError(f"margin unit must be 'pp', '%' or 'abs', got {self.unit!r:.60}")
        if self.unit == "abs" and value >= 1 and accuracy_like(self.metric):
            sign = {-1: "-", 1: "+"}.get(self.tolerated or 0, "")
            raise ConfigError(_bare_accuracy_problem(self.metric, _fmt_margin(value), sign))
        if self.kind == "equivalence":
            if self.tolerated is not None:
                raise ConfigError("an equivalence margin has no tolerated direction; use None")
        elif self.kind == "noninferiority":
            if self.tolerated not in (-1, 1) or isinstance(self.tolerated, bool):
                raise ConfigError(
                    "a non-inferiority margin needs tolerated = -1 (the policy may be lower) or "
                    f"+1 (it may be higher), got {self.tolerated!r}"
                )
        else:
            raise ConfigError(
                f"margin kind must be 'equivalence' or 'noninferiority', got {self.kind!r:.60}"
            )

    def absolute(
        self,
        reference_mean: float,
        accuracy_scale: Literal["fraction", "percent"] | str | None = None,
    ) -> float:
        """The margin in the metric's own units, for a reference (baseline) with this mean.

        ``"pp"``: percentage points of an accuracy; 1 pp is 0.01 for fractions in [0, 1]
        (``accuracy_scale == "fraction"``) and 1 for percentages (``"percent"``). Without
        ``accuracy_scale`` the scale is read from ``reference_mean`` by :func:`accuracy_scale`
        (at most 1: fraction). ``"%"``: percent of ``|reference_mean|``. ``"abs"``: as is, except
        for an accuracy (:func:`accuracy_like`), where it is a fraction of 1: × 100 for an
        accuracy recorded in percent.
        """
        if self.unit == "abs":
            if not accuracy_like(self.metric):
                return float(self.value)
            scale = accuracy_scale
            if scale is None and isinstance(reference_mean, (int, float, np.integer, np.floating)):
                mean = float(reference_mean)
                scale = "percent" if math.isfinite(mean) and mean > 1 else "fraction"
            return float(self.value) * (100.0 if scale == "percent" else 1.0)
        if (
            isinstance(reference_mean, bool)
            or not isinstance(reference_mean, (int, float, np.integer, np.floating))
            or not math.isfinite(float(reference_mean))
        ):
            raise ConfigError(
                f"the reference mean must be a finite number to turn a margin of "
                f"{self.describe()} into {self.metric}'s units, got {reference_mean!r:.60}"
            )
        mean = float(reference_mean)
        if self.unit == "%":
            if mean == 0.0:
                raise ConfigError(
                    f"a margin in % of the reference mean is zero when that mean is 0; give the "
                    f"margin for {self.metric} in its own units (e.g. {self.metric}=0.01)"
                )
            return float(self.value) * abs(mean) / 100.0
        scale = accuracy_scale
        if scale is None:
            try:
                scale = _accuracy_scale_of([mean])
            except ConfigError as error:
                raise ConfigError(
                    f"a margin in pp needs an accuracy between 0 and 1 or 0 and 100; the mean of "
                    f"{self.metric} is {mean:g} (give the margin in its own units instead)"
                ) from error
        if scale == "fraction":
            return float(self.value) / 100.0
        if scale == "percent":
            return float(self.value)
        raise ConfigError(f"accuracy_scale must be 'fraction' or 'percent', got {scale!r:.60}")

    def describe(
        self,
        *,
        absolute: float | None = None,
        reference: str | None = None,
        accuracy_scale: Literal["fraction", "percent"] | str | None = None,
    ) -> str:
        """The margin in words, with its unit and, where known, its value in the metric's own
        units: "±1 pp (±0.010)", "not worse than −1 pp", "±2 % of fp32's mean (±0.93 pp)",
        "not more than +5 % of the reference mean", "±0.01 (a fraction of 1: ±1 pp)".

        ``absolute`` is the margin in the metric's units (:meth:`absolute`), ``reference`` the
        name of the reference policy, ``accuracy_scale`` how an accuracy is recorded.
        """
        head = {None: "±", -1: "not worse than −", 1: "not more than +"}[self.tolerated]
        sign = {None: "±", -1: "−", 1: "+"}[self.tolerated]
        number = _fmt_margin(self.value)
        accuracy = accuracy_like(self.metric)
        known = absolute is not None and math.isfinite(absolute)
        if self.unit == "pp":
            text = f"{head}{number} pp"
            if accuracy_scale == "fraction" or (known and accuracy_scale != "percent"):
                own = absolute if known and absolute is not None else self.value / 100.0
                text += f" ({sign}{_fmt_own(own)})"
            return text
        if self.unit == "%":
            whose = f"{reference}'s mean" if reference else "the reference mean"
            text = f"{head}{number} % of {whose}"
            if known and absolute is not None:
                if accuracy:
                    points = absolute if accuracy_scale == "percent" else 100.0 * absolute
                    text += f" ({sign}{_fmt_own(points)} pp)"
                else:
                    unit = _own_unit(self.metric)
                    text += f" ({sign}{_fmt_own(absolute)}{' ' + unit if unit else ''})"
            return text
        if accuracy:
            return f"{head}{number} (a fraction of 1: {sign}{_fmt_margin(100.0 * self.value)} pp)"
        unit = _own_unit(self.metric)
        return f"{head}{number}{' ' + unit if unit else ''}"

    def spec(self) -> str:
        """The margin as :func:`parse_margin` reads it (``test_accuracy=-1pp``)."""
        unit = "" if self.unit == "abs" else self.unit
        sign = "" if self.tolerated is None else ("-" if self.tolerated == -1 else "+")
        return f"{self.metric}={sign}{_fmt_margin(self.value)}{unit}"


def parse_margin(text: str) -> Margin:
    """A margin from ``METRIC=SPEC``.

    ``test_accuracy=1pp`` or ``test_accuracy=±1pp``: equivalence within ±1 percentage point;
    ``test_accuracy=-1pp``: non-inferiority, may be lower by at most 1 pp; ``energy_j=+5%``:
    non-inferiority, may be higher by at most 5 % of the reference mean; ``test_loss=0.02``:
    equivalence in the metric's own units. Anything else is a ConfigError naming the problem.
    """
    example = "e.g. test_accuracy=1pp, test_accuracy=-1pp, energy_j=+5% or test_loss=0.02"
    if not isinstance(text, str):
        raise ConfigError(f"a margin must be text like METRIC=SPEC ({example}), got {text!r:.60}")
    if "=" not in text:
        raise ConfigError(f"margin {text!r:.60} has no '='; write METRIC=SPEC ({example})")
    metric, _, spec = text.partition("=")
    metric, spec = metric.strip(), spec.strip()
    if not metric:
        raise ConfigError(f"margin {text!r:.60} names no metric before '='; {example}")
    if not _plain_name(metric):
        raise ConfigError(
            f"margin metric {metric!r:.60} is not a plain name (up to {_MAX_NAME} letters, "
            f"digits and underscores, not starting with a digit); {example}"
        )
    if not spec:
        raise ConfigError(f"margin for {metric} has nothing after '='; {example}")
    match = re.fullmatch(_MARGIN_SPEC, spec)
    if match is None:
        raise ConfigError(
            f"margin for {metric} cannot be read from {spec!r:.60}: give a positive number with "
            f"an optional sign (±, - or +) and unit (pp or %); {example}"
        )
    value = float(match.group("number"))
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"margin for {metric} must be a positive finite number, got {spec!r:.60}; {example}"
        )
    unit_text = match.group("unit")
    unit: Literal["pp", "%", "abs"] = "abs" if unit_text is None else unit_text  # type: ignore[assignment]
    sign = match.group("sign")
    if sign in ("-", "−"):
        return Margin(metric, value, unit, "noninferiority", -1)
    if sign == "+":
        return Margin(metric, value, unit, "noninferiority", 1)
    return Margin(metric, value, unit, "equivalence", None)


DEFAULT_ACCURACY_MARGIN = parse_margin("test_accuracy=1pp")
"""Equivalence within ±1 percentage point of test accuracy: the default accuracy question."""


def parse_sesoi(text: str) -> Margin:
    """A smallest effect size of interest (SESOI) from ``METRIC=SPEC``, for planning.

    ``energy_j=5%``: a change of 5 % of the reference mean; ``test_accuracy=1pp``: 1
    percentage point; ``test_loss=0.02``: in the metric's own units. The same units as a margin
    (an accuracy's unit is never guessed: ``test_accuracy=1`` is refused), without a sign: an
    effect of that size either way. Returned as an equivalence :class:`Margin` (its ``value``
    and ``unit`` are the effect). ConfigError naming the problem otherwise.
    """
    if isinstance(text, str):
        _, _, spec = text.partition("=")
        if spec.strip()[:1] in ("-", "+", "−"):
            raise ConfigError(
                f"sesoi {text.strip()!r:.60} has a sign; a smallest effect of interest is a size "
                "either way: write e.g. energy_j=5% or test_accuracy=1pp"
            )
    try:
        return parse_margin(text)
    except ConfigError as error:
        message = re.sub(r"^margin", "sesoi", str(error))
        raise ConfigError(
            message.replace(
                "e.g. test_accuracy=1pp, test_accuracy=-1pp, energy_j=+5% or test_loss=0.02",
                "e.g. energy_j=5%, test_accuracy=1pp or test_loss=0.02",
            )
        ) from None


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


@dataclass(frozen=True)
class EquivalenceResult(_Result):
    """Result of :func:`tost_welch`: is ``mean(b) − mean(a)`` inside (−margin, +margin)?

    ``p_lower`` tests H0: difference ≤ −margin, ``p_upper`` H0: difference ≥ +margin; ``p`` is
    the larger and ``equivalent`` is ``p < alpha``, which holds exactly when the ``1 − 2·alpha``
    Welch interval (``ci_low``, ``ci_high``) lies inside (−margin, +margin).
    """

    n_a: int
    n_b: int
    difference: float | None
    se: float | None
    df: float | None
    ci_low: float | None
    ci_high: float | None
    p_lower: float | None
    p_upper: float | None
    p: float | None
    equivalent: bool | None
    alpha: float
    margin: float
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # "difference": D = mean(b) − mean(a) in the metric's units (tost_welch); "log_ratio":
    # D = ln(mean(b) / mean(a)) and margin = the bound on that scale (tost_log_ratio).
    scale: Literal["difference", "log_ratio"] = "difference"


def tost_welch(
    a: ArrayLike,
    b: ArrayLike,
    margin: float,
    alpha: float = 0.05,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> EquivalenceResult:
    """Two one-sided Welch t-tests (TOST, Schuirmann 1987) for ``mean(b) − mean(a)``.

    ``margin`` is in the metric's units (see :meth:`Margin.absolute`); the equivalence region
    is (−margin, +margin). With D = mean(b) − mean(a), SE and df as Welch's:

        p_lower = P(T_df > (D + margin) / SE)      H0: D ≤ −margin
        p_upper = P(T_df < (D − margin) / SE)      H0: D ≥ +margin
        p = max(p_lower, p_upper),   CI = D ∓ t(1 − alpha; df) · SE

    Equals statsmodels' ``ttost_ind(b, a, -margin, margin, usevar="unequal")``.
    """
    alpha = _check_probability(alpha, "alpha")
    if alpha >= 0.5:
        raise ConfigError(
            f"alpha for TOST must be below 0.5 (its CI has level 1 − 2·alpha), got {alpha}"
        )
    margin = _check_margin(margin)
    notes: list[str] = []
    xa = _clean(a, label_a, notes)
    xb = _clean(b, label_b, notes)
    parts = _welch_parts(xa, xb, label_a, label_b)
    no_difference = "needs at least 1 value per group"
    return _tost(xa.size, xb.size, parts, (-margin, margin), alpha, margin, notes, no_difference)


def _tost(
    n_a: int,
    n_b: int,
    parts: tuple[float, float, float, str | None],
    bounds: tuple[float, float],
    alpha: float,
    margin: float,
    notes: list[str],
    no_difference: str,
    scale: Literal["difference", "log_ratio"] = "difference",
) -> EquivalenceResult:
    """TOST from an estimate, its SE and df (on either scale) against (lower, upper)."""
    diff, se, df, reason = parts
    lower, upper = bounds
    test_fields = ("se", "df", "ci_low", "ci_high", "p_lower", "p_upper", "p", "equivalent")
    missing: dict[str, str] = {}
    difference = diff if math.isfinite(diff) else None
    if difference is None:
        missing["difference"] = reason or no_difference
    if reason is not None:
        missing.update(dict.fromkeys(test_fields, reason))
        return EquivalenceResult(
            n_a, n_b, difference, *(None,) * 8, alpha, margin, missing, notes, scale=scale
        )
    from scipy import stats

    p_lower = float(stats.t.sf((diff - lower) / se, df))
    p_upper = float(stats.t.cdf((diff - upper) / se, df))
    half = float(stats.t.isf(alpha, df)) * se
    low, high = diff - half, diff + half
    p = max(p_lower, p_upper)
    # Equivalence is read off the interval; p follows it where sf and isf disagree in the last
    # bit right at the boundary (as in welch_log_ratio).
    equivalent = lower < low and high < upper
    if equivalent and p >= alpha:
        p = float(np.nextafter(alpha, 0.0))
    elif not equivalent and p < alpha:
        p = alpha
    return EquivalenceResult(
        n_a=n_a,
        n_b=n_b,
        difference=diff,
        se=se,
        df=df,
        ci_low=low,
        ci_high=high,
        p_lower=p_lower,
        p_upper=p_upper,
        p=p,
        equivalent=equivalent,
        alpha=alpha,
        margin=margin,
        not_computed=missing,
        notes=notes,
        scale=scale,
    )


@dataclass(frozen=True)
class NonInferiorityResult(_Result):
    """Result of :func:`noninferiority_welch`: is ``b`` no worse than ``a`` by the margin?

    ``tolerated = -1`` (higher is better): H0: D ≤ −margin against H1: D > −margin;
    ``tolerated = +1`` (lower is better): H0: D ≥ +margin against H1: D < +margin, with
    D = mean(b) − mean(a). ``noninferior`` is ``p < alpha``, which holds exactly when the
    ``1 − 2·alpha`` interval lies on the tolerated side's inner part (``ci_low > −margin``, or
    ``ci_high < +margin``). ``p_inferior`` is the one-sided test the other way (H1: D beyond the
    margin); ``inferior`` (``p_inferior < alpha``) means the policy is shown to be worse than
    the margin allows: the whole interval lies beyond it.
    """

    n_a: int
    n_b: int
    difference: float | None
    se: float | None
    df: float | None
    t: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    noninferior: bool | None
    p_inferior: float | None
    inferior: bool | None
    tolerated: Literal[-1, 1]
    alpha: float
    margin: float
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scale: Literal["difference", "log_ratio"] = "difference"


def noninferiority_welch(
    a: ArrayLike,
    b: ArrayLike,
    margin: float,
    tolerated: int,
    alpha: float = 0.05,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> NonInferiorityResult:
    """One-sided Welch t-test of non-inferiority of ``b`` against the reference ``a``.

    With D = mean(b) − mean(a) and Welch's SE and df, ``t = (D + margin) / SE`` and
    ``p = P(T_df > t)`` for ``tolerated = -1``; ``t = (D − margin) / SE`` and ``p = P(T_df < t)``
    for ``tolerated = +1``. Equals statsmodels' ``ttest_ind(b, a, usevar="unequal",
    value=∓margin, alternative="larger"/"smaller")``.
    """
    alpha = _check_probability(alpha, "alpha")
    if alpha >= 0.5:
        raise ConfigError(f"alpha must be below 0.5 (the CI has level 1 − 2·alpha), got {alpha}")
    margin = _check_margin(margin)
    if isinstance(tolerated, bool) or tolerated not in (-1, 1):
        raise ConfigError(
            "tolerated must be -1 (b may be lower by at most the margin: higher is better) or "
            f"+1 (b may be higher by at most the margin: lower is better), got {tolerated!r:.40}"
        )
    side: Literal[-1, 1] = -1 if tolerated == -1 else 1
    notes: list[str] = []
    xa = _clean(a, label_a, notes)
    xb = _clean(b, label_b, notes)
    parts = _welch_parts(xa, xb, label_a, label_b)
    bound = -margin if side == -1 else margin
    no_difference = "needs at least 1 value per group"
    return _noninferiority(
        xa.size, xb.size, parts, bound, side, alpha, margin, notes, no_difference
    )


def _noninferiority(
    n_a: int,
    n_b: int,
    parts: tuple[float, float, float, str | None],
    bound: float,
    side: Literal[-1, 1],
    alpha: float,
    margin: float,
    notes: list[str],
    no_difference: str,
    scale: Literal["difference", "log_ratio"] = "difference",
) -> NonInferiorityResult:
    """The non-inferiority test (and its reverse) from an estimate, its SE and df against the
    margin's ``bound`` on the estimate's scale."""
    diff, se, df, reason = parts
    missing: dict[str, str] = {}
    difference = diff if math.isfinite(diff) else None
    if difference is None:
        missing["difference"] = reason or no_difference
    test_fields = ("se", "df", "t", "ci_low", "ci_high", "p", "noninferior", "p_inferior")
    if reason is not None:
        missing.update(dict.fromkeys((*test_fields, "inferior"), reason))
        return NonInferiorityResult(
            n_a, n_b, difference, *(None,) * 9, side, alpha, margin, missing, notes, scale=scale
        )
    from scipy import stats

    t_stat = (diff - bound) / se
    if side == -1:
        p, p_inferior = float(stats.t.sf(t_stat, df)), float(stats.t.cdf(t_stat, df))
    else:
        p, p_inferior = float(stats.t.cdf(t_stat, df)), float(stats.t.sf(t_stat, df))
    half = float(stats.t.isf(alpha, df)) * se
    low, high = diff - half, diff + half
    noninferior = low > bound if side == -1 else high < bound
    inferior = high < bound if side == -1 else low > bound
    # The decisions are read off the interval; the p-values follow it at the last bit.
    if noninferior and p >= alpha:
        p = float(np.nextafter(alpha, 0.0))
    elif not noninferior and p < alpha:
        p = alpha
    if inferior and p_inferior >= alpha:
        p_inferior = float(np.nextafter(alpha, 0.0))
    elif not inferior and p_inferior < alpha:
        p_inferior = alpha
    return NonInferiorityResult(
        n_a=n_a,
        n_b=n_b,
        difference=diff,
        se=se,
        df=df,
        t=t_stat,
        ci_low=low,
        ci_high=high,
        p=p,
        noninferior=noninferior,
        p_inferior=p_inferior,
        inferior=inferior,
        tolerated=side,
        alpha=alpha,
        margin=margin,
        not_computed=missing,
        notes=notes,
        scale=scale,
    )


# -- margins in percent of the reference: the log-ratio scale ------------------------------------


def _log_ratio_parts(
    xa: FloatArray, xb: FloatArray, label_a: str, label_b: str
) -> tuple[float, float, float, str | None]:
    """ln(mean(b) / mean(a)), its delta-method SE and Welch df (as :func:`welch_log_ratio`),
    or a reason they cannot be computed."""
    na, nb = xa.size, xb.size
    if na < 2 or nb < 2:
        few = [f"{label} has {n}" for label, n in ((label_a, na), (label_b, nb)) if n < 2]
        return (
            math.nan,
            math.nan,
            math.nan,
            ("needs at least 2 values per group (" + ", ".join(few) + ")"),
        )
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    if not (mean_a > 0 and mean_b > 0):
        return (
            math.nan,
            math.nan,
            math.nan,
            (
                "a margin in % is tested on the log ratio of the means, which needs positive "
                f"means (mean of {label_a} {mean_a:g}, of {label_b} {mean_b:g})"
            ),
        )
    ua = _sd(xa) ** 2 / (na * mean_a * mean_a)
    ub = _sd(xb) ** 2 / (nb * mean_b * mean_b)
    log_ratio = math.log(mean_b / mean_a)
    if ua + ub == 0.0:
        return (
            log_ratio,
            math.nan,
            math.nan,
            ("both groups have zero variance; the test is undefined"),
        )
    r = ua / (ua + ub)
    df = 1.0 / (r * r / (na - 1) + (1.0 - r) * (1.0 - r) / (nb - 1))
    return log_ratio, math.sqrt(ua + ub), df, None


def _log_margin(margin_pct: float, tolerated: int) -> float:
    """The bound on the log-ratio scale of a margin of ``margin_pct`` % (positive)."""
    margin_pct = _check_margin(margin_pct)
    if tolerated == -1:
        if margin_pct >= 100.0:
            raise ConfigError(
                f"a margin of −{margin_pct:g} % would allow the whole mean to vanish; give a "
                "margin below 100 %"
            )
        return -math.log1p(-margin_pct / 100.0)
    return math.log1p(margin_pct / 100.0)


def tost_log_ratio(
    a: ArrayLike,
    b: ArrayLike,
    margin_pct: float,
    alpha: float = 0.05,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> EquivalenceResult:
    """TOST for a margin in percent of the reference mean, on the log ratio of the means.

    A margin of ±m % of the reference mean is the region (1 − m/100, 1 + m/100) for the ratio
    mean(b) / mean(a), which is (ln(1 − m/100), ln(1 + m/100)) for L = ln(mean(b) / mean(a)).
    L's SE (delta method) and df (Welch–Satterthwaite) are those of :func:`welch_log_ratio`:

        p_lower = P(T_df > (L − ln(1 − m/100)) / SE),  p_upper = P(T_df < (L − ln(1 + m/100)) / SE)
        CI = L ∓ t(1 − alpha; df) · SE    (on the log scale; 100·(exp(·) − 1) in %)

    Testing the ratio instead of the difference with the margin turned into the metric's units
    at the *observed* reference mean keeps the level: that conversion treats an estimated mean
    as known, and its type-I error at the margin grows with the margin (7.75 % at +50 % with 10
    runs per policy, ``benchmarks/family_error.py``). ``difference``, ``ci_low``, ``ci_high``
    and ``margin`` (the upper bound ln(1 + m/100)) are on the log scale; ``scale`` is
    ``"log_ratio"``.
    """
    alpha = _check_probability(alpha, "alpha")
    if alpha >= 0.5:
        raise ConfigError(
            f"alpha for TOST must be below 0.5 (its CI has level 1 − 2·alpha), got {alpha}"
        )
    upper_bound = _log_margin(margin_pct, 1)
    lower_bound = -_log_margin(margin_pct, -1)
    notes: list[str] = []
    xa = _clean(a, label_a, notes)
    xb = _clean(b, label_b, notes)
    parts = _log_ratio_parts(xa, xb, label_a, label_b)
    bounds = (lower_bound, upper_bound)
    undefined = "the log ratio is undefined"
    return _tost(xa.size, xb.size, parts, bounds, alpha, upper_bound, notes, undefined, "log_ratio")


def noninferiority_log_ratio(
    a: ArrayLike,
    b: ArrayLike,
    margin_pct: float,
    tolerated: int,
    alpha: float = 0.05,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> NonInferiorityResult:
    """Non-inferiority for a margin in percent of the reference mean, on the log ratio.

    ``tolerated = +1`` (lower is better, "not more than +m %"): H0: L ≥ ln(1 + m/100);
    ``tolerated = -1`` (higher is better, "not worse than −m %"): H0: L ≤ ln(1 − m/100), with
    L = ln(mean(b) / mean(a)), SE and df as :func:`welch_log_ratio`. ``margin`` is |bound| on
    the log scale; ``difference``, ``ci_low`` and ``ci_high`` are on the log scale. See
    :func:`tost_log_ratio` for why a percent margin is tested on this scale.
    """
    alpha = _check_probability(alpha, "alpha")
    if alpha >= 0.5:
        raise ConfigError(f"alpha must be below 0.5 (the CI has level 1 − 2·alpha), got {alpha}")
    if isinstance(tolerated, bool) or tolerated not in (-1, 1):
        raise ConfigError(
            "tolerated must be -1 (b may be lower by at most the margin: higher is better) or "
            f"+1 (b may be higher by at most the margin: lower is better), got {tolerated!r:.40}"
        )
    side: Literal[-1, 1] = -1 if tolerated == -1 else 1
    size = _log_margin(margin_pct, side)
    bound = -size if side == -1 else size
    notes: list[str] = []
    xa = _clean(a, label_a, notes)
    xb = _clean(b, label_b, notes)
    parts = _log_ratio_parts(xa, xb, label_a, label_b)
    undefined = "the log ratio is undefined"
    return _noninferiority(
        xa.size, xb.size, parts, bound, side, alpha, size, notes, undefined, "log_ratio"
    )


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


def equivalence_verdict(
    difference_p: float | None,
    difference_significant: bool | None,
    equivalence: EquivalenceResult | NonInferiorityResult | None,
    n_per_group: int | tuple[int, int],
    runs_needed: int | None,
    margin: Margin | None = None,
) -> str:
    """One sentence answering "is the policy's metric the same as the reference's?".

    Exactly one of:

    - ``"equivalent within ±1 pp"`` — TOST shows equivalence (even if a difference smaller
      than the margin is also significant: the margin says such differences do not matter);
    - ``"not worse than −1 pp"`` / ``"not more than +5 %"`` — non-inferiority is shown;
    - ``"different"`` — the difference test rejects and equivalence (non-inferiority) is not
      shown;
    - ``"inconclusive: neither a difference nor equivalence is shown at 30 runs; about 140 runs
      per policy would be needed"`` — otherwise; without ``runs_needed`` the sentence says the
      number cannot be estimated.

    ``margin`` words the margin (:meth:`Margin.describe`); without it the result's absolute
    margin is printed as a number. ``difference_significant`` None: decided as
    ``difference_p < alpha`` with the equivalence result's alpha (0.05 without one).
    """
    alpha = equivalence.alpha if equivalence is not None else 0.05
    if difference_significant is None:
        difference_significant = difference_p is not None and difference_p < alpha
    noninferiority = isinstance(equivalence, NonInferiorityResult)
    if margin is not None:
        words = margin.describe()
    elif equivalence is None:
        words = ""
    elif isinstance(equivalence, NonInferiorityResult):
        number = _fmt_margin(equivalence.margin)
        words = (
            f"not worse than −{number}"
            if equivalence.tolerated == -1
            else f"not more than +{number}"
        )
    else:
        words = f"±{_fmt_margin(equivalence.margin)}"
    if isinstance(equivalence, NonInferiorityResult) and equivalence.noninferior:
        return words if words.startswith("not ") else f"not worse than {words}"
    if isinstance(equivalence, EquivalenceResult) and equivalence.equivalent:
        return f"equivalent within {words}"
    if difference_significant:
        return "different"
    if isinstance(n_per_group, tuple):
        n_a, n_b = n_per_group
        at = f"{n_a} runs" if n_a == n_b else f"{n_a} and {n_b} runs"
    else:
        at = f"{n_per_group} runs"
    shown = "non-inferiority" if noninferiority else "equivalence"
    if runs_needed is None:
        needed = "how many runs per policy would be needed cannot be estimated from these data"
    else:
        needed = f"about {runs_needed} runs per policy would be needed"
    return f"inconclusive: neither a difference nor {shown} is shown at {at}; {needed}"

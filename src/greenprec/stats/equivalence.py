"""Margins (parse_margin, parse_sesoi), equivalence (TOST) and non-inferiority tests on the
difference and on the log ratio, and the one-sentence verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from greenprec.errors import ConfigError
from greenprec.stats._common import (
    FloatArray,
    _check_margin,
    _check_probability,
    _clean,
    _Result,
    _sd,
    _welch_parts,
)
from greenprec.stats.accuracy import accuracy_scale

__all__ = [
    "DEFAULT_ACCURACY_MARGIN",
    "EquivalenceResult",
    "Margin",
    "NonInferiorityResult",
    "accuracy_like",
    "equivalence_verdict",
    "noninferiority_log_ratio",
    "noninferiority_welch",
    "parse_margin",
    "parse_sesoi",
    "tost_log_ratio",
    "tost_welch",
]

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

"""Margins and the verdicts that need one: is a policy's metric the same as the reference's?

"Not significant" is not evidence of no difference. For every metric with a margin (test
accuracy always: ±1 pp by default), each policy is tested against the reference with TOST
(:func:`stats.tost_welch`) or, for a one-sided margin, :func:`stats.noninferiority_welch`, and
:func:`stats.equivalence_verdict` words the answer: equivalent, not worse, different, or
inconclusive with the runs that would be needed.

Where a margin comes from, first match wins: the margins given to :func:`analyse` (the
caller's), the experiment's ``config.margins``, and for test accuracy the default
:data:`stats.DEFAULT_ACCURACY_MARGIN`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError

MarginSource = Literal["given", "experiment", "default"]
DEFAULT_NOTE = "greenprec's default for accuracy; set your own with a margin"


@dataclass(frozen=True)
class MarginUse:
    """A margin and where it came from."""

    margin: stats.Margin
    source: MarginSource

    @property
    def metric(self) -> str:
        return self.margin.metric

    @property
    def text(self) -> str:
        """ "±1 pp", "not worse than −1 pp", "not more than +5 %"."""
        return self.margin.describe()

    @property
    def described(self) -> str:
        """The margin in words with its source when it is the default:
        "margin ±1 pp (greenprec's default for accuracy; set your own with a margin)"."""
        text = f"margin {self.text}"
        return f"{text} ({DEFAULT_NOTE})" if self.source == "default" else text

    def to_json_dict(self) -> dict[str, Any]:
        margin = self.margin
        return {
            "metric": margin.metric,
            "spec": margin.spec(),
            "text": margin.describe(),
            "value": margin.value,
            "unit": margin.unit,
            "kind": margin.kind,
            "tolerated": margin.tolerated,
            "source": self.source,
        }


def as_margins(given: Iterable[stats.Margin | str] | None) -> list[stats.Margin]:
    """Margins from :class:`stats.Margin` objects or ``METRIC=SPEC`` texts (ConfigError on a
    text that :func:`stats.parse_margin` cannot read)."""
    out: list[stats.Margin] = []
    for item in given or []:
        out.append(item if isinstance(item, stats.Margin) else stats.parse_margin(str(item)))
    return out


def resolve_margins(
    given: Iterable[stats.Margin], experiment: Mapping[str, Any], has_accuracy: bool
) -> tuple[dict[str, MarginUse], list[str]]:
    """The margin of each metric, and warnings about margins in experiment.json that cannot be
    read (those are ignored, and say so)."""
    margins: dict[str, MarginUse] = {}
    problems: list[str] = []
    for margin in given:
        margins[margin.metric] = MarginUse(margin, "given")
    config = experiment.get("config")
    recorded = config.get("margins") if isinstance(config, dict) else None
    if isinstance(recorded, dict):
        for metric, spec in recorded.items():
            if str(metric) in margins:
                continue
            try:
                margin = stats.parse_margin(f"{metric}={spec}")
            except ConfigError as error:
                problems.append(f"experiment.json margin for {metric} is ignored: {error}")
                continue
            margins[margin.metric] = MarginUse(margin, "experiment")
    default = stats.DEFAULT_ACCURACY_MARGIN
    if has_accuracy and default.metric not in margins:
        margins[default.metric] = MarginUse(default, "default")
    return margins, problems


@dataclass(frozen=True)
class EquivalenceItem:
    """One policy against the reference on one metric with a margin."""

    metric: str
    a: str
    b: str
    margin: MarginUse
    margin_abs: float | None  # the margin in the metric's own units
    result: stats.EquivalenceResult | stats.NonInferiorityResult | None
    difference_p: float | None  # the difference test's p (Holm-adjusted when several)
    difference_significant: bool | None
    runs_needed: int | None
    runs_needed_basis: str
    verdict: str
    not_computed: dict[str, str] = field(default_factory=dict)
    difference_holm: bool = False  # difference_p is Holm-adjusted (several comparisons)

    @property
    def test(self) -> str:
        return "tost_welch" if self.margin.margin.kind == "equivalence" else "noninferiority_welch"

    @property
    def n_a(self) -> int:
        return self.result.n_a if self.result is not None else 0

    @property
    def n_b(self) -> int:
        return self.result.n_b if self.result is not None else 0

    @property
    def shown(self) -> bool | None:
        """Equivalence (or non-inferiority) is shown."""
        result = self.result
        if isinstance(result, stats.EquivalenceResult):
            return result.equivalent
        if isinstance(result, stats.NonInferiorityResult):
            return result.noninferior
        return None

    @property
    def p(self) -> float | None:
        return _finite(self.result.p) if self.result is not None else None

    @property
    def ci(self) -> tuple[float, float] | None:
        result = self.result
        if result is None:
            return None
        low, high = _finite(result.ci_low), _finite(result.ci_high)
        return None if low is None or high is None else (low, high)

    def to_json_dict(self) -> dict[str, Any]:
        result = self.result
        alpha = result.alpha if result is not None else None
        out: dict[str, Any] = {
            "test": self.test,
            "margin": {
                **self.margin.to_json_dict(),
                "absolute": _finite(self.margin_abs),
            },
            "difference": _finite(result.difference) if result is not None else None,
            "ci_level": None if alpha is None else 1.0 - 2.0 * alpha,
            "ci_low": _finite(result.ci_low) if result is not None else None,
            "ci_high": _finite(result.ci_high) if result is not None else None,
            "p": self.p,
        }
        if isinstance(result, stats.NonInferiorityResult) or (
            result is None and self.margin.margin.kind == "noninferiority"
        ):
            out["noninferior"] = self.shown
        else:
            out["equivalent"] = self.shown
            if isinstance(result, stats.EquivalenceResult):
                out["p_lower"] = _finite(result.p_lower)
                out["p_upper"] = _finite(result.p_upper)
        out.update(
            {
                "difference_p": _finite(self.difference_p),
                "difference_p_holm": self.difference_holm,
                "difference_significant": self.difference_significant,
                "verdict": self.verdict,
                "runs_needed": self.runs_needed,
                "runs_needed_basis": self.runs_needed_basis,
                "n_a": self.n_a,
                "n_b": self.n_b,
                "not_computed": {
                    **(dict(result.not_computed) if result is not None else {}),
                    **self.not_computed,
                },
            }
        )
        return out


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _pooled_sd(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float | None:
    if a.size < 2 or b.size < 2:
        return None
    var = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    sd = math.sqrt(float(var))
    return sd if sd > 0 and math.isfinite(sd) else None


BASIS_EQUIVALENCE = (
    "TOST with the observed difference as the true one and the pooled SD (exact power, 80%)"
)
BASIS_NONINFERIORITY = (
    "one-sided Welch test at alpha (as a two-sided one at 2·alpha) with the observed "
    "difference as the true one and the pooled SD, 80% power"
)


def equivalence_item(
    comparison: stats.CompareResult,
    margin: MarginUse,
    a: np.ndarray[Any, Any],
    b: np.ndarray[Any, Any],
    *,
    scale: Literal["fraction", "percent"] | None,
    alpha: float,
    power: float,
    several: bool,
) -> EquivalenceItem:
    """TOST (or non-inferiority) of ``b`` against the reference ``a`` and its verdict."""
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    m = margin.margin
    missing: dict[str, str] = {}
    holm = _finite(comparison.holm_p) if several else None
    difference_p = holm if holm is not None else _finite(comparison.primary_p)
    significant = None if difference_p is None else bool(difference_p < alpha)
    margin_abs: float | None = None
    result: stats.EquivalenceResult | stats.NonInferiorityResult | None = None
    reference_mean = float(a.mean()) if a.size else math.nan
    try:
        margin_abs = m.absolute(reference_mean, scale if m.unit == "pp" else None)
    except ConfigError as error:
        missing["margin"] = str(error)
    if margin_abs is not None:
        if m.kind == "equivalence":
            result = stats.tost_welch(
                a, b, margin_abs, alpha, label_a=comparison.a, label_b=comparison.b
            )
        else:
            result = stats.noninferiority_welch(
                a,
                b,
                margin_abs,
                m.tolerated or -1,
                alpha,
                label_a=comparison.a,
                label_b=comparison.b,
            )
    needed, basis = _runs_needed(a, b, m, margin_abs, alpha, power, missing)
    verdict = stats.equivalence_verdict(
        difference_p, significant, result, (int(a.size), int(b.size)), needed, m
    )
    return EquivalenceItem(
        metric=m.metric,
        a=comparison.a,
        b=comparison.b,
        margin=margin,
        margin_abs=margin_abs,
        result=result,
        difference_p=difference_p,
        difference_significant=significant,
        runs_needed=needed,
        runs_needed_basis=basis,
        verdict=verdict,
        not_computed=missing,
        difference_holm=holm is not None,
    )


def _runs_needed(
    a: np.ndarray[Any, Any],
    b: np.ndarray[Any, Any],
    margin: stats.Margin,
    margin_abs: float | None,
    alpha: float,
    power: float,
    missing: dict[str, str],
) -> tuple[int | None, str]:
    basis = BASIS_EQUIVALENCE if margin.kind == "equivalence" else BASIS_NONINFERIORITY
    sd = _pooled_sd(a, b)
    if margin_abs is None:
        missing["runs_needed"] = "the margin could not be put in the metric's units"
        return None, basis
    if sd is None:
        missing["runs_needed"] = "needs at least 2 runs per policy and a non-zero SD"
        return None, basis
    difference = float(b.mean() - a.mean())
    try:
        if margin.kind == "equivalence":
            needed = stats.runs_needed_equivalence(sd, margin_abs, difference, alpha, power)
            if needed is None:
                missing["runs_needed"] = (
                    "the observed difference is at or beyond the margin: no number of runs "
                    "shows equivalence if it is the true one"
                )
            return needed, basis
        room = difference + margin_abs if margin.tolerated == -1 else margin_abs - difference
        if room <= 0:
            missing["runs_needed"] = (
                "the observed difference is at or beyond the margin: no number of runs shows "
                "non-inferiority if it is the true one"
            )
            return None, basis
        return int(stats.runs_needed(sd, room, min(2 * alpha, 0.999), power)), basis
    except ConfigError as error:
        missing["runs_needed"] = str(error)
        return None, basis

"""Margins and the tests that need one: is a policy's metric the same as the reference's?

"Not significant" is not evidence of no difference. For every metric with a margin (test
accuracy always: ±1 pp by default), each policy is tested against the reference with TOST or,
for a one-sided margin, a non-inferiority test: on the difference of the means
(:func:`stats.tost_welch`, :func:`stats.noninferiority_welch`) for a margin in pp or in the
metric's units, on the log ratio of the means (:func:`stats.tost_log_ratio`,
:func:`stats.noninferiority_log_ratio`) for a margin in % of the reference mean. These are the
unadjusted tests; the verdict decides each margin's question in the family of all questions
(:mod:`.decisions`) and words it.

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
from greenprec.report._json import JsonObject
from greenprec.stats import FloatArray

__all__ = [
    "EquivalenceItem",
    "MarginUse",
    "as_margins",
    "equivalence_item",
    "resolve_margins",
]

_MarginSource = Literal["given", "experiment", "default"]
# The library never names a command-line flag: the CLI adds its own hint (report_command).
_DEFAULT_NOTE = "greenprec's default for accuracy; give your own margin to change it"


@dataclass(frozen=True)
class MarginUse:
    """A margin, where it came from, and (once :meth:`bound` to the data) its value in the
    metric's own units, the reference policy and the accuracy's scale, so that it describes
    itself fully: "±2 % of fp32's mean (±0.93 pp)"."""

    margin: stats.Margin
    source: _MarginSource
    absolute: float | None = None  # the margin in the metric's own units
    reference: str | None = None  # the reference policy
    scale: Literal["fraction", "percent"] | None = None  # how an accuracy is recorded

    @property
    def metric(self) -> str:
        return self.margin.metric

    def bound(
        self,
        reference: str | None,
        reference_values: FloatArray,
        scale: Literal["fraction", "percent"] | None,
    ) -> MarginUse:
        """This margin with its value in the metric's units for the reference's runs (left
        None when it cannot be computed: no finite value, a % margin of a zero mean)."""
        values = np.asarray(reference_values, dtype=np.float64)
        values = values[np.isfinite(values)]
        absolute: float | None = None
        if scale is None and values.size and stats.accuracy_like(self.metric):
            try:
                scale = stats.accuracy_scale(values)
            except ConfigError:
                scale = None
        if values.size:
            try:
                absolute = self.margin.absolute(float(values.mean()), scale)
            except ConfigError:
                absolute = None
        return MarginUse(self.margin, self.source, absolute, reference, scale)

    @property
    def text(self) -> str:
        """ "±1 pp (±0.010)", "not worse than −1 pp", "not more than +5 % of fp32's mean"."""
        return self.margin.describe(
            absolute=self.absolute, reference=self.reference, accuracy_scale=self.scale
        )

    @property
    def described(self) -> str:
        """The margin in words with its source when it is the default:
        "margin ±1 pp (±0.010; greenprec's default for accuracy, set your own with --margin)"."""
        text = f"margin {self.text}"
        if self.source != "default":
            return text
        if text.endswith(")"):
            return f"{text[:-1]}; {_DEFAULT_NOTE})"
        return f"{text} ({_DEFAULT_NOTE})"

    def to_json_dict(self) -> JsonObject:
        margin = self.margin
        return {
            "metric": margin.metric,
            "spec": margin.spec(),
            "text": self.text,
            "value": margin.value,
            "unit": margin.unit,
            "kind": margin.kind,
            "tolerated": margin.tolerated,
            "source": self.source,
            "absolute": _finite(self.absolute),
            "reference": self.reference,
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
    """One policy against the reference on one metric with a margin: the margin's test at the
    report's alpha (TOST or non-inferiority; on the log ratio for a margin in % of the
    reference mean) and the family's decision about it (:mod:`.decisions`)."""

    metric: str
    a: str
    b: str
    margin: MarginUse
    margin_abs: float | None  # the margin in the metric's own units (pp and abs margins)
    result: stats.EquivalenceResult | stats.NonInferiorityResult | None
    runs_needed: int | None
    runs_needed_basis: str
    verdict: str  # the family's decision in words (set by analyse)
    not_computed: dict[str, str] = field(default_factory=dict)

    @property
    def test(self) -> str:
        kind = "tost" if self.margin.margin.kind == "equivalence" else "noninferiority"
        scale = "log_ratio" if self.margin.margin.unit == "%" else "welch"
        return f"{kind}_{scale}"

    @property
    def n_a(self) -> int:
        return self.result.n_a if self.result is not None else 0

    @property
    def n_b(self) -> int:
        return self.result.n_b if self.result is not None else 0

    @property
    def shown(self) -> bool | None:
        """Equivalence (or non-inferiority) is shown at the report's alpha, unadjusted."""
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

    def to_json_dict(self) -> JsonObject:
        result = self.result
        alpha = result.alpha if result is not None else None
        out: JsonObject = {
            "test": self.test,
            "scale": "log_ratio" if self.margin.margin.unit == "%" else "difference",
            "margin": {
                **self.margin.to_json_dict(),
                "absolute": _finite(self.margin_abs),
            },
            "difference": _finite(result.difference) if result is not None else None,
            "ci_level": None if alpha is None else 1.0 - 2.0 * alpha,
            "ci_low": _finite(result.ci_low) if result is not None else None,
            "ci_high": _finite(result.ci_high) if result is not None else None,
            "p": self.p,
            "unadjusted": True,
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


def _pooled_sd(a: FloatArray, b: FloatArray) -> float | None:
    if a.size < 2 or b.size < 2:
        return None
    var = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    sd = math.sqrt(float(var))
    return sd if sd > 0 and math.isfinite(sd) else None


_BASIS_EQUIVALENCE = (
    "TOST with no true difference and the pooled SD seen here (exact power, 80%): what is "
    "reachable, not what the observed difference would need"
)
_BASIS_NONINFERIORITY = (
    "one-sided Welch test at alpha (as a two-sided one at 2·alpha) with no true difference "
    "and the pooled SD seen here, 80% power"
)
_BASIS_LOG = "; a margin in % of the reference mean on the log scale, at its narrower bound"


def equivalence_item(
    comparison: stats.CompareResult,
    margin: MarginUse,
    a: FloatArray,
    b: FloatArray,
    *,
    scale: Literal["fraction", "percent"] | None,
    alpha: float,
    power: float,
) -> EquivalenceItem:
    """The margin's test of ``b`` against the reference ``a`` at ``alpha``.

    A margin in pp or in the metric's units is tested on the difference (Welch TOST or
    non-inferiority); a margin in % of the reference mean on the log ratio of the means
    (:func:`stats.tost_log_ratio`), which keeps its level where turning the percentage into
    the metric's units at the observed reference mean does not. The verdict is the family's
    (:func:`greenprec.report.decisions.decide`), set by :func:`~.analysis.analyse`.
    """
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    m = margin.margin
    missing: dict[str, str] = {}
    margin_abs: float | None = None
    result: stats.EquivalenceResult | stats.NonInferiorityResult | None = None
    reference_mean = float(a.mean()) if a.size else math.nan
    try:
        margin_abs = m.absolute(reference_mean, scale if m.unit == "pp" else None)
    except ConfigError as error:
        missing["margin"] = str(error)
    labels = {"label_a": comparison.a, "label_b": comparison.b}
    try:
        if m.unit == "%":
            if m.kind == "equivalence":
                result = stats.tost_log_ratio(a, b, m.value, alpha, **labels)
            else:
                result = stats.noninferiority_log_ratio(
                    a, b, m.value, m.tolerated or -1, alpha, **labels
                )
        elif margin_abs is not None:
            if m.kind == "equivalence":
                result = stats.tost_welch(a, b, margin_abs, alpha, **labels)
            else:
                result = stats.noninferiority_welch(
                    a, b, margin_abs, m.tolerated or -1, alpha, **labels
                )
    except ConfigError as error:
        missing["margin"] = str(error)
    needed, basis = _runs_needed(a, b, m, margin_abs, alpha, power, missing)
    return EquivalenceItem(
        metric=m.metric,
        a=comparison.a,
        b=comparison.b,
        margin=margin,
        margin_abs=margin_abs,
        result=result,
        runs_needed=needed,
        runs_needed_basis=basis,
        verdict="not decided",
        not_computed=missing,
    )


def _runs_needed(
    a: FloatArray,
    b: FloatArray,
    margin: stats.Margin,
    margin_abs: float | None,
    alpha: float,
    power: float,
    missing: dict[str, str],
) -> tuple[int | None, str]:
    """Runs per policy that would show equivalence (non-inferiority) with ``power`` if there
    were no true difference, at the pooled SD seen here. Never the observed difference as the
    true one: a difference near the margin makes that number explode (33,358 runs at
    −0.96 pp, 142,788 at −0.98 pp) and says nothing about what is reachable.

    A margin in % of the reference mean is tested on the log ratio: the SD is then the pooled
    SD of the logs and the margin its narrower log bound, min(−ln(1 − m), ln(1 + m)).
    """
    basis = _BASIS_EQUIVALENCE if margin.kind == "equivalence" else _BASIS_NONINFERIORITY
    if margin.unit == "%":
        basis += _BASIS_LOG
        positive = a.size and b.size and bool(np.all(a > 0) and np.all(b > 0))
        if not positive or margin.value >= 100:
            missing["runs_needed"] = (
                "a margin in % is planned on the log scale, which needs positive values and a "
                "margin below 100 %"
            )
            return None, basis
        a, b = np.log(a), np.log(b)
        share = margin.value / 100.0
        lower, upper = -math.log1p(-share), math.log1p(share)
        if margin.kind == "equivalence":
            planned: float | None = min(lower, upper)
        else:
            planned = lower if margin.tolerated == -1 else upper
    else:
        planned = margin_abs
    sd = _pooled_sd(a, b)
    if planned is None:
        missing["runs_needed"] = "the margin could not be put in the metric's units"
        return None, basis
    if sd is None:
        missing["runs_needed"] = "needs at least 2 runs per policy and a non-zero SD"
        return None, basis
    try:
        if margin.kind == "equivalence":
            needed = stats.runs_needed_equivalence(sd, planned, 0.0, alpha, power)
            if needed is None:
                missing["runs_needed"] = "more than 10^8 runs per policy would be needed"
            return needed, basis
        return int(stats.runs_needed(sd, planned, min(2 * alpha, 0.999), power)), basis
    except ConfigError as error:
        missing["runs_needed"] = str(error)
        return None, basis

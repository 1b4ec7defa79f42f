"""The verdict's decisions: one question per policy and metric, one test per question, one
family for all of them.

Every question is a t-test on one scale with an estimate, a standard error and degrees of
freedom (:class:`TFit`): energy's difference question is Welch's t on the log ratio of the
means (or the host-blocked fit), a margin question is TOST or a non-inferiority test on the
difference (a margin in pp or in the metric's units) or on the log ratio (a margin in % of the
reference mean). The *decision is read off the interval*, and the p-value is the same test's,
so the two cannot disagree:

- difference: the 1 − α' interval lies below 0 ("lower"), above it ("higher"), or contains it
  (open);
- equivalence: the 1 − 2α' interval lies inside the margin ("equivalent"), wholly beyond it
  ("beyond"), or neither (open);
- non-inferiority: the 1 − 2α' interval lies on the tolerated side of the margin ("not
  worse"), wholly on the other side ("worse"), or neither (open).

A question has at most one false decision for any true value (its possible decisions cover
disjoint regions of the estimate), so its p-value is the smallest of its decisions'.

**The family** is every question of every policy against the reference. Holm's step-down
procedure (Holm 1979) keeps the chance of any false decision in it at most α: the question
with the k-th smallest p (of m) is decided at α/(m − k + 1) while every smaller one was
decided; once one is not, the rest are left open. The interval shown for a question is at the
level its decision was made at (α/(m − k + 1) for the k-th decided, α/(m − r) for the ones left
open when r were decided), so every interval agrees with its adjusted decision. With one
question, α' = α and the intervals are the usual 95 % (difference) and 90 % (TOST) ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from greenprec.report._json import JsonObject

__all__ = [
    "HOLM",
    "Decision",
    "Family",
    "Kind",
    "Outcome",
    "Question",
    "Scale",
    "TFit",
    "decide",
    "phrase",
    "with_sequential",
]

Kind = Literal["difference", "equivalence", "noninferiority"]
Scale = Literal["log_ratio", "difference"]
Outcome = Literal[
    "lower", "higher", "equivalent", "beyond", "not worse", "worse", "open", "not tested"
]

HOLM = "Holm's step-down procedure over every question of every policy"


@dataclass(frozen=True)
class TFit:
    """An estimate on the test's scale, its standard error and the t distribution's df."""

    estimate: float
    se: float
    df: float

    def half_width(self, two_sided_level: float) -> float:
        """Half the width of the central interval holding ``two_sided_level`` of T_df."""
        from scipy import stats

        return float(stats.t.isf((1.0 - two_sided_level) / 2.0, self.df)) * self.se

    def sf(self, bound: float) -> float:
        """P(T_df > (estimate − bound) / SE)."""
        from scipy import stats

        return float(stats.t.sf((self.estimate - bound) / self.se, self.df))

    def cdf(self, bound: float) -> float:
        """P(T_df < (estimate − bound) / SE)."""
        from scipy import stats

        return float(stats.t.cdf((self.estimate - bound) / self.se, self.df))


@dataclass(frozen=True)
class Question:
    """One thing the report decides about ``policy`` against ``reference``.

    ``lower_bound``/``upper_bound`` are the margin on the test's scale (None for a difference
    question; one of them for non-inferiority: the lower bound when the policy may be lower by
    at most the margin, the upper when it may be higher). ``display`` turns a value on the
    test's scale into the unit shown: percent change for the log ratio, pp for an accuracy in
    fractions.
    """

    metric: str
    label: str  # "energy", "test accuracy"
    policy: str
    reference: str
    kind: Kind
    test: str  # in words: "Welch t on the log ratio"
    test_key: str  # as in stats.json: "welch_log_ratio", "tost_welch", ...
    scale: Scale
    unit: str  # "%", " pp" or "" (own units), appended to displayed numbers
    factor: float  # difference scale: displayed = factor · value (100 for fraction → pp)
    fit: TFit | None
    reason: str | None = None  # why the question could not be tested
    lower_bound: float | None = None
    upper_bound: float | None = None
    margin_text: str | None = None  # "±1 pp (±0.010)"
    n_a: int = 0
    n_b: int = 0

    def display(self, value: float) -> float:
        if self.scale == "log_ratio":
            return 100.0 * math.expm1(value) if value < 709.0 else math.inf
        return self.factor * value

    def p(self) -> float | None:
        """The smallest p of the question's possible decisions (see the module docstring): the
        primary hypothesis's, and for a margin question the one-sided tests beyond the margin
        ("beyond" for equivalence, "worse" for non-inferiority)."""
        primary = self.primary_p()
        fit = self.fit
        if primary is None or fit is None or self.kind == "difference":
            return primary
        beyond = []
        if self.lower_bound is not None:
            beyond.append(fit.cdf(self.lower_bound))
        if self.upper_bound is not None:
            beyond.append(fit.sf(self.upper_bound))
        return min(primary, *beyond)

    def primary_p(self) -> float | None:
        """The p-value of the question's primary hypothesis: the difference test's, TOST's
        (max of its two one-sided tests) or the non-inferiority test's."""
        fit = self.fit
        if fit is None:
            return None
        if self.kind == "difference":
            return min(1.0, 2.0 * min(fit.sf(0.0), fit.cdf(0.0)))
        if self.kind == "equivalence":
            assert self.lower_bound is not None and self.upper_bound is not None
            return max(fit.sf(self.lower_bound), fit.cdf(self.upper_bound))
        if self.lower_bound is not None:
            return fit.sf(self.lower_bound)
        assert self.upper_bound is not None
        return fit.cdf(self.upper_bound)

    def interval_level(self, alpha: float) -> float:
        """The interval's coverage for a decision at ``alpha``: 1 − α for a difference, 1 − 2α
        for TOST and non-inferiority (each side tested at α)."""
        return 1.0 - alpha if self.kind == "difference" else 1.0 - 2.0 * alpha

    def decide(self, alpha: float) -> tuple[Outcome, tuple[float, float] | None]:
        """The decision at level ``alpha``, read off the interval, and that interval."""
        fit = self.fit
        if fit is None:
            return "not tested", None
        half = fit.half_width(self.interval_level(alpha))
        low, high = fit.estimate - half, fit.estimate + half
        if self.kind == "difference":
            outcome: Outcome = "lower" if high < 0 else "higher" if low > 0 else "open"
        elif self.kind == "equivalence":
            lower, upper = self.lower_bound, self.upper_bound
            assert lower is not None and upper is not None
            if lower < low and high < upper:
                outcome = "equivalent"
            elif high < lower or low > upper:
                outcome = "beyond"
            else:
                outcome = "open"
        elif self.lower_bound is not None:
            bound = self.lower_bound
            outcome = "not worse" if low > bound else "worse" if high < bound else "open"
        else:
            assert self.upper_bound is not None
            bound = self.upper_bound
            outcome = "not worse" if high < bound else "worse" if low > bound else "open"
        return outcome, (low, high)


@dataclass(frozen=True)
class Decision:
    """A question as the family decided it."""

    question: Question
    outcome: Outcome
    p: float | None  # the question's own p (smallest of its decisions')
    p_adjusted: float | None  # Holm-adjusted over the family
    level: float | None  # the α' the decision was made at
    interval: tuple[float, float] | None  # on the test's scale, at interval_level(level)
    source: Literal["fixed", "sequential"] = "fixed"
    note: str | None = None  # e.g. why the question was not tested
    # The estimate the decision was made on, on the test's scale, when it is not the fit's
    # (a sequential design's answer settled at an earlier look)
    estimate: float | None = None

    @property
    def decided(self) -> bool:
        return self.outcome not in ("open", "not tested")

    @property
    def interval_coverage(self) -> float | None:
        return None if self.level is None else self.question.interval_level(self.level)

    def shown_interval(self) -> tuple[float, float] | None:
        """The interval in the displayed unit (% change, pp, or the metric's units)."""
        if self.interval is None:
            return None
        low, high = (self.question.display(v) for v in self.interval)
        return (low, high) if math.isfinite(low) and math.isfinite(high) else None

    def shown_estimate(self) -> float | None:
        fit = self.question.fit
        if self.estimate is not None:
            value = self.question.display(self.estimate)
            return value if math.isfinite(value) else None
        if fit is None:
            return None
        value = self.question.display(fit.estimate)
        return value if math.isfinite(value) else None

    def to_json_dict(self) -> JsonObject:
        q = self.question
        interval = self.shown_interval()
        return {
            "metric": q.metric,
            "policy": q.policy,
            "reference": q.reference,
            "kind": q.kind,
            "test": q.test_key,
            "scale": q.scale,
            "margin": q.margin_text,
            "estimate": _finite(self.shown_estimate()),
            "unit": q.unit.strip() or None,
            "interval": list(interval) if interval is not None else None,
            "interval_level": _finite(self.interval_coverage),
            "decision_level": _finite(self.level),
            "p": _finite(self.p),
            "p_adjusted": _finite(self.p_adjusted),
            "outcome": self.outcome,
            "source": self.source,
            "n_a": q.n_a,
            "n_b": q.n_b,
            "not_computed": {"decision": self.note} if self.note else {},
        }


@dataclass(frozen=True)
class Family:
    """Every question of the report, decided together."""

    alpha: float
    decisions: list[Decision]
    method: str = HOLM

    @property
    def size(self) -> int:
        """The questions with a test (the family Holm's procedure runs over)."""
        return sum(1 for d in self.decisions if d.p is not None)

    def of(self, metric: str, policy: str) -> Decision | None:
        return next(
            (
                d
                for d in self.decisions
                if d.question.metric == metric and d.question.policy == policy
            ),
            None,
        )

    def to_json_dict(self) -> JsonObject:
        return {
            "alpha": self.alpha,
            "method": self.method,
            "size": self.size,
            "questions": [d.to_json_dict() for d in self.decisions],
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def decide(questions: Sequence[Question], alpha: float) -> Family:
    """Decide every question with Holm's procedure at family-wise level ``alpha``."""
    ps = [q.p() for q in questions]
    tested = sorted(
        ((p, i) for i, p in enumerate(ps) if p is not None and math.isfinite(p)),
        key=lambda item: item[0],
    )
    m = len(tested)
    levels: dict[int, float] = {}
    adjusted: dict[int, float] = {}
    running = 0.0
    decided = 0
    stopped = False
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
        if not stopped and p < alpha / (m - rank):
            levels[i] = alpha / (m - rank)
            decided += 1
        else:
            stopped = True
    open_level = alpha / (m - decided) if m > decided else alpha
    out: list[Decision] = []
    for i, question in enumerate(questions):
        if ps[i] is None or i not in adjusted:
            out.append(
                Decision(question, "not tested", None, None, None, None, note=question.reason)
            )
            continue
        level = levels.get(i, open_level)
        outcome, interval = question.decide(level)
        p_adjusted = adjusted[i]
        # The decision is read off the interval; where scipy's sf and isf disagree in the last
        # bit at the boundary, the adjusted p follows the interval (as in greenprec.stats).
        if outcome == "open" and p_adjusted < alpha:
            p_adjusted = alpha
        elif outcome != "open" and p_adjusted >= alpha:
            p_adjusted = math.nextafter(alpha, 0.0)
        out.append(Decision(question, outcome, ps[i], p_adjusted, level, interval))
    return Family(alpha, out)


def with_sequential(family: Family, decisions: Sequence[Decision]) -> Family:
    """``family`` with the decisions an adaptive design made in place of the fixed ones."""
    by_key = {(d.question.metric, d.question.policy): d for d in decisions}
    merged = [by_key.get((d.question.metric, d.question.policy), d) for d in family.decisions]
    return replace(family, decisions=merged, method="the sequential design's own decisions")


def _number(value: float, unit: str) -> str:
    text = f"{value:.6g}" if unit.strip() not in ("%", "pp") else f"{value:.3g}"
    return text.replace("-", "\u2212", 1) + unit


def phrase(decision: Decision) -> str:
    """The decision in a few words: "lower", "equivalent within ±1 pp (±0.010)", "worse than
    −1 pp", "inconclusive: equivalence within ±1 pp not shown"."""
    q = decision.question
    outcome = decision.outcome
    margin = q.margin_text or ""
    if outcome == "not tested":
        return f"not tested ({decision.note})" if decision.note else "not tested"
    if q.kind == "difference":
        if outcome == "open":
            return "inconclusive: the interval includes no change"
        if q.metric == "energy_j":
            more = "less" if outcome == "lower" else "more"
            return f"{q.policy} used {more} energy than {q.reference}"
        return f"{outcome} than {q.reference}"
    if q.kind == "equivalence":
        if outcome == "equivalent":
            return f"equivalent within {margin}"
        if outcome == "beyond":
            estimate = q.fit.estimate if q.fit is not None else 0.0
            bound = q.upper_bound if estimate > 0 else q.lower_bound
            size = abs(q.display(bound)) if bound is not None else math.nan
            side = "higher" if estimate > 0 else "lower"
            return f"{side} by more than {_number(size, q.unit)}"
        return f"inconclusive: equivalence within {margin} not shown"
    bound = q.lower_bound if q.lower_bound is not None else q.upper_bound
    assert bound is not None
    shown = q.display(bound)
    limit = ("+" if shown > 0 else "") + _number(shown, q.unit)
    if outcome == "not worse":
        return f"not worse than {limit}"
    if outcome == "worse":
        return f"worse than {limit}"
    return f"inconclusive: not worse than {limit} is not shown"

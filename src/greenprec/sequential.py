"""Stopping an experiment early: a group-sequential design with alpha spending.

An adaptive experiment runs one block (one run of every policy) at a time and, from
``min_runs`` runs per policy on, *looks* at the data after each block: every question (is the
energy different? is the accuracy equivalent within the margin?) is tested, and the experiment
stops as soon as every question is settled, or at ``max_runs`` runs per policy.

Testing the same question again and again at level alpha would make a false "different" much
likelier than alpha (with a look after every run from 3 to 30, about 5 times as likely for a
t-test: ``benchmarks/sequential_error.py``). The design therefore *spends* alpha over the looks
with a Lan–DeMets spending function α(t) of the information time t = runs per policy /
``max_runs``:

- O'Brien–Fleming-type (default): α(t) = 2 − 2Φ(z_{1−α/2} / √t): almost nothing early, nearly
  all of α at the end, so a look only stops for an overwhelming effect;
- Pocock-type: α(t) = α · ln(1 + (e − 1) t): spent more evenly.

Look k is tested at its *increment* α(t_k) − α(t_{k−1}). By the union bound the chance of any
false rejection over all looks is at most Σ increments = α(t_last) ≤ α, whatever the
dependence between the looks and whatever the test's small-sample behaviour, as long as each
test holds its own level, which Welch's t-tests do (approximately, and conservatively at a
handful of runs). This is conservative compared with exact group-sequential boundaries, which
use the correlation between looks; ``benchmarks/sequential_error.py`` measures by how much.

A rejection is final: pass the answers of the previous look as ``settled`` to :func:`look` and
the questions they settled stay settled, untested. Formulas and references: ``docs/stats.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.stats import Margin

__all__ = [
    "Answer",
    "Look",
    "Question",
    "SequentialDesign",
    "fixed_runs_same_power",
    "look",
    "spending",
]

Spending = Literal["obrien-fleming", "pocock"]
Kind = Literal["difference", "equivalence", "noninferiority"]
Verdict = Literal["different", "equivalent", "not worse", "worse"]

_METHODS: dict[str, str] = {
    "obrien-fleming": (
        "group sequential, O'Brien-Fleming-type alpha spending (Lan-DeMets 1983), "
        "each look tested at its alpha increment"
    ),
    "pocock": (
        "group sequential, Pocock-type alpha spending (Lan-DeMets 1983), "
        "each look tested at its alpha increment"
    ),
}


def spending(t: float, alpha: float, kind: Spending = "obrien-fleming") -> float:
    """The alpha spent by information time ``t`` in [0, 1] (0 at t = 0, ``alpha`` at t = 1)."""
    if not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise ConfigError(f"information time must be between 0 and 1, got {t!r}")
    if t == 0.0:
        return 0.0
    if kind == "obrien-fleming":
        from scipy import stats as sp

        z = float(sp.norm.isf(alpha / 2.0))
        return min(alpha, 2.0 * float(sp.norm.sf(z / math.sqrt(t))))
    if kind == "pocock":
        return min(alpha, alpha * math.log1p((math.e - 1.0) * t))
    raise ConfigError(f"spending must be 'obrien-fleming' or 'pocock', got {kind!r:.40}")


def _int(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(f"{name} must be a whole number of at least {least}, got {value!r:.40}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class SequentialDesign:
    """When to look and at what level: alpha spent over ``min_runs`` … ``max_runs`` runs per
    policy with an O'Brien–Fleming-type (default) or Pocock-type spending function."""

    alpha: float = 0.05
    min_runs: int = 3
    max_runs: int
    spending: Spending = "obrien-fleming"

    def __post_init__(self) -> None:
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0.0 < self.alpha < 0.5
        ):
            raise ConfigError(f"alpha must be a number between 0 and 0.5, got {self.alpha!r:.40}")
        _int(self.min_runs, "min_runs", 2)
        _int(self.max_runs, "max_runs", 2)
        if self.min_runs > self.max_runs:
            raise ConfigError(
                f"min_runs ({self.min_runs}) must not exceed max_runs ({self.max_runs})"
            )
        if self.spending not in _METHODS:
            raise ConfigError(
                f"spending must be 'obrien-fleming' or 'pocock', got {self.spending!r:.40}"
            )

    @property
    def method(self) -> str:
        """The design in words, as recorded in the results folder."""
        return _METHODS[self.spending]

    def information(self, runs_per_policy: int) -> float:
        """The information time t = runs per policy / max_runs (at most 1)."""
        runs = _int(runs_per_policy, "runs_per_policy", 0)
        return min(1.0, runs / self.max_runs)

    def spent(self, runs_per_policy: int) -> float:
        """The cumulative alpha spent by a look at this many runs per policy."""
        return spending(self.information(runs_per_policy), float(self.alpha), self.spending)

    def level_at(self, runs_per_policy: int, previous: int | None) -> float:
        """The level to test at a look after ``runs_per_policy`` runs per policy, when the
        previous look was at ``previous`` (None: this is the first look)."""
        runs = _int(runs_per_policy, "runs_per_policy", 1)
        if runs < self.min_runs:
            raise ConfigError(
                f"no look before {self.min_runs} runs per policy (min_runs); got {runs}"
            )
        if runs > self.max_runs:
            raise ConfigError(
                f"{runs} runs per policy is beyond the design's maximum of {self.max_runs}; "
                "all its alpha is spent by then"
            )
        before = 0.0
        if previous is not None:
            prev = _int(previous, "previous_runs_per_policy", self.min_runs)
            if prev >= runs:
                raise ConfigError(
                    f"the previous look ({prev} runs per policy) must come before this one ({runs})"
                )
            before = self.spent(prev)
        return self.spent(runs) - before

    def levels(self, looks: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """(runs per policy, level) for looks at ``looks`` (default: after every run from
        ``min_runs`` to ``max_runs``)."""
        schedule = list(range(self.min_runs, self.max_runs + 1)) if looks is None else list(looks)
        out: list[tuple[int, float]] = []
        previous: int | None = None
        for runs in schedule:
            out.append((runs, self.level_at(runs, previous)))
            previous = runs
        return out


@dataclass(frozen=True)
class Question:
    """One thing the experiment asks of ``policy`` against ``reference`` about ``metric``.

    ``"difference"``: is it different (Welch's t; on the log ratio of the means with
    ``log_scale``, as energy's primary test)? ``"equivalence"``: is it within ±margin (TOST), or
    shown different? ``"noninferiority"``: is it not worse than the margin allows, or shown to
    be worse? ``margin`` is required for the last two.
    """

    metric: str
    reference: str
    policy: str
    kind: Kind
    margin: Margin | None = None
    log_scale: bool = False

    def __post_init__(self) -> None:
        for name in ("metric", "reference", "policy"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"a question's {name} must be a non-empty name")
        if self.reference == self.policy:
            raise ConfigError(f"a question compares two policies, got {self.policy!r:.60} twice")
        if self.kind not in ("difference", "equivalence", "noninferiority"):
            raise ConfigError(
                "a question's kind must be 'difference', 'equivalence' or 'noninferiority', "
                f"got {self.kind!r:.40}"
            )
        if self.kind != "difference":
            if not isinstance(self.margin, Margin):
                raise ConfigError(f"an {self.kind} question about {self.metric} needs a margin")
            if self.margin.kind != self.kind:
                raise ConfigError(
                    f"the margin {self.margin.describe()} is for {self.margin.kind}, but the "
                    f"question asks {self.kind}"
                )

    @property
    def label(self) -> str:
        return f"{self.metric} {self.policy} vs {self.reference}"


class _AnswerLike(Protocol):
    """What :func:`look` needs of an earlier answer (an :class:`Answer` or an AnswerRecord)."""

    @property
    def metric(self) -> str: ...
    @property
    def policy(self) -> str: ...
    @property
    def reference(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def settled(self) -> bool: ...
    @property
    def verdict(self) -> str | None: ...
    @property
    def p(self) -> float | None: ...


@dataclass(frozen=True)
class Answer(stats._Result):
    """One question as one look answers it.

    ``verdict`` (when ``settled``): ``"different"``, ``"equivalent"``, ``"not worse"`` or
    ``"worse"``; None while open. ``p`` is the p-value of the test that settled it, or of the
    question's main test while open (the difference test; TOST; the non-inferiority test).
    ``margin_abs`` is the margin in the metric's units; ``difference`` is mean(policy) −
    mean(reference). ``carried`` marks an answer settled at an earlier look and kept.
    """

    metric: str
    policy: str
    reference: str
    kind: Kind
    settled: bool
    verdict: Verdict | None
    p: float | None
    level: float
    margin_abs: float | None = None
    difference: float | None = None
    p_difference: float | None = None
    carried: bool = False
    not_computed: str | None = None


@dataclass(frozen=True)
class Look(stats._Result):
    """The result of one interim analysis: the answers, and whether to stop and why."""

    runs_per_policy: int
    previous_runs_per_policy: int | None
    max_runs: int
    information: float
    alpha_spent: float
    level: float
    answers: list[Answer]
    settled: bool
    stop: bool
    reason: str
    method: str = ""
    notes: list[str] = field(default_factory=list)


def _values(
    data: Mapping[str, Mapping[str, Sequence[float]]], metric: str, policy: str
) -> tuple[np.ndarray, str | None]:
    by_policy = data.get(metric)
    if by_policy is None:
        return np.empty(0), f"no values of {metric}"
    raw = by_policy.get(policy)
    if raw is None:
        return np.empty(0), f"no values of {metric} for {policy}"
    try:
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"the values of {metric} for {policy} must be numbers") from error
    return values[np.isfinite(values)], None


def _difference_test(
    a: np.ndarray, b: np.ndarray, level: float, log_scale: bool
) -> tuple[float | None, bool, str | None]:
    """p of the two-sided difference test, whether it rejects at ``level``, or why not."""
    if a.size < 2 or b.size < 2:
        return None, False, f"needs at least 2 values per policy (has {a.size} and {b.size})"
    if stats._constant(a) and stats._constant(b):
        return None, False, "both policies have zero variance; the test is undefined"
    if log_scale:
        mean_a, mean_b = float(a.mean()), float(b.mean())
        if mean_a <= 0 or mean_b <= 0:
            return None, False, "the log ratio needs positive means"
        test = stats.welch_log_ratio(
            mean_a, stats._sd(a), a.size, mean_b, stats._sd(b), b.size, alpha=level
        )
        if not math.isfinite(float(test.p)):
            return None, False, "the log-ratio test could not be computed"
        return float(test.p), bool(test.significant), None
    from scipy import stats as sp

    diff, se, df, reason = stats._welch_parts(a, b, "reference", "policy")
    if reason is not None:
        return None, False, reason
    t = diff / se
    p = min(1.0, 2.0 * float(sp.t.sf(abs(t), df)))
    # As everywhere in greenprec.stats, the decision is read off the interval.
    significant = abs(diff) > float(sp.t.isf(level / 2.0, df)) * se
    return p, significant, None


def _margin_abs(question: Question, a: np.ndarray, b: np.ndarray) -> tuple[float | None, str]:
    margin = question.margin
    assert margin is not None
    if margin.unit == "abs":
        return margin.absolute(math.nan), ""
    if a.size == 0:
        return None, f"no values of {question.metric} for {question.reference}"
    scale = None
    if margin.unit == "pp":
        try:
            scale = stats.accuracy_scale(np.concatenate([a, b]))
        except ConfigError as error:
            return None, str(error)
    try:
        return margin.absolute(float(a.mean()), scale), ""
    except ConfigError as error:
        return None, str(error)


def _answer(question: Question, a: np.ndarray, b: np.ndarray, level: float) -> Answer:
    diff = float(b.mean() - a.mean()) if a.size and b.size else None
    p_diff, different, reason = _difference_test(a, b, level, question.log_scale)
    common: dict[str, Any] = {
        "metric": question.metric,
        "policy": question.policy,
        "reference": question.reference,
        "kind": question.kind,
        "level": level,
        "difference": diff,
        "p_difference": p_diff,
    }
    if question.kind == "difference":
        return Answer(
            **common,
            settled=different,
            verdict="different" if different else None,
            p=p_diff,
            not_computed=reason,
        )
    margin_abs, why = _margin_abs(question, a, b)
    if margin_abs is None:
        return Answer(**common, settled=False, verdict=None, p=None, not_computed=why)
    margin = question.margin
    assert margin is not None
    if question.kind == "equivalence":
        tost = stats.tost_welch(a, b, margin_abs, alpha=level)
        if tost.equivalent:
            return Answer(
                **common, settled=True, verdict="equivalent", p=tost.p, margin_abs=margin_abs
            )
        if different:
            return Answer(
                **common, settled=True, verdict="different", p=p_diff, margin_abs=margin_abs
            )
        missing = tost.not_computed.get("p")
        return Answer(
            **common,
            settled=False,
            verdict=None,
            p=tost.p,
            margin_abs=margin_abs,
            not_computed=missing,
        )
    assert margin.tolerated is not None
    ni = stats.noninferiority_welch(a, b, margin_abs, margin.tolerated, alpha=level)
    if ni.noninferior:
        return Answer(**common, settled=True, verdict="not worse", p=ni.p, margin_abs=margin_abs)
    if ni.inferior:
        return Answer(
            **common, settled=True, verdict="worse", p=ni.p_inferior, margin_abs=margin_abs
        )
    return Answer(
        **common,
        settled=False,
        verdict=None,
        p=ni.p,
        margin_abs=margin_abs,
        not_computed=ni.not_computed.get("p"),
    )


def _words(question: Question, answer: Answer) -> str:
    p = "" if answer.p is None else f" (p = {answer.p:.3g})"
    margin = question.margin
    if answer.verdict == "equivalent" and margin is not None:
        verdict = f"equivalent within {margin.describe()}"
    elif answer.verdict == "not worse" and margin is not None:
        verdict = margin.describe()
    elif answer.verdict == "worse" and margin is not None:
        unit = "" if margin.unit == "abs" else f" {margin.unit}"
        side = "lower" if margin.tolerated == -1 else "higher"
        verdict = f"worse ({side} by more than {stats._fmt_margin(margin.value)}{unit})"
    else:
        verdict = str(answer.verdict)
    return f"{question.label} {verdict}{p}"


def look(
    design: SequentialDesign,
    runs_per_policy: int,
    previous_runs_per_policy: int | None,
    data: Mapping[str, Mapping[str, Sequence[float]]],
    questions: Sequence[Question],
    *,
    settled: Iterable[_AnswerLike] = (),
) -> Look:
    """One interim analysis after ``runs_per_policy`` runs per policy.

    ``data`` maps metric → policy → values (NaN and infinite values are left out). Every
    question is tested at the level the design spends on this look; ``settled`` takes the
    answers of the previous look: a question they settled keeps its verdict (a rejection is
    final) and is not tested again. The look says to stop when every question is settled or
    ``runs_per_policy`` reached ``design.max_runs``. Before ``design.min_runs`` there is no
    look (ConfigError).
    """
    if not isinstance(design, SequentialDesign):
        raise ConfigError("design must be a SequentialDesign")
    level = design.level_at(runs_per_policy, previous_runs_per_policy)
    questions = list(questions)
    if not questions:
        raise ConfigError("a look needs at least one question")
    if not isinstance(data, Mapping):
        raise ConfigError("data must map metric -> policy -> values")
    kept: dict[tuple[str, str, str, str], _AnswerLike] = {}
    for earlier in settled:
        if earlier.settled and earlier.verdict is not None:
            kept[(earlier.metric, earlier.policy, earlier.reference, earlier.kind)] = earlier
    answers: list[Answer] = []
    for question in questions:
        if not isinstance(question, Question):
            raise ConfigError(f"questions must be Question objects, got {type(question).__name__}")
        key = (question.metric, question.policy, question.reference, question.kind)
        if key in kept:
            old = kept[key]
            answers.append(
                Answer(
                    metric=question.metric,
                    policy=question.policy,
                    reference=question.reference,
                    kind=question.kind,
                    settled=True,
                    verdict=old.verdict,  # type: ignore[arg-type]
                    p=old.p,
                    level=level,
                    margin_abs=getattr(old, "margin_abs", getattr(old, "margin", None)),
                    carried=True,
                )
            )
            continue
        a, missing_a = _values(data, question.metric, question.reference)
        b, missing_b = _values(data, question.metric, question.policy)
        if missing_a or missing_b:
            reason = missing_a or missing_b
            answers.append(
                Answer(
                    metric=question.metric,
                    policy=question.policy,
                    reference=question.reference,
                    kind=question.kind,
                    settled=False,
                    verdict=None,
                    p=None,
                    level=level,
                    not_computed=reason,
                )
            )
            continue
        answers.append(_answer(question, a, b, level))
    all_settled = all(answer.settled for answer in answers)
    at_max = runs_per_policy >= design.max_runs
    done = [
        _words(q, answer) for q, answer in zip(questions, answers, strict=True) if answer.settled
    ]
    still = [q.label for q, answer in zip(questions, answers, strict=True) if not answer.settled]
    runs = f"{runs_per_policy} run{'s' if runs_per_policy != 1 else ''} per policy"
    if all_settled:
        reason = f"every question is settled after {runs}: " + "; ".join(done)
    elif at_max:
        reason = (
            f"the maximum of {design.max_runs} runs per policy was reached with "
            + " and ".join(still)
            + " still open"
        )
        if done:
            reason += "; settled: " + "; ".join(done)
    else:
        reason = (
            f"after {runs} " + " and ".join(still) + f" still open (tested at level {level:.3g})"
        )
    return Look(
        runs_per_policy=int(runs_per_policy),
        previous_runs_per_policy=previous_runs_per_policy,
        max_runs=design.max_runs,
        information=design.information(runs_per_policy),
        alpha_spent=design.spent(runs_per_policy),
        level=level,
        answers=answers,
        settled=all_settled,
        stop=all_settled or at_max,
        reason=reason,
        method=design.method,
    )


def fixed_runs_same_power(
    reference: Sequence[float],
    policy: Sequence[float],
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int | None:
    """Runs per policy a fixed design would need to detect the observed energy change.

    The observed relative change 100 · (mean(policy) / mean(reference) − 1) at the observed
    CV (the pooled SD in % of the reference mean), through :func:`greenprec.stats.runs_needed`
    (two-sided t-test, this ``alpha`` and ``power``). None when that cannot be computed (fewer
    than 2 values per policy, a zero or negative reference mean, no change, no spread, or more
    than 10⁸ runs).
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(policy, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return None
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if mean_a <= 0:
        return None
    pooled = math.sqrt(
        ((a.size - 1) * stats._sd(a) ** 2 + (b.size - 1) * stats._sd(b) ** 2)
        / (a.size + b.size - 2)
    )
    change = 100.0 * (mean_b / mean_a - 1.0)
    cv = 100.0 * pooled / mean_a
    if change == 0.0 or cv == 0.0 or not math.isfinite(change):
        return None
    try:
        return stats.runs_needed(cv, change, alpha=alpha, power=power)
    except ConfigError:
        return None

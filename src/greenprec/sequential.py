"""Stopping an experiment early: a group-sequential design with exact Lan–DeMets boundaries.

An adaptive experiment runs one block (one run of every policy) at a time and, from
``min_runs`` runs per policy on, *looks* at the data after each block: every question (is the
energy different? is the accuracy equivalent within the margin?) is tested, and the experiment
stops as soon as every question is settled, or at ``max_runs`` runs per policy.

Testing the same question again and again at level alpha would make a false "different" much
likelier than alpha (with a look after every run from 3 to 30, about 5 times as likely for a
t-test: ``benchmarks/sequential_error.py``). The design therefore *spends* alpha over the looks
with a Lan–DeMets (1983) spending function α(t) of the information time t = runs per policy /
``max_runs``:

- O'Brien–Fleming-type (default): α(t) = 2 − 2Φ(z_{1−α/2} / √t): almost nothing early, nearly
  all of α at the end, so a look only stops for an overwhelming effect;
- Pocock-type: α(t) = α · ln(1 + (e − 1) t): spent more evenly.

**Boundaries.** For the information times t_1 < … < t_k of the looks actually made, the
two-sided critical values c_1, …, c_k are computed so that, for a standardised statistic Z_j
with the independent increments of a score process (Z_j √t_j a Brownian motion),
P(|Z_k| ≥ c_k, |Z_j| < c_j for j < k | H0) = α(t_k) − α(t_{k−1}) exactly: the standard
recursive numerical integration (Armitage, McPherson & Rowe 1969; Jennison & Turnbull 2000,
ch. 19) on a grid with Simpson's rule. A boundary depends only on the looks made so far, so
a look skipped (a failed run: no new information) or made late changes nothing before it.
The question's Welch t-statistic is then tested at the *nominal* level p_k = 2(1 − Φ(c_k))
(its t p-value against p_k; equivalently its interval at level 1 − p_k). Because the looks
spend α exactly, the last look of an O'Brien–Fleming-type design is tested near α (0.029 for
looks at every run from 3 to 30 at α = 0.05, against 0.0038 when each look was tested at its
α increment), and its maximum is close to a fixed design's runs for the same power
(:meth:`SequentialDesign.fixed_runs`: 29 for 30).

**One-sided questions** (each side of TOST, non-inferiority) use the one-sided boundaries of
the same spending: the two-sided design for 2α gives c_k, and each one-sided test is made at
the nominal level p_k/2 = 1 − Φ(c_k), which reads off one interval of level 1 − p_k.

**The family.** All questions of a look (every policy against the reference, every question)
form one family: each question gets an equal share α / (number of questions) of the design's
α (Bonferroni) and spends it with the spending function, so the chance of any false
rejection in the family stays ≤ α (``benchmarks/sequential_error.py``).

**Intervals.** Each answer carries its *repeated confidence interval* (Jennison & Turnbull
2000, ch. 9): the estimate ± the look's critical value × SE (with the t quantile at the
nominal level, so interval and decision agree), which covers the truth at every look
simultaneously with probability ≥ 1 − α', and so also at the look where the experiment
stopped, whatever the stopping rule. An estimate from a design that stopped early is biased
away from zero (it stopped *because* the estimate was large); the interval stays valid.

A rejection is final: pass the answers of the previous look as ``settled`` to :func:`look` and
the questions they settled stay settled, untested, with the level and interval they were
settled at. Formulas and references: ``docs/stats.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.stats import Margin
from greenprec.stats._common import _constant, _Result, _sd, _welch_parts
from greenprec.stats.equivalence import _fmt_margin, _log_margin

__all__ = [
    "Answer",
    "Look",
    "Question",
    "SequentialDesign",
    "boundaries",
    "fixed_runs_same_power",
    "information",
    "look",
    "spending",
]

Spending = Literal["obrien-fleming", "pocock"]
Kind = Literal["difference", "equivalence", "noninferiority"]
Verdict = Literal["different", "equivalent", "beyond margin", "not worse", "worse"]
"""``"beyond margin"``: an equivalence question whose interval lies wholly outside the margin
(worded "lower/higher by more than m"); ``"worse"``: a non-inferiority question whose interval
lies wholly beyond the tolerated side (worded "worse than −m")."""

_METHODS: dict[str, str] = {
    "obrien-fleming": (
        "group sequential, O'Brien-Fleming-type alpha spending (Lan-DeMets 1983), exact "
        "boundaries by recursive numerical integration (Jennison-Turnbull 2000), alpha split "
        "equally over the questions (Bonferroni)"
    ),
    "pocock": (
        "group sequential, Pocock-type alpha spending (Lan-DeMets 1983), exact boundaries by "
        "recursive numerical integration (Jennison-Turnbull 2000), alpha split equally over the "
        "questions (Bonferroni)"
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


# -- exact boundaries: recursive numerical integration ---------------------------------------------

_REACH_SD = 10.0  # where no boundary cuts it, the grid reaches ±10 SD of S_k
_POINTS_PER_SD = 12  # grid points per SD of the next increment
_MAX_POINTS = 2001
_NEGLIGIBLE = 1e-15  # an alpha increment below this is no chance to reject at all


def _simpson(m: int) -> np.ndarray:
    w = np.ones(m)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w / 3.0


def _grid(low: float, high: float, next_sd: float) -> np.ndarray:
    m = math.ceil((high - low) / next_sd * _POINTS_PER_SD / 2.0) * 2 + 1
    return np.linspace(low, high, max(5, min(m, _MAX_POINTS)))


def _advance(
    x: np.ndarray | None,
    w: np.ndarray | None,
    grid: np.ndarray,
    sd: float,
    shift: float,
) -> np.ndarray:
    """Weights (density × Simpson weight) on ``grid`` of the paths still going after this
    look, from the previous look's weights ``w`` on ``x`` (None: this is the first look)."""
    from scipy import stats as sp

    if x is None or w is None:
        density = sp.norm.pdf((grid - shift) / sd) / sd
    else:
        density = sp.norm.pdf((grid[:, None] - x[None, :] - shift) / sd) @ w / sd
    h = (grid[-1] - grid[0]) / (grid.size - 1)
    return np.asarray(density * _simpson(grid.size) * h)


def _check_times(times: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(t) for t in times)
    if not out or any(not 0.0 < t <= 1.0 for t in out):
        raise ConfigError(f"information times must lie in (0, 1], got {list(times)!r:.80}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ConfigError(f"information times must increase, got {list(times)!r:.80}")
    return out


def _upper(b: float, x: np.ndarray | None, w: np.ndarray | None, sd: float) -> float:
    """P(S_k ≥ b and the path went on to look k), S_k = S_{k−1} + N(0, sd²)."""
    from scipy import stats as sp

    if x is None or w is None:
        return float(sp.norm.sf(b / sd))
    return float(w @ sp.norm.sf((b - x) / sd))


@functools.lru_cache(maxsize=512)
def _boundaries(
    times: tuple[float, ...], alpha: float, kind: str, final: bool = False
) -> tuple[float, ...]:
    """``final``: the last look is the design's last, made short of the maximum information
    (runs failed); it spends all the alpha left (Jennison & Turnbull 2000, 7.2.2), so the design
    spends exactly ``alpha`` however much information the failures took."""
    from scipy import optimize

    out: list[float] = []
    x: np.ndarray | None = None
    w: np.ndarray | None = None
    before_t = before_spent = 0.0
    for k, t in enumerate(times):
        sd = math.sqrt(t - before_t)
        last = final and k + 1 == len(times)
        spent = alpha if last else spending(t, alpha, kind)  # type: ignore[arg-type]
        target = spent - before_spent
        if target <= _NEGLIGIBLE:
            b = math.inf
        else:
            # Symmetric boundaries on a symmetric density: both sides cross alike.
            far = 0.0 if x is None else float(np.max(np.abs(x)))
            b = float(
                optimize.brentq(
                    lambda b, x=x, w=w, sd=sd, target=target: 2.0 * _upper(b, x, w, sd) - target,
                    0.0,
                    far + 40.0 * sd,
                    xtol=1e-13,
                    rtol=1e-13,
                )
            )
        out.append(b / math.sqrt(t))
        before_t, before_spent = t, spent
        if k + 1 < len(times):
            reach = min(b, _REACH_SD * math.sqrt(t))
            grid = _grid(-reach, reach, math.sqrt(times[k + 1] - t))
            w = _advance(x, w, grid, sd, 0.0)
            x = grid
    return tuple(out)


def boundaries(
    times: Sequence[float], alpha: float, kind: Spending = "obrien-fleming"
) -> list[float]:
    """Two-sided critical values c_k (z scale) for looks at information ``times`` (increasing,
    in (0, 1]): P(|Z_k| ≥ c_k and |Z_j| < c_j for j < k) = α(t_k) − α(t_{k−1}) under H0, by
    recursive numerical integration (Jennison & Turnbull 2000, ch. 19). ``inf`` where the
    increment is negligible (below 1e−15)."""
    if kind not in _METHODS:
        raise ConfigError(f"spending must be 'obrien-fleming' or 'pocock', got {kind!r:.40}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a number between 0 and 1, got {alpha!r:.40}")
    return list(_boundaries(_check_times(times), float(alpha), kind))


def _crossing(
    times: tuple[float, ...], critical: Sequence[float], drift: float, sides: int
) -> float:
    """P(the statistic crosses a boundary at some look) when E[Z(t)] = drift · √t; ``sides``
    2: either boundary, 1: the upper one only."""
    from scipy import stats as sp

    total = 0.0
    x: np.ndarray | None = None
    w: np.ndarray | None = None
    before_t = 0.0
    for k, (t, c) in enumerate(zip(times, critical, strict=True)):
        delta = t - before_t
        sd, shift = math.sqrt(delta), drift * delta
        b = c * math.sqrt(t)
        if math.isfinite(b):
            if x is None or w is None:
                total += float(sp.norm.sf((b - shift) / sd))
                if sides == 2:
                    total += float(sp.norm.cdf((-b - shift) / sd))
            else:
                total += float(w @ sp.norm.sf((b - x - shift) / sd))
                if sides == 2:
                    total += float(w @ sp.norm.cdf((-b - x - shift) / sd))
        before_t = t
        if k + 1 < len(times):
            centre, spread = drift * t, _REACH_SD * math.sqrt(t)
            low, high = max(-b, centre - spread), min(b, centre + spread)
            if high <= low:
                break
            grid = _grid(low, high, math.sqrt(times[k + 1] - t))
            w = _advance(x, w, grid, sd, shift)
            x = grid
    return total


def _int(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(f"{name} must be a whole number of at least {least}, got {value!r:.40}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class SequentialDesign:
    """When to look and at what level: alpha spent over ``min_runs`` … ``max_runs`` runs per
    policy with an O'Brien–Fleming-type (default) or Pocock-type spending function, each look
    tested at the nominal level of its exact boundary (:func:`boundaries`)."""

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

    def spent(self, runs_per_policy: int, alpha: float | None = None) -> float:
        """The cumulative alpha spent by a look at this many runs per policy (of ``alpha``,
        default the design's)."""
        share = float(self.alpha if alpha is None else alpha)
        return spending(self.information(runs_per_policy), share, self.spending)

    def schedule(self, runs_per_policy: int, previous: int | Sequence[int] | None) -> list[int]:
        """Runs per policy at every look up to this one. ``previous``: None (this is the first
        look), the earlier looks in order, or the previous look alone (then the looks before it
        are taken to be after every run from ``min_runs`` on, as ``compare --adaptive`` looks)."""
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
        if previous is None:
            earlier: list[int] = []
        elif isinstance(previous, (int, np.integer)) and not isinstance(previous, bool):
            prev = _int(previous, "previous_runs_per_policy", self.min_runs)
            earlier = list(range(self.min_runs, prev + 1))
        else:
            assert not isinstance(previous, bool)
            earlier = [_int(n, "previous_runs_per_policy", self.min_runs) for n in previous]
        for before, after in itertools.pairwise([*earlier, runs]):
            if before >= after:
                raise ConfigError(
                    f"the previous look ({before} runs per policy) must come before this one "
                    f"({after})"
                )
        return [*earlier, runs]

    def critical(
        self,
        runs_per_policy: int,
        previous: int | Sequence[int] | None,
        *,
        alpha: float | None = None,
    ) -> float:
        """The two-sided critical value c_k (z scale) of this look for ``alpha`` (default the
        design's), given the looks made before it (see :meth:`schedule`)."""
        looks = self.schedule(runs_per_policy, previous)
        share = float(self.alpha if alpha is None else alpha)
        times = tuple(self.information(n) for n in looks)
        return _boundaries(times, share, self.spending)[-1]

    def level_at(
        self,
        runs_per_policy: int,
        previous: int | Sequence[int] | None,
        *,
        alpha: float | None = None,
        sides: Literal[1, 2] = 2,
    ) -> float:
        """The nominal level a look tests at: 2(1 − Φ(c_k)) for a two-sided test at ``alpha``
        (default the design's); with ``sides=1`` the one-sided level 1 − Φ(c_k) of the
        two-sided design for 2·alpha (each side of TOST, non-inferiority)."""
        from scipy import stats as sp

        share = float(self.alpha if alpha is None else alpha)
        if sides == 1:
            return float(sp.norm.sf(self.critical(runs_per_policy, previous, alpha=2 * share)))
        return 2.0 * float(sp.norm.sf(self.critical(runs_per_policy, previous, alpha=share)))

    def levels(
        self, looks: Sequence[int] | None = None, *, alpha: float | None = None
    ) -> list[tuple[int, float]]:
        """(runs per policy, nominal two-sided level) for looks at ``looks`` (default: after
        every run from ``min_runs`` to ``max_runs``)."""
        schedule = list(range(self.min_runs, self.max_runs + 1)) if looks is None else list(looks)
        if not schedule:
            return []
        from scipy import stats as sp

        self.schedule(schedule[-1], schedule[:-1])  # checks the order and the range
        share = float(self.alpha if alpha is None else alpha)
        times = tuple(self.information(n) for n in schedule)
        critical = _boundaries(times, share, self.spending)
        return [(n, 2.0 * float(sp.norm.sf(c))) for n, c in zip(schedule, critical, strict=True)]

    def fixed_runs(
        self, *, alpha: float | None = None, power: float = 0.8, sides: Literal[1, 2] = 2
    ) -> int:
        """Runs per policy of a fixed design with the same power as this one (looks after every
        run from ``min_runs`` to ``max_runs``), at the effect this design detects with
        ``power``: max_runs · ((z_{1−a} + z_power) / θ)², θ the drift of the standardised
        statistic at t = 1 that gives this design ``power`` (a = alpha/2 two-sided; a = alpha,
        with the boundaries of the 2·alpha design, one-sided). A property of the design, not
        of any observed effect."""
        from scipy import optimize
        from scipy import stats as sp

        share = float(self.alpha if alpha is None else alpha)
        looks = range(self.min_runs, self.max_runs + 1)
        times = tuple(self.information(n) for n in looks)
        design_alpha = share if sides == 2 else 2.0 * share
        critical = _boundaries(times, design_alpha, self.spending)
        z = float(sp.norm.isf(share / 2.0 if sides == 2 else share)) + float(sp.norm.ppf(power))
        theta = float(
            optimize.brentq(
                lambda d: _crossing(times, critical, d, sides) - power, 0.0, 3.0 * z, xtol=1e-10
            )
        )
        return max(2, math.ceil(self.max_runs * (z / theta) ** 2 - 1e-9))


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
class Answer(_Result):
    """One question as one look answers it.

    ``verdict`` (when ``settled``): ``"different"``, ``"equivalent"``, ``"beyond margin"``
    (an equivalence question whose interval lies wholly outside the margin), ``"not worse"`` or
    ``"worse"``; None while open. ``p`` is the p-value of the test that settled it, or of the
    question's main test while open (the difference test; TOST; the non-inferiority test), and
    ``level`` the nominal level it is compared with: two-sided for a difference question,
    one-sided (each side) for a margin question. ``margin_abs`` is the margin in the metric's
    units; ``difference`` is mean(policy) − mean(reference).

    ``estimate``, ``ci_low``, ``ci_high``: the estimate and its *repeated confidence interval*
    at this look (``confidence`` = 1 − level two-sided, 1 − 2·level for a margin question),
    valid whatever the stopping rule; in % of the reference mean when ``scale`` is
    ``"percent"`` (the log ratio, as energy's primary test, or a margin in %), in the metric's
    units when ``"difference"``. The decision is read off this interval. ``carried`` marks an
    answer settled at an earlier look and kept, with that look's level and interval;
    ``settled_at`` is the runs per policy of the look that settled it.
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
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    scale: Literal["percent", "difference"] | None = None
    settled_at: int | None = None
    margin_value: float | None = None
    margin_unit: Literal["pp", "%", "abs"] | None = None
    margin_tolerated: Literal[-1, 1] | None = None


@dataclass(frozen=True)
class Look(_Result):
    """The result of one interim analysis: the answers, and whether to stop and why.

    ``level`` is the nominal two-sided level of a difference question at this look (for its
    share ``alpha_share`` of the design's alpha); ``alpha_spent`` is the cumulative alpha of
    the whole family spent by this look."""

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
    alpha_share: float | None = None
    one_sided_level: float | None = None


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


def _parts(a: np.ndarray, b: np.ndarray, log_scale: bool) -> tuple[float, float, float] | str:
    """The estimate (b − a, or ln(mean b / mean a)), its Welch SE and df; or why not."""
    if a.size < 2 or b.size < 2:
        return f"needs at least 2 values per policy (has {a.size} and {b.size})"
    if _constant(a) and _constant(b):
        return "both policies have zero variance; the test is undefined"
    if not log_scale:
        diff, se, df, reason = _welch_parts(a, b, "reference", "policy")
        if reason is not None:
            return reason
        return diff, se, df
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if mean_a <= 0 or mean_b <= 0:
        return "the log ratio needs positive means"
    # As stats.welch_log_ratio: delta-method SE and Welch–Satterthwaite df.
    ua = _sd(a) ** 2 / (a.size * mean_a * mean_a)
    ub = _sd(b) ** 2 / (b.size * mean_b * mean_b)
    var = ua + ub
    if not var > 0 or not math.isfinite(var):
        return "the log-ratio test could not be computed"
    df = var * var / (ua * ua / (a.size - 1) + ub * ub / (b.size - 1))
    return math.log(mean_b / mean_a), math.sqrt(var), df


def _agree(p: float, decided: bool, level: float) -> float:
    """p on the side of ``level`` that the interval decided (sf and isf can disagree in the
    last bit right at the boundary; the interval wins, as everywhere in greenprec.stats)."""
    if decided and p >= level:
        return math.nextafter(level, 0.0)
    if not decided and p < level:
        return level
    return p


def _shown(value: float, log_scale: bool) -> float:
    """A log ratio as % change (an interval too wide for exp's range: +inf)."""
    if not log_scale:
        return value
    try:
        return 100.0 * math.expm1(value)
    except OverflowError:
        return math.inf


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


def _answer(
    question: Question, a: np.ndarray, b: np.ndarray, two_sided: float, one_sided: float
) -> Answer:
    """The question at this look: its repeated CI, and the decision read off it.

    A difference question's interval has level 1 − ``two_sided``; a margin question's
    1 − 2·``one_sided`` (each one-sided test at ``one_sided``), its bounds in the metric's
    units, or on the log-ratio scale for a margin in % of the reference mean."""
    from scipy import stats as sp

    margin = question.margin
    log_scale = question.log_scale if margin is None else margin.unit == "%"
    level = two_sided if question.kind == "difference" else one_sided
    open_answer = Answer(
        metric=question.metric,
        policy=question.policy,
        reference=question.reference,
        kind=question.kind,
        settled=False,
        verdict=None,
        p=None,
        level=level,
        difference=float(b.mean() - a.mean()) if a.size and b.size else None,
        scale="percent" if log_scale else "difference",
        margin_value=None if margin is None else float(margin.value),
        margin_unit=None if margin is None else margin.unit,
        margin_tolerated=None if margin is None else margin.tolerated,
    )
    if margin is not None:
        margin_abs, why = _margin_abs(question, a, b)
        if margin_abs is None:
            return dataclasses.replace(open_answer, not_computed=why)
        open_answer = dataclasses.replace(open_answer, margin_abs=margin_abs)
    parts = _parts(a, b, log_scale)
    if isinstance(parts, str):
        return dataclasses.replace(open_answer, not_computed=parts)
    est, se, df = parts
    half = float(sp.t.isf(level / 2.0 if question.kind == "difference" else level, df)) * se
    low, high = est - half, est + half
    p_diff = min(1.0, 2.0 * float(sp.t.sf(abs(est) / se, df)))
    open_answer = dataclasses.replace(
        open_answer,
        estimate=_shown(est, log_scale),
        ci_low=_shown(low, log_scale),
        ci_high=_shown(high, log_scale),
        confidence=1.0 - (level if question.kind == "difference" else 2.0 * level),
        p_difference=p_diff,
    )
    if question.kind == "difference":
        different = low > 0.0 or high < 0.0
        return dataclasses.replace(
            open_answer,
            settled=different,
            verdict="different" if different else None,
            p=_agree(p_diff, different, two_sided),
        )
    assert margin is not None
    return _margin_decision(open_answer, margin, est, se, df, (low, high), log_scale)


def _margin_decision(
    open_answer: Answer,
    margin: Margin,
    est: float,
    se: float,
    df: float,
    interval: tuple[float, float],
    log_scale: bool,
) -> Answer:
    """An equivalence or non-inferiority question decided from its repeated CI ``interval``
    (on the scale of ``est``) against the margin's bounds."""
    from scipy import stats as sp

    level, (low, high) = open_answer.level, interval
    if log_scale:
        lower = -_log_margin(margin.value, -1) if margin.value < 100 else -math.inf
        upper = _log_margin(margin.value, 1)
    else:
        assert open_answer.margin_abs is not None
        lower, upper = -open_answer.margin_abs, open_answer.margin_abs
    # One-sided p-values against each bound (H0: est ≤ lower; H0: est ≥ upper).
    p_above_lower = float(sp.t.sf((est - lower) / se, df)) if math.isfinite(lower) else 0.0
    p_below_upper = float(sp.t.cdf((est - upper) / se, df))

    def decided(verdict: Verdict, p: float) -> Answer:
        return dataclasses.replace(
            open_answer, settled=True, verdict=verdict, p=_agree(p, True, level)
        )

    if open_answer.kind == "equivalence":
        if low > lower and high < upper:
            return decided("equivalent", max(p_above_lower, p_below_upper))
        if high < lower or low > upper:
            p_out = 1.0 - p_above_lower if high < lower else 1.0 - p_below_upper
            return decided("beyond margin", p_out)
        p = _agree(max(p_above_lower, p_below_upper), False, level)
        return dataclasses.replace(open_answer, p=p)
    # Non-inferiority: the tolerated side only.
    if margin.tolerated == -1:
        not_worse, worse = low > lower, high < lower
        p_ni, p_worse = p_above_lower, 1.0 - p_above_lower
    else:
        not_worse, worse = high < upper, low > upper
        p_ni, p_worse = p_below_upper, 1.0 - p_below_upper
    if not_worse:
        return decided("not worse", p_ni)
    if worse:
        return decided("worse", p_worse)
    return dataclasses.replace(open_answer, p=_agree(p_ni, False, level))


def _unit(margin: Margin) -> str:
    return {"pp": " pp", "%": " % of the reference mean", "abs": ""}[margin.unit]


def verdict_words(answer: object, margin: Margin | None = None) -> str:
    """An answer's verdict in words: "different", "equivalent within ±1 pp", "lower by more
    than 1 pp", "not worse than −1 pp", "worse than −1 pp"; "open" while not settled."""
    verdict = getattr(answer, "verdict", None)
    if verdict is None:
        return "open"
    value = _fmt_margin(margin.value) if margin is not None else None
    if verdict == "equivalent":
        return f"equivalent within ±{value}{_unit(margin)}" if margin else "equivalent"
    if verdict == "beyond margin":
        estimate = getattr(answer, "estimate", None)
        side = "higher" if estimate is not None and estimate > 0 else "lower"
        return (
            f"{side} by more than {value}{_unit(margin)}"
            if margin
            else f"{side} by more than the margin"
        )
    if verdict in ("not worse", "worse"):
        if margin is None:
            return f"{verdict} than the margin allows"
        sign = "−" if margin.tolerated == -1 else "+"
        return f"{verdict} than {sign}{value}{_unit(margin)}"
    return str(verdict)


def _words(question: Question, answer: Answer) -> str:
    p = "" if answer.p is None else f" (p = {answer.p:.3g})"
    return f"{question.label} {verdict_words(answer, question.margin)}{p}"


def _carried(question: Question, old: _AnswerLike, level: float) -> Answer:
    """An earlier settled answer, kept with the level and interval it was settled at (an old
    record without them keeps what it has)."""

    def get(name: str, default: Any = None) -> Any:
        value = getattr(old, name, default)
        return default if value is None else value

    return Answer(
        metric=question.metric,
        policy=question.policy,
        reference=question.reference,
        kind=question.kind,
        settled=True,
        verdict=old.verdict,  # type: ignore[arg-type]
        p=old.p,
        level=float(get("level", level)),
        margin_abs=get("margin_abs", getattr(old, "margin", None)),
        difference=get("difference"),
        p_difference=get("p_difference"),
        carried=True,
        estimate=get("estimate"),
        ci_low=get("ci_low"),
        ci_high=get("ci_high"),
        confidence=get("confidence"),
        scale=get("scale"),
        settled_at=get("settled_at"),
        margin_value=get("margin_value"),
        margin_unit=get("margin_unit"),
        margin_tolerated=get("margin_tolerated"),
    )


def look(
    design: SequentialDesign,
    runs_per_policy: int,
    previous_runs_per_policy: int | Sequence[int] | None,
    data: Mapping[str, Mapping[str, Sequence[float]]],
    questions: Sequence[Question],
    *,
    settled: Iterable[_AnswerLike] = (),
    information: Sequence[float] | None = None,
    final: bool = False,
) -> Look:
    """One interim analysis after ``runs_per_policy`` runs per policy.

    ``previous_runs_per_policy``: the runs per policy of the earlier looks (a list), of the
    previous look alone (the looks before it taken to be after every run from ``min_runs``),
    or None for the first look; the boundaries depend on them. ``data`` maps metric → policy →
    values (NaN and infinite values are left out). The questions form one family: each gets
    the share α / len(questions) of the design's α (Bonferroni) and is tested at the nominal
    level of this look's exact boundary for that share (:meth:`SequentialDesign.level_at`).
    ``settled`` takes the answers of the previous look: a question they settled keeps its
    verdict, level and interval (a rejection is final) and is not tested again. The look says
    to stop when every question is settled or ``runs_per_policy`` reached ``design.max_runs``.
    Before ``design.min_runs`` there is no look (ConfigError).

    ``information``: the information times of the earlier looks and this one (increasing, in
    (0, 1]), when failed runs left the policies with unequal runs (:func:`information`); then
    ``previous_runs_per_policy`` only labels the look. ``final``: this is the design's last
    look (every planned block has run): it spends all the alpha left, even short of the
    maximum information, and the look says to stop.
    """
    if not isinstance(design, SequentialDesign):
        raise ConfigError("design must be a SequentialDesign")
    questions = list(questions)
    if not questions:
        raise ConfigError("a look needs at least one question")
    share = float(design.alpha) / len(questions)
    if information is None:
        looks = design.schedule(runs_per_policy, previous_runs_per_policy)
        times = tuple(design.information(n) for n in looks)
    else:
        times = _check_times(information)
    two_sided, one_sided = _levels(design, times, share, final)
    if not isinstance(data, Mapping):
        raise ConfigError("data must map metric -> policy -> values")
    answers = _answers(questions, data, settled, runs_per_policy, (two_sided, one_sided))
    all_settled = all(answer.settled for answer in answers)
    at_max = runs_per_policy >= design.max_runs
    ended = at_max or final
    previous = previous_runs_per_policy
    if previous is not None and not isinstance(previous, (int, np.integer)):
        previous = list(previous)[-1] if list(previous) else None
    return Look(
        runs_per_policy=int(runs_per_policy),
        previous_runs_per_policy=None if previous is None else int(previous),
        max_runs=design.max_runs,
        information=times[-1],
        alpha_spent=(
            float(design.alpha) if ended else spending(times[-1], design.alpha, design.spending)
        ),
        level=two_sided,
        answers=answers,
        settled=all_settled,
        stop=all_settled or ended,
        reason=_reason(design, runs_per_policy, questions, answers, two_sided, final=final),
        method=design.method,
        alpha_share=share,
        one_sided_level=one_sided,
    )


def _answers(
    questions: list[Question],
    data: Mapping[str, Mapping[str, Sequence[float]]],
    settled: Iterable[_AnswerLike],
    runs_per_policy: int,
    levels: tuple[float, float],
) -> list[Answer]:
    """Each question's answer at this look: carried when ``settled`` settled it, else tested
    at the two-sided and one-sided nominal ``levels``."""
    two_sided, one_sided = levels
    kept: dict[tuple[str, str, str, str], _AnswerLike] = {}
    for earlier in settled:
        if earlier.settled and earlier.verdict is not None:
            kept[(earlier.metric, earlier.policy, earlier.reference, earlier.kind)] = earlier
    answers: list[Answer] = []
    for question in questions:
        if not isinstance(question, Question):
            raise ConfigError(f"questions must be Question objects, got {type(question).__name__}")
        key = (question.metric, question.policy, question.reference, question.kind)
        level = two_sided if question.kind == "difference" else one_sided
        if key in kept:
            answers.append(_carried(question, kept[key], level))
            continue
        answers.append(_asked(question, data, runs_per_policy, two_sided, one_sided))
    return answers


def information(counts: Mapping[str, int], reference: str, max_runs: int) -> float:
    """The information time of a look at these done runs per policy (every policy against
    ``reference``), as a fraction of the maximum's: the smallest over the policies of
    2·n_ref·n / (n_ref + n) / ``max_runs`` (the balanced runs per policy whose difference has
    the same variance), at most 1. Equal to runs per policy / ``max_runs`` when no run failed;
    a failed run lowers it only by the information it took."""
    _int(max_runs, "max_runs", 1)
    n_ref = counts.get(reference, 0)
    balanced = [
        2.0 * n_ref * n / (n_ref + n) if n_ref > 0 and n > 0 else 0.0
        for policy, n in counts.items()
        if policy != reference
    ]
    return min(1.0, min(balanced, default=0.0) / max_runs)


def _levels(
    design: SequentialDesign, times: tuple[float, ...], share: float, final: bool
) -> tuple[float, float]:
    """The two-sided and the one-sided nominal levels of the last look at ``times`` for
    ``share`` of alpha (see :meth:`SequentialDesign.level_at`)."""
    from scipy import stats as sp

    two = _boundaries(times, share, design.spending, final)[-1]
    one = _boundaries(times, 2.0 * share, design.spending, final)[-1]
    return 2.0 * float(sp.norm.sf(two)), float(sp.norm.sf(one))


def _asked(
    question: Question,
    data: Mapping[str, Mapping[str, Sequence[float]]],
    runs_per_policy: int,
    two_sided: float,
    one_sided: float,
) -> Answer:
    """A question not settled before, tested on this look's data."""
    a, missing_a = _values(data, question.metric, question.reference)
    b, missing_b = _values(data, question.metric, question.policy)
    if missing_a or missing_b:
        return Answer(
            metric=question.metric,
            policy=question.policy,
            reference=question.reference,
            kind=question.kind,
            settled=False,
            verdict=None,
            p=None,
            level=two_sided if question.kind == "difference" else one_sided,
            not_computed=missing_a or missing_b,
        )
    answer = _answer(question, a, b, two_sided, one_sided)
    if answer.settled:
        answer = dataclasses.replace(answer, settled_at=int(runs_per_policy))
    return answer


def _reason(
    design: SequentialDesign,
    runs_per_policy: int,
    questions: list[Question],
    answers: list[Answer],
    two_sided: float,
    *,
    final: bool = False,
) -> str:
    """Why the look stops, or why it goes on, in one line."""
    done = [
        _words(q, answer) for q, answer in zip(questions, answers, strict=True) if answer.settled
    ]
    still = [q.label for q, answer in zip(questions, answers, strict=True) if not answer.settled]
    runs = f"{runs_per_policy} run{'s' if runs_per_policy != 1 else ''} per policy"
    if not still:
        return f"every question is settled after {runs}: " + "; ".join(done)
    if runs_per_policy >= design.max_runs:
        reason = (
            f"the maximum of {design.max_runs} runs per policy was reached with "
            + " and ".join(still)
            + " still open"
        )
        if done:
            reason += "; settled: " + "; ".join(done)
        return reason
    if final:
        reason = "every planned block has run with " + " and ".join(still) + " still open"
        return reason + ("; settled: " + "; ".join(done) if done else "")
    return f"after {runs} " + " and ".join(still) + f" still open (tested at level {two_sided:.3g})"


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
        ((a.size - 1) * _sd(a) ** 2 + (b.size - 1) * _sd(b) ** 2) / (a.size + b.size - 2)
    )
    change = 100.0 * (mean_b / mean_a - 1.0)
    cv = 100.0 * pooled / mean_a
    if change == 0.0 or cv == 0.0 or not math.isfinite(change):
        return None
    try:
        return stats.runs_needed(cv, change, alpha=alpha, power=power)
    except ConfigError:
        return None

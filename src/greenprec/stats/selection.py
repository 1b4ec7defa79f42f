"""Selecting the configuration with the least energy to a target: sequential elimination.

``greenprec recommend`` runs one block (one run of every configuration still in play) at a
time and calls :func:`select_look` after each block. A look compares every pair of surviving
configurations one-sided on the log of energy to the target (Welch, as greenprec's primary
energy test) at the nominal one-sided level of the look's Lan–DeMets boundary
(:class:`greenprec.sequential.SequentialDesign`) for the share α / (2(K − 1)) per ordered
pair, K the number of configurations at the start: each pair two-sided at α / (K − 1),
Bonferroni over the K − 1 rivals of a best configuration (Paulson 1964), the factor 2 so that
of two equal best configurations neither is dropped with chance more than α:

- a configuration shown worse than another survivor is *dropped*, for good;
- the experiment stops when one remains, or when every survivor is shown within the
  indifference zone δ of the leader (the survivor with the least geometric-mean energy) in
  both directions, or at the design's maximum runs; the leader is then the recommendation.

The guarantee (docs/stats.md, "Selecting a configuration"): when the best configuration's
energy is lower than every other's by at least δ (on the log scale), the chance of dropping it
or of claiming a wrong configuration within δ of it, at any look, is ≤ α; so the probability
of correct selection is ≥ 1 − α less the chance of reaching the maximum runs undecided with
the wrong leader. Otherwise, the chance of recommending, before the maximum, a configuration
worse than the best by δ or more is ≤ α. Pure functions: data in, frozen dataclasses out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from greenprec.errors import ConfigError
from greenprec.stats._common import _Result, _sd

if TYPE_CHECKING:
    # Only for annotations: greenprec.sequential imports greenprec.stats, so importing it here
    # at run time would be an import circle; the design is used through its methods.
    from greenprec.sequential import SequentialDesign

__all__ = [
    "ConfigurationStatus",
    "PairComparison",
    "SelectionLook",
    "Status",
    "parse_indifference",
    "select_look",
]

Status = Literal[
    "leading",
    "in_play",
    "recommended",
    "within_indifference",
    "not_separated",
    "dropped",
    "never_reached",
    "too_few_reached",
]
"""``leading`` / ``in_play``: the experiment goes on (the leader, the others still compared);
at a stop the leader is ``recommended`` and the others ``within_indifference`` or, at the
maximum runs without a decision, ``not_separated``. ``dropped``: shown worse than a survivor;
``never_reached``: no run reached the target; ``too_few_reached``: fewer than
``min_reached_share`` of its runs did (final once more runs could not lift the share)."""

Outcome = Literal[
    "continue", "too_early", "one_remains", "within_indifference", "max_runs", "none_eligible"
]

DEFAULT_MIN_REACHED_SHARE = 0.8
METHOD = (
    "sequential elimination (Paulson 1964), one-sided Welch tests on log energy to the target "
    "between every pair of survivors at the nominal level of Lan-DeMets alpha spending "
    "(1983), each pair two-sided at alpha/(K-1) (Bonferroni over the K-1 rivals of the best)"
)


@dataclass(frozen=True)
class PairComparison(_Result):
    """``worse`` against ``better`` on the log of energy to the target: the ratio of their
    geometric means (worse / better) and its interval at one-sided ``level`` each side
    (confidence 1 − 2·level); the comparison that dropped ``worse``."""

    worse: str
    better: str
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    level: float
    look: int
    runs: int


@dataclass(frozen=True)
class ConfigurationStatus(_Result):
    """One configuration at a look. ``ratio_to_leader``: its geometric-mean energy to the target
    over the leader's, with the interval at the look's one-sided level each side; None for the
    leader itself, for a configuration not compared (dropped: see ``dropped_by``, the comparison
    that dropped it, at its level; too few runs reached) or when it cannot be computed (fewer
    than 2 runs reached, or no variance), the reason in ``note``. ``final``: the status stays at
    later looks (dropped, or a reach share that more runs could not lift)."""

    name: str
    status: Status
    runs: int
    reached: int
    mean_energy_j: float | None
    geometric_mean_energy_j: float | None
    ratio_to_leader: float | None = None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    dropped_by: PairComparison | None = None
    dropped_at_look: int | None = None
    note: str | None = None
    final: bool = False


@dataclass(frozen=True)
class SelectionLook(_Result):
    """One look: every configuration's status, the leader, and whether to stop and why.

    ``look`` counts the looks from 1; ``schedule`` is the runs per configuration of every look
    so far (pass this look as ``earlier`` to the next one). ``level`` is the one-sided nominal
    level of each pair test at this look (None before ``min_runs``); ``recommended`` the
    leader at a stop (None while going on or when nothing is eligible), ``within`` the
    configurations shown within ``indifference`` of it."""

    look: int
    runs: int
    schedule: tuple[int, ...]
    alpha: float
    indifference: float
    min_reached_share: float
    level: float | None
    configurations: tuple[ConfigurationStatus, ...]
    leader: str | None
    stop: bool
    outcome: Outcome
    reason: str
    recommended: str | None
    within: tuple[str, ...] = ()
    method: str = METHOD
    notes: tuple[str, ...] = field(default_factory=tuple)

    def status(self, name: str) -> ConfigurationStatus:
        """The status of configuration ``name``."""
        for configuration in self.configurations:
            if configuration.name == name:
                return configuration
        raise ConfigError(f"no configuration named {name!r:.60} at this look")

    @property
    def sentence(self) -> str:
        """The answer in one sentence (without the runs that produced it)."""
        zone = f"{100.0 * math.expm1(self.indifference):.3g} %"
        if self.outcome in ("continue", "too_early"):
            return f"No answer yet: {self.reason}."
        if self.recommended is None:
            return f"No recommendation: {self.reason}."
        if self.within:
            names = " and ".join([self.recommended, *self.within])
            return f"No single best: {names} are within {zone} of each other."
        if self.outcome == "max_runs":
            return f"{self.recommended} leads, but is not shown best: {self.reason}."
        return f"Use {self.recommended}: {self.reason}."


def parse_indifference(text: str | float) -> float:
    """δ on the log scale from ``"3%"`` (→ ln 1.03) or a fraction ``0.03`` (the same)."""
    if isinstance(text, str):
        raw = text.strip()
        try:
            value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
        except ValueError as error:
            raise ConfigError(f"indifference must look like '3%', got {text!r:.40}") from error
    elif isinstance(text, bool) or not isinstance(text, (int, float)):
        raise ConfigError(f"indifference must be a number or like '3%', got {text!r:.40}")
    else:
        value = float(text)
    if not math.isfinite(value) or value <= 0.0:
        raise ConfigError(f"indifference must be positive, got {text!r:.40}")
    return math.log1p(value)


# -- input checks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    name: str
    runs: int
    log_energy: np.ndarray  # logs of the runs that reached the target


def _configurations(data: Mapping[str, Sequence[float | None]]) -> list[_Config]:
    if not isinstance(data, Mapping) or len(data) < 2:
        raise ConfigError("selection needs at least two configurations (name -> energies)")
    out = []
    for name, runs in data.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a configuration's name must be a non-empty string: {name!r:.60}")
        reached = [value for value in runs if value is not None]
        try:
            energy_j = np.asarray(reached, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the energies of {name} must be numbers or None") from error
        if not np.isfinite(energy_j).all() or (energy_j <= 0.0).any():
            # A run that did not reach the target is None; a zero, negative or NaN energy is a
            # broken measurement, which must not be taken for "very efficient".
            raise ConfigError(
                f"the energies to the target of {name} must be positive finite joules "
                "(None for a run that never reached the target)"
            )
        out.append(_Config(name, len(runs), np.log(energy_j)))
    return out


def _check_args(alpha: float, indifference: float, min_reached_share: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 0.5:
        raise ConfigError(f"alpha must be a number between 0 and 0.5, got {alpha!r:.40}")
    if (
        isinstance(indifference, bool)
        or not isinstance(indifference, (int, float))
        or not math.isfinite(indifference)
        or indifference <= 0.0
    ):
        raise ConfigError(
            f"indifference must be a positive log ratio (ln 1.03 for 3 %), got {indifference!r:.40}"
        )
    if (
        isinstance(min_reached_share, bool)
        or not isinstance(min_reached_share, (int, float))
        or not 0.0 < min_reached_share <= 1.0
    ):
        raise ConfigError(f"min_reached_share must be in (0, 1], got {min_reached_share!r:.40}")


# -- the comparisons -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """mean log(i) − mean log(j), its Welch SE and the one-sided critical t, or None."""

    diff: float
    half: float  # critical t × SE; NaN when the test cannot be made

    @property
    def usable(self) -> bool:
        return math.isfinite(self.half)


def _pair(x: np.ndarray, y: np.ndarray, level: float) -> _Pair:
    from scipy import stats as sp

    if x.size < 2 or y.size < 2:
        return _Pair(math.nan, math.nan)
    ux, uy = _sd(x) ** 2 / x.size, _sd(y) ** 2 / y.size
    diff = float(x.mean() - y.mean())
    if ux + uy == 0.0:
        return _Pair(diff, math.nan)
    r = ux / (ux + uy)
    df = 1.0 / (r * r / (x.size - 1) + (1.0 - r) * (1.0 - r) / (y.size - 1))
    return _Pair(diff, float(sp.t.isf(level, df)) * math.sqrt(ux + uy))


def _exp(x: float) -> float:
    """exp, infinite beyond its range: an early look's interval on variable data can be wider
    than a float holds, which is an unbounded interval, not an error."""
    return math.exp(x) if x < 709.0 else math.inf


def _share_final(reached: int, runs: int, max_runs: int, share: float) -> bool:
    """Whether even every remaining run reaching the target could not lift the share."""
    return reached + max(0, max_runs - runs) < share * max(max_runs, runs) - 1e-12


def _earlier_drops(earlier: SelectionLook | None) -> dict[str, ConfigurationStatus]:
    if earlier is None:
        return {}
    return {
        c.name: c
        for c in earlier.configurations
        if c.status == "dropped" or (c.status in ("never_reached", "too_few_reached") and c.final)
    }


def _reach(config: _Config, max_runs: int, share: float) -> tuple[Status | None, str, bool]:
    """(``never_reached`` / ``too_few_reached`` / None when the share is met, the reason, and
    whether it is final: more runs could not lift the share)."""
    reached = config.log_energy.size
    if reached >= 1 and reached >= share * config.runs - 1e-12:
        return None, "", False
    status: Status = "never_reached" if reached == 0 else "too_few_reached"
    final = config.runs >= max_runs or _share_final(reached, config.runs, max_runs, share)
    return status, f"reached the target in {reached} of {config.runs} runs", final


def _drops(
    eligible: list[_Config], level: float, look: int, runs: int
) -> dict[str, PairComparison]:
    """Every eligible configuration shown worse than another eligible one, with the comparison
    that shows it most clearly (the largest lower bound of the log ratio)."""
    out: dict[str, PairComparison] = {}
    for worse in eligible:
        best_bound, best = 0.0, None
        for better in eligible:
            if better is worse:
                continue
            pair = _pair(worse.log_energy, better.log_energy, level)
            if pair.usable and pair.diff - pair.half > best_bound:
                best_bound, best = pair.diff - pair.half, (better, pair)
        if best is not None:
            better, pair = best
            out[worse.name] = PairComparison(
                worse=worse.name,
                better=better.name,
                ratio=_exp(pair.diff),
                ratio_ci_low=_exp(pair.diff - pair.half),
                ratio_ci_high=_exp(pair.diff + pair.half),
                level=level,
                look=look,
                runs=runs,
            )
    return out


def _schedule(earlier: SelectionLook | None, runs: int) -> tuple[int, ...]:
    before = () if earlier is None else earlier.schedule
    if before and runs <= before[-1]:
        raise ConfigError(
            f"a look needs more runs than the previous one ({before[-1]} per configuration), "
            f"got {runs}"
        )
    return (*before, runs)


def _level(design: SequentialDesign, schedule: tuple[int, ...], share: float) -> float | None:
    """The one-sided nominal level of each pair test at this look (None before min_runs)."""
    looks = [n for n in schedule if n >= design.min_runs]
    if not looks:
        return None
    if looks[-1] > design.max_runs:
        raise ConfigError(
            f"{looks[-1]} runs per configuration is beyond the design's maximum of "
            f"{design.max_runs}"
        )
    return design.level_at(looks[-1], looks[:-1] or None, alpha=share, sides=1)


@dataclass(frozen=True)
class _Against:
    ratio: float | None
    low: float | None
    high: float | None
    within: bool
    note: str | None


def _against_leader(
    config: _Config, leader: _Config, level: float | None, delta: float
) -> _Against:
    """Ratio to the leader, its interval at ``level`` each side, and whether it is shown within
    ±δ of the leader (both one-sided tests at ``level``: the TOST of Schuirmann 1987)."""
    if config.log_energy.size == 0 or leader.log_energy.size == 0:
        return _Against(None, None, None, False, "no run reached the target")
    ratio = math.exp(float(config.log_energy.mean() - leader.log_energy.mean()))
    if level is None:
        return _Against(ratio, None, None, False, "no test before min_runs")
    pair = _pair(config.log_energy, leader.log_energy, level)
    if not pair.usable:
        why = "fewer than 2 runs reached the target" if math.isnan(pair.diff) else "no variance"
        return _Against(ratio, None, None, False, why)
    low, high = pair.diff - pair.half, pair.diff + pair.half
    return _Against(ratio, _exp(low), _exp(high), -delta < low and high < delta, None)


def select_look(
    energy_j: Mapping[str, Sequence[float | None]],
    design: SequentialDesign,
    *,
    indifference: float,
    earlier: SelectionLook | None = None,
    min_reached_share: float = DEFAULT_MIN_REACHED_SHARE,
    alpha: float | None = None,
) -> SelectionLook:
    """One look of the selection: drop what is shown worse, and say whether to stop.

    ``energy_j``: per configuration (every one of the experiment, dropped ones included: their
    number K sets each ordered pair's share α / (2(K − 1))), the energy to the target of each run in
    joules, None for a run that never reached it. ``design``: when to look and how to spend α
    (``alpha`` overrides its α); ``indifference``: δ as a log ratio (:func:`parse_indifference`:
    ``"3%"`` → ln 1.03); ``earlier``: the previous look, whose drops stay; ``min_reached_share``:
    the share of its runs a configuration must reach the target in to be recommended.
    """
    alpha = float(design.alpha if alpha is None else alpha)
    _check_args(alpha, indifference, min_reached_share)
    configs = _configurations(energy_j)
    carried = _earlier_drops(earlier)
    unknown = sorted(set(carried) - {c.name for c in configs})
    if unknown:
        raise ConfigError(f"the earlier look has configurations not in the data: {unknown}")
    look = 1 if earlier is None else earlier.look + 1
    active = [c for c in configs if c.name not in carried]
    runs = max((c.runs for c in active), default=max(c.runs for c in configs))
    schedule = _schedule(earlier, runs)
    # Per ordered pair α / (2(K − 1)): a best configuration has K − 1 rivals (Paulson's union
    # bound), and each of two equal best ones can be dropped by the other (the factor 2).
    level = _level(design, schedule, alpha / (2 * (len(configs) - 1)))
    statuses: dict[str, ConfigurationStatus] = dict(carried)
    eligible, waiting = [], []
    for config in active:
        status, note, final = _reach(config, design.max_runs, min_reached_share)
        if status is None:
            eligible.append(config)
            continue
        if not final:
            waiting.append(config.name)
        statuses[config.name] = dataclasses.replace(_plain(config, status, note), final=final)
    drops = {} if level is None else _drops(eligible, level, look, runs)
    for name, comparison in drops.items():
        config = next(c for c in eligible if c.name == name)
        statuses[name] = dataclasses.replace(
            _plain(config, "dropped", None),
            dropped_by=comparison,
            dropped_at_look=look,
            final=True,
        )
    survivors = sorted(
        (c for c in eligible if c.name not in drops),
        key=lambda c: (float(c.log_energy.mean()), c.name),
    )
    return _decide(
        _Inputs(look, runs, schedule, alpha, indifference, min_reached_share, level, design),
        configs,
        survivors,
        statuses,
        waiting,
    )


@dataclass(frozen=True)
class _Inputs:
    look: int
    runs: int
    schedule: tuple[int, ...]
    alpha: float
    delta: float
    share: float
    level: float | None
    design: SequentialDesign


def _plain(config: _Config, status: Status, note: str | None) -> ConfigurationStatus:
    reached = config.log_energy.size
    return ConfigurationStatus(
        name=config.name,
        status=status,
        runs=config.runs,
        reached=reached,
        mean_energy_j=float(np.exp(config.log_energy).mean()) if reached else None,
        geometric_mean_energy_j=float(np.exp(config.log_energy.mean())) if reached else None,
        note=note,
    )


def _outcome(
    inputs: _Inputs, survivors: list[_Config], all_within: bool, waiting: list[str]
) -> tuple[Outcome, str]:
    """Stop or go on, and why (``waiting``: configurations whose reach share may yet rise)."""
    at_max = inputs.runs >= inputs.design.max_runs
    if not survivors and (at_max or not waiting):
        return "none_eligible", "no configuration reached the target in enough of its runs"
    if inputs.level is None and not at_max:
        return "too_early", f"no comparison before {inputs.design.min_runs} runs"
    if survivors and not waiting and len(survivors) == 1:
        return "one_remains", "every other configuration was shown worse or fell short"
    if survivors and not waiting and all_within:
        zone = f"{100.0 * math.expm1(inputs.delta):.3g} %"
        return "within_indifference", f"every survivor is shown within {zone} of the leader"
    if at_max:
        return "max_runs", (
            f"the maximum of {inputs.design.max_runs} runs was reached without separating "
            "the survivors"
        )
    return "continue", "the survivors are not yet separated"


def _decide(
    inputs: _Inputs,
    configs: list[_Config],
    survivors: list[_Config],
    statuses: dict[str, ConfigurationStatus],
    waiting: list[str],
) -> SelectionLook:
    leader = survivors[0] if survivors else None
    against = {
        c.name: _against_leader(c, leader, inputs.level, inputs.delta)
        for c in survivors[1:]
        if leader is not None
    }
    outcome, reason = _outcome(inputs, survivors, all(a.within for a in against.values()), waiting)
    stop = outcome not in ("continue", "too_early")
    for config in survivors:
        a = against.get(config.name)
        if config is leader:
            status: Status = "recommended" if stop else "leading"
        elif not stop:
            status = "in_play"
        else:
            status = "within_indifference" if a is not None and a.within else "not_separated"
        statuses[config.name] = dataclasses.replace(
            _plain(config, status, None if a is None else a.note),
            ratio_to_leader=None if a is None else a.ratio,
            ratio_ci_low=None if a is None else a.low,
            ratio_ci_high=None if a is None else a.high,
        )
    if outcome == "one_remains" and leader is not None:
        reason = _one_remains_reason(leader.name, statuses)
    within = tuple(
        c.name for c in survivors[1:] if statuses[c.name].status == "within_indifference"
    )
    return SelectionLook(
        look=inputs.look,
        runs=inputs.runs,
        schedule=inputs.schedule,
        alpha=inputs.alpha,
        indifference=inputs.delta,
        min_reached_share=inputs.share,
        level=inputs.level,
        configurations=tuple(statuses[c.name] for c in configs),
        leader=None if leader is None else leader.name,
        stop=stop,
        outcome=outcome,
        reason=reason,
        recommended=leader.name if stop and leader is not None else None,
        within=within,
    )


def _one_remains_reason(leader: str, statuses: dict[str, ConfigurationStatus]) -> str:
    """The saving over the rival the leader beat most narrowly (the comparison with the lowest
    bound: the most cautious claim), in words, or the plain reason."""
    beaten = [
        s.dropped_by
        for s in statuses.values()
        if s.dropped_by is not None and s.dropped_by.better == leader
    ]
    if not beaten:
        return "every other configuration was shown worse or fell short"
    pair = min(beaten, key=lambda p: p.ratio_ci_low)
    # Early looks test at tiny levels: enough decimals that 99.998 % does not read as 100 %.
    decimals = max(1, 1 - math.floor(math.log10(200.0 * pair.level)))
    confidence = f"{100.0 * (1.0 - 2.0 * pair.level):.{decimals}f} %"
    saving = 100.0 * (1.0 - 1.0 / pair.ratio)
    low, high = (100.0 * (1.0 - 1.0 / r) for r in (pair.ratio_ci_low, pair.ratio_ci_high))
    return (
        f"{saving:.3g} % less energy to the target than {pair.worse} "
        f"({confidence} CI {low:.3g} to {high:.3g} %, look {pair.look})"
    )

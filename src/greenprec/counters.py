"""Energy counters that go down: a wrap-around to correct, or a glitch to refuse.

Hardware energy counters (RAPL's ``energy_uj``, the registers EnergiBridge prints) are 32-bit
registers of energy units: they wrap to 0 every ``2**32`` units. A value below the previous one
is therefore usually a wrap, and the energy of that step is ``range - previous + value``. It is
*only* a wrap when that step is plausible: a counter that was reset, a register read as garbage
or a wrong range given by the user all produce drops too, and taking those as wraps invents
energy (262,020 J in 1.5 s from a laptop). One rule serves every reader of counters
(the ``rapl`` meter, the EnergiBridge reader), so the same drop gets the same answer:

- **The range.** When it is known (sysfs's ``max_energy_range_uj``, or given by the user) it is
  used. Otherwise it is inferred: EnergiBridge multiplies the 32-bit register by a power-of-two
  energy unit (``2**-14`` J on Intel, ``2**-16`` J on AMD), so the range is a power of two in
  joules, and it must exceed every value seen before the drop: the smallest such power of two.
- **Plausible beside the neighbours.** The step's mean power must be close to the power of the
  steps around it (their median): at most :data:`_PLAUSIBLE_RATIO` times it plus
  :data:`PLAUSIBLE_SLACK_W`. A wrong range is off by at least half a range (32,768 J for the
  smallest real one) in one sampling interval, megawatts for any real interval, so the
  margin can be generous to real changes of load and still never accept a wrong range.
- Without neighbours (the first step) the step is judged against :data:`MAX_DOMAIN_POWER_W`.
- With a *known* range (sysfs's ``max_energy_range_uj``, or one the user gave) the only doubt
  is a reset or a misread, not the range: a step is then plausible up to the larger of the
  neighbour rule and :data:`MAX_DOMAIN_POWER_W`. A wrap that falls in the very step where a
  load starts (10 W idle, then 200 W) is real and must not fail a five-hour run; a wrong range
  or a reset still implies kilowatts to megawatts and is refused.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_DOMAIN_POWER_W",
    "MAX_ENERGY_J",
    "MAX_POWER_W",
    "PLAUSIBLE_SLACK_W",
    "Drop",
    "implausible",
    "judge_drop",
    "plausible_limit_w",
    "reference_power_w",
]

_PLAUSIBLE_RATIO = 5.0
"""A wrap step may draw at most this many times the neighbouring steps' median power ..."""
PLAUSIBLE_SLACK_W = 20.0
"""... plus this many watts (so a counter idling near 0 W may still wake up)."""
MAX_DOMAIN_POWER_W = 2000.0
"""More than any one CPU package, DRAM or GPU counter draws: the judge when no neighbour exists."""
MAX_ENERGY_J = 1e12
"""One terajoule is 278 MWh, a month of a large GPU cluster: no run, window or counter uses that
much, so a larger value is a unit or meter error (1e308 J once made a report say "100% less")."""
MAX_POWER_W = 1e9
"""A gigawatt, a power plant's output: no machine a meter reads draws that much."""


def implausible(value: float, unit: str) -> str | None:
    """Why an energy (``unit="J"``) or power (``"W"``) a meter read cannot be real, or None when
    it can: not finite, negative, or beyond the limits the report holds a run's figures to
    (:data:`MAX_ENERGY_J`, :data:`MAX_POWER_W`), so ``measure()`` never gives a number the
    report would refuse."""
    limit = MAX_ENERGY_J if unit == "J" else MAX_POWER_W
    if not math.isfinite(value):
        return "is not finite"
    if value < 0:
        return "is negative"
    if value > limit:
        return f"is implausible (more than {limit:g} {unit})"
    return None


@dataclass(frozen=True)
class Drop:
    """What a decrease of a counter means."""

    step_j: float
    """The energy of the step when it is a wrap (``range_j - previous + value``)."""
    range_j: float
    """The wrap range used: the given one, or the inferred power of two."""
    inferred: bool
    """True when ``range_j`` was inferred rather than given."""
    implied_power_w: float
    """The step's mean power if it is a wrap (``inf`` when the step took no time)."""
    limit_w: float
    """The most a plausible step could draw here."""

    @property
    def plausible(self) -> bool:
        return self.implied_power_w <= self.limit_w


def _inferred_range_j(max_seen_j: float) -> float:
    """The smallest power of two in joules above every value seen (``max_seen_j``)."""
    if not math.isfinite(max_seen_j) or max_seen_j < 0:
        raise ValueError(f"max_seen_j must be a finite non-negative number, got {max_seen_j!r}")
    if max_seen_j < 1:
        return 1.0
    exponent = math.frexp(max_seen_j)[1]  # max_seen_j < 2**exponent
    return math.ldexp(1.0, exponent)


def reference_power_w(neighbour_powers_w: Sequence[float]) -> float | None:
    """The median of the neighbouring steps' finite powers (None when there are none)."""
    finite = [p for p in neighbour_powers_w if math.isfinite(p) and p >= 0]
    return statistics.median(finite) if finite else None


def plausible_limit_w(reference_w: float | None) -> float:
    """The largest mean power a step may have beside neighbours drawing ``reference_w``."""
    if reference_w is None:
        return MAX_DOMAIN_POWER_W
    return _PLAUSIBLE_RATIO * reference_w + PLAUSIBLE_SLACK_W


def judge_drop(
    previous_j: float,
    value_j: float,
    dt_s: float,
    *,
    max_seen_j: float,
    range_j: float | None = None,
    neighbour_powers_w: Sequence[float] = (),
) -> Drop:
    """Judge a counter that read ``previous_j`` then ``value_j`` (lower) ``dt_s`` later.

    ``max_seen_j`` is the largest value the counter showed before the drop; ``range_j`` the
    known wrap range, if any; ``neighbour_powers_w`` the mean powers of the steps around this
    one (before it, and after it when they are known).
    """
    inferred = range_j is None
    used = _inferred_range_j(max(max_seen_j, previous_j)) if range_j is None else range_j
    step_j = used - previous_j + value_j
    # A range at or below a value already seen cannot be this counter's: never plausible.
    power_w = step_j / dt_s if dt_s > 0 and used > previous_j else math.inf
    limit_w = plausible_limit_w(reference_power_w(neighbour_powers_w))
    if not inferred:
        limit_w = max(limit_w, MAX_DOMAIN_POWER_W)
    return Drop(step_j, used, inferred, power_w, limit_w)

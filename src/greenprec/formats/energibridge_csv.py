"""Reading EnergiBridge CSV files: one reader for the ``energibridge`` meter and for imports.

EnergiBridge (https://github.com/tdurieux/EnergiBridge) samples a machine every ``-i``
milliseconds and writes one CSV row per sample: ``Delta`` (ms since the previous sample, 0 on
the first row), ``Time`` (Unix epoch ms), then its other columns sorted by name. Which columns
appear depends on the machine:

========================  ==============================  =================================
column                    what                            domain
========================  ==============================  =================================
``PACKAGE_ENERGY (J)``    Intel package counter           ``energibridge/package``
``DRAM_ENERGY (J)``       Intel DRAM counter              ``energibridge/dram``
``PP0_ENERGY (J)``        Intel cores (inside package)    ``energibridge/pp0``
``PP1_ENERGY (J)``        Intel iGPU (inside package)     ``energibridge/pp1``
``CPU_ENERGY (J)``        AMD package counter             ``energibridge/cpu``
``CORE<n>_ENERGY (J)``    AMD core counter (inside it)    ``energibridge/core-<n>``
``SYSTEM_POWER (Watts)``  macOS whole-system power        ``energibridge/system``
``CPU_POWER (Watts)``     macOS (Intel) CPU power         ``energibridge/cpu-power``
``GPU<i>_POWER (mWatts)`` NVIDIA GPU power, milliwatts    ``energibridge/gpu-<i>``
``GPU_POWER (Watts)``     macOS GPU power                 ``energibridge/gpu``
========================  ==============================  =================================

Frequency, temperature, usage and memory columns are not energy and are ignored (but still
checked to be numbers). Older EnergiBridge releases spelled the package column
``PACAKGE_ENERGY (J)`` and the NVIDIA one ``GPU<i>_POWER`` (milliwatts, no unit): both are read.
Any other ``..._ENERGY (J)`` or ``(Watts)``/``(mWatts)`` column is reported, never counted.
EnergiBridge v0.0.1-v0.0.4 labelled its counters ``PACAKGE_ENERGY (W)``, ``DRAM_ENERGY (W)``,
``CORE<n>_ENERGY (W)``, ``PACAKGE<n>_ENERGY (W)``: cumulative joules under a wrong unit (see
``_RULES``), read as counters with a note (:attr:`EnergiBridgeRecording.notes`).

Damage that costs a row costs that row only, with a warning: a last row cut short (EnergiBridge
stopped mid-write) is dropped, console text (lines with no number that are no header) is
skipped, empty cells outside the counted columns are ignored. A short row before the last, an
empty counted cell, a second header are refused with the line; a row wider than the header (a
sensor appeared mid-run) raises :class:`NewColumnsError`, and ``before_line`` reads the rows
before it.

A ``Time`` that goes back (the computer's clock set back while EnergiBridge ran) is kept with
a warning naming the line: energy never depends on ``Time``, and the timeline goes on by
``Delta`` from that row (see ``EnergiBridgeStream._placed``), so the power trace neither runs
backwards nor collapses onto one instant. A file that is not recognisably EnergiBridge's (no
``Delta`` and ``Time`` in its header) is refused without quoting any of it; only a regular file
is read, one line of at most :data:`_MAX_LINE_CHARS` characters at a time.

A whole file is parsed in batches of rows with pandas and numpy (:meth:`EnergiBridgeStream.
feed_batch`), with every value as ``float()`` gives it and the same arithmetic in the same
order as line by line: the numbers are those of :meth:`EnergiBridgeStream.feed`, which reads
any batch holding a line that is not a plain row of numbers.

The file may be separated by ``,`` (EnergiBridge's own) or ``;``/tab (a spreadsheet's re-export;
detected from the header, or given), start with a UTF-8 byte-order mark, or be UTF-16 (what
PowerShell's ``>`` writes). A column name given twice is refused: which one to count is unknown.

Energy of a file, EnergiBridge's own ``--summary`` convention:

- a counter column: last value minus first, corrected for wrap-around. EnergiBridge reads the
  raw 32-bit RAPL registers and does not correct wraps itself (its summary can go negative).
  A value below the previous one is judged by :func:`greenprec.counters.judge_drop`, the rule
  the ``rapl`` meter uses too: the wrap range is the one given, else the smallest power of two
  in joules above every value seen (EnergiBridge multiplies the register by a power-of-two
  unit); the step ``range - previous + new`` is taken when its power is plausible beside the
  neighbouring steps (up to :data:`_NEIGHBOUR_STEPS` before and after the drop), otherwise the
  drop is a *glitch*: that step adds 0 J and a warning names the file, line and column.
  Intel counters wrap at :data:`INTEL_RAPL_RANGE_J`; on AMD it depends on the release:
  EnergiBridge releases that mask the register to 32 bits wrap at :data:`AMD_RAPL_RANGE_J`,
  others write the whole MSR (``CPU_ENERGY (J)`` values of megajoules), so no single AMD range
  is right: leave it to the inference.
- a power column: ``sum(power * Delta / 1000)``. A row's power was sampled at its ``Time`` and
  holds for the ``Delta`` ms that follow (EnergiBridge stamps a row with the time of the sample
  and the time elapsed until it was printed), so the first row, with ``Delta`` 0, adds nothing.

The total (:attr:`EnergiBridgeRecording.energy_j`) counts each joule once: the system power
when there is one (it contains everything else), otherwise the CPU (package counter, else the
AMD CPU counter, else the CPU power) plus DRAM plus the GPUs. ``pp0``, ``pp1`` and the cores
are inside the package: reported, never added; their wraps and glitches are reported as such,
never as corrections of the total.

A counted domain whose mean power is beyond what one package, DRAM or GPU can draw
(:data:`greenprec.counters.MAX_DOMAIN_POWER_W`) is warned about, never rescaled: EnergiBridge
before v0.0.7 wrote raw register counts instead of joules on Intel.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import math
import os
import re
import stat
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from greenprec.counters import (
    MAX_DOMAIN_POWER_W,
    Drop,
    judge_drop,
    plausible_limit_w,
    reference_power_w,
)
from greenprec.errors import ConfigError

__all__ = [
    "AMD_RAPL_RANGE_J",
    "DOMAIN_PREFIX",
    "INTEL_RAPL_RANGE_J",
    "EnergiBridgeRecording",
    "EnergiBridgeStream",
    "NewColumnsError",
    "check_counter_range",
    "parse_counter_ranges",
    "read_energibridge_csv",
]

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

INTEL_RAPL_RANGE_J = 262144.0
"""Wrap range of Intel's 32-bit RAPL counters as EnergiBridge writes them (2**32 units of
2**-14 J)."""
AMD_RAPL_RANGE_J = 65536.0
"""Wrap range of AMD's counters in EnergiBridge releases that mask the register to 32 bits
(2**32 units of 2**-16 J). Other releases write the whole MSR (values of megajoules): this range
is wrong for their files, which the default inference handles."""

_MAX_DELTA_MS = 3_600_000.0
"""A ``Delta`` above an hour is no sampling interval: the file is damaged or not EnergiBridge's."""

_MAX_TIME_MS = 7_258_118_400_000.0
"""2200-01-01 UTC in epoch ms. A later ``Time`` is no date EnergiBridge wrote (µs or ns, or a
damaged file), and one beyond year 9999 would not even convert to a datetime."""

_NEIGHBOUR_STEPS = 4
"""Steps on each side of a counter drop whose power judges it (see counters.judge_drop)."""

_GLITCH_LINES = 5
"""Glitches named one by one per column; further ones are counted in one more line."""

_RAW_COUNT_UNIT_J = 2.0**-14
"""Intel's usual RAPL energy unit: what raw counts must be multiplied by to be joules."""

DOMAIN_PREFIX = "energibridge/"
_ALL_COUNTERS = "*"
"""Key of a ``counter_range_j`` mapping that applies to every counter not named otherwise."""

_SEPARATORS = (",", ";", "\t")
_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_DOMAIN_KEY = re.compile(r"[a-z0-9][a-z0-9-]*")
_LEGACY_LABEL = re.compile(r".+_ENERGY \(W\)")
# What a number cut short while being written looks like ("", "-", "1.5e", "2E+"): a prefix of
# a number that is no number itself.
_CUT_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d*)?(?:[eE][-+]?)?\s*")
_VECTOR_MIN = 64
"""Below this many new values a plain loop is quicker than numpy (the meter's few rows)."""
_BATCH_ROWS = 20_000
"""Rows of a whole file parsed at once by :meth:`EnergiBridgeStream.feed_batch`."""
_MAX_LINE_CHARS = 1 << 20
"""A line longer than this is no EnergiBridge row (a few thousand characters at most): the
file is refused before it is read whole (``/proc/kcore``, a binary file with no line end)."""
_QUOTE_CHARS = 80
"""At most this many characters of a skipped line are quoted in a warning."""
_MAX_PREAMBLE = 50
"""Lines of text before the header that are skipped (more: the file has no header)."""


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class NewColumnsError(ConfigError):
    """A row wider than the header: a sensor appeared mid-run (EnergiBridge adds its value to
    the rows, sorted among the others, but never rewrites the header).

    ``lineno`` is the first such line; the ``rows_before`` rows before it are intact and can be
    read alone with ``before_line=lineno``.
    """

    def __init__(
        self, message: str, *, source: str, lineno: int, rows_before: int, param: str | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.source = source
        self.lineno = lineno
        self.rows_before = rows_before


@dataclass(frozen=True)
class _Damage:
    """A row damaged the way a row cut short while being written is: only the file's last."""

    lineno: int
    error: ConfigError  # raised when another row follows it
    detail: str  # what was cut, for the warning when it is the last


@dataclass(frozen=True)
class _Column:
    """How one energy or power column becomes a domain."""

    name: str
    index: int
    domain: str
    kind: str  # "counter" (cumulative joules) or "power" (instantaneous watts)
    role: str  # "system", "cpu", "dram", "gpu" or "part" (inside another, never counted)
    scale: float = 1.0  # to joules or watts: 1e-3 for milliwatts
    priority: int = 0  # among "cpu" columns, the lowest is counted


# (pattern, domain template, kind, role, scale, priority); first match wins.
_RULES: tuple[tuple[re.Pattern[str], str, str, str, float, int], ...] = (
    # EnergiBridge v0.0.1-v0.0.4 (2023) labelled its energy counters "(W)". They held cumulative
    # joules, never power: in tdurieux/EnergiBridge's early src/cpu/amd.rs,
    #     format!("CORE{}_ENERGY (W)", core)     -> core_energy_raw as f64 * energy_unit_d
    #     format!("PACAKGE{}_ENERGY (W)", core)  -> package_raw as f64 * energy_unit_d
    # where *_raw is the energy-status MSR (a running count of energy units) and energy_unit_d
    # is 0.5**ESU from the power-unit MSR: a register count times joules per count. The Intel
    # code that followed (src/cpu/intel.rs, commit 1ef9c8d) writes the same product
    # (pkg as f64 * energy_unit_d) as "PACAKGE_ENERGY (J)", and main.rs's --summary differences
    # such a counter (energy - old_energy). Analysis scripts of the time difference
    # "PACAKGE_ENERGY (W)" / "PACAKGE0_ENERGY (W)" and multiply by 1000/Delta to get watts. So
    # these are counters in joules, read as such (with a note). On AMD the
    # package counter was written once per core (PACAKGE<n>_ENERGY (W), the same register read
    # on core n): the one read on core 0 is counted, the others are parts.
    (re.compile(r"(?:PACKAGE|PACAKGE)_ENERGY \(W\)"), "package", "counter", "cpu", 1.0, 0),
    (re.compile(r"PACAKGE0_ENERGY \(W\)"), "cpu", "counter", "cpu", 1.0, 1),
    (re.compile(r"PACAKGE(\d+)_ENERGY \(W\)"), "cpu-read-{0}", "counter", "part", 1.0, 0),
    (re.compile(r"DRAM_ENERGY \(W\)"), "dram", "counter", "dram", 1.0, 0),
    (re.compile(r"PP0_ENERGY \(W\)"), "pp0", "counter", "part", 1.0, 0),
    (re.compile(r"PP1_ENERGY \(W\)"), "pp1", "counter", "part", 1.0, 0),
    (re.compile(r"CORE(\d+)_ENERGY \(W\)"), "core-{0}", "counter", "part", 1.0, 0),
    (re.compile(r"(.+)_ENERGY \(W\)"), "{0}", "counter", "part", 1.0, 0),
    (re.compile(r"SYSTEM_POWER \(Watts\)"), "system", "power", "system", 1.0, 0),
    (re.compile(r"(?:PACKAGE|PACAKGE)_ENERGY \(J\)"), "package", "counter", "cpu", 1.0, 0),
    (re.compile(r"CPU_ENERGY \(J\)"), "cpu", "counter", "cpu", 1.0, 1),
    (re.compile(r"CPU_POWER \(Watts\)"), "cpu-power", "power", "cpu", 1.0, 2),
    (re.compile(r"DRAM_ENERGY \(J\)"), "dram", "counter", "dram", 1.0, 0),
    (re.compile(r"PP0_ENERGY \(J\)"), "pp0", "counter", "part", 1.0, 0),
    (re.compile(r"PP1_ENERGY \(J\)"), "pp1", "counter", "part", 1.0, 0),
    (re.compile(r"CORE(\d+)_ENERGY \(J\)"), "core-{0}", "counter", "part", 1.0, 0),
    (re.compile(r"GPU(\d+)_POWER(?: \(mWatts\))?"), "gpu-{0}", "power", "gpu", 1e-3, 0),
    (re.compile(r"GPU_POWER \(Watts\)"), "gpu", "power", "gpu", 1.0, 0),
    (re.compile(r"(.+)_ENERGY \(J\)"), "{0}", "counter", "part", 1.0, 0),
    (re.compile(r"(.+?)_?POWER \(Watts\)"), "{0}-power", "power", "part", 1.0, 0),
    (re.compile(r"(.+?)_?POWER \(mWatts\)"), "{0}-power", "power", "part", 1e-3, 0),
)


def _classify(name: str, index: int) -> _Column | None:
    for pattern, template, kind, role, scale, priority in _RULES:
        match = pattern.fullmatch(name)
        if match:
            part = template.format(*(g.lower().replace("_", "-") for g in match.groups()))
            return _Column(name, index, DOMAIN_PREFIX + part, kind, role, scale, priority)
    return None


def _counted(columns: list[_Column]) -> set[str]:
    """The domains that add up to the total, each joule once (see the module docstring)."""
    system = [c for c in columns if c.role == "system"]
    if system:
        return {system[0].domain}
    counted: set[str] = set()
    cpus = sorted((c for c in columns if c.role == "cpu"), key=lambda c: c.priority)
    if cpus:
        counted.add(cpus[0].domain)
    counted.update(c.domain for c in columns if c.role in ("dram", "gpu"))
    return counted


def _show(text: str, limit: int = 48) -> str:
    """A short, quoted, escaped excerpt of file content for a one-line message."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


@dataclass
class _CounterDrop:
    """A counter value below the previous one, and what it was judged to be."""

    row: int  # index of the row with the lower value (its step is rows[row-1] -> rows[row])
    lineno: int
    previous_j: float
    value_j: float
    dt_s: float
    max_seen_j: float
    verdict: Drop | None = None
    settled: bool = False  # _NEIGHBOUR_STEPS steps after it were known when it was judged
    wrap: bool = False


def _float_precision() -> Literal["round_trip"] | None:
    """read_csv's options that make every float the one ``float()`` gives, to the last bit.

    pandas 3.1 parses with fast_float, correctly rounded as ``float()`` is (and deprecates
    ``float_precision``); before it, only ``"round_trip"`` (Python's own converter) was exact:
    the default "high" converter misread some numbers in the last bit.
    """
    import pandas as pd

    major, minor = (int(part) for part in re.findall(r"\d+", pd.__version__)[:2])
    return None if (major, minor) >= (3, 1) else "round_trip"


def _floats() -> array[float]:
    return array("d")


def _extend(target: array[float], values: NDArray[np.float64]) -> None:
    """Append a float64 numpy array to a float array, bit for bit."""
    target.frombytes(values.astype("=f8", copy=False).tobytes())


@dataclass
class _Track:
    """One domain's running energy: what the samples say up to now.

    A counter's steps are kept, and its drops judged lazily: a drop is settled once
    ``_NEIGHBOUR_STEPS`` steps after it are known; until then (and at the end of a file) it is
    judged with the neighbours known so far, so a whole file is judged with both sides.
    """

    column: _Column
    range_j: float | None
    counted: bool
    source: str
    # One float64 per row in each (array, not list: 8 bytes a value, not 32, for files of
    # millions of rows).
    times_ms: array[float] = field(default_factory=_floats)
    ends_ms: array[float] = field(default_factory=_floats)
    powers_w: array[float] = field(default_factory=_floats)
    steps_j: array[float] = field(default_factory=_floats)
    # counters: the power of each plain (non-drop) step, NaN where unknown: the neighbours.
    step_powers_w: array[float] = field(default_factory=_floats)
    drops: list[_CounterDrop] = field(default_factory=list)
    last_raw: float = math.nan
    last_raw_ms: float = math.nan  # the Time of last_raw
    max_raw: float = -math.inf
    _cumulative: array[float] = field(default_factory=_floats)
    _valid: int = 0  # how many entries of _cumulative are up to date
    _unsettled: int = 0  # index into drops of the first unsettled drop

    def add(self, time_ms: float, delta_ms: float, value: float, lineno: int) -> None:
        row = len(self.times_ms)
        if math.isnan(value):
            # A missing sample (an empty cell; only in columns outside the total): a counter
            # keeps its last value (the next step spans both intervals), a power adds nothing.
            self.times_ms.append(time_ms)
            self.ends_ms.append(time_ms if self.column.kind == "counter" else time_ms + delta_ms)
            self.powers_w.append(math.nan)
            self.steps_j.append(0.0)
            self.step_powers_w.append(math.nan)
            return
        if self.column.kind == "counter":
            step, power = 0.0, math.nan
            if row and math.isnan(self.last_raw):
                pass  # the first value after missing ones: the counter starts here
            elif row:
                dt_ms = time_ms - self.last_raw_ms
                dt_s = (dt_ms if dt_ms > 0 else delta_ms) / 1e3
                if value >= self.last_raw:
                    step = value - self.last_raw
                    power = step / dt_s if dt_s > 0 else math.nan
                else:
                    self.drops.append(
                        _CounterDrop(row, lineno, self.last_raw, value, dt_s, self.max_raw)
                    )
            self.last_raw = value
            self.last_raw_ms = time_ms
            self.max_raw = max(self.max_raw, value)
            self.times_ms.append(time_ms)
            self.ends_ms.append(time_ms)
            self.powers_w.append(math.nan)
            self.steps_j.append(step)
            self.step_powers_w.append(power)
        else:
            self.times_ms.append(time_ms)
            self.ends_ms.append(time_ms + delta_ms)
            self.powers_w.append(value)
            self.steps_j.append(value * delta_ms / 1e3)

    def extend(
        self,
        times_ms: NDArray[np.float64],
        deltas_ms: NDArray[np.float64],
        values: NDArray[np.float64],
        first_lineno: int,
    ) -> None:
        """:meth:`add` for many rows at once (consecutive lines from ``first_lineno``, every
        value a finite number >= 0), with numpy: the same arithmetic, in the same order, so
        every stored value is the one :meth:`add` would store."""
        import numpy as np

        if self.column.kind == "power":
            _extend(self.times_ms, times_ms)
            _extend(self.ends_ms, times_ms + deltas_ms)
            _extend(self.powers_w, values)
            _extend(self.steps_j, values * deltas_ms / 1e3)
            return
        row = len(self.times_ms)
        previous = np.concatenate(([self.last_raw], values[:-1]))
        previous_ms = np.concatenate(([self.last_raw_ms], times_ms[:-1]))
        dt_ms = times_ms - previous_ms
        with np.errstate(invalid="ignore", divide="ignore"):
            dt_s = np.where(dt_ms > 0, dt_ms, deltas_ms) / 1e3
            # NaN before the first value (or after missing ones): no step, as in add().
            rising = values >= previous
            steps = np.where(rising, values - previous, 0.0)
            powers = np.where(rising & (dt_s > 0), steps / dt_s, math.nan)
        seen = np.maximum.accumulate(np.concatenate(([self.max_raw], values)))
        for k in np.flatnonzero(values < previous).tolist():
            self.drops.append(
                _CounterDrop(
                    row + k,
                    first_lineno + k,
                    float(previous[k]),
                    float(values[k]),
                    float(dt_s[k]),
                    float(seen[k]),
                )
            )
        self.last_raw = float(values[-1])
        self.last_raw_ms = float(times_ms[-1])
        self.max_raw = float(seen[-1])
        _extend(self.times_ms, times_ms)
        _extend(self.ends_ms, times_ms)
        _extend(self.powers_w, np.full(len(values), math.nan))
        _extend(self.steps_j, steps)
        _extend(self.step_powers_w, powers)

    # -- judging drops -----------------------------------------------------------------------
    def _neighbours(self, row: int) -> tuple[list[float], int]:
        """Powers of up to _NEIGHBOUR_STEPS plain steps on each side of ``row``; and how many
        of them lie after it."""
        powers = self.step_powers_w
        before: list[float] = []
        k = row - 1
        while k > 0 and len(before) < _NEIGHBOUR_STEPS:
            if math.isfinite(powers[k]):
                before.append(powers[k])
            k -= 1
        after: list[float] = []
        k = row + 1
        while k < len(powers) and len(after) < _NEIGHBOUR_STEPS:
            if math.isfinite(powers[k]):
                after.append(powers[k])
            k += 1
        return before + after, len(after)

    def _judge(self, drop: _CounterDrop) -> None:
        neighbours, after = self._neighbours(drop.row)
        verdict = judge_drop(
            drop.previous_j,
            drop.value_j,
            drop.dt_s,
            max_seen_j=drop.max_seen_j,
            range_j=self.range_j,
            neighbour_powers_w=neighbours,
        )
        if self.range_j is not None and self.counted:
            # Columns outside the total keep the range given: their drops are warned about
            # and never change the total (Windows AMD's CORE0 jumps up and down).
            strict_w = plausible_limit_w(reference_power_w(neighbours))
            if not verdict.implied_power_w <= strict_w:
                inferred = judge_drop(
                    drop.previous_j,
                    drop.value_j,
                    drop.dt_s,
                    max_seen_j=drop.max_seen_j,
                    neighbour_powers_w=neighbours,
                )
                if inferred.plausible and inferred.range_j != self.range_j:
                    # The given range is what makes the step implausible beside its neighbours
                    # (even where it stays under the 2 kW a known range may reach): the user's
                    # to fix, never energy. 262144 given for an AMD counter that wraps at
                    # 65536 would add 196,608 J per wrap.
                    name = _show(self.column.name)
                    raise ConfigError(
                        f"{self.source}:{drop.lineno}: {name[1:-1]} went down from "
                        f"{drop.previous_j:.6g} to {drop.value_j:.6g}; with counter_range_j="
                        f"{self.range_j:.10g} that step would add {verdict.step_j:.6g} J, "
                        f"{verdict.implied_power_w:.3g} W beside {_reference(neighbours)}, but "
                        f"it wraps plausibly at {inferred.range_j:.10g} J: give that range for "
                        f"this column ({name[1:-1]}={inferred.range_j:.10g}), or none "
                        "(greenprec infers it)",
                        param="counter_range_j",
                    )
        drop.verdict = verdict
        drop.wrap = verdict.plausible
        drop.settled = after >= _NEIGHBOUR_STEPS
        step = verdict.step_j if drop.wrap else 0.0
        if self.steps_j[drop.row] != step:
            self.steps_j[drop.row] = step
            self._valid = min(self._valid, drop.row)

    def _settle(self) -> None:
        while self._unsettled < len(self.drops) and self.drops[self._unsettled].settled:
            self._unsettled += 1
        for drop in self.drops[self._unsettled :]:
            if not drop.settled:
                self._judge(drop)

    @property
    def cumulative_j(self) -> array[float]:
        """Energy from the first row to each row (drops judged with what is known now)."""
        self._settle()
        del self._cumulative[self._valid :]
        total = self._cumulative[-1] if self._cumulative else 0.0
        new = self.steps_j[len(self._cumulative) :]
        if len(new) < _VECTOR_MIN:
            for step in new:
                total += step
                self._cumulative.append(total)
        else:
            import numpy as np

            # add.accumulate adds one step after the other, as the loop above does: the same
            # sums to the last bit (np.cumsum of a float array is no pairwise sum either).
            running = np.add.accumulate(np.concatenate(([total], np.frombuffer(new))))
            _extend(self._cumulative, running[1:])
        self._valid = len(self._cumulative)
        return self._cumulative

    @property
    def wraps(self) -> int:
        self._settle()
        return sum(1 for drop in self.drops if drop.wrap)

    @property
    def glitches(self) -> list[_CounterDrop]:
        self._settle()
        return [drop for drop in self.drops if not drop.wrap]

    @property
    def total_j(self) -> float:
        cumulative = self.cumulative_j
        return cumulative[-1] if cumulative else 0.0

    @property
    def covered_until_ms(self) -> float:
        return self.ends_ms[-1] if self.ends_ms else -math.inf

    def energy_at(self, t_ms: float) -> float:
        """Energy from the first sample to epoch time ``t_ms`` (clamped to the known samples)."""
        cumulative = self.cumulative_j
        if not cumulative:
            return 0.0
        k = bisect.bisect_right(self.times_ms, t_ms) - 1
        if k < 0:
            return 0.0
        if self.column.kind == "power":
            before = cumulative[k - 1] if k > 0 else 0.0
            held_ms = min(max(t_ms - self.times_ms[k], 0.0), self.ends_ms[k] - self.times_ms[k])
            power = self.powers_w[k]
            return before + (power * held_ms / 1e3 if math.isfinite(power) else 0.0)
        if k == len(self.times_ms) - 1:
            return cumulative[k]
        # bisect_right guarantees times_ms[k] <= t_ms < times_ms[k + 1]: no zero division.
        t0, t1 = self.times_ms[k], self.times_ms[k + 1]
        e0, e1 = cumulative[k], cumulative[k + 1]
        return e0 + (e1 - e0) * (t_ms - t0) / (t1 - t0)

    # -- what to tell the user ---------------------------------------------------------------
    def messages(self) -> list[str]:
        """Warning lines about this column's drops (empty when it never went down)."""
        if not self.drops:
            return []
        self._settle()
        name, domain = _show(self.column.name), self.column.domain
        wraps = [d for d in self.drops if d.wrap]
        glitches = [d for d in self.drops if not d.wrap]
        lines: list[str] = []
        if not self.counted:
            # Not in the total: say so first, so that no line reads as a total corrected.
            first = self.drops[0].lineno
            if glitches:
                lines.append(
                    f"{self.source}:{first}: column {name} went down {len(self.drops)} "
                    f"time(s), {len(glitches)} of them no counter wrap-around: it does not "
                    f"behave as an energy counter in this file, so its figure ({domain}) is "
                    "unreliable; it is not in the total, which is unaffected"
                )
            else:
                lines.append(
                    f"{self.source}:{first}: column {name} wrapped around {len(wraps)} time(s) "
                    f"at {_ranges(wraps)}; corrected in its own figure ({domain}), which is not "
                    "in the total"
                )
            return lines
        if wraps:
            lines.append(
                f"{self.source}:{wraps[0].lineno}: {len(wraps)} wrap-around(s) of counted "
                f"column {name} corrected at {_ranges(wraps)}"
            )
        for drop in glitches[:_GLITCH_LINES]:
            verdict = drop.verdict
            assert verdict is not None  # _settle judged every drop
            lines.append(
                f"{self.source}:{drop.lineno}: column {name} went down from "
                f"{drop.previous_j:.6g} to {drop.value_j:.6g}, which is no wrap-around (at "
                f"{verdict.range_j:.10g} J that step would draw {verdict.implied_power_w:.3g} W, "
                f"more than the {verdict.limit_w:.3g} W plausible here): a glitch, that step "
                f"counts 0 J in {domain} and the total"
            )
        if len(glitches) > _GLITCH_LINES:
            lines.append(
                f"{self.source}: column {name}: {len(glitches) - _GLITCH_LINES} more glitch(es) "
                "like these, each counting 0 J"
            )
        return lines


def _ranges(drops: Sequence[_CounterDrop]) -> str:
    described = []
    for drop in drops:
        verdict = drop.verdict
        assert verdict is not None
        how = "inferred" if verdict.inferred else "given"
        text = f"{verdict.range_j:.10g} J ({how})"
        if text not in described:
            described.append(text)
    return ", ".join(described)


def _reference(neighbours: Sequence[float]) -> str:
    finite = sorted(p for p in neighbours if math.isfinite(p))
    if not finite:
        return "no neighbouring step"
    return f"neighbouring steps of about {finite[len(finite) // 2]:.3g} W"


class EnergiBridgeStream:
    """An EnergiBridge CSV fed line by line, as the file grows or all at once.

    The ``energibridge`` meter feeds it the rows EnergiBridge has written so far;
    :func:`read_energibridge_csv` feeds it a whole file. ``source`` names the file in errors.
    ``separator`` is the column separator; None detects it from the header.
    """

    def __init__(
        self,
        source: str,
        *,
        counter_range_j: float | Mapping[str, float] | str | None = None,
        separator: str | None = None,
    ) -> None:
        self.source = source
        self._ranges = check_counter_range(counter_range_j)
        self._separator = _check_separator(separator)
        self.separator = self._separator or ","
        self.columns: list[str] = []
        self._tracks: list[_Track] = []
        self._used: list[int] = []  # indices of named columns (a trailing separator adds none)
        self.rows = 0
        self.last_lineno = 0
        self.first_time_ms = math.nan
        self.delta_sum_ms = 0.0
        self.last_time_ms = math.nan
        self._last_delta_ms = 0.0
        # Time goes back (the clock set back while EnergiBridge ran): the shift that keeps the
        # timeline going on by Delta, and (line, seconds back) of each step.
        self._clock_shift_ms = 0.0
        self.clock_steps_back: list[tuple[int, float]] = []
        self._counted_indices: set[int] = set()
        self._held: _Damage | None = None  # a damaged row, fine only if no row follows it
        self.skipped = 0  # lines that are no data (console text) skipped
        self._first_skipped: tuple[int, str] | None = None
        self._header_error: ConfigError | None = None  # for text before any header
        self._empty_parts: dict[int, list[int]] = {}  # track index -> lines with an empty cell

    # -- feeding -----------------------------------------------------------------------------
    def feed(self, line: str, lineno: int) -> None:
        """Take one line of the file (``lineno`` counts from 1, the header)."""
        line = line.rstrip("\r\n")
        if not self.columns:
            # A byte-order mark the decoder left (the meter decodes plain UTF-8).
            line = line.lstrip("\ufeff")
        if not line.strip():
            return  # EnergiBridge writes no blank lines; a trailing one is harmless
        if not self.columns:
            self._header(line, lineno)
            return
        cells = line.split(self.separator)
        if self._is_header(cells):
            raise self._fail(
                lineno,
                "a second header: two recordings in one file (EnergiBridge run twice with the "
                "same output)? greenprec reads one recording per file: split the file there",
            )
        if not any(_is_number(cell) for cell in cells):
            # Console text (stdout redirected into the CSV: "Received Ctrl+C, stopping...").
            self._skip(line, lineno)
            return
        if self._held is not None:
            raise self._held.error  # damage on a line that is not the last
        self._row(cells, lineno)

    def feed_batch(self, lines: Sequence[str], first_lineno: int) -> None:
        """:meth:`feed` for consecutive lines, with the result of feeding them one by one.

        Plain rows (every cell a number, as wide as the header, Time not going back) are
        parsed at once with pandas and numpy; any other batch (console text, an empty or bad
        cell, a second header, a clock step back) is fed line by line, which names the line.
        """
        parsed = self._parsed(lines) if self.columns and self._held is None and lines else None
        if parsed is None:
            for offset, line in enumerate(lines):
                self.feed(line, first_lineno + offset)
            return
        import numpy as np

        times_ms, deltas_ms, values = parsed
        for track, column in zip(self._tracks, values, strict=True):
            track.extend(times_ms, deltas_ms, column, first_lineno)
        if self.rows == 0:
            self.first_time_ms = float(times_ms[0])
        self.rows += len(times_ms)
        self.last_lineno = first_lineno + len(times_ms) - 1
        # One addition after the other, as feed() adds them.
        self.delta_sum_ms = float(
            np.add.accumulate(np.concatenate(([self.delta_sum_ms], deltas_ms)))[-1]
        )
        self.last_time_ms = float(times_ms[-1])
        self._last_delta_ms = float(deltas_ms[-1])

    def _parsed(
        self, lines: Sequence[str]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], list[NDArray[np.float64]]] | None:
        """``(Time placed, Delta, each track's values)`` of rows that :meth:`feed` would take
        without a word, or None when any line needs :meth:`feed` itself."""
        import numpy as np
        import pandas as pd

        width = len(self.columns)
        if len(self._used) != width:
            return None  # unnamed columns (a trailing separator): feed() ignores them its way
        try:
            frame = pd.read_csv(
                io.StringIO("".join(lines)),
                sep=self.separator,
                header=None,
                dtype="float64",
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                engine="c",
                float_precision=_float_precision(),
            )
        except (ValueError, TypeError, pd.errors.ParserError):
            return None  # a cell that is no number, a row too wide: feed() names it
        if frame.shape != (len(lines), width) or frame.isna().to_numpy().any():
            return None  # a short row, an empty cell: feed() decides what it costs
        numbers = frame.to_numpy()
        deltas_ms = numbers[:, self._delta_index]
        raw_ms = numbers[:, self._time_index]
        if not (
            np.all((raw_ms >= 0) & (raw_ms <= _MAX_TIME_MS))
            and np.all((deltas_ms >= 0) & (deltas_ms <= _MAX_DELTA_MS))
        ):
            return None
        times_ms = raw_ms + self._clock_shift_ms
        if np.any(times_ms[1:] < times_ms[:-1]) or (self.rows and times_ms[0] < self.last_time_ms):
            return None
        values = []
        for track in self._tracks:
            column = numbers[:, track.column.index] * track.column.scale
            if not np.all(np.isfinite(column) & (column >= 0)):
                return None
            if track.range_j is not None and np.any(column > track.range_j):
                return None
            values.append(column)
        return times_ms, deltas_ms, values

    @property
    def damaged(self) -> ConfigError | None:
        """The error of a damaged row no row followed (dropped as a cut last row)."""
        return self._held.error if self._held is not None else None

    def finish(self) -> None:
        """The file has ended: raise what only the end can tell (text but no header)."""
        if not self.columns and self._header_error is not None:
            raise self._header_error

    def _skip(self, line: str, lineno: int) -> None:
        self.skipped += 1
        if self._first_skipped is None:
            self._first_skipped = (lineno, line)

    def _is_header(self, cells: Sequence[str]) -> bool:
        names = {cell.strip() for cell in cells}
        return "Delta" in names and "Time" in names

    def _fail(self, lineno: int, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{lineno}: {message}")

    def _split_header(self, line: str, lineno: int) -> list[str]:
        candidates = (self._separator,) if self._separator else _SEPARATORS
        for separator in candidates:
            names = [name.strip() for name in line.split(separator)]
            if "Delta" in names and "Time" in names:
                self.separator = separator
                return names
        names = [name.strip() for name in line.split(candidates[0])]
        missing = "Delta" if "Delta" not in names else "Time"
        given = (
            f" split by the separator given ({_SEPARATOR_NAMES.get(candidates[0], candidates[0])})"
            if self._separator
            else ""
        )
        # Nothing of the line is quoted: a file that is not EnergiBridge's may be anything
        # (a link to /etc/shadow, /proc/self/environ), and no secret goes to a terminal or log.
        raise self._fail(
            lineno,
            f"no {missing!r} column in the header{given}: not an EnergiBridge CSV (its first "
            "line should name the columns, starting 'Delta,Time,' as EnergiBridge writes "
            "them; the line is not shown, as the file is no EnergiBridge CSV)",
        )

    def _header(self, line: str, lineno: int) -> None:
        try:
            names = self._split_header(line, lineno)
        except ConfigError as error:
            candidates = (self._separator,) if self._separator else _SEPARATORS
            numeric = any(_is_number(cell) for sep in candidates for cell in line.split(sep))
            if numeric or (self._header_error is not None and self.skipped >= _MAX_PREAMBLE):
                # Data before any header: the first line was the header, and a wrong one.
                raise self._header_error or error from None
            # Console text before the header (EnergiBridge's warnings with 2>&1): skipped if
            # a header follows; refused as the header otherwise (see finish).
            self._header_error = self._header_error or error
            self._skip(line, lineno)
            return
        seen: dict[str, int] = {}
        for position, name in enumerate(names, start=1):
            if name and name in seen:
                raise self._fail(
                    lineno,
                    f"column {_show(name)} appears twice in the header (columns {seen[name]} "
                    f"and {position}): which one to count is unknown; keep one of them "
                    "(EnergiBridge never writes a column twice)",
                )
            seen[name] = position
        columns = [c for i, name in enumerate(names) if (c := _classify(name, i)) is not None]
        if not columns:
            raise self._fail(
                lineno,
                "no energy or power column (…_ENERGY (J), …_POWER (Watts), GPU<i>_POWER "
                "(mWatts)): EnergiBridge could not read any energy sensor on that machine",
            )
        counted = _counted(columns)
        self._delta_index = names.index("Delta")
        self._time_index = names.index("Time")
        self._used = [i for i, name in enumerate(names) if name]
        self._counted_indices = {self._delta_index, self._time_index} | {
            c.index for c in columns if c.domain in counted
        }
        self._tracks = [
            _Track(c, self._range_for(c), c.domain in counted, self.source) for c in columns
        ]
        self.columns = names

    def _range_for(self, column: _Column) -> float | None:
        if isinstance(self._ranges, float) or self._ranges is None:
            return self._ranges
        short = column.domain.removeprefix(DOMAIN_PREFIX)
        for key in (column.name, column.domain, short, _ALL_COUNTERS):
            if key in self._ranges:
                return self._ranges[key]
        return None

    def _row(self, cells: list[str], lineno: int) -> None:
        fitted = self._fit_width(cells, lineno)
        if fitted is None:
            return  # a short row, held until we know whether it is the last
        values = self._parse_values(fitted, lineno)
        if values is None:
            return  # its last value cut short, held likewise
        time_ms, delta_ms = self._clock(fitted, values, lineno)
        readings = self._readings(fitted, values, lineno)
        time_ms = self._placed(time_ms, lineno)
        for track, value in zip(self._tracks, readings, strict=True):
            track.add(time_ms, delta_ms, value, lineno)
        if self.rows == 0:
            self.first_time_ms = time_ms
        self.rows += 1
        self.last_lineno = lineno
        self.delta_sum_ms += delta_ms
        self.last_time_ms = time_ms
        self._last_delta_ms = delta_ms

    def _placed(self, time_ms: float, lineno: int) -> float:
        """Where a row with this ``Time`` lies on the file's timeline.

        A wall-clock step back (NTP, a clock set by hand) makes ``Time`` go back while the
        samples go on every ``Delta`` ms. Energy never depends on ``Time``; the timeline that
        samples and windows use must neither run backwards nor pile every later sample onto
        one instant: from such a row on, rows are placed the previous row's ``Delta`` after
        it, and ``Time`` is followed again from there on (shifted by the step).
        """
        time_ms += self._clock_shift_ms
        if self.rows and time_ms < self.last_time_ms:
            placed = self.last_time_ms + self._last_delta_ms
            self.clock_steps_back.append((lineno, (self.last_time_ms - time_ms) / 1e3))
            self._clock_shift_ms += placed - time_ms
            time_ms = placed
        return time_ms

    def _fit_width(self, cells: list[str], lineno: int) -> list[str] | None:
        """The row's cells, one per column; None (the row held as damage) when it is short.
        More cells than columns is a sensor that appeared mid-run: an error."""
        width = len(self.columns)
        if len(cells) > width and not any(cell.strip() for cell in cells[width:]):
            cells = cells[:width]  # trailing separators
        if len(cells) > width:
            raise NewColumnsError(
                f"{self.source}:{lineno}: {len(cells)} fields but the header has {width}: a "
                "new sensor appeared mid-run (EnergiBridge adds its value to the rows, sorted "
                "by name among the others, but never rewrites the header: the columns after it "
                "are shifted, and which value belongs to which is unknown and not guessed); "
                f"the {self.rows} row(s) before line {lineno} can be used alone "
                f"(before_line={lineno})",
                source=self.source,
                lineno=lineno,
                rows_before=self.rows,
            )
        if len(cells) < width:
            self._held = _Damage(
                lineno,
                self._fail(
                    lineno,
                    f"{len(cells)} values but the header has {width} columns: a damaged row "
                    "(only the last row of a file may be cut short, when EnergiBridge is "
                    "stopped while writing it)",
                ),
                f"{len(cells)} of {width} values",
            )
            return None
        return cells

    def _parse_values(self, cells: list[str], lineno: int) -> list[float] | None:
        """The used columns' numbers (NaN elsewhere and for an ignorable empty cell); None
        (the row held as damage) when its last value is cut short."""
        values = [math.nan] * len(cells)
        counted = self._counted_indices
        last = len(cells) - 1
        for index in self._used:
            cell = cells[index]
            if not cell.strip() and index not in counted:
                continue  # an empty cell where nothing is counted: ignored
            try:
                values[index] = float(cell)
            except ValueError:
                error = self._fail(lineno, self._unreadable(cell, index, index in counted))
                if index == last and _CUT_NUMBER.fullmatch(cell):
                    # The last value cut short: the row was being written.
                    self._held = _Damage(lineno, error, f"its last value {_show(cell)} is cut")
                    return None
                raise error from None
        return values

    def _unreadable(self, cell: str, index: int, counted: bool) -> str:
        """Why the cell in column ``index`` is not a number."""
        what = "empty cell" if not cell.strip() else f"non-numeric value {_show(cell.strip())}"
        hint = (
            " (a decimal comma? EnergiBridge writes '.'; export with '.' decimals)"
            if self.separator != "," and re.fullmatch(r"\s*-?\d+,\d+\s*", cell)
            else ""
        )
        if not counted or cell.strip():
            return f"{what} in column {_show(self.columns[index])}{hint}"
        return (
            f"empty cell in column {_show(self.columns[index])}, which the energy "
            "is computed from: the row cannot be read"
        )

    def _clock(self, cells: list[str], values: list[float], lineno: int) -> tuple[float, float]:
        """The row's Time and Delta in ms, checked to be plausible."""
        delta_ms = values[self._delta_index]
        time_ms = values[self._time_index]
        if not math.isfinite(time_ms) or not 0 <= time_ms <= _MAX_TIME_MS:
            raise self._fail(
                lineno,
                f"implausible Time {_show(cells[self._time_index].strip())} (want epoch ms "
                "between 1970 and 2200: a Time in µs or ns, or a damaged file?)",
            )
        if not math.isfinite(delta_ms) or not 0 <= delta_ms <= _MAX_DELTA_MS:
            raise self._fail(
                lineno,
                f"implausible Delta {_show(cells[self._delta_index].strip())} ms (want 0 to "
                f"{_MAX_DELTA_MS:.0f}: the time since the previous sample)",
            )
        return time_ms, delta_ms

    def _readings(self, cells: list[str], values: list[float], lineno: int) -> list[float]:
        """Each track's value in its unit (J or W), NaN where its cell is empty (recorded as a
        missing sample); an implausible value is an error."""
        readings: list[float] = []
        for position, track in enumerate(self._tracks):
            value = values[track.column.index]
            if math.isnan(value) and not cells[track.column.index].strip():
                # An empty cell in a column outside the total: that sample is missing.
                self._empty_parts.setdefault(position, []).append(lineno)
                readings.append(math.nan)
                continue
            if not math.isfinite(value) or value < 0:
                raise self._fail(
                    lineno,
                    f"implausible value {_show(cells[track.column.index].strip())} in column "
                    f"{_show(track.column.name)} (energy and power are finite and >= 0)",
                )
            if track.range_j is not None and value * track.column.scale > track.range_j:
                raise self._fail(
                    lineno,
                    f"{_show(track.column.name)[1:-1]} = {value:.10g} exceeds counter_range_j="
                    f"{track.range_j:.10g}: that range is wrong for this counter (give none: "
                    "greenprec infers it)",
                )
            readings.append(value * track.column.scale)
        return readings

    # -- results -----------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        return [track.column.domain for track in self._tracks]

    @property
    def counted_domains(self) -> list[str]:
        return [track.column.domain for track in self._tracks if track.counted]

    @property
    def wraps(self) -> int:
        """Wrap-arounds corrected in the counted columns (those that change the total)."""
        return sum(track.wraps for track in self._tracks if track.counted)

    @property
    def glitches(self) -> int:
        """Drops of counted columns that were no wrap-around (each step counted 0 J)."""
        return sum(len(track.glitches) for track in self._tracks if track.counted)

    def warnings(self) -> list[str]:
        """One line per damage the file had (a cut last row, console text, empty cells), per
        wrap-corrected counted column, per glitch, per misbehaving part."""
        lines: list[str] = []
        if self._held is not None:
            lines.append(
                f"{self.source}:{self._held.lineno}: the last row is cut short "
                f"({self._held.detail}): EnergiBridge was stopped while writing it; it is "
                f"dropped, the {self.rows} row(s) before it count"
            )
        if self._first_skipped is not None:
            lineno, text = self._first_skipped
            lines.append(
                f"{self.source}:{lineno}: {self.skipped} line(s) that are no data skipped "
                "(console output in the CSV: EnergiBridge's stdout redirected into it?); the "
                f"first: {_show(text.strip(), _QUOTE_CHARS)}"
            )
        if self.clock_steps_back:
            lineno, back_s = self.clock_steps_back[0]
            more = len(self.clock_steps_back) - 1
            lines.append(
                f"{self.source}:{lineno}: Time goes back {back_s:.1f} s here (the computer's "
                "clock was set back while EnergiBridge ran: NTP, or by hand); the energy does "
                "not depend on Time, and the power trace keeps its order: from this row on, "
                "samples are placed by Delta after the row before"
                + (f"; {more} more step(s) back, placed the same way" if more else "")
            )
        for position, linenos in self._empty_parts.items():
            track = self._tracks[position]
            what = (
                "the counter's next value spans them"
                if track.column.kind == "counter"
                else "those samples add nothing to it"
            )
            lines.append(
                f"{self.source}:{linenos[0]}: column {_show(track.column.name)} has "
                f"{len(linenos)} empty cell(s); its figure ({track.column.domain}) is not in "
                f"the total, and {what}"
            )
        ordered = sorted(self._tracks, key=lambda track: not track.counted)
        return lines + [line for track in ordered for line in track.messages()]

    def notes(self) -> list[str]:
        """What greenprec read differently from a column's label (no damage, no warning)."""
        legacy = [
            track.column for track in self._tracks if _LEGACY_LABEL.fullmatch(track.column.name)
        ]
        if not legacy:
            return []
        names = ", ".join(_show(column.name) for column in legacy)
        return [
            f"{self.source}: {names}: labels of EnergiBridge v0.0.1 to v0.0.4, which wrote "
            "energy counters (cumulative joules: the energy-status register times the RAPL "
            "energy unit) under a '(W)' label; read as counters in joules, like today's "
            "'..._ENERGY (J)' columns"
        ]

    def totals(self) -> dict[str, float]:
        """Energy per domain over the whole file so far."""
        return {track.column.domain: track.total_j for track in self._tracks}

    def energy_at(self, t_ms: float) -> dict[str, float]:
        """Energy per domain from the first sample to epoch ms ``t_ms``, as far as known.

        Non-decreasing in ``t_ms``. A later call (more rows known) gives the same for the same
        ``t_ms`` once the rows around it are known, except where a counter drop within the last
        _NEIGHBOUR_STEPS rows is judged again with the steps that followed it.
        """
        return {track.column.domain: track.energy_at(t_ms) for track in self._tracks}

    def covered_until_ms(self) -> float:
        """Epoch ms up to which every domain has samples (-inf before the first row)."""
        return min((track.covered_until_ms for track in self._tracks), default=-math.inf)

    def samples(self) -> pd.DataFrame:
        """``t_s, domain, power_w, energy_j`` per row and domain (as in the recording): row by
        row, each row's domains in column order."""
        import numpy as np
        import pandas as pd

        rows, width = self.rows, len(self._tracks)
        # One float block, filled in place: no per-column copies to stack (a 200 MB file has
        # millions of samples).
        block = np.empty((rows * width, 3))
        for k, track in enumerate(self._tracks):
            t_s, power_w, energy_j = (block[:, c].reshape(rows, width)[:, k] for c in range(3))
            energy_j[:] = np.frombuffer(track.cumulative_j)[:rows]
            if track.column.kind == "power":
                t_s[:] = (np.frombuffer(track.ends_ms)[:rows] - self.first_time_ms) / 1e3
                power_w[:] = np.frombuffer(track.powers_w)[:rows]
                continue
            times = np.frombuffer(track.times_ms)[:rows]
            t_s[:] = (times - self.first_time_ms) / 1e3
            power_w[:] = math.nan
            dt_ms = times[1:] - times[:-1]
            rising = np.flatnonzero(dt_ms > 0)
            # ((e1 - e0) / (t1 - t0)) * 1e3, in that order, as one row's power always was.
            power_w[rising + 1] = (energy_j[rising + 1] - energy_j[rising]) / dt_ms[rising] * 1e3
            del times  # the view ends here: the track's array may grow again (the meter)
        frame: pd.DataFrame = pd.DataFrame(
            block, columns=["t_s", "power_w", "energy_j"], copy=False
        )
        domains = np.array([track.column.domain for track in self._tracks], dtype=object)
        frame.insert(1, "domain", np.tile(domains, rows))
        return frame

    def implausible_power(self, duration_s: float) -> str | None:
        """A warning when a counted domain's mean power over ``duration_s`` is beyond hardware."""
        if not duration_s > 0:
            return None
        over = [
            (track, track.total_j / duration_s)
            for track in self._tracks
            if track.counted and track.total_j / duration_s > MAX_DOMAIN_POWER_W
        ]
        if not over:
            return None
        listed = ", ".join(f"{track.column.domain} {power:,.0f} W" for track, power in over)
        counters = [(track, power) for track, power in over if track.column.kind == "counter"]
        if counters:
            rescaled = ", ".join(
                f"{track.column.domain} {power * _RAW_COUNT_UNIT_J:.3g} W"
                for track, power in counters
            )
            cause = (
                "the counters are likely raw RAPL register counts, not joules (EnergiBridge "
                "before v0.0.7 wrote them on Intel): divided by 2**14, Intel's usual energy "
                f"unit, they would give {rescaled}; re-record with a current EnergiBridge or "
                "convert the file"
            )
        else:
            cause = "the power column is likely in another unit than its header says"
        return (
            f"{self.source}: mean power beyond what one CPU package, DRAM or GPU can draw "
            f"(more than {MAX_DOMAIN_POWER_W:g} W): {listed}; {cause}. The figures are kept "
            "as the file gives them"
        )


@dataclass(frozen=True)
class EnergiBridgeRecording:
    """One EnergiBridge CSV file, read: energy per domain, the total, time and samples."""

    path: Path
    domains: dict[str, float]
    """Energy in joules per column-domain (``energibridge/package`` ...), counted or not."""
    counted_domains: list[str]
    """The domains whose energy adds up to :attr:`energy_j` (each joule once)."""
    energy_j: float
    duration_s: float
    """Sum of ``Delta`` / 1000: the time the samples cover."""
    started_at: datetime
    """The first row's ``Time``, in UTC."""
    mean_power_w: float
    wraps: int
    """Counter decreases corrected as wrap-arounds in the counted columns (a part's wraps do
    not change the total and are only named in :attr:`warnings`)."""
    samples: pd.DataFrame
    """``t_s, domain, power_w, energy_j``: per row and domain, energy cumulative since the
    first row. ``t_s`` is ``Time`` minus the first ``Time`` in seconds; for a power column it is
    the end of the row's interval (``Time + Delta``), the moment its energy is reached."""
    columns: list[str]
    """The file's raw column names, in order."""
    glitches: int = 0
    """Drops of counted columns that were no wrap-around: each such step counted 0 J."""
    warnings: list[str] = field(default_factory=list)
    """One line each, naming the file: damage (a cut last row dropped, console text skipped,
    empty cells outside the total), wraps corrected, glitches, columns that misbehaved (not in
    the total), implausible mean power, rows left out with ``before_line``."""
    notes: list[str] = field(default_factory=list)
    """How columns were read where their label says otherwise (EnergiBridge v0.0.1-v0.0.4's
    ``..._ENERGY (W)`` counters)."""
    clock_steps_back: int = 0
    """Rows whose ``Time`` went back (the clock set back while EnergiBridge ran): each is
    placed its previous row's ``Delta`` after that row, and named in :attr:`warnings`."""


def read_energibridge_csv(
    path: str | os.PathLike[str],
    *,
    counter_range_j: float | Mapping[str, float] | str | None = None,
    separator: str | None = None,
    before_line: int | None = None,
) -> EnergiBridgeRecording:
    """Read an EnergiBridge CSV file.

    ``counter_range_j`` is the wrap range of the energy counters in joules: one number for all,
    or a mapping from column name or domain (``"PACKAGE_ENERGY (J)"``, ``"energibridge/dram"``
    or ``"dram"``, ``"*"`` for every other counter) to range. ``None`` (the default) infers it
    at each drop (see the module docstring). ``separator`` is the column separator (``","``,
    ``";"``, ``"\\t"``); ``None`` detects it from the header. UTF-8 (with or without a byte-order
    mark) and UTF-16 with a byte-order mark are read. ``before_line`` reads only the lines
    before that one (the header is line 1): the rows before a line that cannot be read, such as
    one where a sensor appeared mid-run (:class:`NewColumnsError`).

    Damage that costs a row is not the whole file's: a last row cut short is dropped, lines of
    console text are skipped, empty cells in columns outside the total are ignored, each with a
    warning. Any other malformed line raises :class:`greenprec.ConfigError` naming file and
    line.
    """
    file = Path(path)
    source = os.fspath(path)
    if before_line is not None and (
        isinstance(before_line, bool) or not isinstance(before_line, int) or before_line < 3
    ):
        raise ConfigError(
            f"{source}: before_line must be a line number of 3 or more (the header is line 1, "
            f"two rows at least are needed), got {before_line!r}",
            param="before_line",
        )
    stream = EnergiBridgeStream(source, counter_range_j=counter_range_j, separator=separator)
    lineno = 0
    cut = False
    batch: list[str] = []
    try:
        for lineno, line in enumerate(_lines(file, source), start=1):
            if before_line is not None and lineno >= before_line:
                cut = True
                break
            if not stream.columns:
                stream.feed(line, lineno)  # the header, or text before it
                continue
            batch.append(line)
            if len(batch) > _BATCH_ROWS:
                # The last line is kept back: only the file's last row may be cut short,
                # which feed() alone judges.
                stream.feed_batch(batch[:-1], lineno - len(batch) + 1)
                batch = batch[-1:]
        if batch:
            stream.feed_batch(batch[:-1], lineno - len(batch) + 1 - (1 if cut else 0))
            stream.feed(batch[-1], lineno - (1 if cut else 0))
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror or error}") from None
    stream.finish()
    if not stream.columns:
        raise ConfigError(f"{source}:1: empty file: no EnergiBridge header")
    if stream.rows == 0:
        if stream.damaged is not None:
            raise stream.damaged
        raise ConfigError(f"{source}:{max(lineno, 1) + 1}: no data rows after the header")
    if stream.rows == 1:
        # A counter's energy is a difference and a power row's is its Delta (0 on the first
        # row): one row gives 0 J, which would read as a run that used no energy.
        raise ConfigError(
            f"{source}:{stream.last_lineno}: only one sample: no energy can be measured (the "
            "run was shorter than EnergiBridge's interval, or the file was cut); record longer "
            "or leave this file out"
        )
    recording = _recording(file, stream)
    if cut:
        recording.warnings.append(
            f"{source}:{before_line}: read up to this line as asked (before_line): the rows "
            f"from here on are left out; the {stream.rows} row(s) before it count"
        )
    return recording


def _lines(file: Path, source: str) -> Iterator[str]:
    """The file's lines, decoded by its byte-order mark (UTF-8 when there is none).

    Only a regular file is read (a FIFO would block, a device never end), one bounded line at
    a time: a line over :data:`_MAX_LINE_CHARS` is refused before more of it is read.
    """
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise ConfigError(
                f"{source}: not a regular file (a device, FIFO or socket); give the "
                "EnergiBridge CSV file itself"
            )
        start = raw.read(4)
        raw.seek(0)
        if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"  # PowerShell's `>`: the BOM tells the byte order
        elif len(start) >= 4 and start[1] == 0 and start[3] == 0 and start[0] and start[2]:
            encoding = "utf-16-le"  # UTF-16 without a BOM: every other byte of ASCII text is 0
        elif len(start) >= 4 and start[0] == 0 and start[2] == 0 and start[1] and start[3]:
            encoding = "utf-16-be"
        else:
            encoding = "utf-8-sig"
        with io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as handle:
            lineno = 0
            while line := handle.readline(_MAX_LINE_CHARS):
                lineno += 1
                if len(line) == _MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                    what = "no EnergiBridge header" if lineno == 1 else "no EnergiBridge row"
                    raise ConfigError(
                        f"{source}:{lineno}: a line of over {_MAX_LINE_CHARS:,} characters: "
                        f"{what} (EnergiBridge's lines are a few thousand characters at "
                        "most); not an EnergiBridge CSV, or a damaged one"
                    )
                yield line


def _recording(path: Path, stream: EnergiBridgeStream) -> EnergiBridgeRecording:
    domains = stream.totals()
    counted = stream.counted_domains
    energy_j = sum(domains[name] for name in counted)
    duration_s = stream.delta_sum_ms / 1e3
    if duration_s == 0:
        duration_s = (stream.last_time_ms - stream.first_time_ms) / 1e3
    warnings = stream.warnings()
    implausible = stream.implausible_power(duration_s)
    if implausible:
        warnings.append(implausible)
    return EnergiBridgeRecording(
        path=path,
        domains=domains,
        counted_domains=counted,
        energy_j=energy_j,
        duration_s=duration_s,
        started_at=datetime.fromtimestamp(stream.first_time_ms / 1e3, tz=timezone.utc),
        mean_power_w=energy_j / duration_s if duration_s > 0 else math.nan,
        wraps=stream.wraps,
        samples=stream.samples(),
        columns=list(stream.columns),
        glitches=stream.glitches,
        warnings=warnings,
        notes=stream.notes(),
        clock_steps_back=len(stream.clock_steps_back),
    )


def _check_separator(value: str | None) -> str | None:
    """Validate a column separator (``","``, ``";"``, a tab, or ``"tab"``); None detects it."""
    if value is None:
        return None
    if value in ("tab", "\\t"):
        return "\t"
    if not isinstance(value, str) or len(value) != 1 or value.isalnum() or value in ".+-\"' ":
        raise ConfigError(
            f"separator must be one character such as ',' or ';' (or 'tab'), got {value!r}"
        )
    return value


def check_counter_range(
    value: float | Mapping[str, float] | str | None,
) -> float | dict[str, float] | None:
    """Validate a ``counter_range_j`` value: a number, a mapping, None, or a string.

    A string is a number, or ``COLUMN=NUMBER`` entries separated by ``,`` (how a meter option
    arrives: ``-o energibridge.counter_range_j='CPU_ENERGY (J)=4294967296'``).
    """
    if value is None:
        return None
    if isinstance(value, str) and "=" in value:
        return parse_counter_ranges(value.split(","))
    if isinstance(value, Mapping):
        checked: dict[str, float] = {}
        for key, item in value.items():
            name = _range_key(key)
            checked[name] = _one_range(item, name)
        return checked
    return _one_range(value, "all counters")


def parse_counter_ranges(specs: Sequence[str]) -> float | dict[str, float] | None:
    """``--counter-range-j`` values: ``NUMBER`` (every counter) or ``COLUMN=NUMBER``, repeated.

    One plain number alone gives that number; per-column entries give a mapping, in which a
    plain number becomes the ``"*"`` entry (every counter not named).
    """
    ranges: dict[str, float] = {}
    for spec in specs:
        name, sep, number = spec.rpartition("=")
        key = _range_key(name.strip()) if sep else _ALL_COUNTERS
        if key in ranges:
            what = "one number for all counters" if key == _ALL_COUNTERS else repr(key)
            raise ConfigError(f"counter_range_j: {what} given twice; give each once")
        ranges[key] = _one_range(number.strip(), "all counters" if key == _ALL_COUNTERS else key)
    if not ranges:
        return None
    if list(ranges) == [_ALL_COUNTERS]:
        return ranges[_ALL_COUNTERS]
    return ranges


def _range_key(key: object) -> str:
    """A mapping key: ``"*"``, a counter column's name, or a domain (with or without prefix)."""
    name = str(key).strip()
    if name == _ALL_COUNTERS:
        return name
    column = _classify(name, 0)
    if column is not None and column.kind == "counter":
        return name
    if column is None and _DOMAIN_KEY.fullmatch(name.removeprefix(DOMAIN_PREFIX)):
        return name
    raise ConfigError(
        f"counter_range_j names {_show(name)}, which is no EnergiBridge counter column (such "
        "as 'CPU_ENERGY (J)') or domain (such as 'cpu' or 'energibridge/cpu'); ranges apply "
        "to ..._ENERGY (J) counters only"
    )


def _one_range(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise ConfigError(
            f"counter_range_j for {what} must be a positive number of joules (e.g. "
            f"{INTEL_RAPL_RANGE_J:g} for Intel's counters; by default greenprec infers it), "
            f"got {value!r}"
        )
    return number

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

Energy of a file, EnergiBridge's own ``--summary`` convention:

- a counter column: last value minus first, corrected for wrap-around. EnergiBridge reads the
  raw 32-bit RAPL registers and does not correct wraps itself (its summary can go negative);
  this reader does: a value below the previous one means the counter wrapped, and the step is
  ``counter_range_j - previous + new``. When the range is unknown (``counter_range_j=None``,
  the default) the counter is assumed to have restarted from 0 and the step is ``new``: that
  misses at most ``range - previous``, less than one sample's energy. Intel packages usually
  wrap at :data:`INTEL_RAPL_RANGE_J` (2**32 units of 2**-14 J), AMD at :data:`AMD_RAPL_RANGE_J`.
- a power column: ``sum(power * Delta / 1000)``. A row's power was sampled at its ``Time`` and
  holds for the ``Delta`` ms that follow (EnergiBridge stamps a row with the time of the sample
  and the time elapsed until it was printed), so the first row, with ``Delta`` 0, adds nothing.

The total (:attr:`EnergiBridgeRecording.energy_j`) counts each joule once: the system power
when there is one (it contains everything else), otherwise the CPU (package counter, else the
AMD CPU counter, else the CPU power) plus DRAM plus the GPUs. ``pp0``, ``pp1`` and the cores
are inside the package: reported, never added.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from greenprec.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

INTEL_RAPL_RANGE_J = 262144.0
"""Usual wrap range of Intel's 32-bit package counter (energy unit 2**-14 J)."""
AMD_RAPL_RANGE_J = 65536.0
"""Usual wrap range of AMD's 32-bit package counter (energy unit 2**-16 J, about 15.3 µJ)."""

MAX_DELTA_MS = 3_600_000.0
"""A ``Delta`` above an hour is no sampling interval: the file is damaged or not EnergiBridge's."""

DOMAIN_PREFIX = "energibridge/"


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


@dataclass
class _Track:
    """One domain's running energy: what the samples say up to now."""

    column: _Column
    range_j: float | None
    counted: bool
    # counters: (Time ms, cumulative J); power: (Time ms, end ms, W, cumulative J to end)
    times_ms: list[float] = field(default_factory=list)
    ends_ms: list[float] = field(default_factory=list)
    powers_w: list[float] = field(default_factory=list)
    cumulative_j: list[float] = field(default_factory=list)
    last_raw: float = math.nan
    wraps: int = 0

    def add(self, time_ms: float, delta_ms: float, value: float) -> None:
        if self.column.kind == "counter":
            if not self.cumulative_j:
                step = 0.0
            elif value >= self.last_raw:
                step = value - self.last_raw
            else:
                self.wraps += 1
                step = value if self.range_j is None else self.range_j - self.last_raw + value
            self.last_raw = value
            self.times_ms.append(time_ms)
            self.ends_ms.append(time_ms)
            self.powers_w.append(math.nan)
            total = (self.cumulative_j[-1] if self.cumulative_j else 0.0) + step
        else:
            self.times_ms.append(time_ms)
            self.ends_ms.append(time_ms + delta_ms)
            self.powers_w.append(value)
            total = (self.cumulative_j[-1] if self.cumulative_j else 0.0) + value * delta_ms / 1e3
        self.cumulative_j.append(total)

    @property
    def total_j(self) -> float:
        return self.cumulative_j[-1] if self.cumulative_j else 0.0

    @property
    def covered_until_ms(self) -> float:
        return self.ends_ms[-1] if self.ends_ms else -math.inf

    def energy_at(self, t_ms: float) -> float:
        """Energy from the first sample to epoch time ``t_ms`` (clamped to the known samples)."""
        if not self.cumulative_j:
            return 0.0
        k = bisect.bisect_right(self.times_ms, t_ms) - 1
        if k < 0:
            return 0.0
        if self.column.kind == "power":
            before = self.cumulative_j[k - 1] if k > 0 else 0.0
            held_ms = min(max(t_ms - self.times_ms[k], 0.0), self.ends_ms[k] - self.times_ms[k])
            return before + self.powers_w[k] * held_ms / 1e3
        if k == len(self.times_ms) - 1:
            return self.cumulative_j[k]
        # bisect_right guarantees times_ms[k] <= t_ms < times_ms[k + 1]: no zero division.
        t0, t1 = self.times_ms[k], self.times_ms[k + 1]
        e0, e1 = self.cumulative_j[k], self.cumulative_j[k + 1]
        return e0 + (e1 - e0) * (t_ms - t0) / (t1 - t0)


class EnergiBridgeStream:
    """An EnergiBridge CSV fed line by line, as the file grows or all at once.

    The ``energibridge`` meter feeds it the rows EnergiBridge has written so far;
    :func:`read_energibridge_csv` feeds it a whole file. ``source`` names the file in errors.
    """

    def __init__(
        self,
        source: str,
        *,
        counter_range_j: float | Mapping[str, float] | None = None,
    ) -> None:
        self.source = source
        self._ranges = check_counter_range(counter_range_j)
        self.columns: list[str] = []
        self._tracks: list[_Track] = []
        self.rows = 0
        self.first_time_ms = math.nan
        self.delta_sum_ms = 0.0
        self.last_time_ms = math.nan
        self._row_times: list[tuple[float, float]] = []  # (Time, Delta) per row, for samples

    # -- feeding -----------------------------------------------------------------------------
    def feed(self, line: str, lineno: int) -> None:
        """Take one line of the file (``lineno`` counts from 1, the header)."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return  # EnergiBridge writes no blank lines; a trailing one is harmless
        if not self.columns:
            self._header(line, lineno)
            return
        self._row(line, lineno)

    def _fail(self, lineno: int, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{lineno}: {message}")

    def _header(self, line: str, lineno: int) -> None:
        names = [name.strip() for name in line.split(",")]
        for required in ("Delta", "Time"):
            if required not in names:
                raise self._fail(
                    lineno,
                    f"no {required!r} column in the header: not an EnergiBridge CSV "
                    f"(the header starts {line[:60]!r})",
                )
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
        self._tracks = [_Track(c, self._range_for(c), c.domain in counted) for c in columns]
        self.columns = names

    def _range_for(self, column: _Column) -> float | None:
        if isinstance(self._ranges, float) or self._ranges is None:
            return self._ranges
        for key in (column.name, column.domain, column.domain.removeprefix(DOMAIN_PREFIX)):
            if key in self._ranges:
                return self._ranges[key]
        return None

    def _row(self, line: str, lineno: int) -> None:
        cells = line.split(",")
        if len(cells) != len(self.columns):
            raise self._fail(
                lineno,
                f"{len(cells)} values but the header has {len(self.columns)} columns "
                "(a truncated row: was EnergiBridge killed while writing?)",
            )
        values: list[float] = []
        for name, cell in zip(self.columns, cells, strict=True):
            try:
                values.append(float(cell))
            except ValueError:
                raise self._fail(
                    lineno, f"non-numeric value {cell.strip()!r} in column {name!r}"
                ) from None
        delta_ms = values[self._delta_index]
        time_ms = values[self._time_index]
        if not math.isfinite(time_ms) or time_ms < 0:
            raise self._fail(lineno, f"implausible Time {cells[self._time_index]!r} (epoch ms)")
        if not math.isfinite(delta_ms) or not 0 <= delta_ms <= MAX_DELTA_MS:
            raise self._fail(
                lineno,
                f"implausible Delta {cells[self._delta_index].strip()!r} ms (want 0 to "
                f"{MAX_DELTA_MS:.0f}: the time since the previous sample)",
            )
        readings: list[float] = []
        for track in self._tracks:
            value = values[track.column.index]
            if not math.isfinite(value) or value < 0:
                raise self._fail(
                    lineno,
                    f"implausible value {cells[track.column.index].strip()!r} in column "
                    f"{track.column.name!r} (energy and power are finite and >= 0)",
                )
            if track.range_j is not None and value * track.column.scale > track.range_j:
                raise self._fail(
                    lineno,
                    f"{track.column.name} = {value} exceeds counter_range_j={track.range_j}: "
                    "that range is wrong for this counter",
                )
            readings.append(value * track.column.scale)
        if self.rows and time_ms < self.last_time_ms:
            # A wall-clock step back (NTP): totals do not depend on Time, but the timeline
            # that windows and samples use must not run backwards.
            time_ms = self.last_time_ms
        for track, value in zip(self._tracks, readings, strict=True):
            track.add(time_ms, delta_ms, value)
        if self.rows == 0:
            self.first_time_ms = time_ms
        self.rows += 1
        self.delta_sum_ms += delta_ms
        self.last_time_ms = time_ms
        self._row_times.append((time_ms, delta_ms))

    # -- results -----------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        return [track.column.domain for track in self._tracks]

    @property
    def counted_domains(self) -> list[str]:
        return [track.column.domain for track in self._tracks if track.counted]

    def in_total(self, domain: str) -> bool:
        return domain in self.counted_domains

    @property
    def wraps(self) -> int:
        return sum(track.wraps for track in self._tracks)

    def totals(self) -> dict[str, float]:
        """Energy per domain over the whole file so far."""
        return {track.column.domain: track.total_j for track in self._tracks}

    def energy_at(self, t_ms: float) -> dict[str, float]:
        """Energy per domain from the first sample to epoch ms ``t_ms``, as far as known.

        Non-decreasing in ``t_ms``, and a later call (more rows known) never gives less for the
        same ``t_ms`` once the rows around it are known: the meter relies on both.
        """
        return {track.column.domain: track.energy_at(t_ms) for track in self._tracks}

    def covered_until_ms(self) -> float:
        """Epoch ms up to which every domain has samples (-inf before the first row)."""
        return min((track.covered_until_ms for track in self._tracks), default=-math.inf)

    def samples(self) -> pd.DataFrame:
        """``t_s, domain, power_w, energy_j`` per row and domain (as in the recording)."""
        import pandas as pd

        rows: list[tuple[float, str, float, float]] = []
        for k in range(self.rows):
            for track in self._tracks:
                domain = track.column.domain
                energy_j = track.cumulative_j[k]
                if track.column.kind == "power":
                    t_s = (track.ends_ms[k] - self.first_time_ms) / 1e3
                    rows.append((t_s, domain, track.powers_w[k], energy_j))
                    continue
                t_s = (track.times_ms[k] - self.first_time_ms) / 1e3
                power_w = math.nan
                if k > 0 and track.times_ms[k] > track.times_ms[k - 1]:
                    power_w = (
                        (energy_j - track.cumulative_j[k - 1])
                        / (track.times_ms[k] - track.times_ms[k - 1])
                        * 1e3
                    )
                rows.append((t_s, domain, power_w, energy_j))
        frame: pd.DataFrame = pd.DataFrame(rows, columns=["t_s", "domain", "power_w", "energy_j"])
        return frame


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
    """Counter decreases corrected as wrap-arounds, over all counter columns."""
    samples: pd.DataFrame
    """``t_s, domain, power_w, energy_j``: per row and domain, energy cumulative since the
    first row. ``t_s`` is ``Time`` minus the first ``Time`` in seconds; for a power column it is
    the end of the row's interval (``Time + Delta``), the moment its energy is reached."""
    columns: list[str]
    """The file's raw column names, in order."""


def read_energibridge_csv(
    path: str | os.PathLike[str],
    *,
    counter_range_j: float | Mapping[str, float] | None = None,
) -> EnergiBridgeRecording:
    """Read an EnergiBridge CSV file.

    ``counter_range_j`` is the wrap range of the energy counters in joules: one number for all,
    or a mapping from column name or domain (``"PACKAGE_ENERGY (J)"``, ``"energibridge/dram"``
    or ``"dram"``) to range. ``None`` treats a decrease as a restart from 0 (see the module
    docstring). A malformed file raises :class:`greenprec.ConfigError` naming file and line.
    """
    file = Path(path)
    source = os.fspath(path)
    stream = EnergiBridgeStream(source, counter_range_j=counter_range_j)
    try:
        with open(file, encoding="utf-8", errors="replace", newline="") as handle:
            lineno = 0
            for lineno, line in enumerate(handle, start=1):
                stream.feed(line, lineno)
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror or error}") from None
    if not stream.columns:
        raise ConfigError(f"{source}:1: empty file: no EnergiBridge header")
    if stream.rows == 0:
        raise ConfigError(f"{source}:{max(lineno, 1) + 1}: no data rows after the header")
    return _recording(file, stream)


def _recording(path: Path, stream: EnergiBridgeStream) -> EnergiBridgeRecording:
    domains = stream.totals()
    counted = stream.counted_domains
    energy_j = sum(domains[name] for name in counted)
    duration_s = stream.delta_sum_ms / 1e3
    if duration_s == 0:
        duration_s = (stream.last_time_ms - stream.first_time_ms) / 1e3
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
    )


def check_counter_range(
    value: float | Mapping[str, float] | str | None,
) -> float | dict[str, float] | None:
    """Validate a ``counter_range_j`` value (a number, a string, a mapping, or None)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(key): _one_range(item, str(key)) for key, item in value.items()}
    return _one_range(value, "all counters")


def _one_range(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise ConfigError(
            f"counter_range_j for {what} must be a positive number of joules (e.g. "
            f"{INTEL_RAPL_RANGE_J:g} for Intel, {AMD_RAPL_RANGE_J:g} for AMD), got {value!r}"
        )
    return number

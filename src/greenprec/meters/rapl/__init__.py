"""``rapl``: CPU package and DRAM energy from Linux powercap (Intel and AMD RAPL).

The kernel exposes each RAPL counter as a powercap zone: a directory with ``name``,
``energy_uj`` (a free-running counter in microjoules) and ``max_energy_range_uj`` (the value at
which it wraps to zero). Zones live under ``/sys/class/powercap`` (option ``root``):

- ``intel-rapl:N`` top-level zones: ``package-N`` (``package-N-die-M`` or ``die-M`` on multi-die
  parts) and, on some Intel client parts, ``psys`` (the whole platform);
- ``intel-rapl:N:M`` subzones of a package: ``core``, ``uncore`` (integrated GPU) and ``dram``;
- ``intel-rapl-mmio:N``: the same counters read through MMIO instead of MSRs;
- AMD (Linux 5.11+) uses the same ``intel-rapl`` names: ``package-N`` with one ``core``
  subzone and no DRAM. Its 32-bit counters count 15.3 µJ units (``max_energy_range_uj``
  ~65.5 kJ), so they wrap every ~3.6 min at 300 W; Intel's usual 262 kJ range lasts ~15 min.

The flat ``/sys/class/powercap`` layout (every zone a symlink at the top) and the nested
``/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:0`` layout both work.

Domains are ``rapl/<zone>``; a subzone takes its package's index (``rapl/dram-0`` is the DRAM
of ``package-0``, ``rapl/core-1`` the cores of ``package-1``), ``rapl/psys`` the platform.

The total rule (each joule counted once):

1. Packages (and top-level dies) plus DRAM are the total. DRAM is outside the package.
2. ``core``, ``uncore`` and any subzone of a package are inside it: reported, never added.
   Zone names the kernel may add later are reported and not added, for the same reason.
3. ``psys`` already contains packages and DRAM: reported and not added, unless
   ``prefer_psys=true``, which makes ``psys`` the only counted domain (the others are then
   reported and not added). ``prefer_psys`` without a ``psys`` zone is an error.
4. An ``intel-rapl-mmio`` zone whose domain an MSR zone already provides reads the same
   counter: it is skipped. An MMIO zone with no MSR twin is used like an MSR zone.
5. Mirrors: counted zones of the same kind with the same ``max_energy_range_uj`` whose
   counters read the same non-zero value at :meth:`RaplMeter.start` (die zones that all
   report their package's counter) are one counter: the first is counted, the others are
   reported and not added. Zero is excluded because counters that never ran are all zero.

Wrap-around: the meter keeps each zone's last raw value and when it read it; a new value below
it is judged by the rule every reader of counters shares (:func:`greenprec.counters.judge_drop`)
with the zone's ``max_energy_range_uj`` as the range and the power of its last few steps as the
neighbours. A plausible drop is a wrap, and the step is ``max_energy_range_uj - last + new``.
An implausible one (a wrap would mean hundreds of kilojoules in a fraction of a second) is a
counter that was reset or misread: the energy of that step cannot be known, so the reading
fails with a MeterError rather than adding a range's worth of joules. Any number of wraps
within one block is handled as long as reads are less than one wrap period apart, which
``measure()``'s sampling interval (default 0.2 s) guarantees by a wide margin.

Since Linux 5.10 (CVE-2020-8694, PLATYPUS) ``energy_uj`` is readable by root only; the probe
says so, with the ``chmod`` and udev/tmpfiles fixes (see docs/meters/rapl.md).

Hostile trees. The meter often runs as root (for ``energy_uj``) on a ``root`` someone else may
have built, so it reads nothing outside the powercap tree it was given and echoes nothing it
read beyond a short sanitised excerpt:

- the tree is the real path of ``root`` and, when that ends in ``class/powercap`` (a sysfs, the
  host's mounted elsewhere, or a test's copy), the ``devices`` directory of the same sysfs,
  because there every zone is a symlink into ``devices/virtual/powercap``; that ``devices``
  must be a real directory, never a symlink that would widen the tree;
- a zone directory or file whose real path is outside the tree is refused (MeterError), and the
  file actually opened is checked again through ``/proc/self/fd``, so a link swapped between
  the check and the open is caught too;
- files are opened non-blocking (a FIFO cannot hang the probe), refused unless regular (no
  ``/dev/zero``, no ``/dev/urandom``), and read up to :data:`MAX_ATTRIBUTE_BYTES` (a counter is
  at most 20 digits): a longer file is refused without being read further;
- a counter must be 1 to 20 digits and a ``name`` must look like a zone name
  (:data:`ZONE_NAME`), so the text of a stray file never becomes a number or a domain;
  messages show at most :data:`EXCERPT_CHARS` printable ASCII characters of what was found.
"""

from __future__ import annotations

import errno
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from greenprec._sysfs import MAX_ATTRIBUTE_BYTES as MAX_ATTRIBUTE_BYTES  # where tests import it
from greenprec._sysfs import printable, read_sysfs, require_inside, shown
from greenprec.counters import judge_drop, reference_power_w
from greenprec.errors import ConfigError, MeterError, MeterUnavailable
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.rapl.options import RaplOptions

__all__ = ["EXCERPT_CHARS", "MAX_ATTRIBUTE_BYTES", "ZONE_NAME", "RaplMeter", "greenprec_meters"]

_Reader = Callable[[str], str]
"""Reads one sysfs file and returns its text; injectable so tests can fake failures."""

_Clock = Callable[[], float]
"""Seconds on a monotonic clock; injectable so tests can give counter steps a duration."""

_COUNTER_UPDATE_S = 0.001
"""RAPL counters advance about once a millisecond (Hähnel et al., "Measuring energy consumption
for short code paths using RAPL", 2012), so a step read ``dt`` apart can hold up to ``dt`` plus
one update of energy: a drop is judged over that span, not at the inflated power of a read
that came just after an update."""
_NEIGHBOUR_MIN_STEP_S = 0.01
"""Shorter steps are not kept as neighbours: over a few update periods their power is mostly
rounding (the entry reading, microseconds after start, holds no update or one)."""
_NEIGHBOURS = 5
"""How many recent step powers per zone a drop is judged against (their median)."""

_ZONE_DIR = re.compile(r"intel-rapl(?:-mmio)?(?::\d+)+")
# Control-type directories that hold the zones in the nested /sys/devices layout.
_CONTROL_DIRS = frozenset({"intel-rapl", "intel-rapl-mmio"})
_PACKAGE_NAME = re.compile(r"package-\d+(?:-die-\d+)?|die-\d+")
_MAX_DEPTH = 8  # sysfs zone trees are 2-3 levels deep; the bound only guards against loops

EXCERPT_CHARS = 20
"""How much of an unexpected file's text a message shows (printable ASCII only)."""
ZONE_NAME = re.compile(r"[a-z0-9_-]{1,32}")
"""What a zone's ``name`` may be: the kernel's are ``package-0``, ``package-0-die-1``,
``dram``, ``core``, ``uncore``, ``psys``. The name becomes a domain, printed and stored."""
_COUNTER = re.compile(r"\d{1,20}")  # a 64-bit counter has at most 20 digits


def _powercap_trees(root: str) -> tuple[str, ...]:
    """The real directories the zones under ``root`` may resolve into (see the docstring).

    ``root`` itself, resolved once; and, when it is a sysfs's ``class/powercap``, that sysfs's
    ``devices``: the class directory holds only symlinks into it. ``devices`` counts only as
    a real directory, so whoever built a tree cannot widen it with a ``devices`` symlink.
    """
    real = os.path.realpath(root)
    trees = [real]
    parent, leaf = os.path.split(real)
    if leaf == "powercap" and os.path.basename(parent) == "class":
        devices = os.path.join(os.path.dirname(parent), "devices")
        if (
            os.path.isdir(devices)
            and not os.path.islink(devices)
            and os.path.realpath(devices) == devices
        ):
            trees.append(devices)
    return tuple(trees)


def _excerpt(text: str) -> str:
    """At most :data:`EXCERPT_CHARS` printable characters of a file's text, quoted."""
    clean = printable(text)
    if len(clean) <= EXCERPT_CHARS:
        return repr(clean)
    return f"{clean[:EXCERPT_CHARS]!r}… ({len(text)} characters)"


@dataclass
class _Zone:
    """One powercap zone the meter reports, and its running counter state."""

    zone_id: str  # the directory name, e.g. "intel-rapl:0:2"
    path: str
    name: str  # the kernel's zone name, e.g. "dram"
    kind: str  # "package", "dram", "psys" or "part"
    domain: str
    max_range_uj: int
    in_total: bool = False
    last_uj: int = 0
    last_s: float = 0.0  # the clock when last_uj was read
    max_seen_uj: int = 0
    total_uj: int = 0
    recent_powers_w: deque[float] = field(default_factory=lambda: deque(maxlen=_NEIGHBOURS))

    @property
    def energy_path(self) -> str:
        return os.path.join(self.path, "energy_uj")


class RaplMeter(Meter):
    """CPU package and DRAM energy counters from Linux powercap (see the module docstring)."""

    name = "rapl"
    estimated = False
    auto = True
    auto_order = 10
    covers = frozenset({"cpu", "dram"})
    description = "CPU package + DRAM energy counters from Linux powercap (Intel/AMD RAPL)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see rapl/options.py).
    Options = "greenprec.meters.rapl.options:RaplOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``root``, ``prefer_psys``; from Python also ``reader`` and ``clock``
        (see :class:`~greenprec.meters.rapl.options.RaplOptions`)."""
        super().__init__(**options)
        valid = cast("RaplOptions", self.options)
        self.root = valid.root
        self.prefer_psys = valid.prefer_psys
        self._reader: _Reader | None = valid.reader
        self._clock: _Clock = valid.clock if valid.clock is not None else time.monotonic
        self._zones: list[_Zone] = []
        # What "inside the tree" means for every read; resolved again at each discovery, as
        # the tree may only appear after the meter is made.
        self._trees: tuple[str, ...] = _powercap_trees(self.root)

    # -- the contract ----------------------------------------------------------------------
    @classmethod
    def probe(cls, **options: object) -> Probe:
        meter = cls(**options)  # a bad option is the user's to fix: ConfigError propagates
        try:
            zones = meter._discover()
            for zone in zones:
                meter._read_counter(zone)
        except (MeterUnavailable, MeterError, ConfigError) as error:
            return Probe(False, str(error))
        return Probe(True, domains=[zone.domain for zone in zones])

    def start(self) -> None:
        zones = self._discover()
        first = {zone.zone_id: self._read_counter(zone) for zone in zones}
        # A second pass lets the mirror check tolerate a counter update between two reads.
        second: dict[str, int] = {}
        for zone in zones:
            second[zone.zone_id] = self._read_counter(zone)
            zone.last_s = self._clock()
        _mark_mirrors(zones, first, second)
        for zone in zones:
            zone.last_uj = zone.max_seen_uj = second[zone.zone_id]
            zone.total_uj = 0
            zone.recent_powers_w.clear()
        self._zones = zones

    def read(self) -> list[Reading]:
        readings: list[Reading] = []
        for zone in self._zones:
            raw = self._read_counter(zone)
            now_s = self._clock()
            dt_s = now_s - zone.last_s
            step_uj = raw - zone.last_uj if raw >= zone.last_uj else self._wrap_uj(zone, raw, dt_s)
            if dt_s >= _NEIGHBOUR_MIN_STEP_S:
                zone.recent_powers_w.append(step_uj / 1e6 / dt_s)
            zone.total_uj += step_uj
            zone.last_uj, zone.last_s = raw, now_s
            zone.max_seen_uj = max(zone.max_seen_uj, raw)
            readings.append(
                Reading(zone.domain, energy_j=zone.total_uj / 1e6, in_total=zone.in_total)
            )
        return readings

    def _wrap_uj(self, zone: _Zone, raw: int, dt_s: float) -> int:
        """The step of a counter that went down: a wrap when plausible, else a MeterError."""
        drop = judge_drop(
            zone.last_uj / 1e6,
            raw / 1e6,
            dt_s + _COUNTER_UPDATE_S,
            max_seen_j=zone.max_seen_uj / 1e6,
            range_j=zone.max_range_uj / 1e6,
            neighbour_powers_w=list(zone.recent_powers_w),
        )
        if not drop.plausible:
            reference_w = reference_power_w(list(zone.recent_powers_w))
            beside = (
                "no earlier step to compare"
                if reference_w is None
                else f"the last steps drew {_watts(reference_w)}"
            )
            # A live meter cannot learn that step's energy afterwards: fail, never invent it.
            raise MeterError(
                f"{zone.domain}: {zone.energy_path} fell from {zone.last_uj} to {raw} in "
                f"{dt_s:.3f} s; as a wrap at max_energy_range_uj={zone.max_range_uj} that is "
                f"{drop.step_j:,.0f} J at {_watts(drop.implied_power_w)} ({beside}; at most "
                f"{_watts(drop.limit_w)} is plausible): neither a wrap nor a real step: the "
                "counter was reset or misread (suspend/resume, a driver reload, another tool "
                "writing the register); this block's energy is unknown, measure it again"
            )
        # The integer form keeps the total exact in µJ; drop.step_j is the same in joules.
        return zone.max_range_uj - zone.last_uj + raw

    def stop(self) -> None:
        self._zones = []

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> list[_Zone]:
        """Find the zones to report, with their domains and whether each joins the total."""
        if not os.path.isdir(self.root):
            raise MeterUnavailable(
                f"no {self.root}: not Linux, or RAPL not exposed (VM/container); mount the "
                "host's sysfs or use the estimate meter"
            )
        self._trees = _powercap_trees(self.root)
        paths, dangling = _zone_dirs(self.root, self._trees)
        if not paths:
            raise MeterUnavailable(self._no_zones_reason(dangling))
        names = {zone_id: self._zone_name(path) for zone_id, path in paths}
        zones: list[_Zone] = []
        seen: set[str] = set()
        # MSR zones come first, so an MMIO twin finds its domain taken and is skipped.
        for zone_id, path in paths:
            parent = _parent_id(zone_id)
            parent_name = names.get(parent) if parent else None
            name = names[zone_id]
            domain = _domain(name, parent_name)
            if domain in seen:
                if "-mmio" in zone_id:
                    continue  # the same counter through MMIO: counting it would double it
                domain = f"{domain}@{zone_id}"  # never merge two distinct MSR counters
            seen.add(domain)
            kind = _kind(name, nested=parent is not None)
            zones.append(
                _Zone(
                    zone_id=zone_id,
                    path=path,
                    name=name,
                    kind=kind,
                    domain=domain,
                    max_range_uj=self._max_range(path),
                    in_total=(kind == "psys") if self.prefer_psys else kind in ("package", "dram"),
                )
            )
        if self.prefer_psys and not any(zone.kind == "psys" for zone in zones):
            raise ConfigError(
                f"prefer_psys=true but no psys zone under {self.root}: this CPU does not "
                "report platform energy (only some Intel client parts do); drop prefer_psys "
                "to count packages + DRAM"
            )
        return zones

    def _no_zones_reason(self, dangling: bool) -> str:
        if dangling:
            return (
                f"the RAPL zones under {self.root} point to nothing: a container runtime masks "
                "/sys/devices/virtual/powercap (Docker >= 24.0.7, containerd, Podman); "
                "bind-mount it (-v /sys/devices/virtual/powercap:/powercap:ro) and pass "
                "-o root=/powercap, or use the estimate meter"
            )
        return (
            f"no RAPL zones (intel-rapl:*) under {self.root}: the intel_rapl_msr driver is not "
            "loaded or the CPU/VM does not expose RAPL; try `sudo modprobe intel_rapl_msr`, "
            "or use the estimate meter"
        )

    # -- reading ---------------------------------------------------------------------------
    def _text(self, path: str) -> str:
        # Checked before any reader runs, an injected one too: nothing outside the tree is
        # opened (opening a device can have effects of its own). The default reader checks
        # the opened file again, against a link swapped in between.
        require_inside(path, os.path.realpath(path), self._trees)
        try:
            if self._reader is None:
                return read_sysfs(path, self._trees).strip()
            return self._reader(path).strip()
        except PermissionError:
            raise MeterUnavailable(self._permission_reason(path)) from None
        except OSError as error:
            # ENODATA/EIO: the driver knows the zone but the hardware gave no value.
            why = os.strerror(error.errno) if error.errno else str(error)
            if error.errno == errno.ENOENT:
                why = "no such file (the zone went away, or a container masks powercap)"
            raise MeterError(f"cannot read {path}: {why}") from None

    def _integer(self, path: str) -> int:
        text = self._text(path)
        # Digits only: int() would also take "+1", "1_000" and non-ASCII digits.
        if not _COUNTER.fullmatch(text):
            want = (
                "a counter is never negative" if re.fullmatch(r"-\d+", text) else "want an integer"
            )
            raise MeterError(f"unexpected content in {shown(path)}: {_excerpt(text)} ({want})")
        return int(text)

    def _zone_name(self, zone_path: str) -> str:
        path = os.path.join(zone_path, "name")
        name = self._text(path)
        # The name becomes a domain (printed, in JSON, in runs.csv): only what the kernel writes.
        if not ZONE_NAME.fullmatch(name):
            raise MeterError(
                f"unexpected content in {shown(path)}: {_excerpt(name)} (want a zone name such "
                "as package-0 or dram: 1 to 32 of a-z, 0-9, '-', '_')"
            )
        return name

    def _read_counter(self, zone: _Zone) -> int:
        return self._integer(zone.energy_path)

    def _max_range(self, zone_path: str) -> int:
        path = os.path.join(zone_path, "max_energy_range_uj")
        value = self._integer(path)
        if value == 0:
            # Without the range a wrap cannot be corrected; a silent wrong total is worse.
            raise MeterError(f"{path} is 0: the wrap-around of this counter cannot be corrected")
        return value

    def _permission_reason(self, path: str) -> str:
        pattern = os.path.join(self.root, "intel-rapl:*", "energy_uj")
        if "intel-rapl-mmio" in path:
            pattern += " " + os.path.join(self.root, "intel-rapl-mmio:*", "energy_uj")
        return (
            f"permission denied reading {path} (root-only since Linux 5.10, CVE-2020-8694); "
            f"fix: sudo chmod a+r {pattern} (until reboot), or a udev rule or tmpfiles.d "
            "entry to keep it (docs/meters/rapl.md), or run as root"
        )


def _watts(power_w: float) -> str:
    """A power for a message: ``12.5 MW``, ``3.2 kW``, ``45 W``."""
    if not math.isfinite(power_w):
        return "unbounded power"  # the range is at or below the last value: no wrap fits
    for scale, unit in ((1e6, "MW"), (1e3, "kW")):
        if power_w >= scale:
            return f"{power_w / scale:.3g} {unit}"
    return f"{power_w:.3g} W"


def _zone_dirs(root: str, trees: Sequence[str]) -> tuple[list[tuple[str, str]], bool]:
    """(zone id, path) of every zone under ``root``, and whether zone links were dangling.

    A zone or control directory that resolves outside ``trees`` is refused (MeterError), not
    skipped: a zone left out silently would make a total that looks whole and is not.
    """
    found: dict[str, str] = {}
    dangling = False
    # Breadth first: the flat class layout lists a subzone twice (at the top and inside its
    # package), and the shallow path is the one users know and messages should name.
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    while queue:
        directory, depth = queue.popleft()
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue  # an unlistable directory holds no zone we could read anyway
        for entry in entries:
            path = os.path.join(directory, entry)
            if _ZONE_DIR.fullmatch(entry):
                if not os.path.isdir(path):
                    # A link to nothing (a masked /sys/devices); a file is simply no zone.
                    dangling = dangling or (os.path.islink(path) and not os.path.exists(path))
                elif entry not in found:
                    require_inside(path, os.path.realpath(path), trees)
                    found[entry] = path
                    if depth < _MAX_DEPTH:
                        queue.append((path, depth + 1))
            elif entry in _CONTROL_DIRS and depth == 0 and os.path.isdir(path):
                require_inside(path, os.path.realpath(path), trees)
                queue.append((path, depth + 1))
    return sorted(found.items(), key=lambda item: _natural_key(item[0])), dangling


def _parent_id(zone_id: str) -> str | None:
    prefix, _colon, indices = zone_id.partition(":")
    parts = indices.split(":")
    return f"{prefix}:{':'.join(parts[:-1])}" if len(parts) > 1 else None


def _domain(name: str, parent_name: str | None) -> str:
    """``rapl/package-0``; a subzone borrows its package's index: ``rapl/dram-0``."""
    if parent_name is None:
        return f"rapl/{name}"
    suffix = parent_name.removeprefix("package-")
    return f"rapl/{name}-{suffix}"


def _kind(name: str, *, nested: bool) -> str:
    if name == "dram":
        return "dram"
    if name == "psys" or name.startswith("psys-"):
        return "psys"
    if not nested and _PACKAGE_NAME.fullmatch(name):
        return "package"
    return "part"  # core, uncore, a die inside a package, or a name we do not know


def _mark_mirrors(zones: list[_Zone], first: dict[str, int], second: dict[str, int]) -> None:
    """Stop counting zones whose counter duplicates an earlier counted zone (rule 5)."""
    kept: list[_Zone] = []
    for zone in zones:
        if not zone.in_total:
            continue
        if any(_same_counter(other, zone, first, second) for other in kept):
            zone.in_total = False
        else:
            kept.append(zone)


def _same_counter(
    earlier: _Zone, later: _Zone, first: dict[str, int], second: dict[str, int]
) -> bool:
    """Whether two zones read one counter, given two passes that read ``earlier`` first.

    The reads go earlier, later, earlier, later; a counter update can fall between any two,
    so the later zone's first value may equal either of the earlier zone's values.
    """
    if earlier.kind != later.kind or earlier.max_range_uj != later.max_range_uj:
        return False
    e1, e2 = first[earlier.zone_id], second[earlier.zone_id]
    l1, l2 = first[later.zone_id], second[later.zone_id]
    return (l1 != 0 and l1 in (e1, e2)) or (l2 != 0 and l2 == e2)


def _natural_key(zone_id: str) -> tuple[int, ...]:
    """Order ``intel-rapl:10`` after ``intel-rapl:9``; MMIO zones after MSR zones."""
    mmio = 1 if "-mmio" in zone_id else 0
    return (mmio, *(int(part) for part in zone_id.split(":")[1:]))


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [RaplMeter]

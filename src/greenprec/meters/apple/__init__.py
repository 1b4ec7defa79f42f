"""``apple``: Apple silicon SoC energy from zeus-apple-silicon (``pip install greenprec[apple]``).

zeus-apple-silicon (https://github.com/ml-energy/zeus-apple-silicon, read at 1.1.0 and the
commit after it that adds Ultra chips) subscribes to the "Energy Model" group of macOS's
IOReport framework, which keeps a cumulative energy counter per SoC part; no sudo is needed.
The module ``zeus_apple_silicon`` is imported only when the meter is probed or started, so
``import greenprec`` stays light and works on every system.

The meter uses ``AppleEnergyMonitor.get_cumulative_energy()`` (there since 1.0.4) as a counter:
one sample at :meth:`AppleMeter.start`, one per reading, each domain's energy the difference.
That is what the library's own ``begin_window``/``end_window`` compute (the delta of two
samples), without a window to open per reading, and a sample's rounding to whole millijoules
does not add up over a long block. Zeus's own Apple SoC monitor (``zeus/device/soc/apple.py``)
reads its totals the same way.

Domains (``AppleEnergyMetrics`` fields, in millijoules; the meter reports joules):

====================================  ============================================  ========
domain                                 field                                         in total
====================================  ============================================  ========
``apple/cpu``                          ``cpu_total_mj`` (every CPU cluster)          yes
``apple/cpu.efficiency``               ``efficiency_cluster_mj`` summed (1.1.0+;     no
                                       else ``efficiency_cores_mj`` summed)
``apple/cpu.performance``              the same for the performance cores            no
``apple/gpu``                          ``gpu_mj``                                    yes
``apple/gpu_sram``                     ``gpu_sram_mj`` (the GPU's SRAM, beside       yes
                                       ``gpu_mj``, as macmon and Apple's
                                       ``powermetrics`` count it)
``apple/ane``                          ``ane_mj`` (the Neural Engine)                yes
``apple/dram``                         ``dram_mj``                                   yes
====================================  ============================================  ========

The efficiency and performance clusters are parts of ``apple/cpu``, so they are reported and
never added: each joule once. A chip that reports no ``cpu_total_mj`` but its clusters has them
counted instead (they do not overlap each other). The core managers (``*_core_manager_mj``) are
also inside the CPU total and are not reported. ``cores=true`` adds one domain per core
(``apple/cpu.efficiency-core-0`` ...), also never added.

A field that is None on this chip (zeus-apple-silicon gives None for what IOReport does not
have: DRAM on some older chips, GPU SRAM on the M5) is left out, and a warning names it once
per process. A field that disappears in the middle of a block, a per-core list that changes
length, or a counter that goes backwards fails the reading (MeterError) rather than invent that
step's energy.

What it covers: the SoC's CPU clusters, GPU, Neural Engine and DRAM, from Apple's on-chip energy
model (counted from activity, frequency and voltage, not a current sensor), not the whole
machine: the display, SSD, fans, USB devices and power-supply losses are outside it. The
``energibridge`` meter on macOS reads the SMC's ``SYSTEM_POWER`` instead, the whole machine with
its display. See docs/meters/apple.md.
"""

from __future__ import annotations

import importlib
import platform
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, cast

from greenprec.errors import GreenprecWarning, MeterError, MeterUnavailable
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.apple.options import AppleOptions

__all__ = ["AppleMeter", "greenprec_meters"]

_INSTALL_HINT = "pip install 'greenprec[apple]' (the zeus-apple-silicon package)"

_WHOLE_PARTS = (
    ("gpu", "gpu_mj", "GPU"),
    ("gpu_sram", "gpu_sram_mj", "GPU SRAM"),
    ("ane", "ane_mj", "Neural Engine"),
    ("dram", "dram_mj", "DRAM"),
)
"""(domain part, AppleEnergyMetrics field, what it is) of the parts outside the CPU."""

_CLUSTERS = (
    ("efficiency", "efficiency_cluster_mj", "efficiency_cores_mj"),
    ("performance", "performance_cluster_mj", "performance_cores_mj"),
)
"""(kind, cluster totals field, per-core field). The cluster totals (zeus-apple-silicon 1.1.0
and later) include each cluster's shared L2 and interconnect, which the per-core values leave
out (its README: up to 2x the per-core sum on an M5 Max), so they are preferred."""

_warned_missing: set[tuple[str, ...]] = set()
"""The sets of missing fields already named in a warning: one warning per process, not per block."""


@dataclass
class _Domain:
    """One reported domain and the counter behind it."""

    domain: str
    field: str
    index: int | None  # a core's index in a per-core list; None: the field, lists summed
    in_total: bool
    length: int | None = None  # a list field's length at the start; None: an integer field
    start_mj: int = 0
    last_mj: int = 0


class AppleMeter(Meter):
    """Apple silicon SoC energy (CPU clusters, GPU, ANE, DRAM) through zeus-apple-silicon."""

    name = "apple"
    estimated = False
    auto = True
    auto_order = 25
    # The SoC, not the whole machine ("system" is energibridge's SYSTEM_POWER): sharing cpu,
    # gpu and dram with energibridge keeps auto from pairing the two on a Mac.
    covers = frozenset({"cpu", "gpu", "dram", "ane"})
    description = "Apple silicon SoC energy (CPU, GPU, ANE, DRAM) via IOReport (zeus-apple-silicon)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see apple/options.py).
    Options = "greenprec.meters.apple.options:AppleOptions"

    def __init__(self, **options: object) -> None:
        """Option: ``cores`` (see :class:`~greenprec.meters.apple.options.AppleOptions`)."""
        super().__init__(**options)
        self.cores = cast("AppleOptions", self.options).cores
        self._monitor: object | None = None
        self._domains: list[_Domain] = []

    # -- the contract ----------------------------------------------------------------------
    @classmethod
    def probe(cls, **options: object) -> Probe:
        meter = cls(**options)  # bad options are the user's to fix: ConfigError propagates
        try:
            monitor = _open_monitor()
            domains, _missing = _plan(_sample(monitor), cores=meter.cores)
        except (MeterUnavailable, MeterError) as error:
            return Probe(False, str(error))
        return Probe(True, domains=[domain.domain for domain in domains])

    def start(self) -> None:
        monitor = _open_monitor()
        metrics = _sample(monitor)
        domains, missing = _plan(metrics, cores=self.cores)
        for domain in domains:
            listed = _field(metrics, domain.field)
            domain.length = len(listed) if isinstance(listed, list) else None
            value = _value(metrics, domain)
            domain.start_mj = domain.last_mj = 0 if value is None else value
        self._monitor, self._domains = monitor, domains
        _warn_missing(missing)

    def read(self) -> list[Reading]:
        monitor = self._monitor
        if monitor is None:
            return []  # not started, or stopped: no monitor is open (start() sets it)
        metrics = _sample(monitor)
        readings: list[Reading] = []
        for domain in self._domains:
            value = _value(metrics, domain)
            if value is None:
                raise MeterError(
                    f"{domain.domain}: zeus-apple-silicon stopped reporting {domain.field} "
                    "during the block; its energy since the last reading is unknown"
                )
            if value < domain.last_mj:
                raise MeterError(
                    f"{domain.domain}: the IOReport energy counter went backwards "
                    f"({domain.last_mj} -> {value} mJ, {domain.field}); this block's energy is "
                    "unknown, measure it again"
                )
            domain.last_mj = value
            energy_j = (value - domain.start_mj) / 1e3
            readings.append(Reading(domain.domain, energy_j=energy_j, in_total=domain.in_total))
        return readings

    def stop(self) -> None:
        # The monitor has no close(): dropping it releases its IOReport subscription.
        self._monitor = None
        self._domains = []


# -- zeus-apple-silicon ----------------------------------------------------------------------
def _this_platform() -> tuple[str, str]:
    """``(platform.system(), platform.machine())``; tests replace it to run the meter anywhere."""
    return platform.system(), platform.machine()


def _require_apple_silicon() -> None:
    system, machine = _this_platform()
    if system != "Darwin":
        raise MeterUnavailable(
            f"not macOS (this is {system or 'an unknown system'}): the apple meter reads Apple "
            "silicon's IOReport energy counters; on Linux use rapl (CPUs) and nvml (NVIDIA GPUs)"
        )
    if machine != "arm64":
        raise MeterUnavailable(
            f"this Python runs as {machine or 'an unknown machine'}, not arm64: an Intel Mac has "
            "no Apple silicon counters (use energibridge), and under Rosetta an x86_64 Python "
            "cannot load zeus-apple-silicon; use an arm64 Python"
        )


def _import_zeus() -> ModuleType:
    try:
        # By name: a macOS-only extra with no type stubs, so mypy has nothing to resolve here
        # (zeus/device/soc/apple.py loads it the same way).
        module = importlib.import_module("zeus_apple_silicon")
    except ImportError:
        raise MeterUnavailable(f"zeus-apple-silicon is not installed: {_INSTALL_HINT}") from None
    if not callable(getattr(module, "AppleEnergyMonitor", None)):
        raise MeterUnavailable(
            f"zeus_apple_silicon has no AppleEnergyMonitor: not the zeus-apple-silicon package "
            f"this meter reads; {_INSTALL_HINT}"
        )
    return module


def _open_monitor() -> object:
    """A new ``AppleEnergyMonitor``, or MeterUnavailable saying why there is none."""
    _require_apple_silicon()
    module = _import_zeus()
    try:
        monitor: object = module.AppleEnergyMonitor()
    except Exception as error:  # its constructor raises RuntimeError when IOReport refuses
        raise MeterUnavailable(
            f"zeus-apple-silicon could not subscribe to IOReport's energy counters "
            f"({type(error).__name__}: {error})"
        ) from None
    if not callable(getattr(monitor, "get_cumulative_energy", None)):
        raise MeterUnavailable(
            "this zeus-apple-silicon has no get_cumulative_energy() (1.0.4 and later have it); "
            "pip install -U 'zeus-apple-silicon>=1.1'"
        )
    return monitor


def _sample(monitor: object) -> object:
    """One cumulative ``AppleEnergyMetrics`` sample."""
    try:
        metrics: object = getattr(monitor, "get_cumulative_energy")()  # noqa: B009 - untyped
    except Exception as error:
        raise MeterError(
            f"zeus-apple-silicon failed reading IOReport: {type(error).__name__}: {error}"
        ) from error
    return metrics


def _field(metrics: object, name: str) -> int | list[int] | None:
    """An ``AppleEnergyMetrics`` field: millijoules, a list of them per core or cluster, or None
    where this chip does not report it (a missing attribute is an older library's None)."""
    raw: object = getattr(metrics, name, None)
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, (list, tuple)):
        values = [item for item in raw if isinstance(item, int) and not isinstance(item, bool)]
        if len(values) == len(raw):
            return values
    raise MeterError(
        f"zeus-apple-silicon gave {name}={raw!r:.60}: want millijoules (an integer or a list)"
    )


def _present(metrics: object, name: str) -> bool:
    value = _field(metrics, name)
    return value is not None and value != []


def _value(metrics: object, domain: _Domain) -> int | None:
    """The domain's counter in ``metrics`` (mJ), or None when the field is gone."""
    value = _field(metrics, domain.field)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if domain.length is not None and len(value) != domain.length:
        # IOReport's channels are fixed for a subscription: a list that changes length no
        # longer sums the same cores, and its difference would mix counters.
        raise MeterError(
            f"{domain.domain}: zeus-apple-silicon gave {len(value)} values in {domain.field}, "
            f"{domain.length} at the start; this block's energy is unknown"
        )
    if domain.index is None:
        return sum(value) if value else None
    return value[domain.index] if domain.index < len(value) else None


def _plan(metrics: object, *, cores: bool) -> tuple[list[_Domain], list[str]]:
    """The domains ``metrics`` (a first sample) can give, and the fields this chip lacks."""
    domains: list[_Domain] = []
    missing: list[str] = []
    has_cpu_total = _present(metrics, "cpu_total_mj")
    if has_cpu_total:
        domains.append(_Domain("apple/cpu", "cpu_total_mj", None, in_total=True))
    else:
        missing.append("CPU total (cpu_total_mj)")
    for kind, cluster_field, cores_field in _CLUSTERS:
        if _present(metrics, cluster_field):
            source = cluster_field
        elif _present(metrics, cores_field):
            source = cores_field
        else:
            missing.append(f"{kind} cores ({cluster_field}, {cores_field})")
            continue
        # Parts of apple/cpu: counted only when the chip gives no CPU total to count instead.
        domains.append(_Domain(f"apple/cpu.{kind}", source, None, in_total=not has_cpu_total))
        per_core = _field(metrics, cores_field)
        if cores and isinstance(per_core, list):
            domains += [
                _Domain(f"apple/cpu.{kind}-core-{index}", cores_field, index, in_total=False)
                for index in range(len(per_core))
            ]
    for part, name, label in _WHOLE_PARTS:
        if _present(metrics, name):
            domains.append(_Domain(f"apple/{part}", name, None, in_total=True))
        else:
            missing.append(f"{label} ({name})")
    if not domains:
        raise MeterUnavailable(
            "zeus-apple-silicon found no energy counter in IOReport's Energy Model group (every "
            "AppleEnergyMetrics field is None): a chip it does not know yet? "
            "pip install -U zeus-apple-silicon"
        )
    return domains, missing


def _warn_missing(missing: list[str]) -> None:
    key = tuple(missing)
    if not missing or key in _warned_missing:
        return
    _warned_missing.add(key)
    warnings.warn(
        f"apple meter: this chip reports no {', '.join(missing)} through zeus-apple-silicon; "
        "that energy is not measured",
        GreenprecWarning,
        stacklevel=3,
    )


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [AppleMeter]

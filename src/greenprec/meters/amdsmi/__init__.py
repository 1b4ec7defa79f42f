"""``amdsmi``: AMD GPU energy through AMD SMI (``pip install greenprec[amd]``).

AMD SMI is ROCm's management library (the one ``amd-smi`` uses); AMD's ``amdsmi`` Python
package binds it. It is imported only when the meter is probed or started, so ``import
greenprec`` stays light and works without it. Read against amdsmi 6.0 to 6.3 (ROCm 6.0-6.3).

Per GPU, at :meth:`AmdsmiMeter.start`:

- ``amdsmi_get_energy_count``: the GPU's energy accumulator (``energy_accumulator``; amdsmi
  before 6.2.1 calls it ``power``) times ``counter_resolution`` (microjoules per tick). A
  counter reading. The accumulator is a 64-bit count: at ~15 µJ a tick it cannot wrap within
  any run, so a count that goes down means the driver was reloaded or the GPU reset (or the
  fault of ROCm/amdsmi#115), and the measurement fails rather than guess.
- Where that call raises ``AMDSMI_STATUS_NOT_SUPPORTED``, or with ``source=power``:
  ``amdsmi_get_power_info`` (watts: ``current_socket_power``, else ``average_socket_power``:
  MI300 reports only the first, MI200 only the second), returned as power readings that
  ``measure()`` integrates.

The start-up check (``counter_check_s``, 0.5 s by default): each counter is read twice, that
far apart, beside the GPU's power. Some ROCm versions leave a counter stuck or wrong while
power moves (ROCm/amdsmi#38 on MI100; Zeus #113 added the same check): where the GPU draws
more than :data:`_CHECK_MIN_POWER_W` and the counter's energy is not within a factor of ten of
power × time, the meter refuses to start, naming the GPU, instead of reporting zeros.

A GPU that reads 0 W and whose counter does not move (the second die of an MI250/MI250X, whose
power is in the first die's figure: CodeCarbon #1097) is named in a warning and reported with
``in_total=False``: listed, never silently summed. If every measured GPU is such a die, the
meter refuses to start: its 0 J would be wrong.

Which GPUs: the ``devices`` option (comma-separated amdsmi indices) if given, else what the
ROCm runtime would make visible: ``ROCR_VISIBLE_DEVICES`` (indices or UUIDs) picks from
all GPUs, then ``HIP_VISIBLE_DEVICES`` (or, where that is unset, ``CUDA_VISIBLE_DEVICES``,
which HIP reads as the same) picks by position among those; each list ends at its first entry
that names no GPU. Domains are ``amdsmi/gpu-<amdsmi index>``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, cast

from greenprec.errors import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.amdsmi.options import AmdsmiOptions

__all__ = [
    "VISIBLE_DEVICE_VARIABLES",
    "AmdsmiMeter",
    "gpu_ids",
    "greenprec_meters",
    "visible_indices",
]

_INSTALL_HINT = (
    "pip install 'greenprec[amd]' (AMD's amdsmi package; it needs ROCm's libamd_smi.so, "
    "and its version must match the installed ROCm)"
)
_NOT_SUPPORTED = 2  # AMDSMI_STATUS_NOT_SUPPORTED
_CHECK_MIN_POWER_W = 5.0
"""Below this the start-up check cannot tell a stuck counter from an idle GPU: it is skipped."""
_CHECK_RATIO = (0.1, 10.0)
"""The counter's energy over power × time must lie between these: loose, like Zeus's bound,
because power is sampled at two instants and the counter integrates between them; it catches a
counter that does not move, or moves in the wrong unit, not a few per cent of error."""
_POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power")
"""``amdsmi_get_power_info`` keys (watts), first readable wins; "N/A" where a GPU has none.
``socket_power`` is the ``amd-smi`` command's name for it, read last in case a later amdsmi
(7.x, not read here) returns it under that name."""
_ZERO_DIE_NOTE = (
    "on an MI250/MI250X only one die of each package reports power and energy, its figure "
    "covering both dies (CodeCarbon #1097)"
)

VISIBLE_DEVICE_VARIABLES = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
"""The variables that choose a ROCm job's GPUs, in the order the runtime applies them."""


@dataclass
class _Gpu:
    index: int
    handle: object  # an amdsmi processor handle, opaque: only passed back to amdsmi
    domain: str
    name: str
    counter: bool  # True: energy accumulator in ticks; False: power in W
    resolution_uj: float = 0.0
    start_ticks: int = 0
    last_ticks: int = 0
    in_total: bool = True  # False: a die that reads nothing (its package's energy is elsewhere)


class AmdsmiMeter(Meter):
    """AMD GPU energy (or power) through AMD SMI; see the module docstring."""

    name = "amdsmi"
    estimated = False
    auto = True
    auto_order = 22
    covers = frozenset({"gpu"})
    description = "AMD GPU energy through AMD SMI (amdsmi)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see amdsmi/options.py).
    Options = "greenprec.meters.amdsmi.options:AmdsmiOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``devices``, ``source``, ``counter_check_s`` (see
        :class:`~greenprec.meters.amdsmi.options.AmdsmiOptions`)."""
        super().__init__(**options)
        parsed = cast("AmdsmiOptions", self.options)
        self.devices = parsed.devices
        self.source = parsed.source
        self.counter_check_s = parsed.counter_check_s
        self._smi: ModuleType | None = None
        self._gpus: list[_Gpu] = []

    # -- the contract ----------------------------------------------------------------------
    @classmethod
    def probe(cls, **options: object) -> Probe:
        meter = cls(**options)  # bad options are the user's to fix: ConfigError propagates
        try:
            smi = _import_amdsmi()
            _init(smi)
        except MeterUnavailable as error:
            return Probe(False, str(error))
        try:
            handles = _handles(smi)
            indices, _ignored = meter._select(smi, handles)
        except MeterUnavailable as error:
            return Probe(False, str(error))
        except smi.AmdSmiException as error:
            return Probe(False, f"amdsmi failed listing the GPUs: {_text(error)}")
        finally:
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()
        return Probe(True, domains=[f"amdsmi/gpu-{index}" for index in indices])

    def start(self) -> None:
        smi = _import_amdsmi()
        _init(smi)
        self._smi = smi
        try:
            handles = _handles(smi)
            indices, ignored = self._select(smi, handles)
            if ignored:
                variable, entries = ignored
                warnings.warn(
                    f"{variable}={os.environ.get(variable, '')!r}: {entries[0]!r} names no GPU, "
                    "so it and the entries after it are ignored (as ROCm ignores them)",
                    GreenprecWarning,
                    stacklevel=2,
                )
            self._gpus = [self._open(smi, index, handles[index]) for index in indices]
            self._check_counters(smi)
        except smi.AmdSmiException as error:
            self.stop()
            raise MeterError(f"amdsmi failed opening the GPUs: {_text(error)}") from error
        except BaseException:
            self.stop()
            raise

    def read(self) -> list[Reading]:
        smi = self._smi
        readings: list[Reading] = []
        if smi is None:
            return readings  # not started, or stopped: no GPU is open (start() sets both)
        for gpu in self._gpus:
            try:
                if gpu.counter:
                    ticks, _resolution = _energy_count(smi, gpu.handle)
                    if ticks < gpu.last_ticks:
                        raise MeterError(
                            f"the energy counter of GPU {gpu.index} ({gpu.name}) went backwards "
                            f"({gpu.last_ticks} -> {ticks} ticks): was the driver reloaded or "
                            "the GPU reset? (ROCm/amdsmi#115 reports it without either)"
                        )
                    gpu.last_ticks = ticks
                    energy_j = (ticks - gpu.start_ticks) * gpu.resolution_uj / 1e6
                    readings.append(Reading(gpu.domain, energy_j=energy_j, in_total=gpu.in_total))
                else:
                    power_w = _power_w(smi, gpu.handle)
                    if power_w is None:
                        raise MeterError(
                            f"GPU {gpu.index} ({gpu.name}) stopped reporting its power "
                            "(amdsmi_get_power_info gives N/A)"
                        )
                    readings.append(Reading(gpu.domain, power_w=power_w, in_total=gpu.in_total))
            except smi.AmdSmiException as error:
                raise MeterError(
                    f"amdsmi failed reading GPU {gpu.index} ({gpu.name}): {_text(error)}"
                ) from error
        return readings

    def stop(self) -> None:
        smi, self._smi = self._smi, None
        self._gpus = []
        if smi is not None:
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()

    # -- devices ---------------------------------------------------------------------------
    def _select(
        self, smi: ModuleType, handles: list[object]
    ) -> tuple[list[int], tuple[str, list[str]] | None]:
        """amdsmi indices to measure, and (variable, entries) ignored by a visible-devices
        variable, if any."""
        count = len(handles)
        if self.devices is not None:
            missing = [index for index in self.devices if index >= count]
            if missing:
                raise ConfigError(
                    f"amdsmi option devices names GPU {missing[0]}, but amdsmi sees {count} "
                    f"(indices 0-{count - 1}; see amd-smi list)"
                )
            return list(self.devices), None

        indices, ignored = visible_indices(os.environ, count, lambda i: gpu_ids(smi, handles[i]))
        if not indices:
            chosen = ", ".join(
                f"{name}={os.environ[name]!r}"
                for name in VISIBLE_DEVICE_VARIABLES
                if name in os.environ
            )
            raise MeterUnavailable(
                f"{chosen} makes no GPU visible to this job; unset it or pass -o amdsmi.devices=0,1"
            )
        return indices, ignored

    def _open(self, smi: ModuleType, index: int, handle: object) -> _Gpu:
        gpu = _Gpu(index, handle, f"amdsmi/gpu-{index}", _name(smi, handle), counter=False)
        if self.source == "auto":
            try:
                ticks, resolution_uj = _energy_count(smi, handle)
            except smi.AmdSmiException as error:
                if not _is_not_supported(error):
                    raise
            else:
                if math.isfinite(resolution_uj) and resolution_uj > 0:
                    gpu.counter = True
                    gpu.resolution_uj = resolution_uj
                    gpu.start_ticks = gpu.last_ticks = ticks
        if not gpu.counter and _power_w(smi, handle) is None:
            raise MeterError(
                f"GPU {index} ({gpu.name}) reports neither energy nor power through amdsmi "
                "(no energy counter, and amdsmi_get_power_info gives N/A)"
            )
        return gpu

    def _check_counters(self, smi: ModuleType) -> None:
        """Compare each counter with power over ``counter_check_s`` (see the module docstring);
        name the dies that read nothing. Raises MeterError for a counter that cannot be
        trusted, or when every GPU measured reads nothing."""
        before = {gpu.index: (_power_w(smi, gpu.handle), gpu.last_ticks) for gpu in self._gpus}
        started = time.monotonic()
        checked = self.counter_check_s > 0 and any(gpu.counter for gpu in self._gpus)
        if checked:
            time.sleep(self.counter_check_s)
        elapsed_s = time.monotonic() - started
        broken: list[str] = []
        silent: list[_Gpu] = []
        for gpu in self._gpus:
            power_before_w, ticks_before = before[gpu.index]
            power_after_w = _power_w(smi, gpu.handle)
            powers = [p for p in (power_before_w, power_after_w) if p is not None]
            power_w = sum(powers) / len(powers) if powers else None
            if not gpu.counter:
                if power_w == 0:
                    silent.append(gpu)
                continue
            ticks, _resolution = _energy_count(smi, gpu.handle)
            if ticks < ticks_before:
                raise MeterError(
                    f"the energy counter of GPU {gpu.index} ({gpu.name}) went backwards during "
                    f"the start-up check ({ticks_before} -> {ticks} ticks; ROCm/amdsmi#115)"
                )
            gpu.start_ticks = gpu.last_ticks = ticks
            counted_j = (ticks - ticks_before) * gpu.resolution_uj / 1e6
            # A die that reports nothing: 0 W (or no power at all) and, where the check ran, a
            # counter that did not move either.
            if (power_w == 0 and not checked) or (not power_w and checked and counted_j == 0):
                silent.append(gpu)
            elif checked and power_w is not None and power_w > _CHECK_MIN_POWER_W:
                expected_j = power_w * elapsed_s
                low, high = _CHECK_RATIO
                if not low < counted_j / expected_j < high:
                    broken.append(
                        f"GPU {gpu.index} ({gpu.name}): its counter gained {counted_j:.3g} J in "
                        f"{elapsed_s:.2f} s while it drew {power_w:.0f} W (about "
                        f"{expected_j:.3g} J)"
                    )
        if broken:
            raise MeterError(
                "the energy counter cannot be trusted on "
                + "; ".join(broken)
                + ". Some ROCm versions leave it stuck or wrong (ROCm/amdsmi#38; Zeus #113): "
                "rather than report wrong energy, the amdsmi meter stops here. Integrate power "
                "instead with -o amdsmi.source=power, or reboot / update ROCm"
            )
        if silent and len(silent) == len(self._gpus):
            names = ", ".join(f"GPU {gpu.index} ({gpu.name})" for gpu in silent)
            raise MeterError(
                f"{names} read 0 W and no energy: {_ZERO_DIE_NOTE}. Measuring only such a die "
                "would report 0 J; measure the die that reports for the package (with "
                "-o amdsmi.devices=...), knowing that it covers both dies"
            )
        for gpu in silent:
            gpu.in_total = False
            warnings.warn(
                f"amdsmi/gpu-{gpu.index} ({gpu.name}) reads 0 W and no energy: "
                f"{_ZERO_DIE_NOTE}; it is listed but not added to the total",
                GreenprecWarning,
                stacklevel=3,
            )


def visible_indices(
    environ: Mapping[str, str], count: int, ids_of: Callable[[int], list[str]]
) -> tuple[list[int], tuple[str, list[str]] | None]:
    """The amdsmi indices a ROCm job sees, from ``environ``'s visible-devices variables.

    ``ROCR_VISIBLE_DEVICES`` is applied first, to all ``count`` GPUs, then
    ``HIP_VISIBLE_DEVICES`` (else ``CUDA_VISIBLE_DEVICES``) to what it left, by position: the
    ROCm runtime layers them so. Entries are indices or UUIDs: ``ids_of(index)`` gives a GPU's
    (see :func:`gpu_ids`), and an entry matches one of them, or a unique prefix of one, with or
    without ``GPU-`` and in any case.
    A list ends at its first entry naming no GPU; ``""`` or ``-1`` hides every GPU. Returns
    the indices and, when a list was cut short, (the variable, the entries ignored).
    """
    pool = list(range(count))
    ignored: tuple[str, list[str]] | None = None
    runtime = "HIP_VISIBLE_DEVICES" if "HIP_VISIBLE_DEVICES" in environ else "CUDA_VISIBLE_DEVICES"
    known: dict[int, list[str]] = {}

    def ids(index: int) -> list[str]:
        if index not in known:
            known[index] = [_bare_uuid(text) for text in ids_of(index) if text]
        return known[index]

    for variable in ("ROCR_VISIBLE_DEVICES", runtime):
        visible = environ.get(variable)
        if visible is None:
            continue
        chosen: list[int] = []
        entries = [entry.strip() for entry in visible.split(",")]
        for position, entry in enumerate(entries):
            index: int | None = None
            if entry.lstrip("-").isdigit():
                number = int(entry)
                index = pool[number] if 0 <= number < len(pool) else None
            elif entry:
                wanted = _bare_uuid(entry)
                matches = [i for i in pool if any(t.startswith(wanted) for t in ids(i))]
                index = matches[0] if len(matches) == 1 else None
            if index is None:
                rest = [e for e in entries[position:] if e] if entry else []
                if rest and rest != ["-1"] and ignored is None:
                    ignored = (variable, rest)
                break
            if index not in chosen:
                chosen.append(index)
        pool = chosen
    return pool, ignored


def gpu_ids(smi: ModuleType, handle: object) -> list[str]:
    """The names a visible-devices entry may give this GPU: amdsmi's UUID, and the ASIC serial
    as 16 hex digits, which is what ROCr's ``GPU-<hex>`` UUIDs (``rocminfo``) are made of;
    amdsmi's own UUID encodes the same serial differently. Either is left out where amdsmi
    cannot give it."""
    found: list[str] = []
    with contextlib.suppress(Exception):
        found.append(str(smi.amdsmi_get_gpu_device_uuid(handle)))
    with contextlib.suppress(Exception):
        serial = str(smi.amdsmi_get_gpu_asic_info(handle).get("asic_serial", ""))
        if serial.lower().startswith("0x"):
            found.append(f"{int(serial, 16):016x}")
    return found


def _bare_uuid(text: str) -> str:
    """A UUID compared without case or a ``GPU-`` prefix (ROCr writes ``GPU-<hex>``)."""
    text = text.strip().lower()
    return text.removeprefix("gpu-")


def _import_amdsmi() -> ModuleType:
    try:
        # amdsmi prints to stdout when it cannot load libamd_smi.so; that output would land in
        # the user's program's, so it is caught and the failure reported as a reason instead.
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi  # untyped, optional (mypy: pyproject's overrides)
    except ImportError:
        raise MeterUnavailable(f"amdsmi is not installed: {_INSTALL_HINT}") from None
    except Exception as error:
        # OSError: libamd_smi.so not found; AttributeError/KeyError: amdsmi newer than ROCm;
        # anything else a broken install raises as it loads is a reason too, not a crash.
        raise MeterUnavailable(
            f"amdsmi could not load ROCm's library ({type(error).__name__}: {error}): install "
            "ROCm, set ROCM_PATH, and install the amdsmi matching its version"
        ) from None
    module: ModuleType = amdsmi  # untyped: every amdsmi call returns Any, read at each use
    return module


def _init(smi: ModuleType) -> None:
    try:
        smi.amdsmi_init()
    except smi.AmdSmiException as error:
        raise MeterUnavailable(
            f"amdsmi could not start ({_text(error)}): no amdgpu driver is loaded here, or this "
            "container was started without the GPU (docker run --device=/dev/kfd "
            "--device=/dev/dri); amd-smi list should list the GPUs"
        ) from None


def _handles(smi: ModuleType) -> list[object]:
    handles = list(smi.amdsmi_get_processor_handles())
    if not handles:
        raise MeterUnavailable("amdsmi sees no AMD GPU on this machine")
    return handles


def _energy_count(smi: ModuleType, handle: object) -> tuple[int, float]:
    """(accumulator ticks, microjoules per tick) from ``amdsmi_get_energy_count``."""
    count = smi.amdsmi_get_energy_count(handle)
    # amdsmi 6.2.1 renamed the accumulator from "power" to "energy_accumulator".
    ticks = count["energy_accumulator"] if "energy_accumulator" in count else count["power"]
    return int(ticks), float(count["counter_resolution"])


def _power_w(smi: ModuleType, handle: object) -> float | None:
    """The GPU's socket power in watts; None where amdsmi reports none (N/A, not supported)."""
    try:
        info = smi.amdsmi_get_power_info(handle)
    except smi.AmdSmiException as error:
        if _is_not_supported(error):
            return None
        raise
    for key in _POWER_KEYS:
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _name(smi: ModuleType, handle: object) -> str:
    with contextlib.suppress(Exception):
        name = str(smi.amdsmi_get_gpu_asic_info(handle).get("market_name", ""))
        if name and name != "N/A":
            return name
    return "AMD GPU"


def _is_not_supported(error: BaseException) -> bool:
    return getattr(error, "err_code", None) == _NOT_SUPPORTED


def _text(error: BaseException) -> str:
    detail = getattr(error, "err_info", None) or str(error)
    return f"{type(error).__name__}: {' '.join(str(detail).split())}"


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [AmdsmiMeter]

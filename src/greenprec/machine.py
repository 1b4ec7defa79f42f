"""The state of this machine at one moment: CPU clocks and temperature, GPU temperature, clocks,
power limits and throttling (:class:`~greenprec.results.MachineState`).

Each run records it as it starts and as its workload returns (``machine_start``,
``machine_end``), because these change a run's energy without changing its code: a hot chip
throttles, a lowered power limit caps the GPU, a CPU at a lower frequency takes longer.

Read, where this machine lets it be read (a value that cannot be read stays None):

- ``cpu_freq_mhz``: the mean of ``devices/system/cpu/cpu<N>/cpufreq/scaling_cur_freq`` (kHz)
  over the CPUs that have one (source ``cpufreq``);
- ``cpu_temp_c``: the hottest CPU sensor among ``class/thermal/thermal_zone<N>/temp`` whose
  ``type`` is a CPU package sensor (``x86_pkg_temp``, ``cpu-thermal``, ``k10temp``...; source
  ``thermal_zone``) and ``class/hwmon/hwmon<N>/temp<M>_input`` of a hwmon named ``coretemp``,
  ``k10temp``, ``zenpower`` or ``cpu_thermal`` (source ``hwmon``); millidegrees. Where a
  k10temp or zenpower hwmon has a ``Tdie`` sensor its ``Tctl`` is left out: on some AMD parts
  Tctl reads the die temperature plus a fan-control offset of up to 27 °C;
- through NVML (``nvidia-ml-py``, when it imports and ``nvmlInit`` works), for the GPUs the run
  can see (``CUDA_VISIBLE_DEVICES`` resolved as the ``nvml`` meter resolves it, else all):
  ``gpu_temp_c`` the hottest GPU, ``gpu_sm_clock_mhz`` the mean SM clock,
  ``gpu_power_limit_w`` the sum of the enforced power limits (None unless every one of those
  GPUs reports its limit: a partial sum would be a wrong number), and
  ``gpu_throttle_reasons`` the union of the current clock throttle ("event") reasons, in NVML's
  bit order: ``gpu_idle``, ``applications_clocks_setting``, ``sw_power_cap``, ``hw_slowdown``,
  ``sync_boost``, ``sw_thermal_slowdown``, ``hw_thermal_slowdown``,
  ``hw_power_brake_slowdown``, ``display_clock_setting``. ``gpu_idle`` is kept: at a run's
  start it says the clocks were low because the GPU had nothing to do, not because something
  capped them (source ``nvml``).

- through AMD SMI (AMD's ``amdsmi`` package, when it imports and ``amdsmi_init`` works), for
  the AMD GPUs the run can see (``ROCR_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``,
  ``CUDA_VISIBLE_DEVICES`` resolved as the ``amdsmi`` meter resolves them, else all), the same
  four fields: the hottest hotspot (junction) temperature (edge where a GPU has no hotspot
  sensor), the mean GFX clock, the sum of the power caps (all or None), and the throttle
  reasons from ``amdsmi_get_violation_status`` (amdsmi 6.3 and later) under NVML's names, so
  reports flag them alike: package power tracking (``active_ppt_pwr``) as ``sw_power_cap``,
  socket and HBM thermal limits (``active_socket_thrm``, ``active_hbm_thrm``) as
  ``sw_thermal_slowdown`` and ``hw_thermal_slowdown``, voltage-regulator thermal and PROCHOT
  (``active_vr_thrm``, ``active_prochot_thrm``) as ``hw_slowdown`` (source ``amdsmi``). On a
  machine with both NVIDIA and AMD GPUs, NVML's values are kept and amdsmi's fill only the
  fields NVML left empty.

:func:`gpu_compute_pids` lists, through the same NVML access and for the same GPUs, the
processes computing on them: :mod:`greenprec.machine_load` counts those that are not the run's
(what else used the machine while a run ran).

``sources`` names where the values came from. A value outside what hardware can report
(a temperature below -40 °C or above 150 °C, a frequency of 0 or above 10 GHz) is left out,
never recorded as if it were true.

The sysfs root: ``sysfs_root`` if given, else the environment variable
``GREENPREC_SYSFS_ROOT`` if set (tests point it at a fake tree), else ``/sys``. Nothing outside
that root is read: the real ``class/thermal`` and ``class/hwmon`` entries are symlinks into
``devices``, so links are followed, but a file whose real path leaves the root is skipped;
files are read through the ``rapl`` meter's bounded reader (regular files only, at most 64
bytes), and at most :data:`_MAX_CPUS` CPUs, :data:`_MAX_ZONES` thermal zones and
:data:`_MAX_HWMONS` hwmon devices are read. No subprocess: a few milliseconds, plus
``nvmlInit``. Nothing here raises: a machine that says nothing gives an empty state.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from greenprec.results.models import MachineState

__all__ = [
    "SYSFS_ROOT_VARIABLE",
    "gpu_compute_pids",
    "read_machine_state",
    "throttle_reason_names",
]

SYSFS_ROOT_VARIABLE = "GREENPREC_SYSFS_ROOT"
"""The environment variable naming the sysfs root to read (default ``/sys``)."""
_DEFAULT_SYSFS_ROOT = "/sys"

_MAX_CPUS = 1024
_MAX_ZONES = 256
_MAX_HWMONS = 256
_MAX_HWMON_SENSORS = 64
"""At most this many ``temp<M>_input`` files per hwmon device."""
_MAX_GPUS = 64
_MAX_GPU_PROCESSES = 4096
"""At most this many GPU processes are listed (a count beyond it changes no flag)."""
_MAX_LISTED = 8192
"""At most this many directory entries are looked at in any one listing."""

_MIN_TEMP_C = -40.0
_MAX_TEMP_C = 150.0
_MAX_FREQ_MHZ = 10_000.0
_MAX_GPU_POWER_LIMIT_W = 10_000.0

_CPU_ZONE_TYPES = re.compile(
    r"x86_pkg_temp|k10temp|zenpower|coretemp|cpu\d*[-_]?(?:\d+[-_])*thermal"
)
"""Thermal zone ``type`` values that are CPU package (or CPU cluster) sensors."""
_CPU_HWMON_NAMES = frozenset({"coretemp", "k10temp", "zenpower", "cpu_thermal"})

_CPU_DIR = re.compile(r"cpu(\d+)")
_ZONE_DIR = re.compile(r"thermal_zone(\d+)")
_HWMON_DIR = re.compile(r"hwmon(\d+)")
_TEMP_INPUT = re.compile(r"temp(\d+)_input")
_INTEGER = re.compile(r"-?\d{1,12}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_THROTTLE_REASONS: tuple[tuple[str, int, tuple[str, ...]], ...] = tuple(
    (
        name,
        bit,
        (f"nvmlClocksEventReason{camel}", f"nvmlClocksThrottleReason{camel}"),
    )
    for name, bit, camel in (
        ("gpu_idle", 0x1, "GpuIdle"),
        ("applications_clocks_setting", 0x2, "ApplicationsClocksSetting"),
        ("sw_power_cap", 0x4, "SwPowerCap"),
        ("hw_slowdown", 0x8, "HwSlowdown"),
        ("sync_boost", 0x10, "SyncBoost"),
        ("sw_thermal_slowdown", 0x20, "SwThermalSlowdown"),
        ("hw_thermal_slowdown", 0x40, "HwThermalSlowdown"),
        ("hw_power_brake_slowdown", 0x80, "HwPowerBrakeSlowdown"),
        ("display_clock_setting", 0x100, "DisplayClockSetting"),
    )
)
"""(name, NVML's bit, the pynvml constants that may hold it): pynvml 12.535 renamed
``nvmlClocksThrottleReason*`` to ``nvmlClocksEventReason*`` and keeps some old names only."""
_NVML_TEMPERATURE_GPU = 0
_NVML_CLOCK_SM = 1


def read_machine_state(
    *,
    sysfs_root: str | os.PathLike[str] | None = None,
    nvml: bool = True,
    amdsmi: bool | None = None,
) -> MachineState:
    """This machine's state now (see the module docstring); never raises. ``amdsmi``: read
    AMD GPUs too (default: as ``nvml`` says, so ``nvml=False`` reads no GPU at all)."""
    if sysfs_root is None:
        sysfs_root = os.environ.get(SYSFS_ROOT_VARIABLE) or _DEFAULT_SYSFS_ROOT
    values: dict[str, Any] = {}
    sources: list[str] = []
    try:
        root = os.path.realpath(os.fspath(sysfs_root))
    except (OSError, ValueError):
        root = ""
    if root and os.path.isdir(root):
        within = (root,)
        freqs = [f for f in _cpu_freqs_mhz(root, within) if 0 < f <= _MAX_FREQ_MHZ]
        if freqs:
            values["cpu_freq_mhz"] = sum(freqs) / len(freqs)
            sources.append("cpufreq")
        temps: list[float] = []
        for source, found in (
            ("thermal_zone", _zone_temps_c(root, within)),
            ("hwmon", _hwmon_temps_c(root, within)),
        ):
            valid = [t for t in found if _plausible_temp(t)]
            if valid:
                temps.extend(valid)
                sources.append(source)
        if temps:
            values["cpu_temp_c"] = max(temps)
    if nvml:
        gpu = _nvml_state()
        if gpu:
            values.update(gpu)
            sources.append("nvml")
    if nvml if amdsmi is None else amdsmi:
        amd = {key: value for key, value in _amdsmi_state().items() if key not in values}
        if amd:
            values.update(amd)
            sources.append("amdsmi")
    return MachineState(**values, sources=sources)


# -- sysfs ---------------------------------------------------------------------------------


def _plausible_temp(value: float) -> bool:
    return _MIN_TEMP_C <= value <= _MAX_TEMP_C


def _read(path: str, within: Sequence[str]) -> str | None:
    """One sysfs attribute's text, stripped; None where it cannot be read (or lies outside)."""
    from greenprec._sysfs import read_sysfs
    from greenprec.errors import MeterError

    try:
        return read_sysfs(path, within).strip()
    except (OSError, MeterError, ValueError):
        return None


def _read_integer(path: str, within: Sequence[str]) -> int | None:
    text = _read(path, within)
    if text is None or _INTEGER.fullmatch(text) is None:
        return None
    return int(text)


def _read_name(path: str, within: Sequence[str]) -> str | None:
    text = _read(path, within)
    if text is None or _NAME.fullmatch(text) is None:
        return None
    return text


def _numbered(
    directory: str, pattern: re.Pattern[str], limit: int, within: Sequence[str]
) -> list[str]:
    """Paths of the entries of ``directory`` named by ``pattern`` (with a number as its group),
    in numeric order, at most ``limit``; empty when the directory is unreadable or outside."""
    try:
        real = os.path.realpath(directory)
        if not any(
            real == tree or real.startswith(tree.rstrip(os.sep) + os.sep) for tree in within
        ):
            return []
        found: list[tuple[int, str]] = []
        with os.scandir(directory) as entries:
            for position, entry in enumerate(entries):
                if position >= _MAX_LISTED:
                    break
                match = pattern.fullmatch(entry.name)
                if match is not None:
                    found.append((int(match.group(1)), entry.name))
    except (OSError, ValueError):
        return []
    found.sort()
    return [os.path.join(directory, name) for _, name in found[:limit]]


def _cpu_freqs_mhz(root: str, within: Sequence[str]) -> Iterator[float]:
    cpus = os.path.join(root, "devices", "system", "cpu")
    for cpu in _numbered(cpus, _CPU_DIR, _MAX_CPUS, within):
        khz = _read_integer(os.path.join(cpu, "cpufreq", "scaling_cur_freq"), within)
        if khz is not None:
            yield khz / 1000.0


def _zone_temps_c(root: str, within: Sequence[str]) -> Iterator[float]:
    zones = os.path.join(root, "class", "thermal")
    for zone in _numbered(zones, _ZONE_DIR, _MAX_ZONES, within):
        kind = _read_name(os.path.join(zone, "type"), within)
        if kind is None or _CPU_ZONE_TYPES.fullmatch(kind) is None:
            continue
        millidegrees = _read_integer(os.path.join(zone, "temp"), within)
        if millidegrees is not None:
            yield millidegrees / 1000.0


def _hwmon_temps_c(root: str, within: Sequence[str]) -> Iterator[float]:
    hwmons = os.path.join(root, "class", "hwmon")
    for hwmon in _numbered(hwmons, _HWMON_DIR, _MAX_HWMONS, within):
        name = _read_name(os.path.join(hwmon, "name"), within)
        if name not in _CPU_HWMON_NAMES:
            continue
        sensors: list[tuple[str | None, float]] = []
        for sensor in _numbered(hwmon, _TEMP_INPUT, _MAX_HWMON_SENSORS, within):
            millidegrees = _read_integer(sensor, within)
            if millidegrees is None:
                continue
            label = _read_name(sensor.removesuffix("_input") + "_label", within)
            sensors.append((label, millidegrees / 1000.0))
        labels = {label for label, _ in sensors}
        for label, celsius in sensors:
            if label == "Tctl" and "Tdie" in labels:
                continue  # Tctl may carry a fan-control offset; Tdie is the die's temperature
            yield celsius


# -- NVML ----------------------------------------------------------------------------------


def _gpu_values(
    temps: list[float],
    clocks: list[float],
    limits: list[float],
    devices: int,
    reasons: list[str] | None,
) -> dict[str, Any]:
    """The GPUs' machine-state fields from what was read of each (NVML or amdsmi alike): the
    hottest temperature, the mean clock, the summed power limit only when every GPU gave one,
    the throttle reasons when they could be read (None: not read)."""
    values: dict[str, Any] = {}
    if temps:
        values["gpu_temp_c"] = max(temps)
    if clocks:
        values["gpu_sm_clock_mhz"] = sum(clocks) / len(clocks)
    if limits and len(limits) == devices:
        values["gpu_power_limit_w"] = sum(limits)
    if reasons is not None:
        values["gpu_throttle_reasons"] = reasons
    return values


def _nvml_state() -> dict[str, Any]:
    """The GPU fields of a MachineState from NVML; empty without pynvml, a driver or a GPU."""
    try:
        import pynvml
    except Exception:  # ImportError, or a broken install failing as it loads
        return {}
    nvml: Any = pynvml
    try:
        nvml.nvmlInit()
    except Exception:
        return {}
    try:
        return _read_gpus(nvml)
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _gpu_indices(nvml: Any) -> list[int]:
    count = min(int(nvml.nvmlDeviceGetCount()), _MAX_GPUS)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    from greenprec.host import cuda_visible_indices

    return cuda_visible_indices(nvml, visible, count)[0]


def _read_gpus(nvml: Any) -> dict[str, Any]:
    temps: list[float] = []
    clocks: list[float] = []
    limits: list[float] = []
    reasons = 0
    reasons_read = False
    indices = _gpu_indices(nvml)
    temperature_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", _NVML_TEMPERATURE_GPU)
    sm_clock = getattr(nvml, "NVML_CLOCK_SM", _NVML_CLOCK_SM)
    reasons_function = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    for index in indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            continue
        with contextlib.suppress(Exception):
            celsius = float(nvml.nvmlDeviceGetTemperature(handle, temperature_sensor))
            if _plausible_temp(celsius):
                temps.append(celsius)
        with contextlib.suppress(Exception):
            mhz = float(nvml.nvmlDeviceGetClockInfo(handle, sm_clock))
            if 0 < mhz <= _MAX_FREQ_MHZ:
                clocks.append(mhz)
        with contextlib.suppress(Exception):
            watts = float(nvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1000.0
            if 0 < watts <= _MAX_GPU_POWER_LIMIT_W:
                limits.append(watts)
        if reasons_function is not None:
            with contextlib.suppress(Exception):
                reasons |= int(reasons_function(handle))
                reasons_read = True
    names = throttle_reason_names(nvml, reasons) if reasons_read else None
    return _gpu_values(temps, clocks, limits, len(indices), names)


def throttle_reason_names(nvml: Any, bits: int) -> list[str]:
    """The names of the reasons set in an NVML clock throttle/event reasons bitmask, in bit
    order; the bits come from ``nvml``'s constants where it has them (either naming)."""
    names: list[str] = []
    for name, default, constants in _THROTTLE_REASONS:
        bit = default
        for constant in constants:
            value = getattr(nvml, constant, None)
            if isinstance(value, int) and value > 0:
                bit = value
                break
        if bits & bit:
            names.append(name)
    return names


def gpu_compute_pids() -> list[int] | None:
    """The process ids NVML lists as computing on the GPUs the run can see (the same GPUs as
    :func:`read_machine_state`), sorted, at most :data:`_MAX_GPU_PROCESSES`; None where it
    cannot be known: no ``nvidia-ml-py``, no driver, or a GPU that does not answer (an empty
    list means none: never "not known" passed off as zero)."""
    try:
        import pynvml
    except Exception:  # ImportError, or a broken install failing as it loads
        return None
    nvml: Any = pynvml
    try:
        nvml.nvmlInit()
    except Exception:
        return None
    try:
        pids: set[int] = set()
        for index in _gpu_indices(nvml):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                pid = int(process.pid)
                if pid > 0:
                    pids.add(pid)
        return sorted(pids)[:_MAX_GPU_PROCESSES]
    except Exception:  # one GPU that cannot say makes the whole answer unknown
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


# -- AMD SMI -------------------------------------------------------------------------------

_AMD_VIOLATIONS = (
    ("active_ppt_pwr", "sw_power_cap"),
    ("active_socket_thrm", "sw_thermal_slowdown"),
    ("active_hbm_thrm", "hw_thermal_slowdown"),
    ("active_vr_thrm", "hw_slowdown"),
    ("active_prochot_thrm", "hw_slowdown"),
)
"""amdsmi_get_violation_status's flags -> the NVML reason name that means the same limit."""
_AMD_REASON_ORDER = tuple(name for name, _bit, _constants in _THROTTLE_REASONS)


def _amdsmi_state() -> dict[str, Any]:
    """The GPU fields of a MachineState from AMD SMI; empty without amdsmi, a driver or a GPU."""
    import io
    from contextlib import redirect_stdout

    try:
        # amdsmi prints to stdout when it cannot load libamd_smi.so: keep that out of the run.
        with redirect_stdout(io.StringIO()):
            import amdsmi  # untyped, optional (mypy: pyproject's overrides)
    except Exception:  # ImportError, OSError without ROCm, AttributeError on a version skew
        return {}
    smi: Any = amdsmi
    try:
        smi.amdsmi_init()
    except Exception:
        return {}
    try:
        return _read_amd_gpus(smi)
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            smi.amdsmi_shut_down()


def _read_amd_gpus(smi: Any) -> dict[str, Any]:
    from greenprec.meters.amdsmi import gpu_ids, visible_indices

    handles = list(smi.amdsmi_get_processor_handles())[:_MAX_GPUS]
    indices, _ignored = visible_indices(
        os.environ, len(handles), lambda i: gpu_ids(smi, handles[i])
    )
    temps: list[float] = []
    clocks: list[float] = []
    limits: list[float] = []
    reasons: set[str] = set()
    reasons_read = False
    current = smi.AmdSmiTemperatureMetric.CURRENT
    for index in indices:
        handle = handles[index]
        for sensor in (smi.AmdSmiTemperatureType.HOTSPOT, smi.AmdSmiTemperatureType.EDGE):
            with contextlib.suppress(Exception):
                celsius = float(smi.amdsmi_get_temp_metric(handle, sensor, current))
                if _plausible_temp(celsius):
                    temps.append(celsius)
                    break
        with contextlib.suppress(Exception):
            mhz = float(smi.amdsmi_get_clock_info(handle, smi.AmdSmiClkType.GFX)["clk"])
            if 0 < mhz <= _MAX_FREQ_MHZ:
                clocks.append(mhz)
        with contextlib.suppress(Exception):
            watts = float(smi.amdsmi_get_power_cap_info(handle)["power_cap"]) / 1e6  # µW
            if 0 < watts <= _MAX_GPU_POWER_LIMIT_W:
                limits.append(watts)
        with contextlib.suppress(Exception):
            status = smi.amdsmi_get_violation_status(handle)
            reasons_read = True
            reasons.update(name for flag, name in _AMD_VIOLATIONS if status.get(flag) is True)
    names = [n for n in _AMD_REASON_ORDER if n in reasons] if reasons_read else None
    return _gpu_values(temps, clocks, limits, len(indices), names)

"""A fake ``amdsmi`` module (AMD's AMD SMI Python package, as the amdsmi meter and the machine
state use it) for machines without an AMD GPU. Install it with
``monkeypatch.setitem(sys.modules, "amdsmi", fake)``.

Names, shapes and units follow ``py-interface/amdsmi_interface.py`` and
``amdsmi_exception.py`` of ROCm/amdsmi at the tags rocm-6.0.0, rocm-6.1.0, rocm-6.2.0,
rocm-6.2.1 and the ROCm 6.3.0 development branch (October 2024), read, not copied:

- ``AmdSmiException`` is the base; ``AmdSmiLibraryException(err_code)`` carries ``err_code``
  and ``err_info`` (``get_error_code()``, ``get_error_info()``); ``AmdSmiParameterException``
  is raised for an argument of the wrong type (a handle that is not a processor handle, a plain
  int where an ``AmdSmiTemperatureType`` is wanted).
- ``amdsmi_init`` is reference-counted and balanced by ``amdsmi_shut_down``; every other call
  before it raises ``AMDSMI_STATUS_NOT_INIT`` (32).
- ``amdsmi_get_energy_count``: ``{"power", "counter_resolution", "timestamp"}`` up to amdsmi
  6.2.0 (``power`` is the accumulator, in ticks); from 6.2.1 ``energy_accumulator`` too, same
  value (``api="6.0"`` or ``"6.2.1"`` here). The accumulator is a uint64 count of ticks of
  ``counter_resolution`` microjoules (a float, about 15.3 on MI200/MI300); ``timestamp`` in ns.
- ``amdsmi_get_power_info``: watts, ``"N/A"`` where the GPU reports none (MI300 gives only
  ``current_socket_power``, MI200 only ``average_socket_power``).
- ``amdsmi_get_temp_metric`` (°C), ``amdsmi_get_clock_info`` (MHz, ``clk``...),
  ``amdsmi_get_power_cap_info`` (``power_cap`` in µW), ``amdsmi_get_violation_status``
  (``active_*`` booleans or ``"N/A"``; amdsmi 6.3 and later), ``amdsmi_get_gpu_asic_info``
  (``market_name``...), ``amdsmi_get_gpu_device_uuid``.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

STATUS_INVAL = 1
STATUS_NOT_SUPPORTED = 2
STATUS_NOT_FOUND = 31
STATUS_NOT_INIT = 32
STATUS_DRIVER_NOT_LOADED = 34

_ERROR_INFO = {
    STATUS_INVAL: "AMDSMI_STATUS_INVAL - Invalid parameters",
    STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    STATUS_NOT_FOUND: "AMDSMI_STATUS_NOT_FOUND - Device Not found",
    STATUS_NOT_INIT: "AMDSMI_STATUS_NOT_INIT - Device not initialized",
    STATUS_DRIVER_NOT_LOADED: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
}


class AmdSmiException(Exception):
    """Base smi exception class (as amdsmi_exception.py names it)."""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _ERROR_INFO.get(
            err_code, "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error occurred"
        )

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_info(self) -> str:
        return self.err_info

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiParameterException(AmdSmiException):
    def __init__(self, received: object, expected: object) -> None:
        super().__init__(None)
        self.err_code = None
        self.err_msg = (
            f"Invalid parameter:\nActual type: {type(received)}\nExpected type: {expected}"
        )

    def __str__(self) -> str:
        return self.err_msg


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1
    INIT_NON_AMD_CPUS = 1 << 2
    INIT_NON_AMD_GPUS = 1 << 3


class AmdSmiClkType(IntEnum):
    SYS = 0
    GFX = 0
    DF = 1
    DCEF = 2
    SOC = 3
    MEM = 4
    PCIE = 5


class AmdSmiTemperatureType(IntEnum):
    EDGE = 0
    HOTSPOT = 1
    JUNCTION = 1
    VRAM = 2


class AmdSmiTemperatureMetric(IntEnum):
    CURRENT = 0
    MAX = 1
    MIN = 2


@dataclass
class FakeGpu:
    """One GPU (one die of an MI250): a constant power, an energy accumulator."""

    uuid: str
    asic_serial: int = 0
    """The ASIC's serial (ROCr's ``GPU-<16 hex>`` UUID); 0: amdsmi says "N/A"."""
    name: str = "AMD Instinct MI300X"
    power_w: float = 300.0
    power_keys: tuple[str, ...] = ("current_socket_power",)
    """Which of ``current_socket_power``/``average_socket_power`` it reports; others "N/A"."""
    energy_supported: bool = True
    counter_resolution_uj: float = 15.259
    counter_scale: float = 1.0
    """1: the counter follows power; 0: stuck (ROCm/amdsmi#38); 1000: wrong unit."""
    start_ticks: int = 123_456_789_000
    fail_after_reads: int | None = None  # raise NOT_FOUND after this many energy/power reads
    backwards_after_reads: int | None = None  # the accumulator drops after this many reads
    reads: int = 0
    # Machine state; None: the call raises AMDSMI_STATUS_NOT_SUPPORTED.
    hotspot_c: int | None = 50
    gfx_clock_mhz: int | None = 2100
    power_cap_uw: int | None = 750_000_000
    violations: dict[str, bool] | None = field(default_factory=dict)
    """``active_*`` flags set; None: no amdsmi_get_violation_status (amdsmi before 6.3)."""


@dataclass(frozen=True)
class amdsmi_processor_handle:  # named as amdsmi_wrapper names its ctypes handle type
    value: int


def make_amdsmi(
    gpus: list[FakeGpu],
    *,
    init_error: AmdSmiException | None = None,
    calls: list[str] | None = None,
    api: Literal["6.0", "6.2.1"] = "6.2.1",
) -> types.ModuleType:
    """A module object with amdsmi's functions over ``gpus``; ``calls`` records init/shutdown."""
    module = types.ModuleType("amdsmi")
    log = calls if calls is not None else []
    origin = time.monotonic()
    state = {"refcount": 0}

    def check_init() -> None:
        if state["refcount"] <= 0:
            raise AmdSmiLibraryException(STATUS_NOT_INIT)

    def gpu_of(handle: object) -> FakeGpu:
        if not isinstance(handle, amdsmi_processor_handle):
            raise AmdSmiParameterException(handle, amdsmi_processor_handle)
        check_init()
        return gpus[handle.value]

    def count_read(gpu: FakeGpu) -> None:
        gpu.reads += 1
        if gpu.fail_after_reads is not None and gpu.reads > gpu.fail_after_reads:
            raise AmdSmiLibraryException(STATUS_NOT_FOUND)

    def amdsmi_init(flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiParameterException(flag, AmdSmiInitFlags)
        log.append("init")
        if init_error is not None:
            raise init_error
        state["refcount"] += 1

    def amdsmi_shut_down() -> None:
        log.append("shutdown")
        check_init()
        state["refcount"] -= 1

    def amdsmi_get_processor_handles() -> list[amdsmi_processor_handle]:
        check_init()
        return [amdsmi_processor_handle(index) for index in range(len(gpus))]

    def amdsmi_get_gpu_device_uuid(handle: object) -> str:
        return gpu_of(handle).uuid

    def amdsmi_get_gpu_asic_info(handle: object) -> dict[str, object]:
        gpu = gpu_of(handle)
        return {
            "market_name": gpu.name,
            "vendor_id": "0x1002",
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "device_id": "0x74a1",
            "rev_id": "0x00",
            "asic_serial": f"0x{gpu.asic_serial:016X}" if gpu.asic_serial else "N/A",
            "oam_id": 0,
            "num_compute_units": 304,
        }

    def amdsmi_get_energy_count(handle: object) -> dict[str, object]:
        gpu = gpu_of(handle)
        if not gpu.energy_supported:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        count_read(gpu)
        elapsed_s = time.monotonic() - origin
        joules = gpu.power_w * elapsed_s * gpu.counter_scale
        ticks = gpu.start_ticks + int(joules * 1e6 / gpu.counter_resolution_uj)
        if gpu.backwards_after_reads is not None and gpu.reads > gpu.backwards_after_reads:
            ticks -= 10_000_000
        ticks &= (1 << 64) - 1  # a uint64_t in the C API
        result: dict[str, object] = {
            "power": ticks,
            "counter_resolution": gpu.counter_resolution_uj,
            "timestamp": int(time.monotonic() * 1e9),
        }
        if api == "6.2.1":
            result = {"power": ticks, "energy_accumulator": ticks, **result}
        return result

    def amdsmi_get_power_info(handle: object) -> dict[str, object]:
        gpu = gpu_of(handle)
        count_read(gpu)
        info: dict[str, object] = {
            "current_socket_power": "N/A",
            "average_socket_power": "N/A",
            "gfx_voltage": "N/A",
            "soc_voltage": "N/A",
            "mem_voltage": "N/A",
            "power_limit": int((gpu.power_cap_uw or 0) / 1e6) or "N/A",
        }
        for key in gpu.power_keys:
            info[key] = round(gpu.power_w)  # a uint32 in the C struct: whole watts
        return info

    def supported(value: int | None) -> int:
        if value is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        return value

    def amdsmi_get_temp_metric(handle: object, sensor_type: object, metric: object) -> int:
        gpu = gpu_of(handle)
        if not isinstance(sensor_type, AmdSmiTemperatureType):
            raise AmdSmiParameterException(sensor_type, AmdSmiTemperatureType)
        if not isinstance(metric, AmdSmiTemperatureMetric):
            raise AmdSmiParameterException(metric, AmdSmiTemperatureMetric)
        if (
            sensor_type != AmdSmiTemperatureType.HOTSPOT
            or metric != AmdSmiTemperatureMetric.CURRENT
        ):
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)  # only the hotspot is faked
        return supported(gpu.hotspot_c)

    def amdsmi_get_clock_info(handle: object, clock_type: object) -> dict[str, int]:
        gpu = gpu_of(handle)
        if not isinstance(clock_type, AmdSmiClkType):
            raise AmdSmiParameterException(clock_type, AmdSmiClkType)
        if clock_type != AmdSmiClkType.GFX:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        mhz = supported(gpu.gfx_clock_mhz)
        return {"clk": mhz, "min_clk": 500, "max_clk": 2100, "clk_locked": 0, "clk_deep_sleep": 0}

    def amdsmi_get_power_cap_info(handle: object) -> dict[str, int]:
        gpu = gpu_of(handle)
        cap = supported(gpu.power_cap_uw)
        return {
            "power_cap": cap,
            "default_power_cap": cap,
            "dpm_cap": 0,
            "min_power_cap": 0,
            "max_power_cap": cap,
        }

    def amdsmi_get_violation_status(handle: object) -> dict[str, object]:
        gpu = gpu_of(handle)
        flags = gpu.violations if gpu.violations is not None else {}
        status: dict[str, object] = {}
        for name in ("prochot_thrm", "ppt_pwr", "socket_thrm", "vr_thrm", "hbm_thrm"):
            status[f"acc_{name}"] = 0
            status[f"per_{name}"] = 0
            status[f"active_{name}"] = bool(flags.get(f"active_{name}", False))
        return status

    functions = [
        amdsmi_init,
        amdsmi_shut_down,
        amdsmi_get_processor_handles,
        amdsmi_get_gpu_device_uuid,
        amdsmi_get_gpu_asic_info,
        amdsmi_get_energy_count,
        amdsmi_get_power_info,
        amdsmi_get_temp_metric,
        amdsmi_get_clock_info,
        amdsmi_get_power_cap_info,
    ]
    if all(gpu.violations is not None for gpu in gpus):
        functions.append(amdsmi_get_violation_status)
    for function in functions:
        setattr(module, function.__name__, function)
    for name in (
        "AmdSmiException",
        "AmdSmiLibraryException",
        "AmdSmiParameterException",
        "AmdSmiInitFlags",
        "AmdSmiClkType",
        "AmdSmiTemperatureType",
        "AmdSmiTemperatureMetric",
        "amdsmi_processor_handle",
    ):
        setattr(module, name, globals()[name])
    return module


def uuid(n: int) -> str:
    """A GPU UUID in amdsmi's format, distinct per ``n``."""
    return f"{n:08x}-0000-1000-80ab-{0xCF1182F2988C + n:012x}"

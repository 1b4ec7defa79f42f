"""A fake ``pynvml`` module (nvidia-ml-py's API, as the nvml meter uses it) for machines
without an NVIDIA GPU. Install it with ``monkeypatch.setitem(sys.modules, "pynvml", fake)``.

Names and behaviour follow nvidia-ml-py: ``NVMLError`` with ``value`` (the NVML return code)
and subclasses such as ``NVMLError_NotSupported``; energy in mJ, power in mW; ``nvmlInit`` is
reference-counted and balanced by ``nvmlShutdown``. The machine-state calls (temperature, clock,
enforced power limit, current clock throttle/event reasons) follow it too: ``reasons_api``
chooses the newer ``nvmlClocksEventReason*`` names (``"event"``) or the older
``nvmlClocksThrottleReason*`` ones (``"throttle"``).
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from typing import ClassVar, Literal


class NVMLError(Exception):
    _messages: ClassVar[dict[int, str]] = {
        3: "Not Supported",
        9: "Driver Not Loaded",
        12: "Library Not Found",
        13: "Not Found",
        15: "GPU is lost",
        999: "Unknown Error",
    }

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self._messages.get(self.value, f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(3)


class NVMLError_DriverNotLoaded(NVMLError):
    def __init__(self) -> None:
        super().__init__(9)


class NVMLError_NotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(13)


class NVMLError_GpuIsLost(NVMLError):
    def __init__(self) -> None:
        super().__init__(15)


@dataclass
class FakeGpu:
    """One board: a constant power, an energy counter (unless ``energy_supported`` is False)."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB"
    power_w: float = 200.0
    energy_supported: bool = True
    start_mj: int = 5_000_000_000
    mig_uuids: list[str] = field(default_factory=list)
    fail_after_reads: int | None = None  # raise GpuIsLost after this many energy/power reads
    backwards_after_reads: int | None = None  # the counter drops after this many reads
    reads: int = 0
    # Machine state; None: the call raises NVMLError_NotSupported.
    temperature_c: int | None = 45
    sm_clock_mhz: int | None = 1410
    power_limit_w: float | None = 400.0
    throttle_reasons: int | None = 0  # an NVML clock throttle/event reasons bitmask


REASON_BITS = {
    "GpuIdle": 0x1,
    "ApplicationsClocksSetting": 0x2,
    "SwPowerCap": 0x4,
    "HwSlowdown": 0x8,
    "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20,
    "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80,
    "DisplayClockSetting": 0x100,
}
"""NVML's clock throttle/event reason bits, by the CamelCase part of pynvml's constant names."""


@dataclass(frozen=True)
class _Handle:
    index: int
    mig: str | None = None


def make_pynvml(
    gpus: list[FakeGpu],
    *,
    init_error: NVMLError | None = None,
    calls: list[str] | None = None,
    reasons_api: Literal["event", "throttle"] = "event",
) -> types.ModuleType:
    """A module object with pynvml's functions over ``gpus``; ``calls`` records init/shutdown."""
    module = types.ModuleType("pynvml")
    log = calls if calls is not None else []
    origin = time.monotonic()
    state = {"refcount": 0}

    def check_init() -> None:
        if state["refcount"] <= 0:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED

    def gpu_of(handle: _Handle) -> FakeGpu:
        check_init()
        if handle.mig is not None:
            raise NVMLError_NotSupported()  # energy and power are per physical GPU
        return gpus[handle.index]

    def count_read(gpu: FakeGpu) -> None:
        gpu.reads += 1
        if gpu.fail_after_reads is not None and gpu.reads > gpu.fail_after_reads:
            raise NVMLError_GpuIsLost()

    def nvmlInit() -> None:
        log.append("init")
        if init_error is not None:
            raise init_error
        state["refcount"] += 1

    def nvmlShutdown() -> None:
        log.append("shutdown")
        check_init()
        state["refcount"] -= 1

    def nvmlDeviceGetCount() -> int:
        check_init()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
        check_init()
        if not 0 <= index < len(gpus):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return _Handle(index)

    def nvmlDeviceGetHandleByUUID(uuid: str) -> _Handle:
        check_init()
        for index, gpu in enumerate(gpus):
            if gpu.uuid == uuid:
                return _Handle(index)
            if uuid in gpu.mig_uuids:
                return _Handle(index, mig=uuid)
        raise NVMLError_NotFound()

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle: _Handle) -> _Handle:
        check_init()
        if handle.mig is None:
            raise NVMLError(2)
        return _Handle(handle.index)

    def nvmlDeviceGetIndex(handle: _Handle) -> int:
        gpu_of(handle)
        return handle.index

    def nvmlDeviceGetUUID(handle: _Handle) -> str:
        check_init()
        return handle.mig or gpus[handle.index].uuid

    def nvmlDeviceGetName(handle: _Handle) -> str:
        check_init()
        return gpus[handle.index].name

    def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
        gpu = gpu_of(handle)
        if not gpu.energy_supported:
            raise NVMLError_NotSupported()
        count_read(gpu)
        energy = gpu.start_mj + int(gpu.power_w * (time.monotonic() - origin) * 1000)
        if gpu.backwards_after_reads is not None and gpu.reads > gpu.backwards_after_reads:
            energy -= 10_000_000
        return energy

    def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
        gpu = gpu_of(handle)
        count_read(gpu)
        return int(gpu.power_w * 1000)

    def state_of(value: float | None) -> float:
        if value is None:
            raise NVMLError_NotSupported()
        return value

    def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
        gpu = gpu_of(handle)
        if sensor != 0:  # NVML_TEMPERATURE_GPU is the only sensor
            raise NVMLError(2)
        return int(state_of(gpu.temperature_c))

    def nvmlDeviceGetClockInfo(handle: _Handle, clock: int) -> int:
        gpu = gpu_of(handle)
        if clock != 1:  # only NVML_CLOCK_SM is faked
            raise NVMLError_NotSupported()
        return int(state_of(gpu.sm_clock_mhz))

    def nvmlDeviceGetEnforcedPowerLimit(handle: _Handle) -> int:
        return int(state_of(gpu_of(handle).power_limit_w) * 1000)

    def current_reasons(handle: _Handle) -> int:
        return int(state_of(gpu_of(handle).throttle_reasons))

    reasons_function = (
        "nvmlDeviceGetCurrentClocksEventReasons"
        if reasons_api == "event"
        else "nvmlDeviceGetCurrentClocksThrottleReasons"
    )
    setattr(module, reasons_function, current_reasons)
    prefix = "nvmlClocksEventReason" if reasons_api == "event" else "nvmlClocksThrottleReason"
    for camel, bit in REASON_BITS.items():
        setattr(module, prefix + camel, bit)
    module.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    module.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]

    for function in (
        nvmlInit,
        nvmlShutdown,
        nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetHandleByUUID,
        nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
        nvmlDeviceGetIndex,
        nvmlDeviceGetUUID,
        nvmlDeviceGetName,
        nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetPowerUsage,
        nvmlDeviceGetTemperature,
        nvmlDeviceGetClockInfo,
        nvmlDeviceGetEnforcedPowerLimit,
    ):
        setattr(module, function.__name__, function)
    for error in (
        NVMLError,
        NVMLError_NotSupported,
        NVMLError_DriverNotLoaded,
        NVMLError_NotFound,
        NVMLError_GpuIsLost,
    ):
        setattr(module, error.__name__, error)
    module.NVML_ERROR_NOT_SUPPORTED = 3  # type: ignore[attr-defined]
    return module


def uuid(n: int) -> str:
    """A GPU UUID in NVML's format, distinct per ``n``."""
    return f"GPU-{n:08x}-1111-2222-3333-{n:012x}"

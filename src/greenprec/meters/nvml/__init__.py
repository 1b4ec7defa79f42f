"""``nvml``: NVIDIA GPU board energy through NVML (``pip install greenprec[nvidia]``).

NVML is the NVIDIA driver's management library; ``nvidia-ml-py`` binds it as the module
``pynvml``, imported only when the meter is probed or started, so ``import greenprec`` stays
light and works without it.

Per GPU, at :meth:`NvmlMeter.start`:

- Volta and newer: ``nvmlDeviceGetTotalEnergyConsumption``, the board's energy in mJ since the
  driver loaded. Read at the block's edges and every sample; a counter reading. It updates
  about every 100 ms, so a block shorter than that gets a warning: its energy may be 0 or one
  whole update.
- Older boards, or where that call raises ``NVMLError_NotSupported``: ``nvmlDeviceGetPowerUsage``
  (mW), returned as power readings that ``measure()`` integrates.

Which GPUs: the ``devices`` option (comma-separated NVML indices) if given, else those in
``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs or unique prefixes of them, ``MIG-`` UUIDs),
else all. As CUDA does, the list ends at the first entry that names no GPU. Domains are
``nvml/gpu-<NVML index>``.

MIG: energy exists per physical GPU, not per MIG slice, so a ``MIG-`` entry measures its parent
GPU, whole: every slice of it, whoever runs there, is in the figure (a warning says so).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, cast

from greenprec.errors import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.hookspecs import hookimpl
from greenprec.host import cuda_visible_indices, nvml_text
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.nvml.options import NvmlOptions

__all__ = ["NvmlMeter", "greenprec_meters"]

_INSTALL_HINT = "pip install 'greenprec[nvidia]' (the nvidia-ml-py package, module pynvml)"
_COUNTER_PERIOD_S = 0.1
"""NVML's energy counter updates about this often."""
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED


@dataclass
class _Gpu:
    index: int
    handle: object  # an NVML device handle, opaque: only passed back to NVML
    domain: str
    counter: bool  # True: energy counter in mJ; False: power in mW
    start_mj: int = 0
    last_mj: int = 0


class NvmlMeter(Meter):
    """NVIDIA GPU board energy (or power) through NVML; see the module docstring."""

    name = "nvml"
    estimated = False
    auto = True
    auto_order = 20
    covers = frozenset({"gpu"})
    description = "NVIDIA GPU board energy through NVML (nvidia-ml-py)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see nvml/options.py).
    Options = "greenprec.meters.nvml.options:NvmlOptions"

    def __init__(self, **options: object) -> None:
        """Option: ``devices`` (see :class:`~greenprec.meters.nvml.options.NvmlOptions`)."""
        super().__init__(**options)
        self.devices = cast("NvmlOptions", self.options).devices
        self._nvml: ModuleType | None = None
        self._gpus: list[_Gpu] = []
        self._started = 0.0

    # -- the contract ----------------------------------------------------------------------
    @classmethod
    def probe(cls, **options: object) -> Probe:
        meter = cls(**options)  # bad options are the user's to fix: ConfigError propagates
        try:
            nvml = _import_pynvml()
            _init(nvml)
        except MeterUnavailable as error:
            return Probe(False, str(error))
        try:
            indices, _ignored, _mig = meter._select(nvml)
        except MeterUnavailable as error:
            return Probe(False, str(error))
        except nvml.NVMLError as error:
            return Probe(False, f"NVML failed listing the GPUs: {_text(error)}")
        finally:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
        return Probe(True, domains=[f"nvml/gpu-{index}" for index in indices])

    def start(self) -> None:
        nvml = _import_pynvml()
        _init(nvml)
        self._nvml = nvml
        try:
            indices, ignored, mig = self._select(nvml)
            self._warn_about_selection(nvml, ignored, mig)
            self._gpus = [self._open(nvml, index) for index in indices]
        except nvml.NVMLError as error:
            self.stop()
            raise MeterError(f"NVML failed opening the GPUs: {_text(error)}") from error
        except BaseException:
            self.stop()
            raise
        self._started = time.monotonic()

    def read(self) -> list[Reading]:
        nvml = self._nvml
        readings: list[Reading] = []
        if nvml is None:
            return readings  # not started, or stopped: no GPU is open (start() sets both)
        for gpu in self._gpus:
            try:
                if gpu.counter:
                    millijoules = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
                    if millijoules < gpu.last_mj:
                        raise MeterError(
                            f"the energy counter of GPU {gpu.index} went backwards "
                            f"({gpu.last_mj} -> {millijoules} mJ): was the driver reloaded?"
                        )
                    gpu.last_mj = millijoules
                    readings.append(
                        Reading(gpu.domain, energy_j=(millijoules - gpu.start_mj) / 1e3)
                    )
                else:
                    milliwatts = nvml.nvmlDeviceGetPowerUsage(gpu.handle)
                    readings.append(Reading(gpu.domain, power_w=float(milliwatts) / 1e3))
            except nvml.NVMLError as error:
                raise MeterError(f"NVML failed reading GPU {gpu.index}: {_text(error)}") from error
        return readings

    def finish(self) -> list[Reading]:
        readings = self.read()
        elapsed = time.monotonic() - self._started
        if elapsed < _COUNTER_PERIOD_S and self._gpus:
            what = (
                "NVML's energy counter updates about every 100 ms"
                if any(gpu.counter for gpu in self._gpus)
                else "NVML's power reading is an average over at least 100 ms"
            )
            warnings.warn(
                f"the block lasted {elapsed * 1e3:.0f} ms and {what}: its GPU energy is "
                "unreliable; measure a longer block (repeat the work inside it)",
                GreenprecWarning,
                stacklevel=2,
            )
        return readings

    def stop(self) -> None:
        nvml, self._nvml = self._nvml, None
        self._gpus = []
        if nvml is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()

    # -- devices ---------------------------------------------------------------------------
    def _select(self, nvml: ModuleType) -> tuple[list[int], list[str], list[str]]:
        """NVML indices to measure, the CUDA_VISIBLE_DEVICES entries ignored, the MIG ones."""
        count = int(nvml.nvmlDeviceGetCount())
        if count == 0:
            raise MeterUnavailable("NVML sees no NVIDIA GPU on this machine")
        if self.devices is not None:
            missing = [index for index in self.devices if index >= count]
            if missing:
                raise ConfigError(
                    f"nvml option devices names GPU {missing[0]}, but NVML sees {count} "
                    f"(indices 0-{count - 1}; see nvidia-smi -L)"
                )
            return list(self.devices), [], []
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return list(range(count)), [], []
        indices, ignored, mig = cuda_visible_indices(nvml, visible, count)
        if not indices:
            raise MeterUnavailable(
                f"CUDA_VISIBLE_DEVICES={visible!r} makes no GPU visible to this job; unset it "
                "or pass -o nvml.devices=0,1"
            )
        return indices, ignored, mig

    def _open(self, nvml: ModuleType, index: int) -> _Gpu:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        gpu = _Gpu(index, handle, f"nvml/gpu-{index}", counter=True)
        try:
            gpu.start_mj = gpu.last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError as error:
            if not _is_not_supported(nvml, error):
                raise
            gpu.counter = False
            try:
                nvml.nvmlDeviceGetPowerUsage(handle)
            except nvml.NVMLError as power_error:
                if not _is_not_supported(nvml, power_error):
                    raise
                raise MeterError(
                    f"GPU {index} reports neither energy nor power through NVML "
                    "(NVMLError_NotSupported for both)"
                ) from power_error
        return gpu

    def _warn_about_selection(self, nvml: ModuleType, ignored: list[str], mig: list[str]) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if ignored:
            warnings.warn(
                f"CUDA_VISIBLE_DEVICES={visible!r}: {ignored[0]!r} names no GPU, so it and the "
                "entries after it are ignored (as CUDA ignores them)",
                GreenprecWarning,
                stacklevel=3,
            )
        if mig:
            warnings.warn(
                f"CUDA_VISIBLE_DEVICES names MIG slices ({', '.join(mig)}): NVML measures "
                "energy per physical GPU, so the figure covers every slice of that GPU",
                GreenprecWarning,
                stacklevel=3,
            )
        numeric = any(entry.strip().lstrip("-").isdigit() for entry in visible.split(","))
        if self.devices is None and numeric and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            count = int(nvml.nvmlDeviceGetCount())
            names = {
                nvml_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(count)
            }
            if len(names) > 1:
                warnings.warn(
                    "CUDA_VISIBLE_DEVICES uses indices on a machine with different GPU models: "
                    "CUDA orders them fastest first, NVML by PCI bus, so the indices may name "
                    "other GPUs; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs",
                    GreenprecWarning,
                    stacklevel=3,
                )


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable(f"nvidia-ml-py is not installed: {_INSTALL_HINT}") from None
    module: ModuleType = pynvml  # untyped: every NVML call returns Any, read at each use
    return module


def _init(nvml: ModuleType) -> None:
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise MeterUnavailable(
            f"NVML could not start ({_text(error)}): no NVIDIA driver is loaded here, or this "
            "container was started without the GPU (docker run --gpus all); nvidia-smi "
            "should list the GPUs"
        ) from None


def _is_not_supported(nvml: ModuleType, error: BaseException) -> bool:
    cls = getattr(nvml, "NVMLError_NotSupported", None)
    if isinstance(cls, type) and isinstance(error, cls):
        return True
    return getattr(error, "value", None) == _NOT_SUPPORTED


def _text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [NvmlMeter]

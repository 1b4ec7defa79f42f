"""The ``nvml`` meter's options (:class:`NvmlOptions`), beside the meter in this package.

A module of its own rather than a class in ``nvml/__init__.py``: the plugin manager imports the
meter to register it, and that must not import pydantic (see :mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from greenprec.meters.options import MeterOptions, device_indices

__all__ = ["NvmlOptions"]


class NvmlOptions(MeterOptions):
    """Options of the ``nvml`` meter (:class:`~greenprec.meters.nvml.NvmlMeter`): NVIDIA GPUs
    through NVML."""

    model_config = ConfigDict(title="nvml")

    devices: Annotated[list[int] | None, device_indices("NVML (nvidia-smi)")] = Field(
        None,
        description="NVML indices, comma-separated (0,2); default: CUDA_VISIBLE_DEVICES, else all",
    )

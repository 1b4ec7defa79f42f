"""The ``nvml`` meter's options (:class:`NvmlOptions`), beside the meter in this package.

A module of its own rather than a class in ``nvml/__init__.py``: the plugin manager imports the
meter to register it, and that must not import pydantic (see :mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo

from greenprec.meters.options import MeterOptions, option_label

__all__ = ["NvmlOptions"]


def _devices(value: object, info: ValidationInfo) -> list[int] | None:
    """NVML indices from ``"0,2"``, ``3`` or ``[1, 0]``; duplicates dropped, order kept."""
    if value is None:
        return None
    items: list[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        items = [value]
    parsed: list[int] = []
    for item in items:
        if isinstance(item, bool) or not str(item).isdigit():
            raise ValueError(
                f"{option_label(info)} must be comma-separated GPU indices as NVML (nvidia-smi) "
                f"numbers them, e.g. devices=0,1; got {value!r}"
            )
        if int(str(item)) not in parsed:
            parsed.append(int(str(item)))
    if not parsed:
        raise ValueError(f"{option_label(info)} is empty; name at least one GPU index")
    return parsed


class NvmlOptions(MeterOptions):
    """Options of the ``nvml`` meter (:class:`~greenprec.meters.nvml.NvmlMeter`): NVIDIA GPUs
    through NVML."""

    model_config = ConfigDict(title="nvml")

    devices: Annotated[list[int] | None, BeforeValidator(_devices)] = Field(
        None,
        description="NVML indices, comma-separated (0,2); default: CUDA_VISIBLE_DEVICES, else all",
    )

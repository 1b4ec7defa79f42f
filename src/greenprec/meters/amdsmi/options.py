"""The ``amdsmi`` meter's options (:class:`AmdsmiOptions`), beside the meter in this package.

A module of its own rather than a class in ``amdsmi/__init__.py``: the plugin manager imports
the meter to register it, and that must not import pydantic (see
:mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo

from greenprec.meters.options import MeterOptions, device_indices, option_label, positive_value

__all__ = ["AmdsmiOptions"]

_MAX_CHECK_S = 10.0
"""A longer start-up check would only delay every measurement; Zeus checks for 0.5 s."""


def _check_s(value: object, info: ValidationInfo) -> float:
    seconds = positive_value(value, info, "seconds", allow_zero=True)
    if seconds > _MAX_CHECK_S:
        raise ValueError(
            f"{option_label(info)} must be at most {_MAX_CHECK_S:g} seconds, got {value!r}"
        )
    return seconds


def _source(value: object, info: ValidationInfo) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in ("auto", "power"):
        raise ValueError(f"{option_label(info)} must be 'auto' or 'power', got {value!r}")
    return str(text)


class AmdsmiOptions(MeterOptions):
    """Options of the ``amdsmi`` meter (:class:`~greenprec.meters.amdsmi.AmdsmiMeter`): AMD
    GPUs through AMD SMI."""

    model_config = ConfigDict(title="amdsmi")

    devices: Annotated[list[int] | None, device_indices("amd-smi")] = Field(
        None,
        description="amdsmi indices, comma-separated (0,2); default: ROCR_VISIBLE_DEVICES, "
        "HIP_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES, else all",
    )
    source: Annotated[Literal["auto", "power"], BeforeValidator(_source)] = Field(
        "auto",
        description="auto: each GPU's energy counter, power where it has none; power: "
        "integrate power on every GPU (for a counter the start-up check refuses)",
    )
    counter_check_s: Annotated[float, BeforeValidator(_check_s)] = Field(
        0.5,
        description="seconds the start-up check compares each energy counter with power "
        "(0 skips it)",
    )

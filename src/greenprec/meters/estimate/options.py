"""The ``estimate`` meter's options (:class:`EstimateOptions`), beside the meter in this package.

A module of its own rather than a class in ``estimate/__init__.py``: the plugin manager imports
the meter to register it, and that must not import pydantic (see
:mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo

from greenprec import host
from greenprec.meters.options import MeterOptions, option_label, positive_number, positive_value

__all__ = ["EstimateOptions"]


def _idle_fraction(value: object, info: ValidationInfo) -> float:
    fraction = positive_value(value, info, allow_zero=True)
    if fraction > 1:
        raise ValueError(f"idle_fraction must be between 0 and 1, got {value!r}")
    return fraction


def _pid(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        raise ValueError(f"estimate: no process with pid {value!r}") from None


def _cpuinfo(value: object, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ValueError(
            f"{option_label(info)} must be a readable cpuinfo file such as {host.CPUINFO}, "
            f"got {value!r}"
        )
    return os.fspath(value)


class EstimateOptions(MeterOptions):
    """Options of the ``estimate`` meter (:class:`~greenprec.meters.estimate.EstimateMeter`):
    a TDP model over the CPU time of a process tree, estimated, never counted."""

    model_config = ConfigDict(title="estimate")

    tdp_w: Annotated[float, positive_number("watts")] | None = Field(
        None,
        description="TDP of this machine's logical CPUs together, in watts; default: the table",
    )
    idle_fraction: Annotated[float, BeforeValidator(_idle_fraction)] = Field(
        0.1, description="idle share of TDP, 0..1, charged for the block's wall time"
    )
    pid: Annotated[int | None, BeforeValidator(_pid)] = Field(
        None, description="root of the process tree to follow; default: this process"
    )
    cpuinfo: Annotated[str | None, BeforeValidator(_cpuinfo)] = Field(
        None, description="the cpuinfo file for the CPU model and logical CPU count"
    )

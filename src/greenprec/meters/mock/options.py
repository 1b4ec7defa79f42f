"""The ``mock`` meter's options (:class:`MockOptions`), beside the meter in this package.

A module of its own rather than a class in ``mock/__init__.py``: the plugin manager imports the
meter to register it, and that must not import pydantic (see
:mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo

from greenprec.meters.options import MeterOptions, meter_being_validated

__all__ = ["MockOptions"]


def _power(value: object, info: ValidationInfo) -> float | Callable[[float], float]:
    if callable(value):
        return value
    who = f"{meter_being_validated(info)} {info.field_name}"  # "mock power_w", as it always said
    try:
        watts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{who} must be a number of watts, got {value!r}") from None
    if not watts >= 0 or math.isinf(watts):
        raise ValueError(f"{who} must be finite and >= 0, got {value!r}")
    return watts


class MockOptions(MeterOptions):
    """Options of the ``mock`` meter (:class:`~greenprec.meters.mock.MockMeter`): made-up
    power for tests and examples."""

    model_config = ConfigDict(title="mock")

    power_w: Annotated[float | Callable[[float], float], BeforeValidator(_power)] = Field(
        100.0, description="constant watts, or (from Python) a callable power(t_s) -> watts"
    )
    domain: str = Field("mock/cpu", description="the domain name reported")

"""The ``energibridge`` meter's options (:class:`EnergiBridgeOptions`), beside the meter in this
package.

A module of its own rather than a class in ``energibridge/__init__.py``: the plugin manager
imports the meter to register it, and that must not import pydantic (see
:mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field

from greenprec.formats.energibridge_csv import check_counter_range
from greenprec.meters.options import Flag, MeterOptions, path, positive_number, whole_number

__all__ = ["EnergiBridgeOptions"]


def _counter_range(value: object) -> float | dict[str, float] | None:
    # The CSV reader owns the syntax (it is also `greenprec import --counter-range-j`); its
    # ConfigError is a ValueError, so pydantic reports its message as the validator's own.
    return check_counter_range(value)  # type: ignore[arg-type]


class EnergiBridgeOptions(MeterOptions):
    """Options of the ``energibridge`` meter
    (:class:`~greenprec.meters.energibridge.EnergiBridgeMeter`): EnergiBridge run as a
    subprocess for the block, its CSV read when the block ends."""

    model_config = ConfigDict(title="energibridge")

    executable: Annotated[str, path("a path or a command name")] | None = Field(
        None,
        description="the EnergiBridge binary; default: $GREENPREC_ENERGIBRIDGE, else PATH",
    )
    gpu: Flag = Field(False, description="pass -g: add NVIDIA GPU power (counted)")
    keep_csv: Annotated[str, path("a file path")] | None = Field(
        None, description="copy EnergiBridge's raw CSV there when the block ends"
    )
    interval_ms: Annotated[int, whole_number("milliseconds")] = Field(
        200, description="EnergiBridge's sampling interval (its own default)"
    )
    counter_range_j: Annotated[float | dict[str, float] | None, BeforeValidator(_counter_range)] = (
        Field(
            None,
            description="counter wrap range in joules: a number, or COLUMN=J,COLUMN=J",
        )
    )
    stop_timeout_s: Annotated[float, positive_number("seconds")] = Field(
        5.0, description="how long to wait for EnergiBridge to exit after SIGINT"
    )
    start_timeout_s: Annotated[float, positive_number("seconds")] = Field(
        15.0, description="how long to wait for its first row"
    )

"""The hooks a greenprec plugin can implement (mark implementations with ``greenprec.hookimpl``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from greenprec.measurement import Measurement

hookspec = pluggy.HookspecMarker("greenprec")
hookimpl = pluggy.HookimplMarker("greenprec")


@hookspec
def greenprec_meters() -> list[Any]:  # type: ignore[empty-body]
    """Return the meter classes (subclasses of ``greenprec.Meter``) this plugin contributes."""


@hookspec
def greenprec_workloads() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return workloads this plugin contributes, as a mapping of name to callable."""


@hookspec
def greenprec_measurement_started(measurement: Measurement) -> None:
    """Called just before a block's entry reading; its time is not inside the window."""


@hookspec
def greenprec_measurement_finished(measurement: Measurement) -> None:
    """Called after every block's exit reading (also when the block raised); not in the window."""

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
    """Called when a measured block begins, with its (still running) measurement."""


@hookspec
def greenprec_measurement_finished(measurement: Measurement) -> None:
    """Called with every finished measurement, also when the block raised."""

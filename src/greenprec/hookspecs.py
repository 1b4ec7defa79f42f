"""The hooks a greenprec plugin can implement (mark implementations with ``greenprec.hookimpl``).

Built-in meters and workloads implement these hooks in ordinary modules, registered exactly as
a third-party plugin is (from the ``greenprec`` entry-point group). Every hook is called on
each implementation separately: one raising is reported once and skipped, never stopping the
others. Set ``GREENPREC_TRACE_PLUGINS=1`` to log every hook call and its result on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from greenprec.measurement import Measurement
    from greenprec.meters.base import Meter

hookspec = pluggy.HookspecMarker("greenprec")
hookimpl = pluggy.HookimplMarker("greenprec")


@hookspec
def greenprec_meters() -> list[type[Meter]]:  # type: ignore[empty-body]
    """Return the meter classes (subclasses of ``greenprec.Meter``) this plugin contributes.

    Order: built-ins first, then plugins in load order. Clash: the first class to claim a
    meter ``name`` keeps it, so a plugin cannot replace a built-in meter.
    """


@hookspec
def greenprec_workloads() -> Mapping[str, Callable[..., Any]]:  # type: ignore[empty-body]
    """Return workloads this plugin contributes, as a mapping of name to callable.

    Order: built-ins first. Clash: a name already taken is skipped with a warning naming both.
    """


@hookspec
def greenprec_measurement_started(measurement: Measurement) -> None:
    """Called just before a block's entry reading; its time is not inside the window.

    Order: any. Clash: none; every implementation is called, and one that raises is skipped.
    """


@hookspec
def greenprec_measurement_finished(measurement: Measurement) -> None:
    """Called after every block's exit reading (also when the block raised); not in the window.

    Order: any. Clash: none; every implementation is called, and one that raises is skipped.
    """

"""The hooks a greenprec plugin can implement (mark implementations with ``greenprec.hookimpl``).

Built-in meters and workloads implement these hooks in ordinary modules, registered exactly as
a third-party plugin is (from the ``greenprec`` entry-point group), built-ins first.

greenprec calls every hook through pluggy, ``get_plugin_manager().hook.NAME(...)``, so the call
order is pluggy's: implementations marked ``@hookimpl(tryfirst=True)`` first, then the most
recently registered first (third-party plugins before the built-ins), ``trylast=True`` ones
last. Each implementation is wrapped when it is registered: one that raises is reported once
(a ``GreenprecWarning``, and a line in ``greenprec meters``) and skipped, and the others'
results still come back. Set ``GREENPREC_TRACE_PLUGINS=1`` to log every hook call once, with
its result, on stderr (pluggy's own hook-call monitoring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from greenprec.measurement import Measurement
    from greenprec.meters.base import Meter

__all__ = [
    "greenprec_measurement_finished",
    "greenprec_measurement_started",
    "greenprec_meters",
    "greenprec_workloads",
    "hookimpl",
]

_hookspec = pluggy.HookspecMarker("greenprec")
hookimpl = pluggy.HookimplMarker("greenprec")


@_hookspec
def greenprec_meters() -> list[type[Meter]]:  # type: ignore[empty-body]
    """Return the meter classes (subclasses of ``greenprec.Meter``) this plugin contributes.

    Through ``pm.hook`` each result comes back as a ``(plugin name, classes)`` pair.
    Order: built-ins claim first, then plugins in pluggy's call order. Clash (one rule with
    workloads, ``greenprec.plugins.collect``): the first class to claim a meter ``name``
    keeps it, so a plugin cannot replace a built-in meter; a later claim is skipped with one
    ``GreenprecWarning`` naming both plugins.
    """


@_hookspec
def greenprec_workloads() -> Mapping[str, Callable[..., object]]:  # type: ignore[empty-body]
    """Return workloads this plugin contributes, as a mapping of name to callable.

    Through ``pm.hook`` each result comes back as a ``(plugin name, mapping)`` pair.
    Order: built-ins claim first, then plugins in pluggy's call order. Clash (the meters'
    rule, ``greenprec.plugins.collect``): a name already taken is skipped with one
    ``GreenprecWarning`` naming both plugins.
    """


@_hookspec
def greenprec_measurement_started(measurement: Measurement) -> None:
    """Called just before a block's entry reading; its time is not inside the window.

    Order: pluggy's (``tryfirst``/``trylast`` honoured). Clash: none; every implementation is
    called, and one that raises is reported once and skipped.
    """


@_hookspec
def greenprec_measurement_finished(measurement: Measurement) -> None:
    """Called after every block's exit reading (also when the block raised); not in the window.

    Order: pluggy's (``tryfirst``/``trylast`` honoured). Clash: none; every implementation is
    called, and one that raises is reported once and skipped.
    """

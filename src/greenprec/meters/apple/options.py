"""The ``apple`` meter's options (:class:`AppleOptions`), beside the meter in this package.

A module of its own rather than a class in ``apple/__init__.py``: the plugin manager imports the
meter to register it, and that must not import pydantic (see :mod:`greenprec.meters.rapl.options`).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from greenprec.meters.options import Flag, MeterOptions

__all__ = ["AppleOptions"]


class AppleOptions(MeterOptions):
    """Options of the ``apple`` meter (:class:`~greenprec.meters.apple.AppleMeter`): Apple
    silicon's SoC energy counters through zeus-apple-silicon."""

    model_config = ConfigDict(title="apple")

    cores: Flag = Field(
        False,
        description="also report each CPU core (apple/cpu.efficiency-core-N ...), parts of "
        "apple/cpu, never added to the total",
    )

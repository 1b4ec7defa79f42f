"""greenprec: measure what numerical precision costs in energy when you train neural networks.

    import greenprec

    with greenprec.measure() as m:
        model.fit(...)
    print(m.energy_j, m.duration_s, m.mean_power_w, m.estimated)

``import greenprec`` stays light: TensorFlow, pandas, matplotlib and nvidia-ml-py are imported
only by the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from greenprec._version import __version__
from greenprec.errors import (
    ConfigError,
    GreenprecError,
    GreenprecWarning,
    MeasurementNotFinished,
    MeterError,
    MeterUnavailable,
)
from greenprec.hookspecs import hookimpl
from greenprec.measurement import Measurement, measure
from greenprec.meters.base import Meter, Probe, Reading
from greenprec.monitor import Monitor

__all__ = [
    "ConfigError",
    "GreenprecError",
    "GreenprecWarning",
    "Measurement",
    "MeasurementNotFinished",
    "Meter",
    "MeterError",
    "MeterUnavailable",
    "Monitor",
    "Probe",
    "Reading",
    "__version__",
    "available_meters",
    "hookimpl",
    "measure",
]

# Subpackages that pull in heavy libraries load on first attribute access. ``meters`` is the
# subpackage (``greenprec.meters.mock``), never shadowed by a function of the same name.
_LAZY_SUBMODULES = {
    "precision",
    "stats",
    "workloads",
    "experiment",
    "report",
    "results",
    "meters",
}


def available_meters() -> dict[str, type[Meter]]:
    """Every registered meter class by name (built-in and plugins).

    greenprec 0.1 called this ``greenprec.meters()``, which shadowed the subpackage
    ``greenprec.meters``; the subpackage is reachable again.
    """
    from greenprec.meters.registry import meter_classes

    return meter_classes()


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"greenprec.{name}")
    raise AttributeError(f"module 'greenprec' has no attribute {name!r}")

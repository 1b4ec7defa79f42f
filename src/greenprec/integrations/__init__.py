"""Energy callbacks for the training loops users already have: Keras, Lightning, Transformers.

Each framework has its own module, imported only when asked for::

    from greenprec.integrations.keras import EnergyCallback         # greenprec[tensorflow]
    from greenprec.integrations.lightning import EnergyCallback     # greenprec[lightning]
    from greenprec.integrations.transformers import EnergyCallback  # greenprec[transformers]

``import greenprec.integrations`` imports no framework: only the figures each callback
records (:class:`EpochEnergy`, :class:`BatchEnergy`, :class:`LogEnergy`) live here. Every
callback is a thin layer over one :class:`greenprec.Monitor` per run, with
:func:`greenprec.measure`'s ``meter``, ``meter_options`` and ``interval``; see
``docs/integrations.md`` for how its windows are laid out.
"""

from __future__ import annotations

from greenprec.integrations._windows import BatchEnergy, EpochEnergy, LogEnergy, WindowEnergy

__all__ = ["BatchEnergy", "EpochEnergy", "LogEnergy", "WindowEnergy"]

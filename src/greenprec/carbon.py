"""CO2e from energy with a grid carbon intensity the user states (``350g/kWh``).

A conversion, not a measurement: greenprec never looks an intensity up (no network, and the
right figure depends on where and when the energy was drawn), so every CO2e figure says which
intensity it was converted with. A unit is never guessed: ``350`` alone is refused with the
forms that were probably meant.
"""

from __future__ import annotations

import math
import re

from greenprec.errors import ConfigError

__all__ = ["MAX_G_PER_KWH", "co2e_g", "describe_intensity", "parse_grid_intensity"]

MAX_G_PER_KWH = 2_000.0
"""Above any real grid (coal is about 1000 g/kWh): a larger figure is a unit mistake."""

_J_PER_KWH = 3.6e6
_FORM = re.compile(
    r"\s*(?P<value>[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*"
    r"(?P<mass>g|kg)(?:\s*co2e?)?\s*/\s*(?P<energy>kwh|mwh)\s*",
    re.IGNORECASE,
)
# grams of CO2e per kWh for one unit of each form
_SCALE = {("g", "kwh"): 1.0, ("kg", "kwh"): 1000.0, ("g", "mwh"): 0.001, ("kg", "mwh"): 1.0}
_FORMS = "350g/kWh, 0.35kg/kWh or 350kg/MWh"


def parse_grid_intensity(text: str) -> float:
    """``"350g/kWh"`` (also ``gCO2e/kWh``, ``kg/kWh``, ``g/MWh``, ``kg/MWh``) → grams CO2e per
    kWh. A bare number, another unit or a value above :data:`MAX_G_PER_KWH` g/kWh is a
    one-line ConfigError naming the forms that were meant."""
    if not isinstance(text, str) or len(text) > 40:
        raise ConfigError(f"grid intensity: write it with its unit, e.g. {_FORMS}")
    match = _FORM.fullmatch(text)
    if match is None:
        bare = re.fullmatch(r"\s*[0-9.]+\s*", text)
        hint = (
            f"{text.strip()} has no unit; did you mean {text.strip()}g/kWh (the same as "
            f"{text.strip()}kg/MWh)?"
            if bare
            else f"{text[:40]!r} is not an intensity"
        )
        raise ConfigError(f"grid intensity: {hint} (forms: {_FORMS})")
    value = float(match["value"])
    grams = value * _SCALE[(match["mass"].lower(), match["energy"].lower())]
    if not math.isfinite(grams) or grams > MAX_G_PER_KWH:
        raise ConfigError(
            f"grid intensity {text.strip()} is {grams:.4g} g/kWh, above any grid "
            f"({MAX_G_PER_KWH:.0f} g/kWh); check the unit (forms: {_FORMS})"
        )
    return grams


def co2e_g(energy_j: float, g_per_kwh: float) -> float:
    """Grams CO2e of ``energy_j`` joules at ``g_per_kwh``."""
    return energy_j / _J_PER_KWH * g_per_kwh


def describe_intensity(g_per_kwh: float) -> str:
    """``350 g CO2e/kWh`` for labels: the conversion a CO2e figure was made with."""
    return f"{g_per_kwh:.4g} g CO2e/kWh"

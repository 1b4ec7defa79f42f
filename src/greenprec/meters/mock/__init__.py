"""``mock``: a deterministic meter for tests and demos. Only used when named."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.mock.options import MockOptions

__all__ = ["MockMeter", "greenprec_meters"]


class MockMeter(Meter):
    """Constant ``power_w`` (default 100 W) or a callable ``power(t_s)``; energy is exact.

    Energy is the integral of the power since :meth:`start` on the monotonic clock, stamped
    with the window's own clock readings (``reading_time``), so a 1 s
    block at 100 W gives 100 J. A callable is integrated with adaptive quadrature.
    """

    name = "mock"
    estimated = False
    simulated = True
    description = "deterministic power for tests and demos (never picked by auto)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see mock/options.py).
    Options = "greenprec.meters.mock.options:MockOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``power_w``, ``domain`` (see
        :class:`~greenprec.meters.mock.options.MockOptions`)."""
        super().__init__(**options)
        valid = cast("MockOptions", self.options)
        self._power: Callable[[float], float] | None = None
        self._constant_w = math.nan
        if callable(valid.power_w):
            self._power = valid.power_w
        else:
            self._constant_w = valid.power_w
        self.domain = valid.domain
        self._t0 = 0.0

    @classmethod
    def probe(cls, **options: object) -> Probe:
        valid = cast("MockOptions", cls.parse_options(options))  # bad options: ConfigError
        return Probe(True, domains=[valid.domain])

    def start(self) -> None:
        self._t0 = time.monotonic()

    def _now(self) -> float:
        return self.reading_time if self.reading_time is not None else time.monotonic()

    def energy_at(self, t_s: float) -> float:
        """Energy in joules from start to ``t_s`` seconds after it."""
        if self._power is None:
            return self._constant_w * t_s
        from scipy.integrate import quad

        value, _error = quad(self._power, 0.0, t_s, limit=200)
        return float(value)

    def read(self) -> list[Reading]:
        return [Reading(self.domain, energy_j=self.energy_at(self._now() - self._t0))]


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [MockMeter]

"""``mock``: a deterministic meter for tests and demos. Only used when named."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from greenprec.errors import ConfigError
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading


class MockMeter(Meter):
    """Constant ``power_w`` (default 100 W) or a callable ``power(t_s)``; energy is exact.

    Energy is the integral of the power since :meth:`start` on the monotonic clock, stamped
    with the window's own clock readings (``reading_time``), so a 1 s
    block at 100 W gives 100 J. A callable is integrated with adaptive quadrature.
    """

    name = "mock"
    estimated = False
    description = "deterministic power for tests and demos (never picked by auto)"

    def __init__(
        self, power_w: float | str | Callable[[float], float] = 100.0, domain: str = "mock/cpu"
    ) -> None:
        if callable(power_w):
            self._power: Callable[[float], float] | None = power_w
            self._constant_w = math.nan
        else:
            try:
                self._constant_w = float(power_w)
            except ValueError:
                raise ConfigError(
                    f"mock power_w must be a number of watts, got {power_w!r}"
                ) from None
            if not self._constant_w >= 0 or math.isinf(self._constant_w):
                raise ConfigError(f"mock power_w must be finite and >= 0, got {power_w!r}")
            self._power = None
        self.domain = domain
        self._t0 = 0.0

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        return Probe(True, domains=[str(options.get("domain", "mock/cpu"))])

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

"""``scripted``: a meter whose power is known per configuration of an experiment, for tests.

Inside a run, the meter draws the power the run's configuration was given
(``power_w``, by the run's label ``bf16-batch_size=256``, else by its precision policy ``bf16``,
else ``default_w``), times a factor drawn from the run's seed when ``noise`` is set; energy is
that power times the measured time, exactly. Outside a run (the idle baseline, the warm-up, a
plain ``greenprec.measure("scripted")``) it draws ``idle_w``. So a test knows, before anything
runs, what every run's energy must be, and which configuration a recommendation must pick.

The meter knows its run through :func:`greenprec.experiment.execute.current_run`, read when the
meter is made: that is on the thread that runs the workload, whereas ``start()`` runs on a
helper thread that does not see the run.

Only used when named (``--meter scripted``); never picked by ``auto``. Registered with the
built-in meters (like ``mock``), so this module imports neither pydantic nor numpy nor any
workload until a meter is made (see :mod:`greenprec.testing.scripted_options`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from greenprec.errors import ConfigError
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.results import RunRecord
    from greenprec.testing.scripted_options import ScriptedOptions

__all__ = [
    "DOMAIN",
    "ScriptedMeter",
    "greenprec_meters",
    "run_power_w",
]

DOMAIN = "scripted/node"
"""The one domain the meter reports."""


def run_power_w(power_w: float, noise: float, seed: int) -> float:
    """The power of one run: ``power_w`` times a factor of mean 1 and standard deviation
    ``noise``, drawn from ``numpy.random.default_rng(seed)``; exactly ``power_w`` when
    ``noise`` is 0.

    The factor is gamma-distributed (shape ``1/noise**2``, scale ``noise**2``): positive
    whatever the noise, unlike a normal draw, and close to normal for small noise. A test
    predicts a run's power from its seed with this very function.
    """
    if noise == 0:
        return power_w
    import numpy as np

    factor = float(np.random.default_rng(seed).gamma(1.0 / noise**2, noise**2))
    return power_w * factor


def _configured_power_w(options: ScriptedOptions, run: RunRecord) -> float:
    """The power ``options`` give ``run``'s configuration: its label, else its precision policy,
    else ``default_w``; a configuration they do not cover is one ConfigError line."""
    for key in (run.policy, run.precision_policy):
        if key in options.power_w:
            return options.power_w[key]
    if options.default_w is not None:
        return options.default_w
    listed = ", ".join(options.power_w) or "nothing"
    precision = f" (precision {run.precision_policy})" if run.precision_policy != run.policy else ""
    raise ConfigError(
        f"scripted meter: no power for configuration {run.policy!r}{precision}; power_w lists "
        f"{listed}: add it (-o scripted.power_w=...,{run.policy}:WATTS) or set a fallback "
        "(-o scripted.default_w=WATTS)"
    )


class ScriptedMeter(Meter):
    """A known power per configuration of an experiment (``power_w``), ``idle_w`` outside a run;
    energy is the power times the measured time, exactly (as the ``mock`` meter's)."""

    name = "scripted"
    estimated = False
    simulated = True
    description = "known power per configuration, for tests of experiments (never picked by auto)"

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter.
    Options = "greenprec.testing.scripted_options:ScriptedOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``power_w``, ``default_w``, ``idle_w``, ``noise`` (see
        :class:`~greenprec.testing.scripted_options.ScriptedOptions`)."""
        super().__init__(**options)
        valid = cast("ScriptedOptions", self.options)
        from greenprec.experiment.execute import current_run

        run = current_run()
        self.configuration: str | None = None if run is None else run.policy
        """The label of the run being measured; None outside a run."""
        self.power_w = (
            valid.idle_w
            if run is None
            else run_power_w(
                _configured_power_w(valid, run),
                valid.noise,
                run.seed if run.seed is not None else 0,  # as execute_run seeds the workload
            )
        )
        """The watts this meter reports for its whole measurement."""
        self._t0 = 0.0

    @classmethod
    def probe(cls, **options: object) -> Probe:
        cls.parse_options(options)  # bad options: ConfigError
        return Probe(True, domains=[DOMAIN])

    def start(self) -> None:
        self._t0 = time.monotonic()

    def read(self) -> list[Reading]:
        now = self.reading_time if self.reading_time is not None else time.monotonic()
        return [Reading(DOMAIN, energy_j=self.power_w * (now - self._t0))]


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [ScriptedMeter]

"""The measurement windows behind every callback: one for the whole run, spans nested inside.

A callback owns one :class:`Windows`. The *run* window (the whole ``fit`` or ``train``) is one
:class:`~greenprec.measurement.Measurement` from the run's begin hook to its end hook; each
*span* (an epoch, a group of batches, the stretch between two logs) is another Measurement,
started and stopped by the framework's hooks while the run window keeps going. Nothing is
counted twice: a span's figures are its own window, and the run's are the run window's, never a
sum of spans. Nothing is lost: what falls between spans (set-up before the first epoch, other
callbacks' work between epochs, the spans' own start and stop) is still in the run window.

Overlapping windows need their own meter instances: :mod:`greenprec.measurement` refuses one
instance in two running windows, so meters are taken by name, and every window resolves its
own instances from the same ``meter`` and ``meter_options`` (``"auto"`` is chosen once, when
the run begins, and its meters named for every window of the run). Hardware counters are
machine-wide, so a span and the run around it both see every joule of their overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from greenprec.errors import ConfigError
from greenprec.measurement import Measurement, Sync
from greenprec.meters.base import Meter

MeterSpec: TypeAlias = "str | Sequence[str]"
"""What a callback's ``meter`` takes: ``"auto"``, a meter name, or a list of names."""

LOG_KEYS = ("energy_j", "power_w", "duration_s")
"""The keys every callback adds to its framework's logs."""


@dataclass(frozen=True, kw_only=True)
class WindowEnergy:
    """The figures of one measured window inside a training run."""

    energy_j: float
    """Energy of the window in joules (``Measurement.energy_j``)."""
    power_w: float
    """Mean power over the window in watts (``Measurement.mean_power_w``)."""
    duration_s: float
    """Wall time of the window in seconds (``Measurement.duration_s``)."""
    meter: str
    """The meter(s) the window used, e.g. ``"rapl+nvml"``."""
    estimated: bool
    """True when a figure comes from a model (the ``estimate`` meter), not a sensor."""
    domains: dict[str, float]
    """Energy per domain in joules, counted or not (``Measurement.domains``)."""

    def logs(self) -> dict[str, float]:
        """``energy_j``, ``power_w`` and ``duration_s``: what goes into the framework's logs."""
        return {"energy_j": self.energy_j, "power_w": self.power_w, "duration_s": self.duration_s}


@dataclass(frozen=True, kw_only=True)
class EpochEnergy(WindowEnergy):
    """One epoch: its training batches and, where the framework runs it there, its validation."""

    epoch: int
    """The framework's epoch index (0 for the first epoch of a fresh fit)."""


@dataclass(frozen=True, kw_only=True)
class BatchEnergy(WindowEnergy):
    """A group of consecutive training batches inside one epoch (``every_n_batches``)."""

    epoch: int
    first_batch: int
    """Index of the group's first batch within its epoch."""
    last_batch: int
    """Index of the group's last batch within its epoch (the epoch's last group may be short)."""


@dataclass(frozen=True, kw_only=True)
class LogEnergy(WindowEnergy):
    """The stretch of training that ends at one log of a Hugging Face ``Trainer``."""

    step: int
    """The Trainer's ``global_step`` at that log."""


def figures(window: Measurement) -> dict[str, Any]:
    """The :class:`WindowEnergy` fields of a finished window, as keyword arguments."""
    return {
        "energy_j": window.energy_j,
        "power_w": window.mean_power_w,
        "duration_s": window.duration_s,
        "meter": window.meter,
        "estimated": window.estimated,
        "domains": window.domains,
    }


class Windows:
    """The run window and its named spans, started and stopped by a callback's hooks.

    A meter that fails ends training with its :class:`~greenprec.errors.MeterError`, as it
    would end a ``with greenprec.measure()`` block (a figure that cannot be right is never
    logged); every other window is stopped first, so no meter or sampling thread is left behind.
    """

    def __init__(
        self,
        meter: MeterSpec,
        *,
        interval: float,
        meter_options: Mapping[str, Any] | None,
        sync: Sync,
        spans: str,
    ) -> None:
        given = [meter] if isinstance(meter, (str, Meter)) else list(meter)
        if any(isinstance(item, Meter) for item in given):
            raise ConfigError(
                f"EnergyCallback measures the whole run and each {spans} in overlapping "
                "windows, and one meter instance can measure one window at a time: pass the "
                "meter by name (meter='rapl', options in meter_options=...), which gives every "
                "window its own instance"
            )
        # A bad interval or sync fails here, where the callback is created, not at the first
        # epoch.
        Measurement(meter, interval=interval, meter_options=meter_options, sync=sync)
        self._meter = meter
        self._interval = interval
        self._sync = sync
        self._meter_options = dict(meter_options or {})
        # What every window of the current run measures with: "auto" chosen once (_pin).
        self._run_meter: MeterSpec = meter
        self._run_options = self._meter_options
        self._run: Measurement | None = None
        self._spans: dict[str, Measurement] = {}

    def _new(self) -> Measurement:
        return Measurement(
            self._run_meter,
            interval=self._interval,
            meter_options=self._run_options,
            sync=self._sync,
        )

    def _pin(self) -> None:
        """Choose the meters of ``"auto"`` once for the run, by name, with their options.

        Every window of a run then measures with the same meters, and only the run shows the
        warning of the CPU-time fallback: each window resolving ``"auto"`` anew would probe
        every meter again at every epoch and repeat that warning once per framework hook.
        """
        self._run_meter, self._run_options = self._meter, self._meter_options
        given = [self._meter] if isinstance(self._meter, str) else list(self._meter)
        if given != ["auto"]:
            return
        from greenprec.meters.registry import auto_meters, options_for

        chosen = auto_meters(self._meter_options)
        self._run_meter = [meter.name for meter in chosen]
        # Scoped keys ("rapl.root") reach exactly the meter that auto gave them to, whatever
        # the number of meters (a lone named meter would take, and refuse, every plain key).
        self._run_options = {
            f"{meter.name}.{key}": value
            for meter in chosen
            for key, value in options_for(type(meter), self._meter_options).items()
        }

    @property
    def running(self) -> bool:
        """True between :meth:`start_run` and :meth:`stop_run` (or :meth:`abort`)."""
        return self._run is not None and self._run.running

    def is_open(self, span: str) -> bool:
        return span in self._spans

    def start_run(self) -> None:
        # A run that raised never reached its end hook: its windows are still sampling.
        self.abort()
        self._pin()
        run = self._new()
        run.start()
        self._run = run

    def start(self, span: str) -> None:
        """Open the window ``span``; nothing outside a run (a lone ``trainer.evaluate()``)."""
        if not self.running:
            return
        # A span whose end hook never came (a framework that skipped it) is dropped, not
        # merged into the next one.
        self._drop(span)
        window = self._new()
        try:
            window.start()
        except BaseException:
            self.abort()
            raise
        self._spans[span] = window

    def stop(self, span: str) -> Measurement | None:
        """Close the window ``span`` and return it; None when it was not open."""
        window = self._spans.pop(span, None)
        if window is None:
            return None
        try:
            window.stop()
        except BaseException:
            self.abort()
            raise
        return window

    def stop_run(self) -> Measurement | None:
        """Close every window, the run's last; return the run's, None when none was running."""
        if not self.running:
            return None
        for span in list(self._spans):
            self._drop(span)  # left open by a skipped end hook: it belongs to no epoch
        run, self._run = self._run, None
        assert run is not None
        try:
            run.stop()
        except BaseException:
            self.abort()
            raise
        return run

    def abort(self) -> None:
        """Stop every window without results, e.g. when training raised."""
        for span in list(self._spans):
            self._drop(span)
        run, self._run = self._run, None
        if run is not None and run.running:
            with contextlib.suppress(Exception):
                run.stop()

    def _drop(self, span: str) -> None:
        window = self._spans.pop(span, None)
        if window is not None and window.running:
            with contextlib.suppress(Exception):
                window.stop()

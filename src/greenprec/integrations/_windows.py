"""The measurement windows behind every callback: one for the whole run, spans nested inside.

A callback owns one :class:`Windows`. Each run (the whole ``fit`` or ``train``) opens one
:class:`~greenprec.monitor.Monitor`, from the run's begin hook to its end hook: its meters
start once and one sampling thread serves the whole run, which is the monitor's own
measurement. Each *span* (an epoch, a group of batches, the stretch between two logs) is a
window of that monitor, begun and ended by the framework's hooks while the run goes on: two
synchronised readings of the meters, no meter started and no thread. Nothing is counted twice:
a span's figures are the difference of the readings at its own edges, and the run's are the
run's, never a sum of spans. Nothing is lost: what falls between spans (set-up before the first
epoch, other callbacks' work between epochs, the spans' own edges) is still in the run.

``"auto"`` is resolved once per run, when the monitor opens, so every window of a run measures
with the same meters and the CPU-time fallback warns once per run.

Under ``torch.distributed`` (Lightning DDP, a Hugging Face Trainer under torchrun or
Accelerate) the monitor is distributed (:mod:`greenprec.distributed`): the frameworks call these
hooks on every rank at the same point, so each edge is a barrier of all ranks, only each host's
lowest rank opens meters, and every rank gets the job's figures, each host once. A run that
raised is aborted on each process alone (:meth:`~greenprec.Monitor.abandon`): the other ranks
may never reach another edge. Keras has no ``torch.distributed``: under
``tf.distribute.MultiWorkerMirroredStrategy`` each worker measures its own machine (two workers
on one machine would both count it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypedDict

from greenprec.errors import ConfigError
from greenprec.measurement import Measurement, Sync
from greenprec.meters.base import Meter
from greenprec.monitor import Monitor, Window

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


class Figures(TypedDict):
    """The :class:`WindowEnergy` fields every window has, as keyword arguments."""

    energy_j: float
    power_w: float
    duration_s: float
    meter: str
    estimated: bool
    domains: dict[str, float]


def figures(window: Measurement | Window) -> Figures:
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

    One :class:`~greenprec.monitor.Monitor` per run: it opens with the run, its meters and its
    one sampling thread serve the run and every span, and each span is one of its windows.

    A meter that fails ends training with its :class:`~greenprec.errors.MeterError`, as it
    would end a ``with greenprec.measure()`` block (a figure that cannot be right is never
    logged); the monitor is closed first, so no meter or sampling thread is left behind.
    """

    def __init__(
        self,
        meter: MeterSpec,
        *,
        interval: float,
        meter_options: Mapping[str, object] | None,
        sync: Sync,
        spans: str,
    ) -> None:
        given = [meter] if isinstance(meter, (str, Meter)) else list(meter)
        if any(isinstance(item, Meter) for item in given):
            raise ConfigError(
                f"EnergyCallback measures the whole run and each {spans} with meters it "
                "starts afresh for every run: pass the meter by name (meter='rapl', options "
                "in meter_options=...), which gives every run its own instance"
            )
        # A bad interval or sync fails here, where the callback is created, not at the first
        # epoch.
        Measurement(meter, interval=interval, meter_options=meter_options, sync=sync)
        self._meter = meter
        self._interval = interval
        self._sync = sync
        self._meter_options = dict(meter_options or {})
        self._monitor: Monitor | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start_run` and :meth:`stop_run` (or :meth:`abort`)."""
        return self._monitor is not None and self._monitor.running

    def is_open(self, span: str) -> bool:
        return self._monitor is not None and self._monitor.is_open(span)

    def start_run(self) -> None:
        # A run that raised never reached its end hook: its monitor is still sampling.
        self.abort()
        monitor = Monitor(
            self._meter,
            interval=self._interval,
            meter_options=self._meter_options,
            sync=self._sync,
        )
        monitor.open()
        self._monitor = monitor

    def start(self, span: str) -> None:
        """Open the window ``span``; nothing outside a run (a lone ``trainer.evaluate()``)."""
        monitor = self._monitor
        if monitor is None or not monitor.running:
            return
        # A span whose end hook never came (a framework that skipped it) is dropped, not
        # merged into the next one.
        monitor.discard_window(span)
        try:
            monitor.begin_window(span)
        except BaseException:
            self.abort()
            raise

    def stop(self, span: str) -> Window | None:
        """Close the window ``span`` and return it; None when it was not open."""
        monitor = self._monitor
        if monitor is None or not monitor.is_open(span):
            return None
        try:
            return monitor.end_window(span)
        except BaseException:
            self.abort()
            raise

    def stop_run(self) -> Measurement | None:
        """Close every window and the run; return the run's measurement, None when none ran."""
        if not self.running:
            return None
        monitor, self._monitor = self._monitor, None
        assert monitor is not None
        try:
            # Spans left open (a skipped end hook, the stretch after a Trainer's last log)
            # belong to no epoch: ended at one edge, as a stopped window, and dropped.
            spans = monitor.open_windows
            if spans:
                edge = monitor.edge()
                for span in spans:
                    monitor.end_window(span, at=edge)
            return monitor.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop every window without results, e.g. when training raised."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None and monitor.running:
            # On this process alone: under torch.distributed the other ranks may never reach a
            # closing edge after an exception, and waiting for them would hang the abort.
            with contextlib.suppress(Exception):
                monitor.abandon()

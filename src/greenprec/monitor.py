"""``greenprec.Monitor``: one set of meters, one sampler, many named windows.

::

    with greenprec.Monitor(meter="auto") as monitor:
        monitor.begin_window("training")
        for epoch in range(3):
            monitor.begin_window(f"epoch-{epoch}")
            train_one_epoch()
            print(monitor.end_window(f"epoch-{epoch}").energy_j)
        whole = monitor.end_window("training")

A :func:`greenprec.measure` window starts its meters and a sampling thread, and stops them at
its end. A monitor starts them once (:meth:`Monitor.open`), and its windows are marks on that
one measurement: each edge (:meth:`~Monitor.begin_window`, :meth:`~Monitor.end_window`) runs
the device sync and takes a fresh reading of every meter, as ``measure()`` does at its entry
and exit, and a window's energy per domain is the difference of the energy since the
monitor opened at its two edges: a counter's difference, or the integral of power between
them. Windows may nest and overlap; a window's figures never depend on the others.

Under ``torch.distributed`` every rank opens the monitor and every edge together: each edge is
a barrier, after which each host's measurer reads its meters, and every rank's window holds the
job's energy per domain, summed over the hosts (:mod:`greenprec.distributed`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from greenprec.errors import ConfigError
from greenprec.measurement import Measurement, Sync
from greenprec.meters.base import Meter

__all__ = ["Edge", "Monitor", "Window"]


@dataclass(frozen=True)
class Edge:
    """One synchronised reading of a monitor's meters, usable as the edge of several windows.

    From :meth:`Monitor.edge`: pass it as ``at=`` to :meth:`Monitor.begin_window` and
    :meth:`Monitor.end_window` to end one window and begin the next at the very same instant
    (the two then tile the time between them, with not a joule in neither or both).
    """

    t_s: float
    """Seconds since the monitor opened (its first meter's reading)."""
    at: datetime
    """Wall-clock time of the reading (UTC)."""
    energies_j: Mapping[str, float]
    """Energy of each domain since the monitor opened, in joules."""
    monitor_id: int


@dataclass(frozen=True)
class Window:
    """The figures of one window of a :class:`Monitor`, read like a finished Measurement."""

    name: str
    duration_s: float
    """Wall time from the window's begin edge to its end edge, in seconds."""
    domains: dict[str, float]
    """Energy in joules per domain, including parts that are not added to the total."""
    counted_domains: list[str]
    """The domains whose energy adds up to ``energy_j``."""
    meters: list[str]
    estimated: bool
    """True when any figure comes from a model rather than a sensor."""
    started_at: datetime
    ended_at: datetime

    @property
    def energy_j(self) -> float:
        """Total energy in joules, each joule counted once."""
        return sum(self.domains[name] for name in self.counted_domains)

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def meter(self) -> str:
        """The meter used, or several joined by ``+`` (``rapl+nvml``)."""
        return "+".join(self.meters)

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data, the keys of ``Measurement.to_dict()`` and ``name``."""
        mean_power_w = self.mean_power_w
        return {
            "name": self.name,
            "meter": self.meter,
            "meters": list(self.meters),
            "estimated": self.estimated,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "mean_power_w": None if math.isnan(mean_power_w) else mean_power_w,
            "domains": dict(self.domains),
            "counted_domains": list(self.counted_domains),
        }

    def __repr__(self) -> str:
        label = " estimated" if self.estimated else ""
        return (
            f"<Window {self.name!r} {self.meter}: {self.energy_j:.3f} J{label} "
            f"in {self.duration_s:.3f} s>"
        )


class Monitor:
    """One long-lived measurement with many named, overlapping windows (Zeus's way).

    ``meter``, ``interval``, ``meter_options`` and ``sync`` are :func:`greenprec.measure`'s.
    :meth:`open` (or ``with``) starts the meters and one sampling thread; :meth:`close` stops
    them and returns the :class:`~greenprec.measurement.Measurement` of the monitor's whole
    life. In between, :meth:`begin_window` and :meth:`end_window` open and close windows by
    name, nested or overlapping as you like, each with its own exact figures; a window costs
    two readings of the meters, no thread and no meter start.
    """

    def __init__(
        self,
        meter: str | Meter | Sequence[str | Meter] = "auto",
        *,
        interval: float = 0.2,
        meter_options: Mapping[str, object] | None = None,
        sync: Sync = "auto",
        distributed: bool = True,
    ) -> None:
        if isinstance(meter, type):
            raise ConfigError(
                f"Monitor() got the class {meter.__name__}; pass an instance, e.g. "
                f"Monitor({meter.__name__}()), or a meter name"
            )
        # Bad interval or sync: refused here, by the same checks as measure().
        self._measurement = Measurement(
            meter,
            interval=interval,
            meter_options=meter_options,
            sync=sync,
            distributed=distributed,
        )
        self._windows: dict[str, Edge] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> Monitor:
        """Start the meters and the sampler. Returns ``self``."""
        if self._measurement._state != "new":
            raise ConfigError("this monitor was already opened; create a new Monitor()")
        self._measurement.start()
        return self

    def close(self) -> Measurement:
        """Stop the meters and the sampler; return the measurement of the monitor's life.

        Windows still open are discarded (they have no end). A meter that failed raises its
        :class:`~greenprec.errors.MeterError` here, after everything is stopped.
        """
        with self._lock:
            self._windows.clear()
        if self._measurement.running:
            self._measurement.stop()
        return self._measurement

    def abandon(self) -> Measurement:
        """Stop the meters and the sampler on this process alone, errors kept quiet: after an
        exception, under torch.distributed, the other ranks may never come to a closing edge.
        """
        with self._lock:
            self._windows.clear()
        return self._measurement.abandon()

    def __enter__(self) -> Monitor:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        self.abandon()  # the block's own exception is the one that matters

    @property
    def running(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._measurement.running

    @property
    def measurement(self) -> Measurement:
        """The monitor's whole life as one Measurement; its results after :meth:`close`."""
        return self._measurement

    @property
    def open_windows(self) -> list[str]:
        """The names of the windows begun and not yet ended, oldest first."""
        with self._lock:
            return list(self._windows)

    def is_open(self, name: str) -> bool:
        with self._lock:
            return name in self._windows

    # -- windows ---------------------------------------------------------------------------
    def edge(self) -> Edge:
        """Sync the device and read every meter now: one edge for several windows (``at=``)."""
        if not self.running:
            raise ConfigError(
                "the monitor is not open: call monitor.open() first, or use "
                "`with greenprec.Monitor(...) as monitor:`"
            )
        t_s, energies_j = self._measurement._mark()
        return Edge(t_s, datetime.now(timezone.utc), energies_j, id(self))

    def _own(self, at: Edge | None) -> Edge:
        if at is None:
            return self.edge()
        if at.monitor_id != id(self) or not self.running:
            raise ConfigError(
                "at= takes an Edge of this open monitor (from monitor.edge()); "
                "an edge of another monitor measures other meters"
            )
        return at

    def begin_window(self, name: str, *, at: Edge | None = None) -> None:
        """Open the window ``name`` now (or at the edge ``at``)."""
        with self._lock:
            if name in self._windows:
                raise ConfigError(
                    f"window {name!r} is already open in this monitor; end it first "
                    f"(monitor.end_window({name!r})) or give the new window another name"
                )
        edge = self._own(at)
        with self._lock:
            if name in self._windows:  # begun by another thread meanwhile
                raise ConfigError(
                    f"window {name!r} is already open in this monitor; end it first "
                    f"(monitor.end_window({name!r})) or give the new window another name"
                )
            self._windows[name] = edge

    def end_window(self, name: str, *, at: Edge | None = None) -> Window:
        """Close the window ``name`` now (or at the edge ``at``) and return its figures."""
        with self._lock:
            begin = self._windows.get(name)
        if begin is None:
            raise ConfigError(self._unknown(name))
        end = self._own(at)
        if end.t_s < begin.t_s:
            raise ConfigError(
                f"window {name!r} cannot end at an edge taken before it began; "
                "take the edge with monitor.edge() after begin_window()"
            )
        with self._lock:
            if self._windows.pop(name, None) is not begin:  # ended by another thread meanwhile
                raise ConfigError(self._unknown(name))
        return self._window(name, begin, end)

    def discard_window(self, name: str) -> bool:
        """Forget the window ``name`` without reading the meters; False when it was not open."""
        with self._lock:
            return self._windows.pop(name, None) is not None

    def _unknown(self, name: str) -> str:
        known = ", ".join(repr(key) for key in self._windows) or "none"
        return (
            f"no open window {name!r} in this monitor (open: {known}); "
            f"call monitor.begin_window({name!r}) before ending it"
        )

    def _window(self, name: str, begin: Edge, end: Edge) -> Window:
        measurement = self._measurement
        # A domain first seen after the window began started from zero energy there. Under
        # torch.distributed, the edges hold the job's energy per domain (summed over hosts).
        domains = {
            domain: max(energy_j - begin.energies_j.get(domain, 0.0), 0.0)
            for domain, energy_j in end.energies_j.items()
        }
        return Window(
            name=name,
            duration_s=end.t_s - begin.t_s,
            domains=domains,
            counted_domains=[domain for domain in domains if measurement._counts(domain)],
            meters=measurement._meter_names(),
            estimated=measurement._any_estimated(),
            started_at=begin.at,
            ended_at=end.at,
        )

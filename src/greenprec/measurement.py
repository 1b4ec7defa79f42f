"""``greenprec.measure()``: the energy of a block of code, a function, or a start/stop window."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from greenprec.counters import implausible
from greenprec.errors import ConfigError, GreenprecError, MeasurementNotFinished, MeterError
from greenprec.meters.base import Meter, Reading, allowed_s, domain_problem

if TYPE_CHECKING:
    import pandas as pd

    from greenprec.distributed import Group, HostResult, Layout

__all__ = ["Measurement", "Sync", "measure"]

_F = TypeVar("_F", bound=Callable[..., Any])

_SAMPLE_COLUMNS = ("t_s", "domain", "power_w", "energy_j")


# Every call into a meter is bounded: a call that hangs (a stuck driver, a FIFO, an NFS mount)
# must fail the measurement with a reason, never hang the block, the experiment or Ctrl-C.
_READ_TIMEOUT_FLOOR_S = 2.0
"""A read may take this long at least (or five sampling intervals, whichever is longer)."""
_FINISH_TIMEOUT_S = 60.0
"""finish(): EnergiBridge stops its child, waiting up to its own stop_timeout_s (5 s)."""
# start() and stop() are bounded per meter, by what each says it needs (meters.base.allowed_s).

_T = TypeVar("_T")


def _bounded(
    who: str,
    what: str,
    call: Callable[[], _T],
    timeout_s: float,
    *,
    then: tuple[threading.Event, str, float] | None = None,
    on: _Sampler | None = None,
) -> _T:
    """``call()`` on a helper thread, or MeterError when it has not returned in ``timeout_s``.

    With ``then=(event, what_next, next_timeout_s)``, ``timeout_s`` bounds the call until it
    sets ``event``, and ``next_timeout_s`` the rest (a meter's slow start, then its quick
    first read). A call that never returns cannot be interrupted in Python: its thread (a
    daemon) is left behind and the meter abandoned, but the measurement ends with a reason.

    With ``on=``, the call runs on that measurement's running sampler thread instead of a new
    one (a window edge of :class:`greenprec.Monitor`: no thread started per edge).
    """
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            failure.append(error)

    worker: threading.Thread | _Job
    if on is not None:
        worker = _Job(target, on)
    else:
        worker = threading.Thread(target=target, name=f"greenprec-meter-{what}", daemon=True)
    worker.start()
    if then is not None:
        event, what_next, next_timeout_s = then
        deadline = time.monotonic() + timeout_s
        while not event.wait(0.05) and worker.is_alive() and time.monotonic() < deadline:
            pass
        if event.is_set():
            what, timeout_s = what_next, next_timeout_s
        else:
            worker.join(max(0.0, deadline - time.monotonic()))
    worker.join(timeout_s if then is None or then[0].is_set() else 0.0)
    if worker.is_alive():
        raise MeterError(
            f"meter {who} did not answer {what}() within "
            f"{timeout_s:g} s (a hung driver, file or device?); the measurement is abandoned"
        )
    if failure:
        error = failure[0]
        if isinstance(error, Exception):
            raise error
        # SystemExit, KeyboardInterrupt, GeneratorExit... raised on this helper thread are the
        # meter's own: a real Ctrl-C or SIGTERM is delivered to the main thread, never here.
        # Passed on, SystemExit(3) would end `greenprec measure` with code 3 and no word.
        raise MeterError(
            f"meter {who} raised {type(error).__name__}{_args(error)} in {what}(): a meter "
            "reports a failure with an exception such as MeterError, never by exiting or "
            "interrupting; the measurement is abandoned"
        ) from error
    return outcome[0]


def _short(value: object) -> str:
    """A value a meter returned, escaped and cut for one line."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _args(error: BaseException) -> str:
    """``(3)`` for ``SystemExit(3)``: the arguments, escaped and short."""
    shown = ", ".join(ascii(arg) for arg in error.args)
    return f"({shown[:100]})"


class _Sampler:
    """The queue of calls a running sampler thread runs between its ticks (window edges)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def next_job(self, timeout_s: float) -> Callable[[], None] | None:
        try:
            return self.jobs.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def drain(self) -> None:
        """Run every queued call: none waits for a sampler that has ended."""
        while (job := self.next_job(0.0)) is not None:
            job()


class _Job:
    """A call handed to a sampler thread, joined like a thread (what :func:`_bounded` needs)."""

    def __init__(self, target: Callable[[], None], sampler: _Sampler) -> None:
        self._target = target
        self._sampler = sampler
        self._done = threading.Event()

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self._done.set()

    def start(self) -> None:
        self._sampler.jobs.put(self._run)

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)


Sync = Callable[[], object] | str | None
"""``measure(sync=...)``: ``"auto"``, None (no synchronisation) or a callable."""


def _auto_syncs() -> list[Callable[[], object]]:
    """The device synchronisations that apply now, without importing any framework.

    PyTorch: when CUDA is initialised in this process, ``torch.cuda.synchronize()`` (the
    current device). TensorFlow: when it is imported and sees a GPU,
    ``tf.test.experimental.sync_devices()`` (TF 2.13 and later). Nothing otherwise: on a CPU
    both frameworks run synchronously.
    """
    import sys

    syncs: list[Callable[[], object]] = []
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is not None:
        try:
            if cuda.is_initialized():
                syncs.append(cuda.synchronize)
        except Exception:  # a broken CUDA setup must not break measuring
            pass
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            sync_devices = tf.test.experimental.sync_devices
            if tf.config.list_logical_devices("GPU"):
                syncs.append(sync_devices)
        except Exception:
            pass
    return syncs


def _label(meters: Sequence[Meter]) -> str:
    return " + ".join(repr(m.name or type(m).__name__) for m in meters)


# A counter may read a hair lower than before from float rounding (a meter that converts
# units); more than this is a counter going backwards, which no wrap correction explains.
_COUNTER_SLACK_J = 1e-6


@dataclass
class _DomainTrack:
    """Running state of one domain: turns raw readings into cumulative energy and power."""

    kind: str  # "energy" (counter since meter start) or "power"
    in_total: bool
    meter: str
    origin_j: float = math.nan  # counter value at the block's entry
    energy_j: float = 0.0
    last_t_s: float = math.nan
    last_value: float = math.nan

    @classmethod
    def first(cls, meter: Meter, reading: object) -> _DomainTrack:
        """The track of a domain seen for the first time: its name checked here, once, so no
        path, markup or escape sequence reaches the terminal, runs.csv or the report."""
        who = meter.name or type(meter).__name__
        if not isinstance(reading, Reading):
            raise MeterError(f"meter {who!r} returned {_short(reading)}, not a greenprec.Reading")
        problem = domain_problem(reading.domain)
        if problem is not None:
            raise MeterError(f"meter {who!r} gave a reading whose {problem}")
        kind = "energy" if reading.energy_j is not None else "power"
        return cls(kind, reading.in_total, who)

    def add(self, t_s: float, reading: Reading) -> tuple[float, float]:
        """Fold one reading in; return (power_w, cumulative energy_j since the block began).

        A value that cannot be right is a meter failure (MeterError), never a number: NaN or
        infinite readings, negative power, a counter that goes down.
        """
        if reading.energy_j is not None:
            value = self._check(reading, reading.energy_j, "energy_j")
            if math.isnan(self.origin_j):
                self.origin_j = value
                power_w = math.nan
            else:
                if value < self.last_value - _COUNTER_SLACK_J:
                    raise MeterError(
                        f"meter {self.meter!r} reported {reading.domain} energy going down "
                        f"({self.last_value:.6g} J, then {value:.6g} J): cumulative energy "
                        "never decreases, so this meter is broken or misconfigured"
                    )
                dt = t_s - self.last_t_s
                power_w = (value - self.last_value) / dt if dt > 0 else math.nan
            self.energy_j = max(value - self.origin_j, 0.0)
        else:
            assert reading.power_w is not None
            value = self._check(reading, reading.power_w, "power_w")
            if not math.isnan(self.last_t_s):
                self.energy_j += (t_s - self.last_t_s) * (value + self.last_value) / 2
            power_w = value
        self._check(reading, self.energy_j, "energy since the block's entry")
        self.last_t_s, self.last_value = t_s, value
        return power_w, self.energy_j

    def _check(self, reading: Reading, value: float, what: str) -> float:
        """``value`` as a float, or a MeterError when it cannot be real: the same check (and
        limits) as a run's figures get (:func:`greenprec.counters.implausible`)."""
        try:
            number = float(value)
            shown = repr(number)  # short even for 1e+308, unlike a fixed-point format
        except (TypeError, ValueError, OverflowError):
            number, shown = math.nan, _short(value)
        problem = implausible(number, "W" if what == "power_w" else "J")
        if problem is not None:
            raise MeterError(
                f"meter {self.meter!r} reported {reading.domain} {what} = {shown}, which "
                f"{problem}: energy and power are finite, never negative and within what "
                "hardware draws, so the measurement is refused"
            )
        return number


class Measurement:
    """The energy, time and power of one measured window.

    Use it as a context manager, a decorator, or with :meth:`start` / :meth:`stop`. Results
    (``energy_j``, ``duration_s``, ``mean_power_w``, ``domains``, ``samples`` ...) are readable
    once the window has ended.
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
        if not isinstance(interval, (int, float)) or not interval > 0 or math.isinf(interval):
            raise ConfigError(f"interval must be a positive number of seconds, got {interval!r}")
        if not (sync is None or sync == "auto" or callable(sync)):
            raise ConfigError(
                f"sync must be 'auto', None or a callable run before the edge readings, "
                f"got {sync!r}"
            )
        self._sync_spec = sync
        self._meter_spec = meter
        self._distributed = bool(distributed)
        # Under torch.distributed (greenprec.distributed): the group, and what the measurers of
        # every host said: their meters, the domains they count, at the stop their results.
        self._group: Group | None = None
        self._job_meters: list[str] = []
        self._job_estimated = False
        self._job_in_total: dict[str, bool] = {}
        self._hosts: list[HostResult] | None = None
        self.interval_s = float(interval)
        self._meter_options = dict(meter_options or {})
        self._read_timeout_s = max(_READ_TIMEOUT_FLOOR_S, 5 * self.interval_s)
        self._meters: list[Meter] = []
        self._state = "new"
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._sampler = _Sampler()
        self._thread: threading.Thread | None = None
        self._tracks: dict[str, _DomainTrack] = {}
        self._rows: list[tuple[float, str, float, float]] = []
        self._sampling_error: BaseException | None = None
        self._t0 = 0.0
        self._duration_s = math.nan
        self._started_at: datetime | None = None
        self._ended_at: datetime | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Measurement:
        """Start measuring now. Returns ``self`` so ``m = measure().start()`` reads well.

        greenprec's own start-up work (resolving and probing meters, loading the plugin
        manager, the ``greenprec_measurement_started`` hooks) all happens *before* the entry
        reading, so the window is the block and nothing else.
        """
        if self._state != "new":
            raise ConfigError("this measurement was already started; create a new measure()")
        if self._distributed:
            from greenprec.distributed import current_group

            group = current_group()
            if group is not None:
                return self._start_distributed(group)
        return self._start_local(measuring=True)

    def _start_local(self, *, measuring: bool) -> Measurement:
        """:meth:`start` on this process alone; with ``measuring=False`` no meter is opened (a
        rank of a distributed job that is not its host's measurer): only the clock runs."""
        from greenprec.meters.registry import resolve
        from greenprec.plugins import get_plugin_manager

        # Loading the plugin manager imports the built-in meter plugins and the entry points
        # (100-200 ms the first time in a process); done here, not inside the window by the
        # first hook call. The built-in workload modules are not imported.
        hook = get_plugin_manager().hook
        self._meters = resolve(self._meter_spec, self._meter_options) if measuring else []
        _claim(self._meters, self)
        self._state = "starting"
        hook.greenprec_measurement_started(measurement=self)
        started: list[Meter] = []
        meters_started = threading.Event()

        def start_and_enter() -> None:
            # The meters start and the entry reading follows at once, on one helper thread:
            # a hung meter cannot hang the caller, and no hop sits between a meter's start
            # and its first reading (a meter counting from its start sees the window's origin).
            for meter in self._meters:
                try:
                    meter.start()
                except GreenprecError:
                    raise
                except Exception as error:  # a plugin's own bug: one line naming the meter
                    raise MeterError(
                        f"meter {_label([meter])} failed to start: {type(error).__name__}: "
                        f"{' '.join(str(error).split())[:300]}"
                    ) from error
                started.append(meter)
            meters_started.set()
            # Work launched before the block (CUDA kernels still running) finishes here, before
            # the entry reading, so the block does not pay for it.
            self._synchronise()
            self._started_at = datetime.now(timezone.utc)
            self._t0 = math.nan  # set by the entry reading itself
            try:
                self._sample()
            except GreenprecError:
                raise
            except Exception as error:
                raise MeterError(
                    f"meter {_label(self._meters)} failed at the entry reading: "
                    f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
                ) from error

        try:
            _bounded(
                _label(self._meters),
                "start",
                start_and_enter,
                # The meters start one after the other: each is given its own bound.
                sum(allowed_s(meter, "start") for meter in self._meters) or 1.0,
                then=(meters_started, "read", self._read_timeout_s),
            )
        except BaseException:
            for meter in started:
                _stop_quietly(meter)
            _release(self._meters, self)
            self._state = "failed"
            raise
        self._state = "running"
        self._thread = threading.Thread(
            target=self._run, name=f"greenprec-sampler-{id(self):x}", daemon=True
        )
        self._thread.start()
        return self

    def _start_distributed(self, group: Group) -> Measurement:
        """Start under torch.distributed: each host's lowest rank opens its meters, after every
        rank has synchronised its device and arrived, and before any rank goes on."""
        from greenprec.distributed import failure_payload, outcomes

        self._sync_bounded()
        layout = group.join()  # the first barrier: every rank is here, its device work done
        self._group = group
        payload: dict[str, object] = {}
        failure: Exception | None = None
        try:
            self._start_local(measuring=layout.is_measurer)
            mismatch = layout.device_mismatch() if layout.is_measurer else None
            if mismatch is not None and any("gpu" in type(m).covers for m in self._meters):
                raise ConfigError(mismatch)
            payload = {
                "meters": [meter.name for meter in self._meters],
                "estimated": any(meter.estimated for meter in self._meters),
            }
        except Exception as error:  # sent to the others; Ctrl-C and SIGTERM go straight up
            failure = error
            payload = failure_payload(error)
        try:
            # The second barrier: no rank starts its block before every entry reading.
            found = outcomes(
                group.exchange("the start of the window", payload, from_ranks=layout.measurers)
            )
        except BaseException:
            self._abandon_local()
            raise
        if failure is not None:
            self._abandon_local()
            raise failure
        if found.failures:
            self._abandon_local()
            found.raise_first(layout, "could not start its meters")
        for rank in layout.measurers:
            for name in cast("list[str]", found.payloads[rank]["meters"]):
                if name not in self._job_meters:
                    self._job_meters.append(name)
            self._job_estimated |= bool(found.payloads[rank]["estimated"])
        return self

    def _sync_bounded(self) -> None:
        """The device sync on its own, bounded like an edge's (before a rank's barrier)."""
        if self._syncs():
            _bounded(_label(self._meters), "sync", self._synchronise, _FINISH_TIMEOUT_S)

    def _abandon_local(self) -> None:
        """Stop this process's meters now, keeping any error to itself (a failed start)."""
        if self._state == "running":
            with contextlib.suppress(Exception):
                self._stop_local()

    def abandon(self) -> Measurement:
        """Stop now on this process alone, errors kept quiet: what a block that raised needs.

        Under torch.distributed, :meth:`stop` waits for every rank; after an exception the
        others may never come, so this stops without waiting for them. The figures are then
        this process's own meters' (none on a rank that is not its host's measurer).
        """
        if self._state == "running":
            with contextlib.suppress(MeterError):
                self._stop_local()
        return self

    def stop(self) -> Measurement:
        """Stop measuring: a final reading at exactly this moment, then release the meters.

        Under torch.distributed, every rank synchronises its device and waits for the others
        before its host's measurer takes the exit reading; then every rank receives every
        host's result (:attr:`hosts`) and the job's total (:attr:`energy_j`).
        """
        if self._state != "running":
            raise ConfigError(f"cannot stop a measurement that is {self._state}")
        if self._group is not None:
            return self._stop_distributed(self._group)
        return self._stop_local()

    def _stop_distributed(self, group: Group) -> Measurement:
        from greenprec.distributed import failure_payload, host_result, outcomes, result_payload

        layout = group.layout
        assert layout is not None
        try:
            # Each rank's kernels end before the barrier, so the measurer's exit reading, after
            # it, holds the work of every GPU of its host.
            self._sync_bounded()
            group.exchange("the end of the window", {})
        except BaseException:
            self._abandon_local()
            raise
        payload: dict[str, object] = {}
        failure: Exception | None = None
        try:
            self._stop_local(hook=False)
            if layout.is_measurer:
                payload = result_payload(
                    energy_j=self._local_energy_j(),
                    duration_s=self._duration_s,
                    domains=self._local_domains(),
                    counted_domains=self._local_counted(),
                    meters=[meter.name for meter in self._meters],
                    estimated=any(meter.estimated for meter in self._meters),
                )
        except Exception as error:  # sent to the others; Ctrl-C and SIGTERM go straight up
            failure = error
            payload = failure_payload(error)
        try:
            found = outcomes(
                group.exchange("the results of the window", payload, from_ranks=layout.measurers)
            )
            if not found.failures and failure is None:
                self._hosts = [
                    host_result(layout, rank, found.payloads[rank]) for rank in layout.measurers
                ]
        finally:
            self._finished_hook()  # once, with the job's figures when they came
        if failure is not None:
            raise failure
        found.raise_first(layout, "failed to measure its host")
        return self

    def _stop_local(self, *, hook: bool = True) -> Measurement:
        """:meth:`stop` on this process alone; ``hook=False`` leaves the ``finished`` hook to
        the caller (a distributed stop calls it once the job's figures are known)."""
        self._stop_event.set()
        self._sampler.jobs.put(lambda: None)  # wakes the sampler now, not at its next tick
        if self._thread is not None:
            self._thread.join(self._read_timeout_s + self.interval_s)
            if self._thread.is_alive() and self._sampling_error is None:
                # The sampler is stuck inside a meter's read(): the exit reading would wait for
                # it (and its lock) for ever. Fail with the reason instead.
                self._sampling_error = MeterError(
                    f"meter {_label(self._meters)} did not answer read() within "
                    f"{self._read_timeout_s:g} s (a "
                    "hung driver, file or device?); the measurement is abandoned"
                )
        t_end = time.monotonic() - self._t0
        try:
            if self._sampling_error is None:
                t_end = _bounded(
                    _label(self._meters),
                    "finish",
                    self._synchronise_and_finish,
                    _FINISH_TIMEOUT_S,
                )
        except Exception as error:
            self._sampling_error = error
        finally:
            self._ended_at = datetime.now(timezone.utc)
            for meter in self._meters:
                _stop_quietly(meter)
            _release(self._meters, self)
            self._duration_s = t_end
            self._state = "finished"
        if hook:
            self._finished_hook()
        failure = self._sampling_error
        if failure is not None:
            raise MeterError(f"meter failed during the measurement: {failure}") from failure
        return self

    def _finished_hook(self) -> None:
        from greenprec.plugins import get_plugin_manager

        get_plugin_manager().hook.greenprec_measurement_finished(measurement=self)

    def __enter__(self) -> Measurement:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        if self._group is not None:
            # The other ranks may never reach the block's end: no waiting for them.
            self.abandon()
            return
        # The block's own exception is the one that matters; it propagates unchanged.
        with contextlib.suppress(MeterError):
            self.stop()

    def __call__(self, function: _F) -> _F:
        """Decorate a function: every call is measured; the latest is ``function.measurement``."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            measurement = Measurement(
                self._meter_spec,
                interval=self.interval_s,
                meter_options=self._meter_options,
                sync=self._sync_spec,
                distributed=self._distributed,
            )
            wrapper.measurement = measurement  # type: ignore[attr-defined]
            with measurement:
                return function(*args, **kwargs)

        wrapper.measurement = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    # -- synchronising with the device ------------------------------------------------------
    def _synchronise(self) -> None:
        """Run the sync before an edge reading: the block's device work is then inside it."""
        for device_sync in self._syncs():
            device_sync()

    def _syncs(self) -> list[Callable[[], object]]:
        """The synchronisations an edge runs now: none, the ``"auto"`` ones, or the callable."""
        sync = self._sync_spec
        if sync is None:
            return []
        if sync == "auto":
            return _auto_syncs()
        assert callable(sync)
        return [sync]

    def _synchronise_and_finish(self) -> float:
        # The kernels the block launched run to their end before the exit reading: an
        # asynchronous block must not end before its work does (the next block would pay).
        self._synchronise()
        return self._sample(final=True)

    # -- sampling ------------------------------------------------------------------------
    def _run(self) -> None:
        # A tick every interval_s; in between, the calls handed to this thread (window edges).
        next_tick = time.monotonic() + self.interval_s
        try:
            while True:
                job = self._sampler.next_job(next_tick - time.monotonic())
                if self._stop_event.is_set():
                    return
                if job is not None:
                    job()
                    continue
                next_tick = time.monotonic() + self.interval_s
                try:
                    self._sample()
                except Exception as error:
                    self._sampling_error = error
                    return
                except BaseException as error:
                    # Signals reach the main thread only: SystemExit or KeyboardInterrupt here
                    # is the meter's own, and would end this thread without a word.
                    self._sampling_error = MeterError(
                        f"meter {_label(self._meters)} raised {type(error).__name__}"
                        f"{_args(error)} in read(): a meter reports a failure with an "
                        "exception such as MeterError, never by exiting or interrupting"
                    )
                    return
        finally:
            self._sampler.drain()

    def _sample(self, *, final: bool = False) -> float:
        """Read every meter; return the time of the first meter's reading since entry.

        Each meter's readings are stamped with the clock read just before that meter, so a
        meter's own clock and the window's agree to microseconds, and entry and exit are the
        moments of the first and last readings.
        """
        with self._lock:
            return self._sample_locked(final=final)

    def _sample_locked(self, *, final: bool = False) -> float:
        """:meth:`_sample`, with ``self._lock`` already held by the caller."""
        if not self._meters:
            # A rank that measures nothing (not its host's measurer): its clock alone.
            now = time.monotonic()
            if math.isnan(self._t0):
                self._t0 = now
            return now - self._t0
        first_t_s = math.nan
        for meter in self._meters:
            now = time.monotonic()
            if math.isnan(self._t0):
                self._t0 = now
            t_s = now - self._t0
            if math.isnan(first_t_s):
                first_t_s = t_s
            meter.reading_time = now
            readings = meter.finish() if final else meter.read()
            if not isinstance(readings, (list, tuple)):
                raise MeterError(
                    f"meter {_label([meter])} returned {_short(readings)} from "
                    f"{'finish' if final else 'read'}(), not a list of greenprec.Reading"
                )
            for reading in readings:
                track = self._tracks.get(reading.domain)
                if track is None:
                    track = self._tracks[reading.domain] = _DomainTrack.first(meter, reading)
                power_w, energy_j = track.add(t_s, reading)
                self._rows.append((t_s, reading.domain, power_w, energy_j))
        return first_t_s

    def _mark(self) -> tuple[float, dict[str, float]]:
        """One edge of a window inside this one: :meth:`_mark_local`, or under
        torch.distributed every rank's sync and a barrier, then each measurer's reading, and
        each domain's energy summed over the hosts (the job's, on every rank)."""
        group = self._group
        if group is None:
            return self._mark_local()
        from greenprec.distributed import failure_payload, outcomes

        layout = group.layout
        assert layout is not None
        if self._state != "running":
            raise ConfigError(f"a window edge needs a running measurement; it is {self._state}")
        self._sync_bounded()
        group.exchange("a window edge", {})
        payload: dict[str, object] = {}
        failure: Exception | None = None
        t_s = math.nan
        try:
            t_s, energies_j = self._mark_local()
            if layout.is_measurer:
                payload = {
                    "energies_j": energies_j,
                    "counted": [name for name in energies_j if self._tracks[name].in_total],
                }
        except Exception as error:  # sent to the others; Ctrl-C and SIGTERM go straight up
            failure = error
            payload = failure_payload(error)
        found = outcomes(
            group.exchange("a window edge's reading", payload, from_ranks=layout.measurers)
        )
        if failure is not None:
            raise failure
        found.raise_first(layout, "failed at a window edge")
        job_j: dict[str, float] = {}
        for rank in layout.measurers:
            counted = cast("list[str]", found.payloads[rank]["counted"])
            for name, energy_j in cast(
                "dict[str, float]", found.payloads[rank]["energies_j"]
            ).items():
                job_j[name] = job_j.get(name, 0.0) + energy_j
                self._job_in_total[name] = name in counted
        return t_s, job_j

    def _counts(self, domain: str) -> bool:
        """Whether ``domain`` adds to the total (a domain of any host, when distributed)."""
        track = self._tracks.get(domain)
        return track.in_total if track is not None else self._job_in_total.get(domain, False)

    def _meter_names(self) -> list[str]:
        """The meters of the job's hosts (of this process, when not distributed)."""
        if self._group is not None:
            return list(self._job_meters)
        return [meter.name for meter in self._meters]

    def _any_estimated(self) -> bool:
        if self._group is not None:
            return self._job_estimated
        return any(meter.estimated for meter in self._meters)

    def _mark_local(self) -> tuple[float, dict[str, float]]:
        """One edge of a window inside this one (:class:`greenprec.Monitor`): the device
        sync, then a fresh reading of every meter and each domain's energy since entry, read
        under one hold of the lock so that no sampler tick falls between the two.

        Returns ``(t_s, {domain: energy_j})``, the time of the first meter's reading since
        entry. Bounded like :meth:`stop`'s exit: the sync by ``_FINISH_TIMEOUT_S``, the reading
        by the read timeout. A sampler that already failed fails the mark with its error.
        """
        if self._state != "running":
            raise ConfigError(f"a window edge needs a running measurement; it is {self._state}")
        synced = threading.Event()
        syncs = self._syncs()

        def sync_and_read() -> tuple[float, dict[str, float]]:
            for device_sync in syncs:
                device_sync()
            synced.set()
            with self._lock:
                t_s = self._sample_locked()
                return t_s, {name: track.energy_j for name, track in self._tracks.items()}

        failure = self._sampling_error
        if failure is not None:
            raise MeterError(f"meter failed during the measurement: {failure}") from failure
        # On the sampler thread, between two ticks: no thread started per edge. A sampler
        # that has ended (its drain runs what was queued) leaves a thread of its own.
        sampler = self._sampler if self._thread is not None and self._thread.is_alive() else None
        try:
            if not syncs:  # nothing to wait for (a CPU): one bound, one hop less per edge
                return _bounded(
                    _label(self._meters), "read", sync_and_read, self._read_timeout_s, on=sampler
                )
            return _bounded(
                _label(self._meters),
                "sync",
                sync_and_read,
                _FINISH_TIMEOUT_S,
                then=(synced, "read", self._read_timeout_s),
                on=sampler,
            )
        except Exception as error:
            # The tracks may hold half a reading: the whole measurement has failed, and its
            # stop() says so too.
            self._sampling_error = error
            if isinstance(error, GreenprecError):
                raise
            raise MeterError(
                f"meter {_label(self._meters)} failed at a window edge: "
                f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            ) from error

    def energy_so_far(self) -> tuple[float, float]:
        """``(seconds, joules)`` from the entry reading to now, while the window runs: a fresh
        reading of every meter (bounded like every read), each joule counted once. For marks
        inside a window, such as the end of each epoch (energy to a target accuracy)."""
        if self._state != "running":
            raise ConfigError(f"energy_so_far() needs a running measurement; it is {self._state}")
        if self._group is not None:
            # The job's energy so far, on every rank: a collective edge, like a window's.
            t_s, job_j = self._mark()
            return t_s, sum(energy_j for name, energy_j in job_j.items() if self._counts(name))
        alive = self._thread is not None and self._thread.is_alive()
        t_s = _bounded(
            _label(self._meters),
            "read",
            self._sample,
            self._read_timeout_s,
            on=self._sampler if alive else None,  # on the sampler: no thread per mark
        )
        with self._lock:
            energy_j = sum(track.energy_j for track in self._tracks.values() if track.in_total)
        return t_s, energy_j

    # -- results ---------------------------------------------------------------------------
    def _finished(self) -> None:
        if self._state != "finished":
            raise MeasurementNotFinished(
                f"the measurement is {self._state}; read results after the `with` block "
                "(or after stop())"
            )

    @property
    def running(self) -> bool:
        """True from just before the entry reading (``started`` hooks see it) to the exit."""
        return self._state in ("starting", "running")

    @property
    def duration_s(self) -> float:
        """Wall time of the window in seconds: under torch.distributed, the longest of the
        hosts' windows (a measurer's runs from before the first rank's block to after the last
        rank's), so ``mean_power_w`` is the job's energy over the job's window."""
        self._finished()
        if self._hosts is not None:
            return max(host.duration_s for host in self._hosts)
        return self._duration_s

    @property
    def domains(self) -> dict[str, float]:
        """Energy in joules per domain, including parts that are not added to the total.

        Under torch.distributed, each domain summed over the hosts (:attr:`hosts` has each
        host's own)."""
        self._finished()
        if self._hosts is not None:
            from greenprec.distributed import job_domains

            return job_domains(self._hosts)
        return self._local_domains()

    @property
    def counted_domains(self) -> list[str]:
        """The domains whose energy adds up to ``energy_j``."""
        self._finished()
        if self._hosts is not None:
            counted: list[str] = []
            for host in self._hosts:
                counted += [name for name in host.counted_domains if name not in counted]
            return counted
        return self._local_counted()

    @property
    def energy_j(self) -> float:
        """Total energy in joules, each joule counted once: under torch.distributed, the job's
        (the sum over :attr:`hosts`, each host once), the same on every rank."""
        self._finished()
        if self._hosts is not None:
            from greenprec.distributed import job_total_j

            return job_total_j(self._hosts)
        return self._local_energy_j()

    @property
    def hosts(self) -> list[HostResult]:
        """Each host's figures: one entry per host under torch.distributed (its lowest rank
        measured it), else this machine alone, its ranks ``[0]``."""
        self._finished()
        if self._hosts is not None:
            return list(self._hosts)
        from greenprec.distributed import HostResult, host_id

        layout = self._group.layout if self._group is not None else None
        return [
            HostResult(
                host=host_id(),
                ranks=[0] if layout is None else list(layout.hosts[layout.host]),
                energy_j=self._local_energy_j(),
                duration_s=self._duration_s,
                domains=self._local_domains(),
                counted_domains=self._local_counted(),
                meters=[meter.name for meter in self._meters],
                estimated=any(meter.estimated for meter in self._meters),
            )
        ]

    @property
    def layout(self) -> Layout | None:
        """Under torch.distributed, the job's ranks by host (:class:`greenprec.distributed.Layout`);
        None otherwise."""
        return self._group.layout if self._group is not None else None

    def _local_domains(self) -> dict[str, float]:
        return {name: track.energy_j for name, track in self._tracks.items()}

    def _local_counted(self) -> list[str]:
        return [name for name, track in self._tracks.items() if track.in_total]

    def _local_energy_j(self) -> float:
        return sum(track.energy_j for track in self._tracks.values() if track.in_total)

    @property
    def mean_power_w(self) -> float:
        duration_s = self.duration_s
        return self.energy_j / duration_s if duration_s > 0 else math.nan

    @property
    def meters(self) -> list[str]:
        self._finished()
        if self._hosts is not None:
            names: list[str] = []
            for host in self._hosts:
                names += [name for name in host.meters if name not in names]
            return names
        return [meter.name for meter in self._meters]

    @property
    def meter(self) -> str:
        """The meter used, or several joined by ``+`` (``rapl+nvml``)."""
        return "+".join(self.meters)

    @property
    def estimated(self) -> bool:
        """True when any figure comes from a model rather than a sensor."""
        self._finished()
        if self._hosts is not None:
            return any(host.estimated for host in self._hosts)
        return any(meter.estimated for meter in self._meters)

    @property
    def started_at(self) -> datetime:
        self._finished()
        assert self._started_at is not None
        return self._started_at

    @property
    def ended_at(self) -> datetime:
        self._finished()
        assert self._ended_at is not None
        return self._ended_at

    @property
    def samples(self) -> pd.DataFrame:
        """Every reading: ``t_s, domain, power_w, energy_j`` (energy cumulative since entry).

        This process's own readings: under torch.distributed, its host's on the host's measurer
        and none on the other ranks (samples are not gathered)."""
        self._finished()
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame(self._rows, columns=list(_SAMPLE_COLUMNS))
        return frame

    def to_dict(self) -> dict[str, Any]:
        """The results as JSON-ready data (samples excluded; see ``samples``); under
        torch.distributed also ``hosts`` (each host's figures) and ``world_size``."""
        data = self._to_dict()
        if self._hosts is not None:
            data["hosts"] = [host.to_dict() for host in self._hosts]
            data["world_size"] = sum(len(host.ranks) for host in self._hosts)
        return data

    def _to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "meters": self.meters,
            "estimated": self.estimated,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "mean_power_w": _json_number(self.mean_power_w),
            "domains": self.domains,
            "counted_domains": self.counted_domains,
            "interval_s": self.interval_s,
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON text; never ``NaN`` or ``Infinity``, which are not JSON (``null`` instead)."""
        return json.dumps(_strict_json(self.to_dict()), allow_nan=False, **kwargs)

    def __repr__(self) -> str:
        if self._state != "finished":
            return f"<Measurement {self._state}>"
        label = " estimated" if self.estimated else ""
        return (
            f"<Measurement {self.meter}: {self.energy_j:.3f} J{label} in {self.duration_s:.3f} s>"
        )


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _strict_json(value: object) -> object:
    """Non-finite floats become None, recursively (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


# Meter instances inside a running window, by id: one instance in two windows at once would
# be started twice and stopped by the inner window under the outer one (whose energy then
# comes out wrong), so the second window is refused instead.
_in_use: dict[int, Measurement] = {}
_in_use_lock = threading.Lock()


def _claim(meters: Sequence[Meter], owner: Measurement) -> None:
    with _in_use_lock:
        for meter in meters:
            holder = _in_use.get(id(meter))
            if holder is not None and holder is not owner:
                raise ConfigError(
                    f"this {type(meter).__name__} instance is already measuring another block "
                    "(a nested or concurrent measure()); give each block its own meter "
                    "instance, or pass the meter by name, e.g. measure(meter="
                    f"{meter.name or 'NAME'!r})"
                )
        for meter in meters:
            _in_use[id(meter)] = owner


def _release(meters: Sequence[Meter], owner: Measurement) -> None:
    with _in_use_lock:
        for meter in meters:
            if _in_use.get(id(meter)) is owner:
                del _in_use[id(meter)]


def _stop_quietly(meter: Meter) -> None:
    """Stop ``meter``: releasing a handle must never hide the block's own outcome, nor hang it.

    A stop() that raises is kept quiet (the contract says it never does, and the figures are
    taken); one that hangs is warned about, naming the meter and the wait: the figures stand,
    but what the meter holds (a handle, a child process) may stay open.
    """
    from greenprec.errors import warn_at_caller

    stop_s = allowed_s(meter, "stop")
    began = time.monotonic()
    try:
        _bounded(_label([meter]), "stop", meter.stop, stop_s)
    except MeterError:
        if time.monotonic() - began >= stop_s:
            warn_at_caller(
                f"meter {_label([meter])} did not return from stop() within {stop_s:g} s (a "
                "hung driver, file or device?): its figures stand, but what it holds (a "
                "handle, a child process) may not be released"
            )
    except Exception:
        pass


@overload
def measure(
    meter: _F,
    *,
    interval: float = 0.2,
    meter_options: Mapping[str, object] | None = None,
    sync: Sync = "auto",
    distributed: bool = True,
) -> _F: ...


@overload
def measure(
    meter: str | Meter | Sequence[str | Meter] = "auto",
    *,
    interval: float = 0.2,
    meter_options: Mapping[str, object] | None = None,
    sync: Sync = "auto",
    distributed: bool = True,
) -> Measurement: ...


def measure(
    meter: str | Meter | Sequence[str | Meter] | Callable[..., object] = "auto",
    *,
    interval: float = 0.2,
    meter_options: Mapping[str, object] | None = None,
    sync: Sync = "auto",
    distributed: bool = True,
) -> Measurement | Callable[..., object]:
    """Measure the energy of a block: ``with greenprec.measure() as m: ...``.

    Also a decorator, with or without arguments: ``@greenprec.measure`` and
    ``@greenprec.measure(meter="rapl")`` both measure every call of the function (the latest
    is ``function.measurement``).

    ``meter`` is ``"auto"`` (every available hardware meter, else the CPU-time estimate), a
    meter name, a list of names, or a meter instance. ``meter_options`` go to the meters,
    e.g. ``{"root": "/tmp/fake-powercap"}`` for ``rapl``; prefix a key with ``name.`` to aim
    it at one meter when several run.

    ``sync`` runs just before the entry and the exit readings, so a window holds the device
    work its block launched: GPU kernels run asynchronously, and a block can otherwise end
    before its work does (the next block then pays for it). ``"auto"`` (the default)
    synchronises the current CUDA device when PyTorch has CUDA initialised, and TensorFlow's
    devices when TensorFlow sees a GPU; ``None`` turns it off; a callable is run as it is.

    Under ``torch.distributed`` (torchrun, Lightning DDP, Accelerate), with ``distributed=True``
    (the default), every rank calls ``measure()`` at the same point: the lowest rank of each
    host measures that host, the windows open and close together, and every rank gets the
    job's total in ``energy_j`` and each host's figures in ``hosts`` (see
    :mod:`greenprec.distributed`). ``distributed=False`` measures this process alone.
    """
    if isinstance(meter, type):
        raise ConfigError(
            f"measure() got the class {meter.__name__}; pass an instance, e.g. "
            f"measure({meter.__name__}()), or a meter name"
        )
    if callable(meter) and not isinstance(meter, (str, Meter, Sequence)):
        # `@greenprec.measure` without parentheses: Python passes the function itself.
        return Measurement(
            "auto",
            interval=interval,
            meter_options=meter_options,
            sync=sync,
            distributed=distributed,
        )(meter)
    return Measurement(
        meter,
        interval=interval,
        meter_options=meter_options,
        sync=sync,
        distributed=distributed,
    )

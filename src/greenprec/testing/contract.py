"""The checks of :func:`check_meter`: each rule of the meter contract, as greenprec's own meters
are held to it (see :mod:`greenprec.meters.base` for the contract itself).

Rules checked, in order (names as they appear in :class:`MeterReport`):

``attributes``
    ``name`` is set (no space, ``.`` or ``/``; not ``auto``), ``description`` is set,
    ``estimated``/``simulated``/``auto`` are booleans, ``covers`` a set of strings, not empty for
    a meter that joins ``auto`` (``auto`` never pairs two meters that cover the same hardware).
``probe``
    ``probe(**options)`` returns a :class:`~greenprec.Probe`; an unavailable one says why. It
    raises nothing for missing hardware (a ConfigError for bad options propagates: the options
    given to the kit are then wrong), and leaves nothing behind: no thread, no child process,
    no open file that was not there before.
``unknown option``
    An unknown option is refused with a :class:`~greenprec.ConfigError` naming it, by ``probe()``
    or by the constructor (the path ``measure()`` takes).
``option descriptions``
    Every option of the ``Options`` model has a one-line description (``greenprec meters``).

The checks below need a running meter; for an unavailable meter they are skipped with the
probe's reason.

``stop before start``
    ``stop()`` on a meter never started raises nothing (``measure()`` stops every meter after a
    failed start).
``read before start``
    ``read()`` before ``start()`` is refused (it raises) or harmless (valid readings).
``lifecycle``
    ``start()``, ``read()`` for ``run_s`` seconds, ``finish()``, ``stop()`` all work.
``readings``
    Every reading is a :class:`~greenprec.Reading` with a domain named ``<meter>/<part>`` (in
    the form of :data:`~greenprec.meters.base.DOMAIN_FORM`) and exactly one of ``energy_j`` /
    ``power_w``, a finite number >= 0 within what hardware draws
    (:func:`greenprec.counters.implausible`); no domain twice in one read.
``counters``
    Cumulative ``energy_j`` never decreases from one read to the next (wraps are the meter's to
    correct).
``domains``
    Every read gives the same domains, each with the same unit and ``in_total``, and they are
    the domains the probe announced (when it announced any).
``in_total``
    At least one domain is in the total, and no joule is counted twice: a whole-system domain
    (``system``, ``psys``, ``platform``) in the total is the only one there, and a part inside a
    package (``core``, ``pp0``, ``pp1``, ``uncore``) is not in the total beside a package or CPU
    domain (``package``, ``pkg``, ``cpu``). Domains are recognised by their part's name.
``nothing left behind``
    After ``stop()``, every thread, child process (also one that was reparented) and open file
    that ``start()`` made is gone.

Every call into the meter is bounded as ``measure()`` bounds it: ``start()`` and ``probe()`` by
twice the meter's ``start_timeout_s`` plus a second, ``stop()`` likewise by its
``stop_timeout_s``, ``read()`` by two seconds or five sampling intervals, ``finish()`` by a
minute. A call that does not return in time, or that raises anything (``SystemExit`` and
``KeyboardInterrupt`` included), is a broken rule naming the call; the kit never hangs.
``second start``
    ``start()`` on a running meter is refused (it raises) or harmless: the meter still reads,
    and one ``stop()`` leaves nothing behind.
``measure``
    ``greenprec.measure(meter)`` around ``run_s`` seconds gives a finite energy >= 0, and leaves
    nothing behind.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from greenprec.counters import implausible
from greenprec.errors import ConfigError, MeterContractError
from greenprec.meters.base import Meter, Probe, Reading, allowed_s, domain_problem

__all__ = ["CheckResult", "MeterReport", "check_meter"]

_UNKNOWN_OPTION = "greenprec_testing_no_such_option"
"""The option name the kit passes to see it refused."""
_LEFTOVER_GRACE_S = 2.0
"""How long a thread or process may take to end after ``stop()`` (or ``probe()``) returns."""
_COUNTER_SLACK_J = 1e-6  # float rounding in a meter's unit conversion; measure() allows as much
_POLL_S = 0.02
_READ_BOUND_FLOOR_S = 5.0
"""read() may take this long at least (or five sampling intervals): more patient than
measure()'s 2 s, so that a loaded test machine (a first read importing a library) fails no
meter, and still bounded."""
_FINISH_BOUND_S = 60.0  # as measure()'s finish()
_HUNG = "did not return within"
"""How a :class:`TimeoutError` of :func:`_bounded` begins: told apart from a meter's own."""

_BOUNDS = {
    "probe()": "a meter whose probe() hangs; return (or raise) within its start_timeout_s",
    "start()": "a meter whose start() hangs; return (or raise) within its start_timeout_s",
    "stop()": "a meter whose stop() hangs; return (or raise) within its stop_timeout_s",
    "read()": "a window whose read() takes over 2 s (or five sampling intervals); answer sooner",
    "finish()": "a window whose finish() hangs; return (or raise) within a minute",
}
"""What ``measure()`` does with a call that hangs, and the bound a meter must keep."""

_KIT_THREAD = "greenprec-kit-"
"""The name prefix of the threads the kit calls a meter on."""

_T = TypeVar("_T")

_WHOLE_SYSTEM = re.compile(r"(?:system|psys|platform)(?![a-z])")
_PACKAGE = re.compile(r"(?:package|pkg|cpu)(?![a-z])")
_INSIDE_PACKAGE = re.compile(r"(?:core|cores|pp0|pp1|uncore)(?:-\d+)?")


@dataclass(frozen=True)
class CheckResult:
    """One rule of the contract: what was seen when it passed, or why it was skipped."""

    name: str
    detail: str = ""


@dataclass(frozen=True)
class MeterReport:
    """What :func:`check_meter` checked: the rules that passed and those skipped, with why."""

    meter: str
    available: bool
    reason: str
    """The probe's reason when the meter cannot run here (the live checks were skipped)."""
    passed: tuple[CheckResult, ...]
    skipped: tuple[CheckResult, ...]

    @property
    def passed_names(self) -> list[str]:
        return [check.name for check in self.passed]

    @property
    def skipped_names(self) -> list[str]:
        return [check.name for check in self.skipped]

    def __str__(self) -> str:
        lines = [
            f"meter {self.meter!r}: {len(self.passed)} checks passed, {len(self.skipped)} skipped"
        ]
        lines += [f"  ok    {c.name}" + (f": {c.detail}" if c.detail else "") for c in self.passed]
        reasons: dict[str, list[str]] = {}
        for check in self.skipped:  # one line per reason: an unavailable meter skips ten
            reasons.setdefault(check.detail, []).append(check.name)
        lines += [f"  skip  {', '.join(names)}: {reason}" for reason, names in reasons.items()]
        return "\n".join(lines)


def check_meter(
    meter_class: type[Meter],
    *,
    options: Mapping[str, object] | None = None,
    run_s: float = 0.3,
    interval_s: float = 0.05,
) -> MeterReport:
    """Check a meter class against the meter contract; return what passed and what was skipped.

    ``options`` are the meter's options, as ``measure(meter_options=...)`` takes them (a test
    points the meter at a fake device with them). ``run_s``: how long the meter runs in the
    lifecycle and ``measure()`` checks, read every ``interval_s`` seconds.

    Raises :class:`~greenprec.errors.MeterContractError` with one line per broken rule, and
    :class:`~greenprec.ConfigError` when ``options`` themselves are refused by the meter. A meter
    that cannot run here passes with ``available=False``: the checks that need it running are
    skipped with the probe's reason (missing hardware is a reason, not a failure).
    """
    if not (isinstance(meter_class, type) and issubclass(meter_class, Meter)):
        raise TypeError(f"check_meter takes a greenprec.Meter subclass, got {meter_class!r}")
    if not (isinstance(run_s, (int, float)) and run_s >= 0 and math.isfinite(run_s)):
        raise ConfigError(f"run_s must be a number of seconds >= 0, got {run_s!r}")
    if not (isinstance(interval_s, (int, float)) and interval_s > 0 and math.isfinite(interval_s)):
        raise ConfigError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
    return _Checker(meter_class, dict(options or {}), float(run_s), float(interval_s)).run()


class _Skip(Exception):
    """A check that cannot run; its message is the reason.

    Not a GreenprecError (see :mod:`greenprec.errors`): it never leaves :func:`check_meter`,
    which reports the check as skipped.
    """


class _Checker:
    def __init__(
        self, cls: type[Meter], options: dict[str, object], run_s: float, interval_s: float
    ) -> None:
        self.cls = cls
        self.options = options
        self.run_s = run_s
        self.interval_s = interval_s
        self.name = cls.name if isinstance(cls.name, str) and cls.name else cls.__name__
        self.passed: list[CheckResult] = []
        self.skipped: list[CheckResult] = []
        self.problems: list[str] = []
        self.probe_result: Probe | None = None
        self.grace_s = _LEFTOVER_GRACE_S
        self.read_bound_s = max(_READ_BOUND_FLOOR_S, 5 * interval_s)
        self.hung = ""
        """Set once a call into the meter did not return: which, for the checks skipped."""

    # -- bookkeeping -------------------------------------------------------------------------
    def check(self, name: str, run: Callable[[], tuple[list[str], str]]) -> bool:
        """Run one check; record it as passed, skipped or broken. Returns whether it passed.

        After a call that hung, the meter is not called again: each check would wait out the
        bound once more (and leave one more thread behind) to say the same thing."""
        if self.hung:
            self.skipped.append(CheckResult(name, f"not run: {self.hung}"))
            return False
        try:
            problems, detail = run()
        except _Skip as skip:
            self.skipped.append(CheckResult(name, str(skip)))
            return False
        except ConfigError:
            raise  # the options given to the kit are wrong: the caller's to fix
        except Exception as error:  # whatever the meter did, the kit reports, never crashes
            problems, detail = [f"the check could not finish: {_describe(error)}"], ""
        hung = [problem for problem in problems if _HUNG in problem]
        if hung:
            self.hung = f"{hung[0].split(' ', 1)[0]} hung above, so the meter is not called again"
        if problems:
            # One broken rule is said once, even when several checks run into it.
            said = {problem.split(": ", 1)[1] for problem in self.problems}
            new = [problem for problem in dict.fromkeys(problems) if problem not in said]
            self.problems.extend(f"{name}: {problem}" for problem in new)
            if not new:
                self.skipped.append(CheckResult(name, "it ran into a broken rule above"))
            return False
        self.passed.append(CheckResult(name, detail))
        return True

    def leftovers(
        self, before: _Resources, after: str, seen: Mapping[int, float] | None = None
    ) -> list[str]:
        """What ``after`` left behind. Once a meter has left something, it is not waited for
        again: the checks after it would each wait the whole grace."""
        found = before.left_behind(after, seen, self.grace_s)
        if found:
            self.grace_s = min(self.grace_s, 0.2)
        return found

    def skip(self, names: Sequence[str], reason: str) -> None:
        self.skipped.extend(CheckResult(name, reason) for name in names)

    def run(self) -> MeterReport:
        self.check("attributes", self._attributes)
        probed = self.check("probe", self._probe)
        self.check("unknown option", self._unknown_option)
        self.check("option descriptions", self._option_descriptions)
        live = [
            "stop before start",
            "read before start",
            "lifecycle",
            "readings",
            "counters",
            "domains",
            "in_total",
            "nothing left behind",
            "second start",
            "measure",
        ]
        probe = self.probe_result
        reason = ""
        if probe is None or not probed:
            self.skip(live, "probe() failed, so the meter was not run")
        elif not probe.available:
            reason = probe.reason
            self.skip(live, f"the meter is unavailable here: {probe.reason}")
        else:
            self._live()
        if self.problems:
            raise MeterContractError(self.name, self.problems)
        return MeterReport(
            meter=self.name,
            available=probe is not None and probe.available,
            reason=reason,
            passed=tuple(self.passed),
            skipped=tuple(self.skipped),
        )

    # -- static checks -----------------------------------------------------------------------
    def _attributes(self) -> tuple[list[str], str]:
        cls = self.cls
        problems: list[str] = []
        name = cls.name
        if not isinstance(name, str) or not name:
            problems.append(
                f"{cls.__name__}.name is not set: it is what users pass to "
                "measure(meter=...) and --meter"
            )
        elif name == "auto" or re.search(r"[\s./]", name):
            problems.append(
                f"name {name!r} cannot be used: not 'auto' (measure's own choice), no spaces, "
                "no '.' ('-o NAME.OPTION' scopes options by it) and no '/' (domains are "
                "'<meter>/<part>')"
            )
        if not isinstance(cls.description, str) or not cls.description.strip():
            problems.append(
                f"{cls.__name__}.description is not set: `greenprec meters` shows it as the "
                "one line that says what the meter measures"
            )
        for attribute in ("estimated", "simulated", "auto"):
            value = getattr(cls, attribute)
            if not isinstance(value, bool):
                problems.append(f"{attribute} must be True or False, got {value!r}")
        covers: object = cls.covers  # a plugin's class attribute: anything, until checked
        if not isinstance(covers, (set, frozenset)) or not all(
            isinstance(item, str) and item for item in covers
        ):
            problems.append(
                f"covers must be a frozenset of hardware names such as {{'cpu', 'dram'}}, "
                f"got {covers!r}"
            )
        elif cls.auto is True and not covers:
            problems.append(
                "the meter joins auto but covers is empty: auto could then pair it with "
                "another meter of the same hardware and count its joules twice; set covers "
                "to the hardware it measures (e.g. frozenset({'gpu'}))"
            )
        auto_order: object = cls.auto_order
        if not isinstance(auto_order, int):
            problems.append(f"auto_order must be an int, got {auto_order!r}")
        shown = sorted(covers) if isinstance(covers, (set, frozenset)) else covers
        detail = f"name {name!r}, covers {shown!r}"
        return problems, detail

    def _probe(self) -> tuple[list[str], str]:
        before = _Resources.now()
        try:
            result: object = _bounded(
                "probe()", lambda: self.cls.probe(**self.options), allowed_s(self.cls, "start")
            )
        except ConfigError:
            raise  # the options given to the kit are wrong: the caller's to fix
        except Exception as error:
            problems = [
                f"{_failed('probe()', error)}; a meter that cannot run here returns "
                "Probe(False, reason) instead, and bad options raise ConfigError"
            ]
            return problems + self.leftovers(before, "probe()"), ""
        problems = self.leftovers(before, "probe()")
        if not isinstance(result, Probe):
            problems.append(f"probe() returned {result!r}, not a greenprec.Probe")
            return problems, ""
        self.probe_result = result
        available: object = result.available
        if not isinstance(available, bool):
            problems.append(f"Probe.available must be True or False, got {available!r}")
        domains: object = result.domains
        if not (
            isinstance(domains, (list, tuple))
            and all(isinstance(domain, str) and domain for domain in domains)
        ):
            problems.append(f"Probe.domains must be a list of domain names, got {domains!r}")
        if not result.available and not (isinstance(result.reason, str) and result.reason.strip()):
            problems.append(
                "the probe says the meter is unavailable but gives no reason: say why, and how "
                "to fix it (Probe(False, 'no /dev/board0; load the board driver'))"
            )
        if result.available:
            shown = ", ".join(map(str, domains)) if isinstance(domains, (list, tuple)) else ""
            detail = "available, domains " + (shown or "not announced")
        else:
            detail = f"unavailable: {result.reason}"
        return problems, detail + "; nothing left behind"

    def _unknown_option(self) -> tuple[list[str], str]:
        from greenprec.meters.registry import create

        bad = {**self.options, _UNKNOWN_OPTION: "1"}
        problems: list[str] = []

        def named(error: BaseException) -> bool:
            return _UNKNOWN_OPTION in str(error)

        try:
            _bounded("probe()", lambda: self.cls.probe(**bad), allowed_s(self.cls, "start"))
        except ConfigError as error:
            if named(error):
                return [], f"probe() refused it: {error}"
            problems.append(
                f"probe() refused option {_UNKNOWN_OPTION!r} without naming it: {error}"
            )
        except TypeError:
            pass  # a model-less meter's own probe(): create() below checks it through its model
        except Exception as error:
            problems.append(
                f"probe() with an unknown option raised {_describe(error)}, not a ConfigError"
            )
        try:
            meter = create(self.cls, bad)
        except ConfigError as error:
            if named(error):
                return problems, f"refused: {error}"
            problems.append(f"option {_UNKNOWN_OPTION!r} refused without naming it: {error}")
            return problems, ""
        except Exception as error:
            problems.append(
                f"the constructor raised {_describe(error)} for an unknown option, not a "
                "ConfigError"
            )
            return problems, ""
        _stop_quietly(meter)
        problems.append(
            f"option {_UNKNOWN_OPTION!r} was accepted: a misspelt option must be refused, not "
            "ignored; give the meter an Options model (a MeterOptions subclass refuses "
            "unknown options) or take options as __init__ keywords"
        )
        return problems, ""

    def _option_descriptions(self) -> tuple[list[str], str]:
        from greenprec.meters.registry import option_docs

        if self.cls.Options is None:
            # Its model is made from the __init__ keywords, which carry no descriptions.
            raise _Skip("no Options model: the options are the __init__ keywords")
        try:
            self.cls.options_model()
        except Exception as error:
            return [f"Options cannot be loaded: {_describe(error)}"], ""
        docs = option_docs(self.cls)
        problems = [
            f"option {doc.name!r} has no one-line description (Field(..., description=...)); "
            "`greenprec meters` lists it"
            for doc in docs
            if not doc.description.strip() or "\n" in doc.description
        ]
        return problems, ", ".join(doc.name for doc in docs) or "no options"

    # -- live checks -------------------------------------------------------------------------
    def _create(self) -> Meter:
        from greenprec.meters.registry import create

        return create(self.cls, self.options)

    def _live(self) -> None:
        self.check("stop before start", self._stop_before_start)
        run = _Run(self)
        started = self.check("lifecycle", run.lifecycle)
        if not started:
            self.skip(
                ["readings", "counters", "domains", "in_total"],
                "the lifecycle failed, so there are no readings to check",
            )
        else:
            self.check("readings", run.readings)
            self.check("counters", run.counters)
            self.check("domains", run.domains)
            self.check("in_total", run.in_total)
        self.check("nothing left behind", run.left_behind)
        self.check("read before start", self._read_before_start)
        self.check("second start", self._second_start)
        self.check("measure", self._measure)

    def _stop_before_start(self) -> tuple[list[str], str]:
        meter = self._create()
        try:
            _bounded("stop()", meter.stop, allowed_s(meter, "stop"))
        except Exception as error:
            return [
                f"{_failed('stop()', error)} on a meter that was never started; "
                "measure() stops every meter after a failed start, so stop() must release "
                "only what start() acquired and never raise"
            ], ""
        return [], "stop() raised nothing"

    def _read_before_start(self) -> tuple[list[str], str]:
        meter = self._create()
        try:
            readings = _bounded("read()", meter.read, self.read_bound_s)
        except TimeoutError as error:
            problems: list[str] = [_failed("read() before start()", error)]
            detail = ""
        except Exception as error:
            detail = f"refused with {_describe(error)}"
            problems = []
        else:
            problems = _reading_problems(readings, self.name, "read()")
            detail = f"harmless: {len(readings) if isinstance(readings, list) else '?'} readings"
        finally:
            _stop_quietly(meter)
        return problems, detail

    def _second_start(self) -> tuple[list[str], str]:
        before = _Resources.now()
        meter = self._create()
        seen: dict[int, float] = {}
        problems: list[str] = []
        try:
            _bounded("start()", meter.start, allowed_s(meter, "start"))
        except Exception as error:
            _stop_quietly(meter)
            raise _Skip(f"start() failed ({_describe(error)}), reported by lifecycle") from None
        try:
            seen.update(_descendants())
            try:
                _bounded("start()", meter.start, allowed_s(meter, "start"))
            except TimeoutError as error:
                problems.append(_failed("a second start()", error))
                detail = ""
            except Exception as error:
                detail = f"refused with {_describe(error)}"
            else:
                seen.update(_descendants())
                detail = "harmless: it still reads"
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # a block of milliseconds, on purpose
                        meter.reading_time = time.monotonic()
                        readings = _bounded("read()", meter.read, self.read_bound_s)
                        meter.reading_time = time.monotonic()
                        readings_at_end = _bounded("finish()", meter.finish, _FINISH_BOUND_S)
                except Exception as error:
                    problems.append(
                        f"after a second start(), the meter failed to read: {_describe(error)}; "
                        "refuse the second start (raise) or make it harmless"
                    )
                else:
                    problems += _reading_problems(readings, self.name, "read()")
                    problems += _reading_problems(readings_at_end, self.name, "finish()")
        finally:
            try:
                _bounded("stop()", meter.stop, allowed_s(meter, "stop"))
            except Exception as error:
                problems.append(_failed("stop()", error))
        leftovers = self.leftovers(before, "one stop() after two start()s", seen)
        if leftovers:
            problems += leftovers
            problems.append(
                "a second start() replaced what the first acquired without releasing it: "
                "refuse it (raise) when the meter is running, or stop the first run first"
            )
        return problems, detail

    def _measure(self) -> tuple[list[str], str]:
        from greenprec.measurement import Measurement

        before = _Resources.now()
        problems: list[str] = []
        try:
            meter = self._create()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Measurement(meter, interval=self.interval_s) as measured:
                    time.sleep(self.run_s)
        except Exception as error:
            left = self.leftovers(before, "measure()")
            if self.problems and not left:
                raise _Skip(
                    f"measure() failed ({_describe(error)}), a consequence of the broken "
                    "rules above"
                ) from None
            problems.append(f"greenprec.measure() with the meter failed: {_describe(error)}")
            return problems + left, ""
        energy_j = measured.energy_j
        if not (math.isfinite(energy_j) and energy_j >= 0):
            problems.append(f"measure() gave energy_j = {energy_j!r}, not a finite number >= 0")
        problems += self.leftovers(before, "measure()")
        detail = (
            f"{energy_j:.4g} J over {measured.duration_s:.3g} s "
            f"({', '.join(measured.counted_domains)} counted)"
        )
        return problems, detail


class _Run:
    """One start, read... finish, stop cycle, and what it saw."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.reads: list[tuple[str, object]] = []  # (where, what it returned)
        self.seen: dict[int, float] = {}
        self.before: _Resources | None = None
        self.leftover_problems: list[str] = []
        self.stopped = False

    def lifecycle(self) -> tuple[list[str], str]:
        checker = self.checker
        self.before = _Resources.now()
        meter = checker._create()
        problems: list[str] = []
        phase = "start()"
        try:
            _bounded("start()", meter.start, allowed_s(meter, "start"))
            self.seen.update(_descendants())
            phase = "read()"
            deadline = time.monotonic() + checker.run_s
            while True:
                meter.reading_time = time.monotonic()
                self.reads.append(("read()", _bounded("read()", meter.read, checker.read_bound_s)))
                self.seen.update(_descendants())
                if time.monotonic() >= deadline and len(self.reads) >= 2:
                    break
                time.sleep(checker.interval_s)
            phase = "finish()"
            meter.reading_time = time.monotonic()
            self.reads.append(("finish()", _bounded("finish()", meter.finish, _FINISH_BOUND_S)))
        except Exception as error:
            problems.append(_failed(phase, error))
        finally:
            try:
                _bounded("stop()", meter.stop, allowed_s(meter, "stop"))
            except Exception as error:
                problems.append(f"{_failed('stop()', error)}; it must release and not raise")
        self.stopped = True
        detail = f"{len(self.reads) - 1} reads and finish() over {checker.run_s:g} s"
        return problems, detail

    def readings(self) -> tuple[list[str], str]:
        problems: list[str] = []
        for where, readings in self.reads:
            problems += _reading_problems(readings, self.checker.name, where)
            if isinstance(readings, list) and not readings:
                problems.append(f"{where} of a running meter returned no reading")
        # The same mistake in every read is one problem.
        unique = list(dict.fromkeys(problems))
        count = sum(len(r) for _where, r in self.reads if isinstance(r, (list, tuple)))
        return unique, f"{count} readings, each with a domain and a finite unit >= 0"

    def counters(self) -> tuple[list[str], str]:
        last: dict[str, tuple[str, float]] = {}
        problems: list[str] = []
        counters: set[str] = set()
        for index, (where, readings) in enumerate(self.reads):
            for reading in _good(readings):
                if reading.energy_j is None:
                    continue
                counters.add(reading.domain)
                value = float(reading.energy_j)
                previous = last.get(reading.domain)
                if previous is not None and value < previous[1] - _COUNTER_SLACK_J:
                    problems.append(
                        f"{reading.domain} energy_j went down from {previous[1]:.6g} J "
                        f"({previous[0]}) to {value:.6g} J (read {index + 1}, {where}): "
                        "cumulative energy since start() never decreases; correct counter "
                        "wrap-around in the meter"
                    )
                last[reading.domain] = (where, value)
        if not counters:
            raise _Skip("no energy_j readings (the meter reports power_w)")
        return problems[:3], f"{len(counters)} counter domain(s) never decreased"

    def domains(self) -> tuple[list[str], str]:
        problems: list[str] = []
        first: dict[str, tuple[str, bool]] | None = None
        for where, readings in self.reads:
            shape = {
                r.domain: ("energy_j" if r.energy_j is not None else "power_w", r.in_total)
                for r in _good(readings)
            }
            if first is None:
                first = shape
                continue
            if set(shape) != set(first):
                problems.append(
                    f"{where} gave domains {sorted(shape)}, the first read {sorted(first)}: "
                    "every read returns every domain"
                )
                break
            changed = [domain for domain in shape if shape[domain] != first[domain]]
            if changed:
                domain = changed[0]
                problems.append(
                    f"{domain} changed from {first[domain]} to {shape[domain]} (unit, in_total) "
                    f"at {where}: a domain keeps its unit and in_total for the whole block"
                )
                break
        first = first or {}
        probe = self.checker.probe_result
        announced = list(probe.domains) if probe is not None else []
        if announced and set(announced) != set(first):
            problems.append(
                f"the probe announced {sorted(announced)} but the readings are of "
                f"{sorted(first)}: Probe.domains lists the domains read() returns"
            )
        return problems, ", ".join(sorted(first))

    def in_total(self) -> tuple[list[str], str]:
        problems: list[str] = []
        counted: list[str] = []
        for where, readings in self.reads:
            good = _good(readings)
            if not good:
                continue
            counted = [r.domain for r in good if r.in_total]
            if not counted:
                problems.append(
                    f"no domain of {where} is in the total (in_total=False for all): the meter "
                    "would add nothing; in_total=False is for parts contained in another domain"
                )
            problems += _double_counted(counted)
            if problems:
                break
        return problems, "counted: " + ", ".join(counted)

    def left_behind(self) -> tuple[list[str], str]:
        if self.before is None or not self.stopped:
            raise _Skip("the meter was not run")
        return self.checker.leftovers(self.before, "stop()", self.seen), (
            f"threads, child processes{'' if self.before.fds is None else ' and open files'} "
            "as before start()"
        )


# -- readings --------------------------------------------------------------------------------
def _good(readings: object) -> list[Reading]:
    """The readings that are well-formed enough to compare across reads."""
    if not isinstance(readings, (list, tuple)):
        return []
    return [r for r in readings if isinstance(r, Reading) and isinstance(r.domain, str)]


def _reading_problems(readings: object, meter: str, where: str) -> list[str]:
    if not isinstance(readings, list):
        return [f"{where} returned {_short(readings)}, not a list of greenprec.Reading"]
    problems: list[str] = []
    seen: set[str] = set()
    for reading in readings:
        if not isinstance(reading, Reading):
            problems.append(f"{where} returned {_short(reading)}, not a greenprec.Reading")
            continue
        domain = reading.domain
        if not isinstance(domain, str) or not domain.strip():
            problems.append(
                f"{where} returned a Reading without a domain ({_short(domain)}): name it "
                f"'{meter}/<part>'"
            )
            continue
        problem = domain_problem(domain)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        if not domain.startswith(f"{meter}/"):
            problems.append(
                f"domain {domain!r} is not named '{meter}/<part>' (the meter's name, a slash, "
                "the part)"
            )
        if domain in seen:
            problems.append(f"{where} returned {domain!r} twice: each domain once per read")
        seen.add(domain)
        values = [(unit, getattr(reading, unit)) for unit in ("energy_j", "power_w")]
        given = [(unit, value) for unit, value in values if value is not None]
        if len(given) != 1:
            has = " and ".join(unit for unit, _ in given) or "neither energy_j nor power_w"
            problems.append(
                f"{domain} has {has}: a reading has exactly one of energy_j (J since start) "
                "or power_w (W)"
            )
            continue
        unit, value = given[0]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{domain} {unit} = {_short(value)} is not a number")
        elif not math.isfinite(value) or value < 0:
            problems.append(
                f"{domain} {unit} = {value!r}: energy and power are finite and never negative"
            )
        elif (problem := implausible(value, unit[-1].upper())) is not None:
            problems.append(f"{domain} {unit} = {value:.6g} {problem}: a unit or meter error")
        in_total: object = reading.in_total
        if not isinstance(in_total, bool):
            problems.append(f"{domain} in_total = {_short(in_total)}, not True or False")
    return problems


def _part(domain: str) -> str:
    return domain.split("/", 1)[1].lower() if "/" in domain else domain.lower()


def _double_counted(counted: Sequence[str]) -> list[str]:
    """Counted domains that contain one another, recognised by their part's name."""
    problems: list[str] = []
    whole = [d for d in counted if _WHOLE_SYSTEM.match(_part(d))]
    if whole and len(counted) > 1:
        others = [d for d in counted if d != whole[0]]
        problems.append(
            f"{whole[0]} (the whole system) is in the total beside {', '.join(others)}, which "
            "it contains: count the system alone and return the parts with in_total=False"
        )
    packages = [d for d in counted if _PACKAGE.match(_part(d))]
    inside = [d for d in counted if _INSIDE_PACKAGE.fullmatch(_part(d))]
    if packages and inside:
        problems.append(
            f"{', '.join(inside)} {'is' if len(inside) == 1 else 'are'} inside "
            f"{packages[0]} yet in the total: a part contained in another domain is "
            "returned with in_total=False (never count the same joule twice)"
        )
    return problems


# -- what a meter leaves behind -----------------------------------------------------------------
@dataclass
class _Resources:
    """The threads, child processes and open files of this process at one moment."""

    threads: dict[int, str]
    processes: dict[int, float]
    fds: dict[int, str] | None

    @classmethod
    def now(cls) -> _Resources:
        return cls(_threads(), _descendants(), _open_files())

    def left_behind(
        self, after: str, seen: Mapping[int, float] | None = None, grace_s: float = 0.0
    ) -> list[str]:
        """What exists now (after ``after`` returned) that did not before, once any thread or
        process still ending has had ``grace_s`` seconds to go."""
        deadline = time.monotonic() + grace_s
        found = self._leftovers(after, seen or {})
        while found:
            # A file still open may belong to garbage not yet collected (a dropped meter).
            gc.collect()
            found = self._leftovers(after, seen or {})
            if not found or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return found

    def _leftovers(self, after: str, seen: Mapping[int, float]) -> list[str]:
        problems: list[str] = []
        threads = [name for ident, name in _threads().items() if ident not in self.threads]
        if threads:
            problems.append(
                f"{after} left {len(threads)} thread(s) running: {', '.join(threads)}; "
                "join every thread the meter started before returning"
            )
        candidates = {**seen, **_descendants()}
        left: list[str] = []
        for pid, created in candidates.items():
            if self.processes.get(pid) == created:
                continue
            state = _process_state(pid, created)
            if state is not None:
                left.append(state)
        if left:
            problems.append(
                f"{after} left {len(left)} process(es) behind: {'; '.join(left)}; stop and "
                "wait for every process the meter started (and its children)"
            )
        if self.fds is not None:
            now = _open_files() or {}
            opened = sorted(
                target
                for fd, target in now.items()
                if self.fds.get(fd) != target and not _is_listing(target)
            )
            if opened:
                problems.append(
                    f"{after} left {len(opened)} file(s) open: {', '.join(opened[:5])}; close "
                    "what the meter opens (a with-block, or in stop())"
                )
        return problems


def _threads() -> dict[int, str]:
    # The kit's own helper threads are not the meter's: one left in a hung call is reported
    # as the hang itself.
    return {
        thread.ident: thread.name
        for thread in threading.enumerate()
        if thread.ident is not None
        and thread.is_alive()
        and not thread.name.startswith(_KIT_THREAD)
    }


def _descendants() -> dict[int, float]:
    import psutil

    found: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found[child.pid] = child.create_time()
    return found


def _process_state(pid: int, created: float) -> str | None:
    """How a process that should be gone is still there, or None when it is gone."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.create_time() != created:
            return None  # the pid was reused by another process
        status = process.status()
        if status == psutil.STATUS_ZOMBIE:
            if process.ppid() == os.getpid():
                return f"pid {pid} exited but was never waited for (a zombie)"
            return None  # dead; its new parent reaps it
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())[:80]
            return f"pid {pid} ({command})"
        return f"pid {pid}"
    except psutil.Error:
        return None


def _open_files() -> dict[int, str] | None:
    """This process's open file descriptors and what they point at; None where unknown."""
    directory = "/proc/self/fd"
    if os.path.isdir(directory):
        found: dict[int, str] = {}
        for name in os.listdir(directory):
            with contextlib.suppress(OSError, ValueError):
                found[int(name)] = os.readlink(os.path.join(directory, name))
        return found
    if sys.platform == "win32":
        return None
    import psutil

    try:
        return {item.fd: item.path for item in psutil.Process().open_files()}
    except psutil.Error:
        return None


def _is_listing(target: str) -> bool:
    """The descriptor of the /proc listing itself."""
    return target.startswith("/proc/") and target.endswith("/fd")


# -- bounded calls ----------------------------------------------------------------------------
def _bounded(what: str, call: Callable[[], _T], timeout_s: float) -> _T:
    """``call()`` on a helper thread: the kit never hangs on a meter, and survives anything
    it raises.

    A call still running after ``timeout_s`` raises :class:`TimeoutError` (``"did not return
    within ..."``; its thread, a daemon, is left behind, as ``measure()`` leaves it). A
    ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``) comes
    back as a :class:`RuntimeError` naming it: on this helper thread it is the meter's own
    doing, never a real Ctrl-C, which only the main thread receives.
    """
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=target, name=f"{_KIT_THREAD}{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"{_HUNG} {timeout_s:g} s: measure() abandons {_BOUNDS[what]}")
    if failure:
        error = failure[0]
        if isinstance(error, Exception):
            raise error
        raise RuntimeError(f"{what} raised {_describe(error)}") from error
    return outcome[0]


def _failed(phase: str, error: BaseException) -> str:
    """``start() did not return within 1.4 s ...`` or ``start() raised ValueError: ...``."""
    if isinstance(error, TimeoutError) and str(error).startswith(_HUNG):
        return f"{phase} {error}"
    cause = error.__cause__
    if isinstance(error, RuntimeError) and cause is not None and not isinstance(cause, Exception):
        return (
            f"{phase} raised {_describe(cause)} (a meter reports a failure with an exception "
            "such as MeterError, never by exiting or interrupting)"
        )
    return f"{phase} raised {_describe(error)}"


def _stop_quietly(meter: Meter) -> None:
    with contextlib.suppress(Exception):
        _bounded("stop()", meter.stop, allowed_s(meter, "stop"))


# -- messages -------------------------------------------------------------------------------
def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:199] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"

"""The meter contract: what a plugin author implements to add a new energy source.

A meter is a class. greenprec creates one instance per measurement with the user's options as
keyword arguments, then drives it from a background sampling thread::

    from pydantic import ConfigDict, Field
    from greenprec.meters.options import MeterOptions

    class MyOptions(MeterOptions):
        model_config = ConfigDict(title="mymeter")
        device: int = Field(0, description="which board")

    class MyMeter(greenprec.Meter):
        name = "mymeter"          # what users pass to measure(meter=...) and --meter
        estimated = False         # True when figures come from a model, not a sensor
        covers = frozenset({"gpu"})  # hardware it sees; "auto" never picks two that overlap
        Options = MyOptions       # or "my_package.options:MyOptions", imported on first use

        @classmethod
        def probe(cls, **options) -> greenprec.Probe:
            # Can it run here? If not, a human reason that includes the fix.
            return greenprec.Probe(True, domains=["mymeter/gpu-0"])

        def start(self) -> None: ...          # open handles, remember initial counters
        def read(self) -> list[greenprec.Reading]: ...  # called at entry and at every tick
        def finish(self) -> list[greenprec.Reading]: ...  # optional: the reading at exit
        def stop(self) -> None: ...           # release handles; must not raise if start failed

``read()`` returns one :class:`Reading` per domain, either

- ``energy_j``: energy since :meth:`Meter.start`, cumulative and never decreasing (counter
  meters correct wrap-around themselves; they are read often enough to see every wrap), or
- ``power_w``: instantaneous power; greenprec integrates it over the sample times with the
  trapezoid rule, from the block's entry to its exit.

Options. ``Options`` is a :class:`~greenprec.meters.options.MeterOptions` pydantic model with
every option, its default and a description; :meth:`Meter.__init__` validates the keyword
arguments through it into ``self.options`` (read it in ``start()``), and the same checks serve
``meter_options={...}``, ``-o KEY=VALUE`` and TOML, each problem one ``ConfigError`` line.
A meter that overrides ``__init__`` calls ``super().__init__(**options)``. A meter without
``Options`` takes its options as ``__init__`` keywords, as before models existed; its model is
then made from those keywords (:func:`~greenprec.meters.options.options_from_init`), so its
options are listed, picked and checked on the same path as every other meter's.

``finish()`` gives the readings at the block's exit, in place of a last ``read()``; the default
calls ``read()``. A meter whose data arrive late overrides it: the ``energibridge`` meter stops
its child process there, which then writes the samples up to the exit. ``finish()`` is called
once, after the last ``read()`` and before ``stop()``, and not at all when an earlier ``read()``
failed; ``stop()`` must still release everything after a ``finish()`` that raised.

Domains are named ``<meter>/<part>`` (``rapl/package-0``, ``nvml/gpu-0``): ASCII letters and
digits, the part also ``. _ - : @ +`` (:data:`DOMAIN_FORM`). A domain name becomes a column of
runs.csv, a line of the terminal and of the report, so any other name (a path, a space, an
escape sequence) is refused where greenprec first sees it: in :class:`Probe` and at a meter's
first reading of the domain (:func:`domain_problem`). A reading with
``in_total=False`` is reported but not added to the total, for parts contained in another
domain (RAPL's core is inside its package). Never count the same joule twice.
"""

from __future__ import annotations

import importlib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from greenprec.meters.options import MeterOptions

__all__ = ["DOMAIN_FORM", "Meter", "Probe", "Reading", "allowed_s", "domain_problem"]

_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9._:@+-]*")
_MAX_DOMAIN_CHARS = 120
DOMAIN_FORM = (
    "'<meter>/<part>' (e.g. 'rapl/package-0'): the meter's name, a slash and the part, in ASCII "
    f"letters, digits and - _ (the part also . : @ +), at most {_MAX_DOMAIN_CHARS} characters"
)
"""The form of a domain name, as error messages state it."""


def domain_problem(domain: object) -> str | None:
    """Why ``domain`` cannot be a domain name (the name shown escaped), or None when it can.

    Domain names become runs.csv columns, terminal lines and report text: only the plain form
    of :data:`DOMAIN_FORM` passes, so no path, markup or escape sequence travels with them.
    """
    if isinstance(domain, str) and len(domain) <= _MAX_DOMAIN_CHARS and _DOMAIN.fullmatch(domain):
        return None
    shown = ascii(domain) if len(repr(domain)) <= 200 else ascii(domain)[:199] + "…"
    return f"domain {shown} is not a domain name: name it {DOMAIN_FORM}"


@dataclass(frozen=True)
class Reading:
    """One domain's value at one instant: cumulative ``energy_j`` or instantaneous ``power_w``."""

    domain: str
    energy_j: float | None = None
    power_w: float | None = None
    in_total: bool = True

    def __post_init__(self) -> None:
        if (self.energy_j is None) == (self.power_w is None):
            raise ValueError(f"Reading for {self.domain!r} needs exactly one of energy_j, power_w")


def _without_controls(text: str) -> str:
    """``text`` with every control or format character (escapes, line breaks) as ``?``."""
    return "".join("?" if unicodedata.category(char)[0] == "C" else char for char in text)


@dataclass(frozen=True)
class Probe:
    """Whether a meter can run here; when it cannot, ``reason`` says why and how to fix it."""

    available: bool
    reason: str = ""
    domains: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A plugin's probe writes the reason, and `greenprec meters`, `measure` and the report
        # print it: a terminal escape or a line break in it must never reach them raw.
        if isinstance(self.reason, str):
            object.__setattr__(self, "reason", _without_controls(self.reason))
        # A plugin's probe builds this: a bad name is refused here, before anything shows it
        # (the registry turns the error into the meter's "unavailable" reason).
        for domain in self.domains if isinstance(self.domains, (list, tuple)) else ():
            problem = domain_problem(domain)
            if problem is not None:
                raise ValueError(f"Probe.domains: {problem}")


class Meter:
    """Base class for meters. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    estimated: ClassVar[bool] = False
    simulated: ClassVar[bool] = False
    """True for a meter that makes its figures up on purpose (the ``mock``, for tests and demos):
    listed as *simulated*, never as measured."""
    covers: ClassVar[frozenset[str]] = frozenset()
    auto: ClassVar[bool] = False
    """Whether ``measure(meter="auto")`` uses this meter when it is available."""
    auto_order: ClassVar[int] = 100
    """Lower runs first in ``auto``; a later meter covering hardware already covered is skipped."""
    description: ClassVar[str] = ""
    Options: ClassVar[type[MeterOptions] | str | None] = None
    """The options model (a :class:`~greenprec.meters.options.MeterOptions` subclass), or its
    ``"module:Class"`` path, imported the first time options are validated: the built-in meters
    name theirs so, because loading the plugin manager must not import pydantic. None: the
    meter takes its options as ``__init__`` keywords (meters written before models), and
    :meth:`options_model` makes its model from them."""

    options: MeterOptions
    """The validated options; set by :meth:`__init__` (a meter without ``Options`` that
    overrides ``__init__`` keeps its keywords as it chooses and has none)."""

    start_timeout_s: float = 15.0
    """How long :meth:`start` may take, in seconds. greenprec waits twice as long plus a second,
    then fails the measurement naming the meter and the call (a hung driver must not hang the
    block); a meter that waits longer on purpose (EnergiBridge, for its first sample) sets its
    own, also per instance from an option."""
    stop_timeout_s: float = 5.0
    """How long :meth:`stop` may take, in seconds; greenprec waits twice as long plus a second,
    then warns naming the meter (the figures, already taken, stand)."""

    reading_time: float | None = None
    """The ``time.monotonic()`` stamp greenprec gives the reading it is about to take, set just
    before each :meth:`read` / :meth:`finish`. A meter that computes energy from a clock (the
    mock) uses it, so its energy and the measured window agree exactly, whatever pauses
    (garbage collection, thread switches) fall between two clock reads."""

    def __init__(self, **options: object) -> None:
        cls = type(self)
        if cls.Options is None and cls.__init__ is not Meter.__init__:
            # A meter without a model took its options as its own __init__ keywords (the
            # registry checked them through its model); what it passes on here is no option.
            if options:
                unknown = ", ".join(sorted(options))
                raise TypeError(f"meter {self.name!r} takes no option {unknown}")
            return
        self.options = cls.parse_options(options)

    @classmethod
    def options_model(cls) -> type[MeterOptions]:
        """The ``Options`` model, importing it when ``Options`` names it; for a meter without
        one, the model made from its ``__init__`` keywords. Imports pydantic: call it only
        when options are listed or validated, never to register a meter."""
        from greenprec.meters.options import MeterOptions, options_from_init

        if cls.Options is None:
            # The base's own **options is no option: a meter that keeps it takes none.
            return options_from_init(cls, None if cls.__init__ is Meter.__init__ else cls.__init__)
        model = _import_path(cls.Options) if isinstance(cls.Options, str) else cls.Options
        if not (isinstance(model, type) and issubclass(model, MeterOptions)):
            # The plugin author's mistake, found on first use rather than as a pydantic trace.
            raise TypeError(
                f"meter {cls.name!r}: Options must be a MeterOptions subclass or its "
                f"'module:Class' path, got {cls.Options!r}"
            )
        return model

    @classmethod
    def parse_options(cls, options: Mapping[str, object]) -> MeterOptions:
        """Validate options through the meter's model: a ConfigError line per problem."""
        return cls.options_model().parse(options, meter=cls.name)

    @classmethod
    def probe(cls, **options: object) -> Probe:
        """Tell whether this meter can run here (and its domains), without measuring.

        The default validates the options: bad options are the user's to fix, so their
        ConfigError propagates instead of reading as "unavailable".
        """
        cls.parse_options(options)
        return Probe(True)

    def start(self) -> None:
        """Begin: open handles and remember initial counters."""

    def read(self) -> list[Reading]:
        """Return the current reading of every domain."""
        raise NotImplementedError

    def finish(self) -> list[Reading]:
        """Return every domain's reading at the block's exit (called once, before :meth:`stop`).

        The default is :meth:`read`; override it when the last samples only become available
        once the meter is told the block has ended.
        """
        return self.read()

    def stop(self) -> None:
        """Release what :meth:`start` acquired."""


def allowed_s(meter: Meter | type[Meter], call: str) -> float:
    """How long greenprec waits for ``meter``'s ``start()`` or ``stop()`` (``call``): twice the
    time the meter says the call may take (its ``start_timeout_s`` / ``stop_timeout_s``), plus a
    second, so a loaded machine does not fail a meter that keeps its word. A value that is not
    a positive number of seconds counts as the default."""
    default: float = getattr(Meter, f"{call}_timeout_s")
    declared: object = getattr(meter, f"{call}_timeout_s", default)
    if isinstance(declared, bool) or not isinstance(declared, (int, float)):
        declared = default
    if not (math.isfinite(declared) and declared > 0):
        declared = default
    return 2.0 * float(declared) + 1.0


def _import_path(path: str) -> object:
    """The object a ``"module:Qual.Name"`` path names (how meters name their options model)."""
    module, _colon, qualname = path.partition(":")
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target

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
``Options`` takes its options as ``__init__`` keywords, as before models existed.

``finish()`` gives the readings at the block's exit, in place of a last ``read()``; the default
calls ``read()``. A meter whose data arrive late overrides it: the ``energibridge`` meter stops
its child process there, which then writes the samples up to the exit. ``finish()`` is called
once, after the last ``read()`` and before ``stop()``, and not at all when an earlier ``read()``
failed; ``stop()`` must still release everything after a ``finish()`` that raised.

Domains are named ``<meter>/<part>`` (``rapl/package-0``, ``nvml/gpu-0``). A reading with
``in_total=False`` is reported but not added to the total, for parts contained in another
domain (RAPL's core is inside its package). Never count the same joule twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from greenprec.meters.options import MeterOptions


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


@dataclass(frozen=True)
class Probe:
    """Whether a meter can run here; when it cannot, ``reason`` says why and how to fix it."""

    available: bool
    reason: str = ""
    domains: list[str] = field(default_factory=list)


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
    meter takes its options as ``__init__`` keywords (meters written before models)."""

    options: MeterOptions
    """The validated options; set by :meth:`__init__` when the meter has an ``Options`` model."""

    reading_time: float | None = None
    """The ``time.monotonic()`` stamp greenprec gives the reading it is about to take, set just
    before each :meth:`read` / :meth:`finish`. A meter that computes energy from a clock (the
    mock) uses it, so its energy and the measured window agree exactly, whatever pauses
    (garbage collection, thread switches) fall between two clock reads."""

    def __init__(self, **options: Any) -> None:
        if type(self).options_model() is None:
            if options:
                unknown = ", ".join(sorted(options))
                raise TypeError(f"meter {self.name!r} takes no option {unknown}")
            return
        self.options = self.parse_options(options)

    @classmethod
    def options_model(cls) -> type[MeterOptions] | None:
        """The ``Options`` model, importing it when ``Options`` names it; None without one."""
        model = cls.Options
        if model is None:
            return None  # before the import below: a meter without a model never needs pydantic
        if isinstance(model, str):
            module, _colon, qualname = model.partition(":")
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            model = target
        from greenprec.meters.options import MeterOptions

        if not (isinstance(model, type) and issubclass(model, MeterOptions)):
            # The plugin author's mistake, found on first use rather than as a pydantic trace.
            raise TypeError(
                f"meter {cls.name!r}: Options must be a MeterOptions subclass or its "
                f"'module:Class' path, got {cls.Options!r}"
            )
        return model

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> MeterOptions:
        """Validate options through the ``Options`` model: a ConfigError line per problem."""
        model = cls.options_model()
        if model is None:
            raise TypeError(f"meter {cls.name!r} has no Options model to validate options with")
        return model.parse(options, meter=cls.name)

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        """Tell whether this meter can run here (and its domains), without measuring.

        The default validates the options (when the meter has a model): bad options are the
        user's to fix, so their ConfigError propagates instead of reading as "unavailable".
        """
        if cls.options_model() is not None:
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

"""The meter contract: what a plugin author implements to add a new energy source.

A meter is a class. greenprec creates one instance per measurement with the user's options as
keyword arguments, then drives it from a background sampling thread::

    class MyMeter(greenprec.Meter):
        name = "mymeter"          # what users pass to measure(meter=...) and --meter
        estimated = False         # True when figures come from a model, not a sensor
        covers = frozenset({"gpu"})  # hardware it sees; "auto" never picks two that overlap

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

from dataclasses import dataclass, field
from typing import Any, ClassVar


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
    covers: ClassVar[frozenset[str]] = frozenset()
    auto: ClassVar[bool] = False
    """Whether ``measure(meter="auto")`` uses this meter when it is available."""
    auto_order: ClassVar[int] = 100
    """Lower runs first in ``auto``; a later meter covering hardware already covered is skipped."""
    description: ClassVar[str] = ""

    reading_time: float | None = None
    """The ``time.monotonic()`` stamp greenprec gives the reading it is about to take, set just
    before each :meth:`read` / :meth:`finish`. A meter that computes energy from a clock (the
    mock) uses it, so its energy and the measured window agree exactly, whatever pauses
    (garbage collection, thread switches) fall between two clock reads."""

    def __init__(self, **options: Any) -> None:
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"meter {self.name!r} takes no option {unknown}")

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        """Tell whether this meter can run here (and its domains), without measuring."""
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

"""The ``rapl`` meter's options (:class:`RaplOptions`), beside the meter in this package.

A module of its own rather than a class in ``rapl/__init__.py``: the plugin manager imports the
meter to register it, which every first ``measure()`` does, and that must not import pydantic.
The meter names this model by its path (``Options = "greenprec.meters.rapl.options:RaplOptions"``)
so pydantic is imported only when options are first validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import ConfigDict, Field

from greenprec.meters.options import PYTHON_ONLY, Flag, MeterOptions, callable_for_tests, path

__all__ = ["RaplOptions"]


class RaplOptions(MeterOptions):
    """Options of the ``rapl`` meter (:class:`~greenprec.meters.rapl.RaplMeter`): Intel/AMD
    RAPL counters read from powercap sysfs. ``reader`` and ``clock`` are for tests only."""

    model_config = ConfigDict(title="rapl")

    root: Annotated[str, path("a directory path such as /sys/class/powercap")] = Field(
        "/sys/class/powercap",
        description="where the powercap zones are (a mounted host sysfs, a test tree)",
    )
    prefer_psys: Flag = Field(False, description="count psys alone instead of packages + DRAM")
    reader: Annotated[
        Callable[[str], str] | None, callable_for_tests("a callable (path -> text)"), PYTHON_ONLY
    ] = Field(None, description="reads one sysfs file (tests use it to simulate failures)")
    clock: Annotated[
        Callable[[], float] | None, callable_for_tests("a callable returning seconds"), PYTHON_ONLY
    ] = Field(None, description="monotonic seconds stamped on each counter read (tests)")

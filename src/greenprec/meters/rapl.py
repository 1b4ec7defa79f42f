"""``rapl``: Linux powercap (Intel and AMD RAPL). Being written."""

from __future__ import annotations

from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return []

"""An example meter plugin: instantaneous power from a file a board's sensor driver writes.

pip install -e examples/greenprec-board-meter
echo 12.5 > /tmp/board_power_w
greenprec meters
greenprec measure -m board -o path=/tmp/board_power_w -- sleep 1
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import greenprec


class BoardMeter(greenprec.Meter):
    name = "board"
    estimated = False
    covers = frozenset({"board"})
    description = "board power sensor exposed as a file of watts"

    def __init__(self, path: str = "/sys/class/board/power_w") -> None:
        self.path = Path(path)

    @classmethod
    def probe(cls, **options: Any) -> greenprec.Probe:
        path = Path(options.get("path", "/sys/class/board/power_w"))
        if not path.exists():
            return greenprec.Probe(False, f"no {path}; load the board driver or pass -o path=...")
        return greenprec.Probe(True, domains=["board/0"])

    def read(self) -> list[greenprec.Reading]:
        return [greenprec.Reading("board/0", power_w=float(self.path.read_text()))]


@greenprec.hookimpl
def greenprec_meters() -> list[type[greenprec.Meter]]:
    return [BoardMeter]

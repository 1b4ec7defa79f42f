"""Third-party plugins: found through the `greenprec` entry-point group, isolated when broken."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import greenprec

PLUGIN_SOURCE = """
import time
import greenprec

class ConstantBoardMeter(greenprec.Meter):
    name = "board"
    description = "a constant 7 W board"

    def __init__(self, power_w="7"):
        self.power_w = float(power_w)

    @classmethod
    def probe(cls, **options):
        return greenprec.Probe(True, domains=["board/0"])

    def start(self):
        self.t0 = time.monotonic()

    def read(self):
        now = self.reading_time or time.monotonic()  # the window's own stamp, when given
        return [greenprec.Reading("board/0", energy_j=self.power_w * (now - self.t0))]

@greenprec.hookimpl
def greenprec_meters():
    return [ConstantBoardMeter]
"""


def test_plugin_meter_from_an_entry_point_is_usable_by_name(install_plugin) -> None:  # type: ignore[no-untyped-def]
    install_plugin("greenprec_board", PLUGIN_SOURCE)
    assert "board" in greenprec.available_meters()
    with greenprec.measure("board", meter_options={"power_w": "7"}) as m:
        time.sleep(0.2)
    assert m.meter == "board"
    assert m.energy_j == pytest.approx(7.0 * m.duration_s, rel=1e-9)


def test_plugin_that_fails_to_import_is_reported_once_and_others_work(install_plugin) -> None:  # type: ignore[no-untyped-def]
    install_plugin("greenprec_broken", "raise ImportError('needs libfoo')\n")
    with pytest.warns(greenprec.GreenprecWarning, match="greenprec_broken.*failed to load"):
        names = greenprec.available_meters()
    assert {"mock", "estimate"} <= set(names)
    with greenprec.measure("mock"):
        pass
    assert "needs libfoo" in greenprec.plugins.plugin_errors["greenprec_broken"]


def test_plugin_raising_in_a_hook_does_not_break_other_meters(install_plugin) -> None:  # type: ignore[no-untyped-def]
    source = """
import greenprec

@greenprec.hookimpl
def greenprec_meters():
    raise RuntimeError("cannot enumerate")
"""
    install_plugin("greenprec_raiser", source)
    with pytest.warns(greenprec.GreenprecWarning, match="greenprec_raiser.*cannot enumerate"):
        names = greenprec.available_meters()
    assert "mock" in names


def test_plugin_found_in_a_fresh_process_and_listed_by_the_cli(install_plugin) -> None:  # type: ignore[no-untyped-def]
    site: Path = install_plugin("greenprec_board", PLUGIN_SOURCE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    listed = subprocess.run(
        [sys.executable, "-m", "greenprec", "meters", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert '"name": "board"' in listed.stdout
    measured = subprocess.run(
        [sys.executable, "-m", "greenprec", "measure", "-m", "board", "--", "true"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert measured.returncode == 0, measured.stderr
    assert "board/0" in measured.stdout


def test_plugin_hook_calls_are_traced_on_request() -> None:
    import os
    import subprocess
    import sys

    code = "from greenprec.meters.registry import meter_classes; meter_classes()"
    env = {**os.environ, "GREENPREC_TRACE_PLUGINS": "1"}
    traced = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "greenprec: hook greenprec_meters -> greenprec.meters.rapl: list of 1: rapl" in (
        traced.stderr
    )
    env["GREENPREC_TRACE_PLUGINS"] = "0"
    quiet = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert quiet.stderr == ""

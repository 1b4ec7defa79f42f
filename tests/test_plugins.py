"""Third-party plugins: found through the `greenprec` entry-point group, isolated when broken."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import greenprec
from greenprec import plugins

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


# --- hooks through pm.hook (#21): isolation, order, one clash rule, one tracer ---------------


class _Wide(greenprec.Meter):
    name = "wide"


class _FakeMock(greenprec.Meter):
    name = "mock"


def _own_warnings(caught: list[warnings.WarningMessage], text: str) -> list[str]:
    return [str(w.message) for w in caught if text in str(w.message)]


def test_a_raising_implementation_is_skipped_and_reported_once_through_pm_hook() -> None:
    class Good:
        @greenprec.hookimpl
        def greenprec_meters(self) -> list[type[greenprec.Meter]]:
            return [_Wide]

    class Bad:
        @greenprec.hookimpl
        def greenprec_meters(self) -> list[type[greenprec.Meter]]:
            raise RuntimeError("enumeration bug")

    plugins.register(Good(), name="good-plugin")
    plugins.register(Bad(), name="bad-plugin")
    hook = plugins.get_plugin_manager().hook
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = hook.greenprec_meters()
        second = hook.greenprec_meters()
    assert first == second
    assert ("good-plugin", [_Wide]) in first
    assert "bad-plugin" not in [plugin for plugin, _ in first]
    assert any(plugin == "greenprec.meters.mock" for plugin, _ in first)  # built-ins still come
    (message,) = _own_warnings(caught, "bad-plugin")
    assert "raised in greenprec_meters (RuntimeError: enumeration bug)" in message
    assert "enumeration bug" in plugins.plugin_errors["bad-plugin"]
    assert "wide" in greenprec.available_meters()


def test_tryfirst_and_trylast_are_honoured_by_pluggy() -> None:
    order: list[str] = []

    def observer(label: str, **marks: bool) -> object:
        class Observer:
            @greenprec.hookimpl(**marks)
            def greenprec_measurement_started(self, measurement: object) -> None:
                order.append(label)

        return Observer()

    plugins.register(observer("last", trylast=True), name="last")
    plugins.register(observer("plain-1"), name="plain-1")
    plugins.register(observer("first", tryfirst=True), name="first")
    plugins.register(observer("plain-2"), name="plain-2")
    with greenprec.measure("mock"):
        pass
    # pluggy's order: tryfirst, then the most recently registered first, trylast at the end.
    assert order == ["first", "plain-2", "plain-1", "last"]


def test_a_meter_name_clash_warns_once_naming_both_plugins() -> None:
    class Clashing:
        @greenprec.hookimpl
        def greenprec_meters(self) -> list[type[greenprec.Meter]]:
            return [_FakeMock]

    plugins.register(Clashing(), name="clashing-meters")
    from greenprec.meters.mock import MockMeter
    from greenprec.meters.registry import meter_classes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert meter_classes()["mock"] is MockMeter  # the built-in keeps its name
        assert meter_classes()["mock"] is MockMeter
    (message,) = _own_warnings(caught, "clashing-meters")
    assert message == (
        "meter 'mock' from plugin 'clashing-meters' clashes with greenprec.meters.mock; skipped"
    )


def test_a_workload_name_clash_warns_once_naming_both_plugins() -> None:
    def impostor(ctx: object) -> dict[str, float]:
        return {}

    class Clashing:
        @greenprec.hookimpl
        def greenprec_workloads(self) -> dict[str, object]:
            return {"digits-cnn": impostor}

    plugins.register(Clashing(), name="clashing-workloads")
    from greenprec.workloads import available_workloads

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert available_workloads()["digits-cnn"].source == "greenprec.workloads.digits"
        assert available_workloads()["digits-cnn"].function is not impostor
    (message,) = _own_warnings(caught, "clashing-workloads")
    assert message == (
        "workload 'digits-cnn' from plugin 'clashing-workloads' clashes with "
        "greenprec.workloads.digits; skipped"
    )


def test_tracing_shows_each_hook_call_once() -> None:
    code = (
        "import greenprec\n"
        "from greenprec.meters.registry import meter_classes\n"
        "meter_classes()\n"
        "with greenprec.measure(greenprec.meters.mock.MockMeter()):\n"
        "    pass\n"
    )
    env = {**os.environ, "GREENPREC_TRACE_PLUGINS": "1"}
    traced = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    lines = traced.stderr.splitlines()
    assert sum("greenprec_meters called on" in line for line in lines) == 1
    assert sum("greenprec_measurement_started called on" in line for line in lines) == 1
    assert sum("greenprec_measurement_finished called on" in line for line in lines) == 1
    mock_line = "greenprec: hook greenprec_meters -> greenprec.meters.mock: list of 1: mock"
    assert lines.count(mock_line) == 1


def test_measuring_imports_no_workload_module() -> None:
    code = (
        "import sys, greenprec\n"
        "with greenprec.measure(meter='mock'):\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('greenprec.workloads.')))\n"
        "from greenprec.workloads import available_workloads\n"
        "print(sorted(available_workloads()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"  # no greenprec.workloads.digits (nor any built-in workload module)
    assert "digits-cnn" in out[1]  # asked for, the built-in workloads are there

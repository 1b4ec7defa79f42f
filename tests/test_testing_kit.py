"""greenprec.testing: the meter-contract kit passes every built-in meter (on the fakes the other
tests use), the example plugin, and fails deliberately broken meters with a clear message."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import greenprec
from greenprec import ConfigError, Meter, Probe, Reading
from greenprec.errors import GreenprecError, MeterContractError
from greenprec.meters.energibridge import ENV_EXECUTABLE, EnergiBridgeMeter
from greenprec.meters.estimate import EstimateMeter
from greenprec.meters.mock import MockMeter
from greenprec.meters.nvml import NvmlMeter
from greenprec.meters.rapl import RaplMeter
from greenprec.testing import MeterReport, check_meter

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fake_energibridge import write_fake_energibridge
from fakes.fake_pynvml import FakeGpu, make_pynvml, uuid
from test_rapl import INTEL_RANGE_UJ, FakePowercap, SteadyDraw

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greenprec-board-meter"
LIVE_CHECKS = {
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
}


def passes_everything(report: MeterReport, *, power_only: bool = False) -> None:
    assert report.available, report.reason
    expected = {"attributes", "probe", "unknown option", "option descriptions"} | LIVE_CHECKS
    skipped = {"counters"} if power_only else set()
    assert set(report.passed_names) | skipped >= expected - {"option descriptions"}, str(report)
    assert set(report.skipped_names) <= skipped | {"option descriptions"}, str(report)


# -- the built-in meters ----------------------------------------------------------------------
def test_mock_keeps_the_contract() -> None:
    passes_everything(check_meter(MockMeter))


def test_mock_with_a_power_function_keeps_the_contract() -> None:
    passes_everything(check_meter(MockMeter, options={"power_w": lambda t: 5.0 + t}))


def test_estimate_keeps_the_contract() -> None:
    report = check_meter(EstimateMeter, options={"tdp_w": 40})
    passes_everything(report)
    assert "estimate/cpu" in str(report)


def test_rapl_on_a_fake_powercap_tree_with_a_wrapping_counter(tmp_path: Path) -> None:
    powercap = FakePowercap(tmp_path / "sys")
    # The package wraps about 70 ms into the run: the kit sees the meter correct it.
    powercap.add("intel-rapl:0", "package-0", INTEL_RANGE_UJ - 1_000_000)
    powercap.add("intel-rapl:0:0", "core", 20_000_000)
    powercap.add("intel-rapl:0:1", "dram", 7_000_000)
    powercap.add("intel-rapl:1", "psys", 90_000_000)
    with SteadyDraw(powercap, {"intel-rapl:0": 15.0, "intel-rapl:0:0": 6.0}) as draw:
        report = check_meter(RaplMeter, options={"root": str(powercap.root)})
    passes_everything(report)
    assert draw.advanced_uj["intel-rapl:0"] > 1_000_000  # the counter did wrap
    assert "counted: rapl/package-0, rapl/dram-0" in str(report)


def test_rapl_where_there_is_no_tree_is_skipped_with_the_probes_reason(tmp_path: Path) -> None:
    report = check_meter(RaplMeter, options={"root": str(tmp_path / "nothing")})
    assert not report.available and "RAPL not exposed" in report.reason
    assert {"attributes", "probe", "unknown option", "option descriptions"} == set(
        report.passed_names
    )
    assert set(report.skipped_names) == LIVE_CHECKS
    assert all(report.reason in check.detail for check in report.skipped)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    calls: list[str] = []
    gpus = [FakeGpu(uuid(0), power_w=200.0), FakeGpu(uuid(1), power_w=100.0)]
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus, calls=calls))
    return calls


def test_nvml_on_the_fake_pynvml(fake_nvml: list[str]) -> None:
    passes_everything(check_meter(NvmlMeter))
    assert "init" in fake_nvml


def test_nvml_on_boards_that_report_power_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = [FakeGpu(uuid(0), energy_supported=False)]
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    report = check_meter(NvmlMeter)
    passes_everything(report, power_only=True)
    assert "counters" in report.skipped_names


@pytest.fixture
def fake_energibridge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(ENV_EXECUTABLE, raising=False)
    return write_fake_energibridge(tmp_path, layout="intel")


def test_energibridge_with_the_fake_executable(fake_energibridge: Path) -> None:
    options = {"executable": str(fake_energibridge), "interval_ms": 50, "stop_timeout_s": 3}
    report = check_meter(EnergiBridgeMeter, options=options)
    passes_everything(report)
    assert "energibridge/pp0" not in str(report).split("counted: ")[1]  # not beside the package


def test_energibridge_without_the_executable_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_EXECUTABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    report = check_meter(EnergiBridgeMeter)
    assert not report.available and "no `energibridge` on PATH" in report.reason


# -- the example plugin -----------------------------------------------------------------------
def test_the_example_board_meter_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import greenprec_board_meter

    sensor = tmp_path / "board_power_w"
    sensor.write_text("12.5\n")
    report = check_meter(greenprec_board_meter.BoardMeter, options={"path": str(sensor)})
    passes_everything(report, power_only=True)
    missing = check_meter(greenprec_board_meter.BoardMeter, options={"path": str(tmp_path / "x")})
    assert not missing.available and "load the board driver" in missing.reason


# -- broken meters ----------------------------------------------------------------------------
class _Good(Meter):
    """A correct meter the broken ones below each change in one way."""

    name = "broken"
    description = "a meter for the kit's own tests"
    covers = frozenset({"board"})

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        if options:
            raise ConfigError(f"meter 'broken' takes no option {', '.join(map(repr, options))}")
        return Probe(True, domains=["broken/0"])

    def start(self) -> None:
        self.t0 = time.monotonic()

    def read(self) -> list[Reading]:
        return [Reading("broken/0", energy_j=5.0 * (time.monotonic() - self.t0))]


def broken_rules(cls: type[Meter]) -> str:
    with pytest.raises(MeterContractError) as raised:
        check_meter(cls, run_s=0.15, interval_s=0.03)
    error = raised.value
    assert isinstance(error, GreenprecError)
    assert str(error).startswith("meter 'broken' breaks the meter contract")
    assert error.meter == "broken" and error.problems
    return str(error)


def test_the_good_meter_passes() -> None:
    passes_everything(check_meter(_Good, run_s=0.15, interval_s=0.03))


def test_negative_energy_is_refused() -> None:
    class Negative(_Good):
        def read(self) -> list[Reading]:
            return [Reading("broken/0", energy_j=-1.0)]

    message = broken_rules(Negative)
    assert "readings: broken/0 energy_j = -1.0: energy and power are finite and never" in message


def test_a_counter_going_down_is_refused() -> None:
    class Falling(_Good):
        def read(self) -> list[Reading]:
            return [Reading("broken/0", energy_j=max(0.0, 100.0 - (time.monotonic() - self.t0)))]

    message = broken_rules(Falling)
    assert "counters: broken/0 energy_j went down from" in message
    assert "correct counter wrap-around in the meter" in message


def test_a_probe_that_starts_a_thread_is_refused() -> None:
    release = threading.Event()

    class Spawning(_Good):
        @classmethod
        def probe(cls, **options: Any) -> Probe:
            threading.Thread(target=release.wait, name="board-poller", daemon=True).start()
            return super().probe(**options)

    try:
        message = broken_rules(Spawning)
    finally:
        release.set()
    assert "probe: probe() left 1 thread(s) running: board-poller" in message


def test_a_reading_without_a_domain_is_refused() -> None:
    class Nameless(_Good):
        def read(self) -> list[Reading]:
            return [Reading("", power_w=3.0)]

    message = broken_rules(Nameless)
    assert "readings: read() returned a Reading without a domain ('')" in message


@pytest.mark.slow
def test_a_thread_left_behind_after_stop_is_refused() -> None:
    release = threading.Event()

    class Leaky(_Good):
        def start(self) -> None:
            super().start()
            threading.Thread(target=release.wait, name="board-sampler", daemon=True).start()

    try:
        message = broken_rules(Leaky)
    finally:
        release.set()
    assert "nothing left behind: stop() left 1 thread(s) running: board-sampler" in message


@pytest.mark.slow
def test_a_process_left_behind_after_stop_is_refused() -> None:
    started: list[subprocess.Popen[bytes]] = []

    class Forking(_Good):
        def start(self) -> None:
            super().start()
            started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))

    try:
        message = broken_rules(Forking)
    finally:
        for process in started:
            process.kill()
            process.wait()
    assert "nothing left behind: stop() left 1 process(es) behind: pid" in message
    assert "time.sleep(60)" in message


def test_a_covered_domain_in_the_total_is_refused() -> None:
    class Twice(_Good):
        @classmethod
        def probe(cls, **options: Any) -> Probe:
            super().probe(**options)
            return Probe(True, domains=["broken/package-0", "broken/core-0"])

        def read(self) -> list[Reading]:
            energy_j = 5.0 * (time.monotonic() - self.t0)
            return [
                Reading("broken/package-0", energy_j=energy_j),
                Reading("broken/core-0", energy_j=energy_j / 2),  # inside the package
            ]

    message = broken_rules(Twice)
    assert "in_total: broken/core-0 is inside broken/package-0 yet in the total" in message


def test_a_whole_system_domain_beside_others_is_refused() -> None:
    class System(_Good):
        @classmethod
        def probe(cls, **options: Any) -> Probe:
            super().probe(**options)
            return Probe(True, domains=["broken/system", "broken/gpu-0"])

        def read(self) -> list[Reading]:
            return [Reading("broken/system", power_w=90.0), Reading("broken/gpu-0", power_w=30.0)]

    message = broken_rules(System)
    assert "broken/system (the whole system) is in the total beside broken/gpu-0" in message


def test_unavailable_without_a_reason_and_raising_for_missing_hardware_are_refused() -> None:
    class Silent(_Good):
        @classmethod
        def probe(cls, **options: Any) -> Probe:
            return Probe(False)

    assert "probe: the probe says the meter is unavailable but gives no reason" in (
        broken_rules(Silent)
    )

    class Raising(_Good):
        @classmethod
        def probe(cls, **options: Any) -> Probe:
            raise FileNotFoundError("/dev/board0")

    assert "probe: probe() raised FileNotFoundError: /dev/board0; a meter that cannot run" in (
        broken_rules(Raising)
    )


def test_an_unknown_option_accepted_is_refused() -> None:
    class Lenient(_Good):
        def __init__(self, **options: Any) -> None:
            self.extra = options

        @classmethod
        def probe(cls, **options: Any) -> Probe:
            return Probe(True, domains=["broken/0"])

    message = broken_rules(Lenient)
    assert "unknown option: option 'greenprec_testing_no_such_option' was accepted" in message


def test_missing_name_description_and_a_badly_named_domain_each_get_a_line() -> None:
    class Anonymous(_Good):
        name = ""
        description = ""
        auto = True
        covers = frozenset()

    with pytest.raises(MeterContractError) as raised:
        check_meter(Anonymous, run_s=0.1, interval_s=0.03)
    problems = raised.value.problems
    assert any(p.startswith("attributes: Anonymous.name is not set") for p in problems)
    assert any(p.startswith("attributes: Anonymous.description is not set") for p in problems)
    assert any("joins auto but covers is empty" in p for p in problems)
    # Its readings are "broken/0", not "<name>/<part>".
    assert any(p.startswith("readings: domain 'broken/0' is not named") for p in problems)


def test_a_second_start_that_leaks_is_refused() -> None:
    started: list[threading.Event] = []

    class Restarting(_Good):
        def start(self) -> None:
            super().start()
            stop = threading.Event()
            started.append(stop)
            self._stop = stop
            self._thread = threading.Thread(target=stop.wait, name="sampler", daemon=True)
            self._thread.start()

        def stop(self) -> None:
            if getattr(self, "_thread", None) is not None:
                self._stop.set()
                self._thread.join()

    try:
        message = broken_rules(Restarting)
    finally:
        for event in started:
            event.set()
    assert "second start: one stop() after two start()s left 1 thread(s) running" in message
    assert "lifecycle" not in message  # a single start is fine


def test_bad_arguments_to_the_kit() -> None:
    with pytest.raises(TypeError, match=r"takes a greenprec\.Meter subclass"):
        check_meter(object)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="run_s must be"):
        check_meter(MockMeter, run_s=-1)
    # Options the meter refuses are the caller's mistake, not the meter's.
    with pytest.raises(ConfigError, match="mock power_w must be"):
        check_meter(MockMeter, options={"power_w": "lots"})


def test_the_error_pickles() -> None:
    import pickle

    error = MeterContractError("broken", ["readings: one", "counters: two"])
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.problems == error.problems


def test_import_greenprec_testing_does_not_import_pytest() -> None:
    code = (
        "import sys; import greenprec; assert 'greenprec.testing' not in sys.modules; "
        "import greenprec.testing; print('pytest' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the pytest plugin --------------------------------------------------------------------------
AUTHOR_TESTS = """
import time
import greenprec

class SensorMeter(greenprec.Meter):
    name = "sensor"
    description = "a constant 3 W sensor"
    covers = frozenset({"sensor"})

    def __init__(self, path="/dev/sensor0"):
        self.path = path

    @classmethod
    def probe(cls, **options):
        if options.get("path") == "/nowhere":
            return greenprec.Probe(False, "no /nowhere; plug the sensor in")
        return greenprec.Probe(True, domains=["sensor/0"])

    def read(self):
        return [greenprec.Reading("sensor/0", power_w=3.0)]


class NegativeMeter(SensorMeter):
    def read(self):
        return [greenprec.Reading("sensor/0", power_w=-3.0)]


def test_sensor(meter_contract):
    report = meter_contract(SensorMeter, run_s=0.1)
    assert "measure" in report.passed_names


def test_negative(meter_contract):
    meter_contract(NegativeMeter, run_s=0.1)


def test_unplugged(meter_contract):
    meter_contract(SensorMeter, options={"path": "/nowhere"})
"""


@pytest.fixture
def author_project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    pytester.makepyfile(test_sensor_meter=AUTHOR_TESTS)
    yield pytester


@pytest.mark.slow
def test_pytest_plugin_gives_plugin_authors_the_fixture(author_project: pytest.Pytester) -> None:
    result = author_project.runpytest_subprocess("-p", "greenprec.testing", "-rs")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*meter 'sensor' breaks the meter contract (1 rule):",
            "*readings: sensor/0 power_w = -3.0: energy and power are finite and never negative",
            "*SKIPPED*meter 'sensor' is unavailable here*no /nowhere; plug the sensor in",
        ]
    )


@pytest.mark.slow
def test_without_the_plugin_the_fixture_is_missing(author_project: pytest.Pytester) -> None:
    result = author_project.runpytest_subprocess()
    result.stdout.fnmatch_lines(["*fixture 'meter_contract' not found*"])


def test_measure_still_works_beside_the_kit() -> None:
    # The kit drives meters with measure() too; a plain measure() afterwards is unaffected.
    check_meter(MockMeter, run_s=0.05)
    with greenprec.measure("mock", interval=0.05) as m:
        time.sleep(0.05)
    assert m.energy_j > 0

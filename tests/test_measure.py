"""measure(): results, lifecycle forms, concurrency and hooks, through the public API."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest

import greenprec
from greenprec import Meter, Reading


class RampPowerMeter(Meter):
    """A power meter whose power rises linearly: 10 W + 20 W/s * t. Trapezoid is exact."""

    name = "ramp"

    def start(self) -> None:
        self.t0 = time.monotonic()

    def read(self) -> list[Reading]:
        t = time.monotonic() - self.t0
        return [Reading("ramp/board", power_w=10.0 + 20.0 * t)]


class PartsMeter(Meter):
    """A counter meter with a part that is inside another (must not be added)."""

    name = "parts"

    def start(self) -> None:
        self.t0 = time.monotonic()

    def read(self) -> list[Reading]:
        t = time.monotonic() - self.t0
        return [
            Reading("parts/package-0", energy_j=50.0 * t),
            Reading("parts/core-0", energy_j=30.0 * t, in_total=False),
        ]


class FailingMeter(Meter):
    name = "failing"

    def start(self) -> None:
        self.reads = 0

    def read(self) -> list[Reading]:
        self.reads += 1
        if self.reads > 1:
            raise OSError("driver went away")
        return [Reading("failing/x", energy_j=0.0)]


def test_mock_one_second_at_100_w_gives_100_j() -> None:
    with greenprec.measure("mock") as m:
        time.sleep(1.0)
    assert m.duration_s >= 1.0
    # The mock integrates over the window's own clock stamps, so this is exact.
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, rel=1e-9)
    assert m.energy_j == pytest.approx(100.0, rel=0.05)
    assert m.mean_power_w == pytest.approx(100.0, rel=1e-9)
    assert m.domains == {"mock/cpu": pytest.approx(m.energy_j)}
    assert m.meter == "mock" and m.meters == ["mock"]
    assert m.estimated is False
    assert m.started_at.tzinfo is not None and m.ended_at > m.started_at


def test_mock_power_option_and_callable() -> None:
    with greenprec.measure("mock", meter_options={"power_w": "42"}) as m:
        time.sleep(0.3)
    assert m.mean_power_w == pytest.approx(42.0, rel=1e-9)

    with greenprec.measure("mock", meter_options={"power_w": lambda t: 2.0 * t}) as m:
        time.sleep(0.5)
    # ∫0..T 2t dt = T²
    assert m.energy_j == pytest.approx(m.duration_s**2, rel=0.02)


def test_samples_frame_is_cumulative_since_entry() -> None:
    with greenprec.measure("mock", interval=0.05) as m:
        time.sleep(0.3)
    samples = m.samples
    assert list(samples.columns) == ["t_s", "domain", "power_w", "energy_j"]
    assert samples["t_s"].iloc[0] == 0.0 and samples["energy_j"].iloc[0] == 0.0
    assert samples["energy_j"].is_monotonic_increasing
    assert samples["t_s"].iloc[-1] == pytest.approx(m.duration_s)
    assert samples["energy_j"].iloc[-1] == pytest.approx(m.energy_j)
    assert len(samples) >= 4
    assert samples["power_w"].iloc[1:].mean() == pytest.approx(100.0, rel=0.01)


def test_power_meter_is_integrated_with_trapezoids_from_entry_to_exit() -> None:
    with greenprec.measure(RampPowerMeter(), interval=0.02) as m:
        time.sleep(0.4)
    t = m.duration_s
    assert m.energy_j == pytest.approx(10.0 * t + 10.0 * t**2, rel=0.01)


def test_parts_inside_another_domain_are_reported_but_not_added() -> None:
    with greenprec.measure(PartsMeter()) as m:
        time.sleep(0.2)
    assert set(m.domains) == {"parts/package-0", "parts/core-0"}
    assert m.counted_domains == ["parts/package-0"]
    assert m.energy_j == pytest.approx(m.domains["parts/package-0"])
    assert m.domains["parts/core-0"] > 0


def test_reading_results_inside_the_block_is_a_clear_error() -> None:
    with greenprec.measure("mock") as m:
        with pytest.raises(greenprec.MeasurementNotFinished, match="after the `with` block"):
            _ = m.energy_j
        assert m.running
    assert not m.running


def test_exception_in_block_propagates_unchanged_and_stops_the_meter() -> None:
    class Boom(Exception):
        pass

    measurement = greenprec.measure("mock", interval=0.01)
    with pytest.raises(Boom, match="inside"), measurement:
        raise Boom("inside")
    assert measurement.energy_j >= 0
    thread_names = [thread.name for thread in threading.enumerate()]
    assert not any(name.startswith("greenprec-sampler") for name in thread_names)


def test_decorator_measures_every_call() -> None:
    @greenprec.measure("mock", meter_options={"power_w": 10})
    def work(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    assert work(0.2) == "done"
    first = work.measurement  # type: ignore[attr-defined]
    assert first.duration_s >= 0.2
    assert first.energy_j == pytest.approx(10.0 * first.duration_s, rel=1e-9)
    work(0.1)
    assert work.measurement is not first  # type: ignore[attr-defined]


def test_start_stop_form_for_callbacks() -> None:
    m = greenprec.measure("mock").start()
    time.sleep(0.2)
    assert m.stop() is m
    assert m.duration_s >= 0.2
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, rel=1e-9)
    with pytest.raises(greenprec.ConfigError):
        m.start()
    with pytest.raises(greenprec.ConfigError):
        m.stop()


def test_nested_and_concurrent_measurements_are_independent() -> None:
    results: dict[str, tuple[float, float]] = {}

    def worker(name: str, seconds: float) -> None:
        with greenprec.measure("mock", interval=0.01) as m:
            time.sleep(seconds)
        results[name] = (m.energy_j, m.duration_s)

    with greenprec.measure("mock") as outer:
        threads = [threading.Thread(target=worker, args=(f"t{i}", 0.1 * (i + 1))) for i in range(2)]
        for thread in threads:
            thread.start()
        with greenprec.measure("mock") as inner:
            time.sleep(0.1)
        for thread in threads:
            thread.join()
    assert outer.duration_s > inner.duration_s > 0.1
    assert outer.energy_j == pytest.approx(100.0 * outer.duration_s, rel=1e-9)
    assert inner.energy_j == pytest.approx(100.0 * inner.duration_s, rel=1e-9)
    for energy_j, duration_s in results.values():
        assert energy_j == pytest.approx(100.0 * duration_s, rel=1e-9)
    assert sorted(results) == ["t0", "t1"]


def test_several_meters_add_their_counted_domains() -> None:
    with greenprec.measure(["mock", "estimate"]) as m:
        time.sleep(0.1)
    assert m.meter == "mock+estimate"
    assert m.estimated is True
    assert m.energy_j == pytest.approx(m.domains["mock/cpu"] + m.domains["estimate/cpu"])


def test_meter_failure_mid_block_is_an_error_not_a_silent_zero() -> None:
    with (
        pytest.raises(greenprec.MeterError, match="driver went away"),
        greenprec.measure(FailingMeter(), interval=0.01),
    ):
        time.sleep(0.05)


def test_to_dict_and_json_are_serialisable() -> None:
    with greenprec.measure("mock") as m:
        pass
    data = m.to_dict()
    assert {"energy_j", "duration_s", "mean_power_w", "domains", "meter", "estimated"} <= set(data)
    assert '"energy_j"' in m.to_json()
    assert "J" in repr(m)


@pytest.mark.parametrize("interval", [0, -1, math.inf, "fast"])
def test_bad_interval_is_a_config_error(interval: Any) -> None:
    with pytest.raises(greenprec.ConfigError, match="interval"):
        greenprec.measure("mock", interval=interval)


def test_unknown_meter_and_bad_option_are_config_errors() -> None:
    with pytest.raises(greenprec.ConfigError, match=r"unknown meter 'nope'.*mock"):
        greenprec.measure("nope").start()
    with pytest.raises(greenprec.ConfigError, match=r"meter 'mock' takes no option 'colour'"):
        greenprec.measure("mock", meter_options={"colour": "green"}).start()
    with pytest.raises(greenprec.ConfigError, match="number of watts"):
        greenprec.measure("mock", meter_options={"power_w": "lots"}).start()


def test_auto_never_picks_mock_and_falls_back_to_the_estimate_with_a_warning() -> None:
    # No powercap here and nothing else registered: the estimate, with one warning line.
    with (
        pytest.warns(greenprec.GreenprecWarning, match="estimate"),
        greenprec.measure(meter_options={"rapl.root": "/nonexistent-powercap"}) as m,
    ):
        sum(range(100_000))
    assert m.meter == "estimate" and m.estimated


def test_hooks_see_every_measurement_and_a_raising_observer_breaks_nothing() -> None:
    seen: list[tuple[str, Any]] = []

    class Observer:
        @greenprec.hookimpl
        def greenprec_measurement_started(self, measurement: greenprec.Measurement) -> None:
            seen.append(("started", measurement.running))

        @greenprec.hookimpl
        def greenprec_measurement_finished(self, measurement: greenprec.Measurement) -> None:
            seen.append(("finished", measurement.energy_j))

    class Broken:
        @greenprec.hookimpl
        def greenprec_measurement_finished(self, measurement: greenprec.Measurement) -> None:
            raise RuntimeError("observer bug")

    greenprec.plugins.register(Observer(), name="observer")
    greenprec.plugins.register(Broken(), name="broken-observer")
    with pytest.warns(greenprec.GreenprecWarning, match=r"broken-observer.*observer bug"):
        with greenprec.measure("mock") as m:
            pass
        with greenprec.measure("mock"):
            pass
    assert seen[0] == ("started", True)
    assert seen[1] == ("finished", m.energy_j)
    assert len(seen) == 4
    assert "broken-observer" in greenprec.plugins.plugin_errors

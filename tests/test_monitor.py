"""greenprec.Monitor: one set of meters and one sampler, many named and overlapping windows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import greenprec
from greenprec import ConfigError, MeterError
from test_rapl import FakePowercap, intel_single

PACKAGE, CORE, DRAM = "intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:2"


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercap:
    return intel_single(FakePowercap(tmp_path))


def rapl_monitor(powercap: FakePowercap) -> greenprec.Monitor:
    return greenprec.Monitor(
        meter="rapl", meter_options={"root": str(powercap.root)}, interval=0.02, sync=None
    )


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("greenprec-sampler-")]


def test_windows_sharing_an_edge_add_up_exactly_with_a_counter(powercap: FakePowercap) -> None:
    with rapl_monitor(powercap) as monitor:
        start = monitor.edge()
        monitor.begin_window("whole", at=start)
        monitor.begin_window("first", at=start)
        powercap.advance({PACKAGE: 1_500_000, CORE: 400_000, DRAM: 250_000})
        time.sleep(0.05)  # the sampler reads in between; a window's figures do not change
        middle = monitor.edge()
        first = monitor.end_window("first", at=middle)
        monitor.begin_window("second", at=middle)
        powercap.advance({PACKAGE: 2_000_000, DRAM: 500_000})
        end = monitor.edge()
        second = monitor.end_window("second", at=end)
        whole = monitor.end_window("whole", at=end)
    assert first.energy_j == pytest.approx(1.75, abs=1e-9)
    assert second.energy_j == pytest.approx(2.5, abs=1e-9)
    assert whole.energy_j == pytest.approx(first.energy_j + second.energy_j, abs=1e-9)
    for domain, energy_j in whole.domains.items():
        assert energy_j == pytest.approx(first.domains[domain] + second.domains[domain], abs=1e-9)
    assert whole.duration_s == pytest.approx(first.duration_s + second.duration_s, abs=1e-9)
    # RAPL's core is inside its package: reported, not added to the total.
    assert first.domains["rapl/core-0"] == pytest.approx(0.4, abs=1e-9)
    assert "rapl/core-0" not in first.counted_domains
    assert whole.meter == "rapl" and not whole.estimated


def test_nested_and_overlapping_windows_each_see_their_own_edges(
    powercap: FakePowercap,
) -> None:
    with rapl_monitor(powercap) as monitor:
        monitor.begin_window("outer")
        powercap.advance({PACKAGE: 1_000_000})
        monitor.begin_window("a")
        powercap.advance({PACKAGE: 2_000_000})
        monitor.begin_window("b")  # overlaps a: begins inside it, ends after it
        powercap.advance({PACKAGE: 3_000_000})
        a = monitor.end_window("a")
        powercap.advance({PACKAGE: 4_000_000})
        b = monitor.end_window("b")
        powercap.advance({PACKAGE: 5_000_000})
        outer = monitor.end_window("outer")
        assert monitor.open_windows == []
    assert a.energy_j == pytest.approx(5.0, abs=1e-9)
    assert b.energy_j == pytest.approx(7.0, abs=1e-9)
    assert outer.energy_j == pytest.approx(15.0, abs=1e-9)
    # The monitor's own life is one measurement holding every window.
    assert monitor.measurement.energy_j == pytest.approx(15.0, abs=1e-9)
    assert 0 < a.duration_s < outer.duration_s <= monitor.measurement.duration_s


def test_epoch_windows_inside_a_run_window() -> None:
    epochs = []
    with greenprec.Monitor(meter="mock", interval=0.01, sync=None) as monitor:
        monitor.begin_window("run")
        time.sleep(0.02)  # set-up before the first epoch
        for epoch in range(3):
            monitor.begin_window(f"epoch-{epoch}")
            time.sleep(0.03)
            epochs.append(monitor.end_window(f"epoch-{epoch}"))
        run = monitor.end_window("run")
    for window in [*epochs, run]:
        # The mock draws 100 W on the clock of the readings: every window is exact.
        assert window.mean_power_w == pytest.approx(100.0, rel=1e-9)
        assert window.domains == {"mock/cpu": pytest.approx(window.energy_j)}
        assert window.meter == "mock" and window.counted_domains == ["mock/cpu"]
    assert [w.name for w in epochs] == ["epoch-0", "epoch-1", "epoch-2"]
    assert all(w.duration_s >= 0.03 for w in epochs)
    outside_j = run.energy_j - sum(w.energy_j for w in epochs)
    assert outside_j >= 100.0 * 0.02
    assert epochs[0].started_at >= run.started_at and epochs[-1].ended_at <= run.ended_at
    assert run.to_dict()["name"] == "run"


def test_duplicate_and_unknown_windows_are_refused() -> None:
    with greenprec.Monitor(meter="mock", interval=0.05, sync=None) as monitor:
        monitor.begin_window("epoch")
        with pytest.raises(ConfigError, match="already open") as duplicate:
            monitor.begin_window("epoch")
        with pytest.raises(ConfigError, match="no open window 'nope'") as unknown:
            monitor.end_window("nope")
        for error in (duplicate.value, unknown.value):
            assert "\n" not in str(error)
        monitor.end_window("epoch")
        with pytest.raises(ConfigError, match="no open window 'epoch'"):
            monitor.end_window("epoch")  # ended already
        monitor.begin_window("epoch")  # the name is free again
        assert monitor.discard_window("epoch") and not monitor.is_open("epoch")
    with pytest.raises(ConfigError, match="not open"):
        monitor.begin_window("late")
    with pytest.raises(ConfigError, match="already opened"):
        monitor.open()


def test_an_edge_of_another_monitor_is_refused() -> None:
    with (
        greenprec.Monitor(meter="mock", sync=None) as one,
        greenprec.Monitor(meter="mock", sync=None) as other,
    ):
        one.begin_window("w")
        with pytest.raises(ConfigError, match="Edge of this open monitor"):
            one.end_window("w", at=other.edge())


def test_one_sampler_and_no_thread_per_window() -> None:
    syncs: list[float] = []
    before = threading.active_count()
    with greenprec.Monitor(
        meter="mock", interval=0.01, sync=lambda: syncs.append(time.monotonic())
    ) as monitor:
        assert len(samplers()) == 1
        opened = threading.active_count()
        assert opened == before + 1
        monitor.begin_window("run")
        for index in range(50):
            monitor.begin_window(f"w{index}")
            window = monitor.end_window(f"w{index}")
            assert window.mean_power_w == pytest.approx(100.0, rel=1e-9)
            assert threading.active_count() == opened
        monitor.end_window("run")
    assert not samplers() and threading.active_count() == before
    # The sync runs at both edges of every window, and at the monitor's own two.
    assert len(syncs) == 2 * 51 + 2


# The mock integrates its power function with scipy's quad, which warns at the NaN on purpose.
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_a_failing_meter_fails_the_window_and_the_monitor_stops_cleanly() -> None:
    def power(t_s: float) -> float:
        return 50.0 if t_s < 0.1 else float("nan")  # a sensor that breaks after 0.1 s

    monitor = greenprec.Monitor(
        meter="mock", meter_options={"power_w": power}, interval=0.02, sync=None
    ).open()
    monitor.begin_window("epoch")
    time.sleep(0.2)
    with pytest.raises(MeterError, match="mock"):
        monitor.end_window("epoch")
    with pytest.raises(MeterError):
        monitor.close()
    assert not samplers() and not monitor.running

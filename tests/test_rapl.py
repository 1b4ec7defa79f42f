"""The rapl meter against fake powercap trees built in tmp_path (no machine here has RAPL)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenprec
from greenprec import ConfigError, MeterError, MeterUnavailable
from greenprec.meters.rapl import EXCERPT_CHARS, MAX_ATTRIBUTE_BYTES, RaplMeter, read_sysfs
from greenprec.meters.registry import meter_classes

INTEL_RANGE_UJ = 262_143_328_850  # 32-bit counter of 61 µJ units: ~15 min at 300 W
AMD_RANGE_UJ = 65_532_610_987  # 32-bit counter of 15.3 µJ units: ~3.6 min at 300 W


class FakePowercap:
    """A powercap tree laid out like the kernel's.

    Zones are real directories under ``devices/virtual/powercap/<control>/``, nested as the
    kernel nests them; ``class/powercap`` holds a symlink to every zone and control type, as
    ``/sys/class/powercap`` does. Counters wrap at ``max_energy_range_uj``.
    """

    def __init__(self, base: Path) -> None:
        self.devices = base / "devices" / "virtual" / "powercap"
        self.root = base / "class" / "powercap"
        self.root.mkdir(parents=True)
        self.paths: dict[str, Path] = {}
        self.ranges: dict[str, int] = {}

    def add(
        self,
        zone_id: str,
        name: str,
        energy_uj: int = 1_000_000,
        max_range_uj: int = INTEL_RANGE_UJ,
    ) -> None:
        control, _colon, indices = zone_id.partition(":")
        control_dir = self.devices / control
        if not control_dir.exists():
            control_dir.mkdir(parents=True)
            (control_dir / "enabled").write_text("1\n")
            (self.root / control).symlink_to(control_dir)
        parent_indices = indices.rsplit(":", 1)[0] if ":" in indices else None
        parent = self.paths[f"{control}:{parent_indices}"] if parent_indices else control_dir
        zone = parent / zone_id
        zone.mkdir()
        (zone / "name").write_text(f"{name}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (zone / "enabled").write_text("1\n")
        self.paths[zone_id] = zone
        self.ranges[zone_id] = max_range_uj
        self.set(zone_id, energy_uj)
        (self.root / zone_id).symlink_to(zone)

    def set(self, zone_id: str, energy_uj: int) -> None:
        # Replace, never rewrite in place: a sampler thread must not see a half-written file.
        temporary = self.paths[zone_id] / ".energy_uj.tmp"
        temporary.write_text(f"{energy_uj}\n")
        os.replace(temporary, self.paths[zone_id] / "energy_uj")

    def energy(self, zone_id: str) -> int:
        return int((self.paths[zone_id] / "energy_uj").read_text())

    def advance(self, deltas_uj: Mapping[str, int]) -> None:
        for zone_id, delta in deltas_uj.items():
            self.set(zone_id, (self.energy(zone_id) + delta) % self.ranges[zone_id])


class SteadyDraw:
    """Advances fake counters as RAPL does: a fixed energy per update, updates >= 1 ms apart.

    The meter judges a wrap by the power of the steps around it, so a test that wraps a counter
    mid-block must draw power like a CPU, not jump. At most 20 W per zone, a step can never look
    implausible (counters.PLAUSIBLE_SLACK_W), whatever the threads' timing.
    """

    UPDATE_S = 0.001

    def __init__(self, powercap: FakePowercap, powers_w: Mapping[str, float]) -> None:
        assert all(power_w <= 18.0 for power_w in powers_w.values())
        self.powercap = powercap
        self.update_uj = {zone: round(w * self.UPDATE_S * 1e6) for zone, w in powers_w.items()}
        self.advanced_uj = dict.fromkeys(powers_w, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(self.UPDATE_S):
            self.powercap.advance(self.update_uj)
            for zone, update_uj in self.update_uj.items():
                self.advanced_uj[zone] += update_uj

    def __enter__(self) -> SteadyDraw:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def until(self, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "the fake counters never got there"
            time.sleep(0.005)


class FakeClock:
    """The meter's clock, moved by the test: counter steps get the durations the test says."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything measure() writes lands in tmp_path


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercap:
    return FakePowercap(tmp_path / "sys")


def intel_single(pc: FakePowercap) -> FakePowercap:
    """A laptop/desktop Intel part: package with core, uncore (iGPU), dram, and psys."""
    pc.add("intel-rapl:0", "package-0", 50_000_000)
    pc.add("intel-rapl:0:0", "core", 20_000_000)
    pc.add("intel-rapl:0:1", "uncore", 3_000_000)
    pc.add("intel-rapl:0:2", "dram", 7_000_000)
    pc.add("intel-rapl:1", "psys", 90_000_000)
    return pc


def intel_dual(pc: FakePowercap) -> FakePowercap:
    """A two-socket Xeon: each package with its DRAM (servers have no core/uncore zones)."""
    pc.add("intel-rapl:0", "package-0", 11_000_000)
    pc.add("intel-rapl:0:0", "dram", 12_000_000)
    pc.add("intel-rapl:1", "package-1", 13_000_000)
    pc.add("intel-rapl:1:0", "dram", 14_000_000)
    return pc


def amd(pc: FakePowercap) -> FakePowercap:
    """AMD Zen (Linux 5.11+): intel-rapl naming, package + core, no DRAM, 32-bit counters."""
    pc.add("intel-rapl:0", "package-0", AMD_RANGE_UJ - 2_000_000, AMD_RANGE_UJ)
    pc.add("intel-rapl:0:0", "core", 5_000_000, AMD_RANGE_UJ)
    return pc


def measure_rapl(root: Path | str, **options: object) -> greenprec.Measurement:
    return greenprec.measure(
        meter="rapl", meter_options={"root": str(root), **options}, interval=0.02
    )


def denied(path: str) -> str:
    if path.endswith("energy_uj") and "max_energy" not in path:
        raise PermissionError(errno.EACCES, "Permission denied", path)
    with open(path) as file:
        return file.read()


# -- registration and probing --------------------------------------------------------------
def test_rapl_is_registered_with_its_contract() -> None:
    cls = meter_classes()["rapl"]
    assert cls is RaplMeter
    assert (cls.estimated, cls.auto, cls.auto_order) == (False, True, 10)
    assert cls.covers == frozenset({"cpu", "dram"})
    assert cls.description


def test_probe_lists_intel_domains(powercap: FakePowercap) -> None:
    probe = RaplMeter.probe(root=str(intel_single(powercap).root))
    assert probe.available, probe.reason
    assert probe.domains == [
        "rapl/package-0",
        "rapl/core-0",
        "rapl/uncore-0",
        "rapl/dram-0",
        "rapl/psys",
    ]


def test_missing_root_gives_a_reason_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-powercap"
    probe = RaplMeter.probe(root=str(missing))
    assert not probe.available
    assert f"no {missing}" in probe.reason
    assert "estimate meter" in probe.reason
    with pytest.raises(MeterUnavailable, match="not Linux, or RAPL not exposed"):
        measure_rapl(missing).start()


def test_root_without_zones_gives_a_reason(powercap: FakePowercap) -> None:
    probe = RaplMeter.probe(root=str(powercap.root))
    assert not probe.available
    assert "no RAPL zones" in probe.reason and "modprobe intel_rapl_msr" in probe.reason


def test_masked_zones_in_a_container_give_a_reason(powercap: FakePowercap, tmp_path: Path) -> None:
    (powercap.root / "intel-rapl:0").symlink_to(tmp_path / "masked" / "intel-rapl:0")
    probe = RaplMeter.probe(root=str(powercap.root))
    assert not probe.available
    assert "container" in probe.reason and "root=" in probe.reason


def test_permission_denied_says_why_and_how_to_fix(powercap: FakePowercap) -> None:
    intel_single(powercap)
    probe = RaplMeter.probe(root=str(powercap.root), reader=denied)
    assert not probe.available
    assert "permission denied" in probe.reason
    assert f"{powercap.root}/intel-rapl:0/energy_uj" in probe.reason
    assert "CVE-2020-8694" in probe.reason
    assert f"sudo chmod a+r {powercap.root}/intel-rapl:*/energy_uj" in probe.reason
    assert "udev" in probe.reason


def test_measure_on_an_unreadable_tree_raises_meter_unavailable(powercap: FakePowercap) -> None:
    intel_single(powercap)
    with (
        pytest.raises(MeterUnavailable, match=r"permission denied.*chmod"),
        measure_rapl(powercap.root, reader=denied),
    ):
        pass


def test_start_and_read_raise_when_reading_fails(powercap: FakePowercap) -> None:
    intel_single(powercap)
    with pytest.raises(MeterUnavailable, match="permission denied"):
        RaplMeter(root=powercap.root, reader=denied).start()

    failing = False

    def flaky(path: str) -> str:
        if failing and path.endswith("/energy_uj"):
            raise OSError(errno.ENODATA, "No data available", path)
        with open(path) as file:
            return file.read()

    meter = RaplMeter(root=powercap.root, reader=flaky)
    meter.start()
    failing = True
    with pytest.raises(MeterError, match=r"cannot read .*energy_uj: No data available"):
        meter.read()
    meter.stop()


def test_a_read_failure_inside_a_block_is_reported_not_zeroed(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    broken = False

    def breaks(path: str) -> str:
        if broken and path.endswith("/energy_uj"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        with open(path) as file:
            return file.read()

    with (
        pytest.raises(MeterError, match="permission denied"),
        measure_rapl(powercap.root, reader=breaks),
    ):
        broken = True  # the next read, a tick or the exit, fails
        time.sleep(0.03)


def test_garbage_in_a_counter_is_a_reason_not_a_zero(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    (powercap.paths["intel-rapl:1"] / "energy_uj").write_text("\n")
    probe = RaplMeter.probe(root=str(powercap.root))
    assert not probe.available
    assert "unexpected content" in probe.reason and "intel-rapl:1/energy_uj" in probe.reason


# -- options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[("true", True), ("Yes", True), ("1", True), (True, True), (1, True)],
        *[("false", False), ("no", False), ("0", False), (" FALSE ", False), (False, False)],
    ],
)
def test_prefer_psys_accepts_cli_strings(text: str | bool | int, expected: bool) -> None:
    assert RaplMeter(prefer_psys=text).prefer_psys is expected


@pytest.mark.parametrize("bad", ["maybe", "", 2])
def test_bad_prefer_psys_is_a_config_error(bad: str | int) -> None:
    with pytest.raises(ConfigError, match="prefer_psys must be true or false"):
        RaplMeter(prefer_psys=bad)


def test_bad_options_reach_the_user_as_one_line(powercap: FakePowercap) -> None:
    intel_single(powercap)
    with pytest.raises(greenprec.GreenprecError, match="prefer_psys must be true or false"):
        measure_rapl(powercap.root, prefer_psys="maybe").start()
    with pytest.raises(ConfigError, match="root must be a directory path"):
        RaplMeter(root="")
    with pytest.raises(ConfigError, match="reader must be a callable"):
        RaplMeter(reader="cat")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="clock must be a callable returning seconds"):
        RaplMeter(clock=0.0)  # type: ignore[arg-type]


# -- totals --------------------------------------------------------------------------------
def test_total_is_packages_plus_dram_never_core_uncore_or_psys(powercap: FakePowercap) -> None:
    intel_single(powercap)
    with measure_rapl(powercap.root) as m:
        powercap.advance(
            {
                "intel-rapl:0": 5_000_000,
                "intel-rapl:0:0": 3_000_000,
                "intel-rapl:0:1": 1_000_000,
                "intel-rapl:0:2": 2_000_000,
                "intel-rapl:1": 9_000_000,
            }
        )
    assert m.energy_j == pytest.approx(7.0)
    assert m.counted_domains == ["rapl/package-0", "rapl/dram-0"]
    assert m.domains == pytest.approx(
        {
            "rapl/package-0": 5.0,
            "rapl/core-0": 3.0,
            "rapl/uncore-0": 1.0,
            "rapl/dram-0": 2.0,
            "rapl/psys": 9.0,
        }
    )
    assert not m.estimated and m.meter == "rapl"


def test_prefer_psys_counts_psys_alone(powercap: FakePowercap) -> None:
    intel_single(powercap)
    with measure_rapl(powercap.root, prefer_psys="true") as m:
        powercap.advance({"intel-rapl:0": 5_000_000, "intel-rapl:0:2": 2_000_000})
        powercap.advance({"intel-rapl:1": 9_500_000})
    assert m.energy_j == pytest.approx(9.5)
    assert m.counted_domains == ["rapl/psys"]
    assert m.domains["rapl/package-0"] == pytest.approx(5.0)


def test_prefer_psys_without_psys_is_refused(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    probe = RaplMeter.probe(root=str(powercap.root), prefer_psys="yes")
    assert not probe.available
    assert "no psys zone" in probe.reason and "drop prefer_psys" in probe.reason
    with pytest.raises(MeterUnavailable, match="no psys zone"):
        measure_rapl(powercap.root, prefer_psys=True).start()
    with pytest.raises(ConfigError, match="no psys zone"):
        RaplMeter(root=powercap.root, prefer_psys=True).start()


def test_dual_socket_adds_both_packages_and_both_drams(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    assert RaplMeter.probe(root=str(powercap.root)).domains == [
        "rapl/package-0",
        "rapl/dram-0",
        "rapl/package-1",
        "rapl/dram-1",
    ]
    with measure_rapl(powercap.root) as m:
        powercap.advance(
            {
                "intel-rapl:0": 40_000_000,
                "intel-rapl:0:0": 6_000_000,
                "intel-rapl:1": 30_000_000,
                "intel-rapl:1:0": 4_000_000,
            }
        )
    assert m.energy_j == pytest.approx(80.0)
    assert m.domains["rapl/dram-1"] == pytest.approx(4.0)
    assert len(m.counted_domains) == 4


def test_nested_devices_layout_reads_the_same_zones(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    flat = RaplMeter.probe(root=str(powercap.root))
    nested = RaplMeter.probe(root=str(powercap.devices))
    assert nested.available and nested.domains == flat.domains


def test_amd_package_wraps_and_core_is_not_added(powercap: FakePowercap) -> None:
    amd(powercap)
    assert RaplMeter.probe(root=str(powercap.root)).domains == ["rapl/package-0", "rapl/core-0"]
    package = "intel-rapl:0"
    with (
        measure_rapl(powercap.root) as m,
        SteadyDraw(powercap, {package: 15.0, "intel-rapl:0:0": 6.0}) as draw,
    ):
        # The package counter sits 2 J below its 32-bit limit: 15 W wraps it within 0.2 s.
        draw.until(lambda: powercap.energy(package) < 1_000_000)
    assert draw.advanced_uj[package] > 2_000_000  # it did wrap
    assert m.domains["rapl/package-0"] == pytest.approx(draw.advanced_uj[package] / 1e6)
    assert m.energy_j == pytest.approx(draw.advanced_uj[package] / 1e6)
    assert m.counted_domains == ["rapl/package-0"]
    assert m.domains["rapl/core-0"] == pytest.approx(draw.advanced_uj["intel-rapl:0:0"] / 1e6)


def test_mmio_twins_are_not_counted_twice(powercap: FakePowercap) -> None:
    intel_single(powercap)
    powercap.add("intel-rapl-mmio:0", "package-0", 50_000_000)
    domains = RaplMeter.probe(root=str(powercap.root)).domains
    assert len(domains) == 5 and not any("mmio" in domain for domain in domains)
    with measure_rapl(powercap.root) as m:
        powercap.advance({"intel-rapl:0": 6_000_000, "intel-rapl-mmio:0": 6_000_000})
    assert m.energy_j == pytest.approx(6.0)
    assert m.counted_domains == ["rapl/package-0", "rapl/dram-0"]
    assert len(m.domains) == 5


def test_mmio_zone_without_msr_twin_is_used(powercap: FakePowercap) -> None:
    powercap.add("intel-rapl-mmio:0", "package-0", 8_000_000)
    with measure_rapl(powercap.root) as m:
        powercap.advance({"intel-rapl-mmio:0": 4_000_000})
    assert m.energy_j == pytest.approx(4.0)
    assert m.counted_domains == ["rapl/package-0"]


def test_mirrored_die_zones_count_once(powercap: FakePowercap) -> None:
    # Some multi-die parts report the package counter in every die zone.
    powercap.add("intel-rapl:0", "package-0-die-0", 77_000_000)
    powercap.add("intel-rapl:1", "package-0-die-1", 77_000_000)
    powercap.add("intel-rapl:1:0", "dram", 5_000_000)
    with measure_rapl(powercap.root) as m:
        powercap.advance({"intel-rapl:0": 10_000_000, "intel-rapl:1": 10_000_000})
        powercap.advance({"intel-rapl:1:0": 1_000_000})
    assert m.energy_j == pytest.approx(11.0)
    assert m.counted_domains == ["rapl/package-0-die-0", "rapl/dram-0-die-1"]
    assert m.domains["rapl/package-0-die-1"] == pytest.approx(10.0)


def test_distinct_die_zones_are_both_counted(powercap: FakePowercap) -> None:
    powercap.add("intel-rapl:0", "package-0-die-0", 77_000_000)
    powercap.add("intel-rapl:1", "package-0-die-1", 41_000_000)
    with measure_rapl(powercap.root) as m:
        powercap.advance({"intel-rapl:0": 10_000_000, "intel-rapl:1": 7_000_000})
    assert m.energy_j == pytest.approx(17.0)


def test_mirror_check_tolerates_a_counter_tick_between_reads(powercap: FakePowercap) -> None:
    powercap.add("intel-rapl:0", "package-0-die-0", 77_000_000)
    powercap.add("intel-rapl:1", "package-0-die-1", 77_000_000)
    first_read = True

    def ticks_once(path: str) -> str:
        # The shared counter moves right after die 0's first read, before die 1 is read.
        nonlocal first_read
        with open(path) as file:
            text = file.read()
        if first_read and path.endswith("intel-rapl:0/energy_uj"):
            first_read = False
            powercap.advance({"intel-rapl:0": 61, "intel-rapl:1": 61})
        return text

    meter = RaplMeter(root=powercap.root, reader=ticks_once)
    meter.start()
    powercap.advance({"intel-rapl:0": 2_000_000, "intel-rapl:1": 2_000_000})
    counted = sum(r.energy_j or 0.0 for r in meter.read() if r.in_total)
    assert counted == pytest.approx(2.0)


def test_auto_picks_rapl_when_it_is_readable(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    with greenprec.measure(meter_options={"root": str(powercap.root)}, interval=0.02) as m:
        powercap.advance({"intel-rapl:0": 1_000_000})
    assert "rapl" in m.meters and not m.estimated
    assert m.domains["rapl/package-0"] == pytest.approx(1.0)


# -- wrap-around ---------------------------------------------------------------------------
class GatedReader:
    """Reads real files and tells a writer thread when the meter has seen the counters.

    The meter is only correct when it reads within one wrap period; gating the writer on the
    meter's reads makes that true by construction instead of by thread timing.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads = 0

    def __call__(self, path: str) -> str:
        with self.lock:
            if path.endswith("/energy_uj"):
                self.reads += 1
            with open(path) as file:
                return file.read()


def test_counter_wrapping_several_times_during_a_block(powercap: FakePowercap) -> None:
    range_uj = 1_000_000
    powercap.add("intel-rapl:0", "package-0", 900_000, range_uj)
    powercap.add("intel-rapl:0:0", "dram", 10, range_uj // 2)
    # At most 6 steps between two reads >= 20 ms apart: 6 x 61 mJ / 20 ms = 18 W, a power no
    # neighbour can make implausible (the wraps are judged like real ones).
    steps, package_step, dram_step = 100, 61_000, 23_000
    reader = GatedReader()
    writer_done = threading.Event()

    def writer() -> None:
        since_read, last_reads = 0, reader.reads
        for _ in range(steps):
            while True:
                with reader.lock:
                    if reader.reads != last_reads:
                        since_read, last_reads = 0, reader.reads
                    # At most 3 steps between two reads of any counter, so at most 6 between
                    # two reads of one counter: less than one wrap period.
                    if since_read < 3:
                        powercap.advance(
                            {"intel-rapl:0": package_step, "intel-rapl:0:0": dram_step}
                        )
                        since_read += 1
                        break
                time.sleep(0.0005)
        writer_done.set()

    with measure_rapl(powercap.root, reader=reader) as m:
        thread = threading.Thread(target=writer)
        thread.start()
        assert writer_done.wait(10)
        thread.join()
        # The last steps were written just after a read: let a tick read them >= 20 ms later,
        # as a real counter would have taken that long to count them.
        time.sleep(0.05)
    package_j, dram_j = steps * package_step / 1e6, steps * dram_step / 1e6
    assert package_j > 5 * range_uj / 1e6 and dram_j > 2 * range_uj / 2 / 1e6  # it did wrap
    assert m.domains["rapl/package-0"] == pytest.approx(package_j)
    assert m.domains["rapl/dram-0"] == pytest.approx(dram_j)
    assert m.energy_j == pytest.approx(package_j + dram_j)


@pytest.fixture(scope="module")
def one_zone_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pc = FakePowercap(tmp_path_factory.mktemp("rapl") / "sys")
    pc.add("intel-rapl:0", "package-0")
    return pc.root


class CounterReader:
    """A fake sysfs: one counter with a chosen range, the rest read from the tree."""

    def __init__(self, range_uj: int, value_uj: int) -> None:
        self.range_uj = range_uj
        self.value_uj = value_uj

    def __call__(self, path: str) -> str:
        if path.endswith("/max_energy_range_uj"):
            return f"{self.range_uj}\n"
        if path.endswith("/energy_uj"):
            return f"{self.value_uj}\n"
        with open(path) as file:
            return file.read()


@st.composite
def counter_runs(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    range_uj = draw(st.integers(min_value=2, max_value=2**40))
    start_uj = draw(st.integers(min_value=0, max_value=range_uj - 1))
    # Large steps are likely, so most runs wrap several times.
    step = st.one_of(
        st.integers(min_value=0, max_value=range_uj - 1),
        st.integers(min_value=max(0, range_uj - 1 - range_uj // 8), max_value=range_uj - 1),
    )
    steps = draw(st.lists(step, max_size=25))
    return range_uj, start_uj, steps


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=counter_runs())
def test_reported_energy_equals_true_energy_through_any_wraps(
    one_zone_tree: Path, run: tuple[int, int, list[int]]
) -> None:
    range_uj, start_uj, steps = run
    reader = CounterReader(range_uj, start_uj)
    clock = FakeClock()
    meter = RaplMeter(root=one_zone_tree, reader=reader, clock=clock)
    meter.start()
    true_uj = 0
    for step in steps:
        true_uj += step
        reader.value_uj = (reader.value_uj + step) % range_uj
        clock.now_s += step / 1e6 / 100.0  # a steady 100 W: every wrap is a plausible one
        (reading,) = meter.read()
        assert reading.domain == "rapl/package-0" and reading.in_total
        assert reading.energy_j == true_uj / 1e6
    meter.stop()


# -- drops that are not wraps ----------------------------------------------------------------
def test_a_counter_that_drops_implausibly_mid_block_fails_the_measurement(
    powercap: FakePowercap,
) -> None:
    intel_dual(powercap)
    zone = "intel-rapl:1"
    with pytest.raises(MeterError) as failure, measure_rapl(powercap.root):
        with SteadyDraw(powercap, {"intel-rapl:0": 15.0, zone: 15.0}):
            time.sleep(0.1)  # the steps before the drop draw up to 15 W
        before_uj = powercap.energy(zone)
        time.sleep(0.05)  # a tick reads before_uj, so the message names it
        powercap.set(zone, 5_000_000)  # reset mid-block: far from the top of its range
        time.sleep(0.05)
    message = str(failure.value)
    wrap_j = (INTEL_RANGE_UJ - before_uj + 5_000_000) / 1e6  # what a wrap would have added
    assert f"rapl/package-1: {powercap.root}/{zone}/energy_uj fell from {before_uj} " in message
    assert "to 5000000 in " in message and re.search(r" in 0\.\d{3} s;", message)
    assert f"max_energy_range_uj={INTEL_RANGE_UJ} that is {wrap_j:,.0f} J at " in message
    assert re.search(r"J at [\d.]+ MW \(the last steps drew [\d.]+ W; at most", message)
    assert "neither a wrap nor a real step: the counter was reset or misread" in message
    assert "measure it again" in message


def test_drops_are_judged_against_the_zones_recent_power(one_zone_tree: Path) -> None:
    range_uj = 100_000_000  # a 100 J counter, so that a reset is short of 2 kW
    reader = CounterReader(range_uj, 90_000_000)
    clock = FakeClock()
    meter = RaplMeter(root=one_zone_tree, reader=reader, clock=clock)
    meter.start()

    def step(to_uj: int, seconds: float) -> float:
        reader.value_uj = to_uj
        clock.now_s += seconds
        (reading,) = meter.read()
        assert reading.energy_j is not None
        return reading.energy_j

    for value_uj in (92_000_000, 94_000_000, 96_000_000, 98_000_000):
        step(value_uj, 0.2)  # 10 W
    assert step(2_000_000, 0.2) == pytest.approx(12.0)  # a real wrap: 4 J, 20 W beside 10 W
    # A load that starts in the very step the counter wraps: 40 J in 0.2 s is 200 W, 20 times
    # the steps before. The range is known (sysfs), so only a reset could be wrong here, and a
    # real wrap must not fail a long run: plausible up to 2 kW.
    assert step(42_000_000, 0.2) == pytest.approx(52.0)  # 12 + 40
    assert step(2_000_000, 0.2) == pytest.approx(112.0)  # wrap under load: 60 J, 300 W
    # 100 - 2 + 0.5 = 98.5 J in 20 ms is 4.9 kW: more than any counter draws, a reset.
    with pytest.raises(
        MeterError,
        match=r"fell from 2000000 to 500000 in 0\.020 s; .* 98 J at 4\.\d+ kW "
        r"\(the last steps drew [\d.]+ W; at most 2 kW is plausible\): neither a wrap",
    ):
        step(500_000, 0.02)


def test_a_drop_with_no_step_before_it_is_judged_against_any_counters_ceiling(
    one_zone_tree: Path,
) -> None:
    reader = CounterReader(100_000_000, 50_000_000)
    clock = FakeClock()
    meter = RaplMeter(root=one_zone_tree, reader=reader, clock=clock)
    meter.start()
    reader.value_uj, clock.now_s = 1_000_000, clock.now_s + 0.02  # 51 J in 20 ms: 2.5 kW
    with pytest.raises(MeterError, match=r"no earlier step to compare; at most 2 kW"):
        meter.read()


# -- hostile trees: the meter may run as root on a tree someone else built -------------------
SECRET = "s3cr3t-TOKEN-do-not-print-0123456789"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file outside every powercap tree of these tests (they live under tmp_path/sys)."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    return secret


def relink(path: Path, target: Path | str) -> None:
    path.unlink()
    path.symlink_to(target)


def refusal(root: Path) -> str:
    """The probe's reason and what measuring says: both must refuse, and show no secret."""
    probe = RaplMeter.probe(root=str(root))
    assert not probe.available and not probe.domains
    with pytest.raises(MeterUnavailable) as raised:
        measure_rapl(root).start()
    for text in (probe.reason, str(raised.value)):
        assert "s3cr3t" not in text and "\x1b" not in text
    assert str(raised.value) == f"meter 'rapl' is unavailable: {probe.reason}"
    return probe.reason


def test_a_counter_linked_outside_the_tree_is_refused_unread(
    powercap: FakePowercap, secret_file: Path
) -> None:
    # Before: "unexpected content in …/energy_uj: 's3cr3t-TOKEN-…' (want an integer)", the
    # whole file (run as root with a link to /etc/shadow: the whole of /etc/shadow).
    intel_dual(powercap)
    relink(powercap.paths["intel-rapl:1"] / "energy_uj", secret_file)
    reason = refusal(powercap.root)
    assert f"{powercap.root}/intel-rapl:1/energy_uj resolves to {secret_file}" in reason
    assert "outside the powercap tree" in reason and "refused" in reason


def test_a_name_linked_outside_never_becomes_a_domain(
    powercap: FakePowercap, secret_file: Path
) -> None:
    # Before: the probe listed the domain "rapl/s3cr3t-TOKEN-…", printed and stored as such.
    intel_dual(powercap)
    relink(powercap.paths["intel-rapl:0:0"] / "name", secret_file)
    reason = refusal(powercap.root)
    assert "intel-rapl:0:0/name resolves to" in reason and "outside the powercap tree" in reason


def test_a_zone_directory_linked_outside_the_tree_is_refused(
    powercap: FakePowercap, tmp_path: Path
) -> None:
    # A complete, valid zone, but elsewhere: whoever built the tree chose what it reads.
    intel_dual(powercap)
    elsewhere = FakePowercap(tmp_path / "elsewhere")
    elsewhere.add("intel-rapl:2", "package-2")
    (powercap.root / "intel-rapl:2").symlink_to(elsewhere.paths["intel-rapl:2"])
    reason = refusal(powercap.root)
    assert f"{powercap.root}/intel-rapl:2 resolves to {elsewhere.paths['intel-rapl:2']}" in reason


def test_the_real_sysfs_layout_of_relative_class_to_devices_links_works(tmp_path: Path) -> None:
    # As the kernel lays it out: /sys/class/powercap/intel-rapl:0 is a relative symlink to
    # ../../devices/virtual/powercap/intel-rapl/intel-rapl:0, whose real path is outside the
    # class directory. That is sysfs itself, not an escape: the refusals above must allow it,
    # also for a root reached through a symlink (a host sysfs mounted and linked elsewhere).
    sysfs = tmp_path / "host-sys"
    control = sysfs / "devices" / "virtual" / "powercap" / "intel-rapl"
    package = control / "intel-rapl:0"
    dram = package / "intel-rapl:0:0"
    for zone, name, energy in ((package, "package-0", 5_000_000), (dram, "dram", 7_000_000)):
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"{name}\n")
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{INTEL_RANGE_UJ}\n")
    classes = sysfs / "class" / "powercap"
    classes.mkdir(parents=True)
    (classes / "intel-rapl").symlink_to("../../devices/virtual/powercap/intel-rapl")
    (classes / "intel-rapl:0").symlink_to("../../devices/virtual/powercap/intel-rapl/intel-rapl:0")
    (classes / "intel-rapl:0:0").symlink_to(
        "../../devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:0"
    )
    (tmp_path / "powercap-link").symlink_to(classes)
    for root in (classes, tmp_path / "powercap-link", control.parent):
        probe = RaplMeter.probe(root=str(root))
        assert probe.available, probe.reason
        assert probe.domains == ["rapl/package-0", "rapl/dram-0"]
    with measure_rapl(classes) as m:
        (package / "energy_uj").write_text("6000000\n")
    assert m.energy_j == pytest.approx(1.0)


def test_a_devices_symlink_cannot_widen_the_tree(tmp_path: Path) -> None:
    # Beside class/powercap only a real devices directory counts: a `devices` link to
    # somewhere else (here a tree of valid zones; it could be /) is no sysfs.
    elsewhere = FakePowercap(tmp_path / "elsewhere")
    elsewhere.add("intel-rapl:0", "package-0")
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "powercap").mkdir(parents=True)
    (sysfs / "devices").symlink_to(elsewhere.devices.parent.parent)
    (sysfs / "class" / "powercap" / "intel-rapl:0").symlink_to(
        "../../devices/virtual/powercap/intel-rapl/intel-rapl:0"
    )
    reason = refusal(sysfs / "class" / "powercap")
    assert "outside the powercap tree" in reason


@pytest.mark.parametrize(
    ("file", "content", "excerpt"),
    [
        ("energy_uj", "12 s3cr3t \x1b]0;pwned\x07 and more after it\n", "'12 s3cr3t ?]0;pwned?"),
        ("name", "Package 0; s3cr3t\x1b[2J\n", "'Package 0; s3cr3t?[2'"),
        ("energy_uj", "+1_000\n", "'+1_000'"),
        ("energy_uj", "١٢٣\n", "'??????'"),
        ("energy_uj", "1" * 21 + "\n", "'11111111111111111111'…"),
    ],
    ids=["escapes-in-counter", "name-no-zone-name", "python-int-syntax", "non-ascii", "21-digits"],
)
def test_unexpected_content_shows_only_a_short_sanitised_excerpt(
    powercap: FakePowercap, file: str, content: str, excerpt: str
) -> None:
    # Before: the whole text, terminal escapes included; `int()` took "+1_000"; a name was
    # any text; non-ASCII bytes raised UnicodeDecodeError out of the probe (a traceback).
    intel_dual(powercap)
    (powercap.paths["intel-rapl:1"] / file).write_text(content, encoding="utf-8")
    reason = RaplMeter.probe(root=str(powercap.root)).reason
    assert f"unexpected content in {powercap.root}/intel-rapl:1/{file}: {excerpt}" in reason
    shown = reason.split(": ", 1)[1]
    assert "\x1b" not in reason and "\x07" not in reason
    assert len(re.findall(r"'([^']*)'", shown)[0]) <= EXCERPT_CHARS


def test_names_are_zone_names(powercap: FakePowercap) -> None:
    powercap.add("intel-rapl:0", "package-0-die-1")
    powercap.add("intel-rapl:0:0", "dram")
    powercap.add("intel-rapl:0:1", "uncore")
    powercap.add("intel-rapl:1", "psys")
    assert RaplMeter.probe(root=str(powercap.root)).available
    (powercap.paths["intel-rapl:1"] / "name").write_text("x" * 33 + "\n")
    assert "want a zone name" in RaplMeter.probe(root=str(powercap.root)).reason


def test_an_oversized_file_is_refused_without_reading_it(powercap: FakePowercap) -> None:
    # Before: read whole, then echoed whole in the error (here 4 MB of digits in one line).
    intel_dual(powercap)
    (powercap.paths["intel-rapl:1"] / "energy_uj").write_text("7" * 4_000_000 + "\n")
    reason = RaplMeter.probe(root=str(powercap.root)).reason
    assert f"holds more than {MAX_ATTRIBUTE_BYTES} bytes" in reason and "refused unread" in reason
    assert len(reason) < 400


def test_the_file_actually_opened_is_checked_not_only_its_path(
    powercap: FakePowercap, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A link swapped after the path was checked: the open file's own path is checked again.
    intel_dual(powercap)
    link = powercap.paths["intel-rapl:0"] / "energy_uj"
    relink(link, secret_file)
    trees = (str(powercap.root), str(powercap.devices))
    monkeypatch.setattr("greenprec.meters.rapl.os.path.realpath", lambda path: path)
    with pytest.raises(MeterError, match=r"resolves to .*secret\.txt, outside the powercap tree"):
        read_sysfs(str(link), trees)


# Probes that would hang or exhaust memory before the fix run in a child with a memory limit
# and a timeout, so a regression fails the test instead of the test machine.
_BOUNDED_PROBE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from greenprec.meters.rapl import RaplMeter, read_sysfs
if sys.argv[1] == "probe":
    probe = RaplMeter.probe(root=sys.argv[2])
    print(json.dumps({"available": probe.available, "reason": probe.reason}))
else:
    try:
        read_sysfs(sys.argv[2])
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
"""


def bounded(*args: str) -> dict[str, object]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _BOUNDED_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert time.monotonic() - started < 20
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_counter_linked_to_an_endless_device_is_refused_at_once(
    powercap: FakePowercap, device: str
) -> None:
    # Before: /dev/zero was read until MemoryError, /dev/urandom for ever.
    intel_dual(powercap)
    relink(powercap.paths["intel-rapl:0"] / "energy_uj", device)
    result = bounded("probe", str(powercap.root))
    assert result["available"] is False
    assert f"resolves to {device}, outside the powercap tree" in str(result["reason"])
    assert read_sysfs_error(device) == (
        f"MeterError: {device} is a character device, not a sysfs attribute file: refused "
        "(point root at a real powercap tree)"
    )


def read_sysfs_error(path: str) -> str:
    return str(bounded("read", path)["error"])


def test_a_fifo_in_the_tree_cannot_hang_the_probe(powercap: FakePowercap) -> None:
    # Before: open() waited for a writer that never came; the probe (and `meters`) hung.
    intel_dual(powercap)
    counter = powercap.paths["intel-rapl:1"] / "energy_uj"
    counter.unlink()
    os.mkfifo(counter)
    result = bounded("probe", str(powercap.root))
    assert result["available"] is False
    assert f"{powercap.root}/intel-rapl:1/energy_uj is a FIFO, not a sysfs attribute file" in str(
        result["reason"]
    )


def test_a_device_node_in_the_tree_is_refused(powercap: FakePowercap) -> None:
    intel_dual(powercap)
    counter = powercap.paths["intel-rapl:1"] / "energy_uj"
    counter.unlink()
    try:
        os.mknod(counter, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD (root)")
    result = bounded("probe", str(powercap.root))
    assert "energy_uj is a character device, not a sysfs attribute file" in str(result["reason"])

"""The apple meter against a fake zeus_apple_silicon module (no Mac here), and precision.support
on a faked Apple GPU (PyTorch's mps, TensorFlow with tensorflow-metal)."""

from __future__ import annotations

import sys
import time
import types
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

import greenprec
from greenprec import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.meters import apple as apple_module
from greenprec.meters.apple import AppleMeter
from greenprec.meters.registry import resolve
from greenprec.precision import emulation_warnings, support
from greenprec.testing import check_meter

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fake_zeus_apple_silicon import FakeChip, m2_ultra_powers, make_zeus_apple_silicon

Install = Callable[..., FakeChip]
COUNTED = ["apple/cpu", "apple/gpu", "apple/gpu_sram", "apple/ane", "apple/dram"]


@pytest.fixture
def on_a_mac(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make this machine look like an arm64 Mac to the meter (and to nothing else)."""
    monkeypatch.setattr(apple_module, "_this_platform", lambda: ("Darwin", "arm64"))
    monkeypatch.setattr(apple_module, "_warned_missing", set())
    # Keep the other hardware meters out of auto on any machine running the tests.
    monkeypatch.setenv("GREENPREC_ENERGIBRIDGE", str(tmp_path / "no-energibridge"))
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def install(on_a_mac: None, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Put a fake zeus_apple_silicon over a chip into sys.modules; returns the chip."""

    def do(**chip_fields: object) -> FakeChip:
        chip = FakeChip(**chip_fields)  # type: ignore[arg-type]
        monkeypatch.setitem(sys.modules, "zeus_apple_silicon", make_zeus_apple_silicon(chip))
        return chip

    return do


class Clock:
    """A clock tests move by hand, so the fake's energies are exact."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def read_after(meter: AppleMeter, clock: Clock, seconds: float) -> dict[str, tuple[float, bool]]:
    clock.now_s += seconds
    return {r.domain: (r.energy_j or 0.0, r.in_total) for r in meter.read()}


# -- the contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("cores", [False, True])
def test_the_meter_keeps_the_contract(install: Install, cores: bool) -> None:
    install()
    report = check_meter(AppleMeter, options={"cores": cores})
    assert report.available, report.reason
    assert not report.skipped_names, str(report)


def test_probe_names_the_domains(install: Install) -> None:
    install()
    probe = AppleMeter.probe()
    assert probe.available
    assert probe.domains == [
        "apple/cpu",
        "apple/cpu.efficiency",
        "apple/cpu.performance",
        "apple/gpu",
        "apple/gpu_sram",
        "apple/ane",
        "apple/dram",
    ]


# -- energies ---------------------------------------------------------------------------------
def test_energies_are_the_counters_differences_in_joules(install: Install) -> None:
    clock = Clock()
    install(clock=clock)
    meter = AppleMeter()
    meter.start()
    try:
        readings = read_after(meter, clock, 2.0)
    finally:
        meter.stop()
    # m2_ultra_powers over 2 s: the CPU total, its clusters, then the parts outside the CPU.
    assert readings == {
        "apple/cpu": (24.0, True),
        "apple/cpu.efficiency": (3.0, False),
        "apple/cpu.performance": (20.0, False),
        "apple/gpu": (60.0, True),
        "apple/gpu_sram": (2.0, True),
        "apple/ane": (1.0, True),
        "apple/dram": (4.0, True),
    }
    assert sum(energy for energy, counted in readings.values() if counted) == 91.0


def test_cores_option_reports_each_core_and_counts_none(install: Install) -> None:
    clock = Clock()
    install(clock=clock)
    meter = AppleMeter(cores="true")
    meter.start()
    readings = read_after(meter, clock, 4.0)
    meter.stop()
    efficiency = [readings[f"apple/cpu.efficiency-core-{i}"] for i in range(4)]
    performance = [readings[f"apple/cpu.performance-core-{i}"] for i in range(8)]
    assert efficiency == [(1.0, False)] * 4
    assert performance == [(4.0, False)] * 8
    assert [d for d, (_e, counted) in readings.items() if counted] == COUNTED


def test_measure_counts_each_joule_once(install: Install) -> None:
    install()
    with greenprec.measure("apple", interval=0.05) as m:
        time.sleep(0.3)
    assert m.counted_domains == COUNTED
    assert m.energy_j == pytest.approx(sum(m.domains[d] for d in COUNTED))
    # 45.5 W counted (12 CPU + 30 GPU + 1 SRAM + 0.5 ANE + 2 DRAM); whole mJ per counter.
    assert m.energy_j == pytest.approx(45.5 * m.duration_s, rel=0.1, abs=0.01)
    assert m.domains["apple/cpu.performance"] < m.domains["apple/cpu"]


def test_clusters_are_preferred_to_the_per_core_sum(install: Install) -> None:
    clock = Clock()
    powers = m2_ultra_powers()
    install(clock=clock, power_w=powers)
    meter = AppleMeter()
    meter.start()
    with_clusters = read_after(meter, clock, 1.0)
    meter.stop()
    # zeus-apple-silicon before 1.1.0 has no cluster fields: the cores' sum stands in.
    del powers["efficiency_cluster_mj"], powers["performance_cluster_mj"]
    install(clock=clock, power_w=powers)
    meter.start()
    without = read_after(meter, clock, 1.0)
    meter.stop()
    assert with_clusters["apple/cpu.performance"] == (10.0, False)
    assert without["apple/cpu.performance"] == (8.0, False)
    assert without["apple/cpu.efficiency"] == (1.0, False)


def test_without_a_cpu_total_the_clusters_are_counted(install: Install) -> None:
    clock = Clock()
    powers = m2_ultra_powers()
    del powers["cpu_total_mj"]
    install(clock=clock, power_w=powers)
    meter = AppleMeter()
    with pytest.warns(GreenprecWarning, match=r"no CPU total \(cpu_total_mj\)"):
        meter.start()
    readings = read_after(meter, clock, 1.0)
    meter.stop()
    assert "apple/cpu" not in readings
    assert readings["apple/cpu.efficiency"] == (1.5, True)
    assert readings["apple/cpu.performance"] == (10.0, True)


def test_a_field_the_chip_lacks_is_left_out_and_named_once(install: Install) -> None:
    powers = m2_ultra_powers()
    del powers["dram_mj"], powers["gpu_sram_mj"]  # as on an M5: no GPU SRAM channel
    install(power_w=powers)
    assert AppleMeter.probe().domains == [
        "apple/cpu",
        "apple/cpu.efficiency",
        "apple/cpu.performance",
        "apple/gpu",
        "apple/ane",
    ]
    missing = r"no GPU SRAM \(gpu_sram_mj\), DRAM \(dram_mj\)"
    with pytest.warns(GreenprecWarning, match=missing), greenprec.measure("apple") as m:
        time.sleep(0.05)
    assert m.counted_domains == ["apple/cpu", "apple/gpu", "apple/ane"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second block says it no more
        with greenprec.measure("apple", interval=0.05):
            time.sleep(0.05)


def test_no_channel_at_all_is_unavailable(install: Install) -> None:
    install(power_w={})
    probe = AppleMeter.probe()
    assert not probe.available
    assert "no energy counter" in probe.reason


# -- failures ---------------------------------------------------------------------------------
def test_a_counter_going_backwards_fails_the_reading(install: Install) -> None:
    install(backwards_after_samples=3)
    with pytest.raises(MeterError, match="backwards"), greenprec.measure("apple", interval=0.02):
        time.sleep(0.3)


def test_a_field_vanishing_mid_block_fails_the_reading(install: Install) -> None:
    install(vanish_after_samples=3)
    vanished = "stopped reporting cpu_total_mj"
    with pytest.raises(MeterError, match=vanished), greenprec.measure("apple", interval=0.02):
        time.sleep(0.3)


def test_a_list_changing_length_fails_the_reading(install: Install) -> None:
    clock = Clock()
    chip = install(clock=clock)
    meter = AppleMeter()
    meter.start()
    chip.power_w["performance_cluster_mj"] = [5.0]  # one cluster of two left: not the same sum
    with pytest.raises(MeterError, match="gave 1 values in performance_cluster_mj, 2 at the"):
        read_after(meter, clock, 1.0)
    meter.stop()


def test_ioreport_refusing_the_subscription_is_a_reason(install: Install) -> None:
    install(subscribe_error="Failed to create IOReport subscription.")
    probe = AppleMeter.probe()
    assert not probe.available
    assert "Failed to create IOReport subscription" in probe.reason


def test_without_the_package_the_reason_says_what_to_install(
    on_a_mac: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zeus_apple_silicon", None)
    probe = AppleMeter.probe()
    assert not probe.available
    assert "greenprec[apple]" in probe.reason
    with pytest.raises(MeterUnavailable, match=r"greenprec\[apple\]"), greenprec.measure("apple"):
        pass


@pytest.mark.parametrize(
    ("system", "machine", "reason"),
    [
        ("Linux", "x86_64", "not macOS (this is Linux)"),
        ("Windows", "AMD64", "not macOS (this is Windows)"),
        ("Darwin", "x86_64", "runs as x86_64, not arm64"),
    ],
)
def test_off_apple_silicon_the_reason_says_so(
    install: Install, monkeypatch: pytest.MonkeyPatch, system: str, machine: str, reason: str
) -> None:
    chip = install()
    monkeypatch.setattr(apple_module, "_this_platform", lambda: (system, machine))
    probe = AppleMeter.probe()
    assert not probe.available
    assert reason in probe.reason
    assert chip.monitors == 0  # the platform is checked before the library is touched


def test_this_machine_gives_a_reason_not_a_crash() -> None:
    probe = AppleMeter.probe()  # whatever this machine is
    assert probe.available or probe.reason


def test_auto_takes_the_apple_meter_on_a_mac(install: Install, tmp_path: Path) -> None:
    install()
    chosen = resolve("auto", {"rapl.root": str(tmp_path / "no-powercap")})
    assert [meter.name for meter in chosen] == ["apple"]
    assert "system" not in AppleMeter.covers  # the SoC, not the whole machine


# -- precision.support on Apple silicon's GPU -------------------------------------------------
def fake_torch(version: str = "2.8.0", mps: bool = True) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        __version__=version,
        backends=types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: mps)),
        cuda=types.SimpleNamespace(is_initialized=lambda: False),
    )


@pytest.fixture
def mac(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Fake macOS's version and the installed distributions that support() reads."""
    support_module = sys.modules["greenprec.precision.support"]  # the attribute is the function

    def do(macos: str = "14.5", installed: dict[str, str] | None = None) -> None:
        versions = installed or {}

        def distribution(name: str) -> types.SimpleNamespace:
            if name not in versions:
                raise PackageNotFoundError(name)
            return types.SimpleNamespace(version=versions[name])

        monkeypatch.setattr(support_module, "_macos_release", lambda: macos)
        monkeypatch.setattr(support_module, "_nvidia_smi", lambda: None)  # a Mac has none
        monkeypatch.setattr(support_module, "distribution", distribution)
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)

    return do


APPLE = {"system": "Darwin", "machine": "arm64"}


def test_pytorch_on_mps(mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    mac()
    monkeypatch.setitem(sys.modules, "torch", fake_torch("2.8.0"))
    report = support("gpu", framework="torch", cpu_name="Apple M2 Ultra", **APPLE)
    assert (report.device, report.platform, report.name) == ("gpu", "apple", "Apple M2 Ultra GPU")
    assert report.detected_by == "PyTorch" and report.framework == "torch"
    assert report.fp16.native and report.bf16.native and not report.tf32.hardware
    assert emulation_warnings(["mixed", "bf16", "tf32"], report) == [
        "tf32 (tensorfloat32) has no effect on this GPU (TF32 is an NVIDIA tensor-core format; "
        "the Apple GPU computes float32): it runs as fp32"
    ]
    assert "torch.mps.synchronize" in report.caveats[0]


@pytest.mark.parametrize(
    ("version", "fp16", "bf16", "why"),
    [
        ("2.4.1", False, False, "has no autocast on 'mps'"),
        ("2.5.1", False, False, "GradScaler"),
        ("2.6.0", False, True, "GradScaler"),
        ("2.8.0", True, True, "autocasts float16"),
    ],
)
def test_pytorch_versions_on_mps(
    mac: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    fp16: bool,
    bf16: bool,
    why: str,
) -> None:
    mac()
    monkeypatch.setitem(sys.modules, "torch", fake_torch(version))
    report = support("gpu", framework="torch", cpu_name="Apple M3 Max", **APPLE)
    assert (report.fp16.native, report.bf16.native) == (fp16, bf16)
    assert why in report.fp16.reason and report.fp16.hardware


def test_bfloat16_on_mps_needs_macos_14_and_more_than_an_m1(
    mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch("2.8.0"))
    mac(macos="13.6")
    sonoma = support("gpu", framework="torch", cpu_name="Apple M2", **APPLE)
    assert not sonoma.bf16.hardware and "Metal has bfloat16 from macOS 14" in sonoma.bf16.reason
    mac(macos="14.5")
    m1 = support("gpu", framework="torch", cpu_name="Apple M1 Pro", **APPLE)
    assert not m1.bf16.hardware and "through float32" in m1.bf16.reason
    assert m1.fp16.native
    assert emulation_warnings(["bf16"], m1)[0].startswith("bf16 (bfloat16) is emulated on this GPU")


def test_pytorch_judges_the_cpu_unless_the_gpu_is_asked_for(
    mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    mac()
    monkeypatch.setitem(sys.modules, "torch", fake_torch("2.8.0"))
    report = support(framework="torch", cpu_name="Apple M2 Ultra", **APPLE)
    assert report.device == "cpu" and report.platform == "apple"  # PyTorch's default device


def test_asking_pytorch_for_an_apple_gpu_it_does_not_see(
    mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    mac()
    monkeypatch.setitem(sys.modules, "torch", fake_torch("2.8.0", mps=False))
    with pytest.raises(ConfigError, match=r"torch.backends.mps.is_available\(\) is False"):
        support("gpu", framework="torch", cpu_name="Apple M2", **APPLE)


def test_pytorch_not_imported_is_judged_from_its_metadata(
    mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    mac(installed={"torch": "2.6.0"})
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    report = support("gpu", framework="torch", cpu_name="Apple M4", **APPLE)
    assert report.detected_by == "platform"
    assert not report.fp16.native and report.bf16.native


def test_keras_with_tensorflow_metal(mac: Callable[..., None]) -> None:
    mac(installed={"tensorflow-metal": "1.2.0"})
    report = support(framework="keras", cpu_name="Apple M2 Ultra", **APPLE)
    assert (report.device, report.platform, report.framework) == ("gpu", "apple", "tensorflow")
    assert report.fp16.native and "tensorflow-metal 1.2.0" in report.fp16.reason
    assert report.bf16.hardware and not report.bf16.native
    assert not report.tf32.native
    cpu = support("cpu", framework="keras", cpu_name="Apple M2 Ultra", **APPLE)
    assert cpu.device == "cpu"  # asked for: the CPU, as before


def test_keras_without_tensorflow_metal_runs_on_the_cpu(mac: Callable[..., None]) -> None:
    mac(installed={})
    report = support(framework="keras", cpu_name="Apple M2 Ultra", **APPLE)
    assert report.device == "cpu"
    with pytest.raises(ConfigError, match="pip install tensorflow-metal"):
        support("gpu", framework="keras", cpu_name="Apple M2 Ultra", **APPLE)


def test_tensorflow_imported_is_asked_for_its_gpu(
    mac: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    mac(installed={})
    config = types.SimpleNamespace(list_physical_devices=lambda kind: ["/physical_device:GPU:0"])
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))
    report = support(framework="tensorflow", cpu_name="Apple M1", **APPLE)
    assert report.device == "gpu" and report.detected_by == "TensorFlow"
    assert "TensorFlow's Metal plugin" in report.fp16.reason


@pytest.mark.torch
def test_the_pytorch_adapter_names_the_apple_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from greenprec.precision.policies import resolve_policy
    from greenprec.precision.torch import TorchPolicy

    monkeypatch.setattr(torch.backends.mps, "get_name", lambda: "Apple M2 Ultra", raising=False)
    info = TorchPolicy(resolve_policy("fp32"), torch.device("mps")).framework_info()
    assert (info.device, info.device_name) == ("mps", "Apple M2 Ultra")

"""The nvml meter against a fake pynvml module (no GPU here), through measure()."""

from __future__ import annotations

import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import greenprec
from greenprec import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.meters.nvml import NvmlMeter

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fake_pynvml import (
    FakeGpu,
    NVMLError_DriverNotLoaded,
    make_pynvml,
    uuid,
)

Install = Callable[..., tuple[types.ModuleType, list[str]]]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Install:
    """Put a fake pynvml over these GPUs into sys.modules; returns it and its init/shutdown log."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    # Keep the other hardware meters out of auto on any machine running the tests.
    monkeypatch.setenv("GREENPREC_ENERGIBRIDGE", str(tmp_path / "no-energibridge"))

    def do(gpus: list[FakeGpu], **kwargs: object) -> tuple[types.ModuleType, list[str]]:
        calls: list[str] = []
        module = make_pynvml(gpus, calls=calls, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module, calls

    return do


def two_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid(0), power_w=200.0), FakeGpu(uuid(1), power_w=100.0)]


def run(seconds: float = 0.25, **options: object) -> greenprec.Measurement:
    with greenprec.measure("nvml", interval=0.05, meter_options=options or None) as m:
        time.sleep(seconds)
    return m


# -- probe ----------------------------------------------------------------------------------
def test_without_nvidia_ml_py_the_reason_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    probe = NvmlMeter.probe()
    assert not probe.available
    assert "greenprec[nvidia]" in probe.reason
    with pytest.raises(MeterUnavailable, match=r"greenprec\[nvidia\]"):
        run()


def test_no_driver(install: Install) -> None:
    install([FakeGpu(uuid(0))], init_error=NVMLError_DriverNotLoaded())
    probe = NvmlMeter.probe()
    assert not probe.available
    assert "NVMLError_DriverNotLoaded: Driver Not Loaded" in probe.reason
    assert "nvidia-smi" in probe.reason


def test_no_gpu(install: Install) -> None:
    install([])
    probe = NvmlMeter.probe()
    assert not probe.available and "no NVIDIA GPU" in probe.reason


def test_probe_lists_domains_and_balances_init(install: Install) -> None:
    _module, calls = install(two_gpus())
    assert NvmlMeter.probe() == greenprec.Probe(True, domains=["nvml/gpu-0", "nvml/gpu-1"])
    assert calls == ["init", "shutdown"]


# -- measuring ------------------------------------------------------------------------------
def test_energy_counters_of_several_gpus(install: Install) -> None:
    _module, calls = install(two_gpus())
    m = run()
    assert m.meters == ["nvml"] and m.estimated is False
    assert m.counted_domains == ["nvml/gpu-0", "nvml/gpu-1"]
    assert m.domains["nvml/gpu-0"] == pytest.approx(200.0 * m.duration_s, rel=0.02)
    assert m.domains["nvml/gpu-1"] == pytest.approx(100.0 * m.duration_s, rel=0.02)
    assert m.energy_j == pytest.approx(300.0 * m.duration_s, rel=0.02)
    assert calls.count("init") == calls.count("shutdown") >= 2  # probe, then the block


def test_not_supported_falls_back_to_integrating_power(install: Install) -> None:
    install([FakeGpu(uuid(0), power_w=250.0, energy_supported=False), FakeGpu(uuid(1))])
    m = run()
    samples = m.samples
    old = samples[samples["domain"] == "nvml/gpu-0"]
    assert old["power_w"].tolist() == pytest.approx([250.0] * len(old))
    assert m.domains["nvml/gpu-0"] == pytest.approx(250.0 * m.duration_s, rel=1e-6)
    assert m.domains["nvml/gpu-1"] == pytest.approx(200.0 * m.duration_s, rel=0.02)


def test_a_driver_error_mid_block_is_a_meter_error(install: Install) -> None:
    _module, calls = install([FakeGpu(uuid(0), fail_after_reads=3)])
    with pytest.raises(MeterError, match=r"NVML failed reading GPU 0: NVMLError_GpuIsLost"):
        run(0.4)
    assert calls[-1] == "shutdown"


def test_a_counter_going_backwards_is_a_meter_error(install: Install) -> None:
    install([FakeGpu(uuid(0), backwards_after_reads=3)])
    with pytest.raises(MeterError, match="went backwards"):
        run(0.4)


def test_a_block_shorter_than_the_counter_period_warns(install: Install) -> None:
    install([FakeGpu(uuid(0))])
    with (
        pytest.warns(GreenprecWarning, match="updates about every 100 ms"),
        greenprec.measure("nvml"),
    ):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error", GreenprecWarning)
        run(0.15)


# -- which GPUs -----------------------------------------------------------------------------
def four_gpus() -> list[FakeGpu]:
    gpus = [FakeGpu(uuid(n), power_w=100.0 + n) for n in range(4)]
    gpus[2].mig_uuids = ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
    return gpus


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("1", ["nvml/gpu-1"]),
        ("3, 1", ["nvml/gpu-3", "nvml/gpu-1"]),
        (uuid(3), ["nvml/gpu-3"]),
        (uuid(3)[:12] + "," + uuid(0), ["nvml/gpu-3", "nvml/gpu-0"]),  # unique prefixes work
        ("0,1,1", ["nvml/gpu-0", "nvml/gpu-1"]),
    ],
)
def test_cuda_visible_devices_picks_the_jobs_gpus(
    install: Install, monkeypatch: pytest.MonkeyPatch, visible: str, expected: list[str]
) -> None:
    install(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert NvmlMeter.probe().domains == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error", GreenprecWarning)
        m = run(0.15)
    assert list(m.domains) == expected


@pytest.mark.parametrize(
    "visible", ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", f"MIG-{uuid(2)}/1/0"]
)
def test_a_mig_slice_measures_its_whole_parent_gpu(
    install: Install, monkeypatch: pytest.MonkeyPatch, visible: str
) -> None:
    install(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.warns(GreenprecWarning, match="energy per physical GPU"):
        m = run(0.15)
    assert list(m.domains) == ["nvml/gpu-2"]
    assert m.domains["nvml/gpu-2"] == pytest.approx(102.0 * m.duration_s, rel=0.03)


def test_cuda_visible_devices_stops_at_the_first_unknown_entry(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")
    with pytest.warns(GreenprecWarning, match=r"'7' names no GPU"):
        m = run(0.15)
    assert list(m.domains) == ["nvml/gpu-1"]


@pytest.mark.parametrize("visible", ["", "-1", "GPU-ffffffff", "7"])
def test_cuda_visible_devices_hiding_every_gpu_makes_it_unavailable(
    install: Install, monkeypatch: pytest.MonkeyPatch, visible: str
) -> None:
    install(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    probe = NvmlMeter.probe()
    assert not probe.available and "makes no GPU visible" in probe.reason


def test_indices_on_mixed_models_warn_about_cuda_order(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus = [FakeGpu(uuid(0), name="NVIDIA A100"), FakeGpu(uuid(1), name="NVIDIA T4")]
    install(gpus)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.warns(GreenprecWarning, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        run(0.15)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GreenprecWarning)
        run(0.15)


def test_devices_option_overrides_cuda_visible_devices(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert list(run(0.15, devices="0,2").domains) == ["nvml/gpu-0", "nvml/gpu-2"]
    assert list(run(0.15, devices=3).domains) == ["nvml/gpu-3"]
    assert list(run(0.15, devices=[1, 0]).domains) == ["nvml/gpu-1", "nvml/gpu-0"]


@pytest.mark.parametrize("devices", ["", "a", "0,-1", [True], "1.5"])
def test_bad_devices_are_config_errors(install: Install, devices: object) -> None:
    install(four_gpus())
    with pytest.raises(ConfigError, match="nvml option devices"):
        NvmlMeter(devices=devices)  # type: ignore[arg-type]


def test_devices_beyond_the_machine_are_config_errors(install: Install) -> None:
    install(two_gpus())
    with pytest.raises(ConfigError, match="names GPU 5, but NVML sees 2"):
        run(devices="0,5")


# -- auto -----------------------------------------------------------------------------------
def test_auto_picks_nvml_when_it_is_available(install: Install, tmp_path: Path) -> None:
    install(two_gpus())
    with greenprec.measure(interval=0.05, meter_options={"root": str(tmp_path / "none")}) as m:
        time.sleep(0.15)
    assert m.meters == ["nvml"]
    assert set(m.domains) == {"nvml/gpu-0", "nvml/gpu-1"}
    assert m.estimated is False


def test_auto_joins_nvml_with_rapl(install: Install, tmp_path: Path) -> None:
    install(two_gpus())
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    with greenprec.measure(interval=0.05, meter_options={"root": str(zone.parent)}) as m:
        time.sleep(0.15)
    assert m.meter == "rapl+nvml"
    assert set(m.counted_domains) == {"rapl/package-0", "nvml/gpu-0", "nvml/gpu-1"}

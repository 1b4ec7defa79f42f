"""The amdsmi meter against a fake amdsmi module (no AMD GPU here), through measure()."""

from __future__ import annotations

import importlib.abc
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import greenprec
from greenprec import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.machine import read_machine_state
from greenprec.meters.amdsmi import AmdsmiMeter
from greenprec.testing import check_meter

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fake_amdsmi import (
    STATUS_DRIVER_NOT_LOADED,
    AmdSmiLibraryException,
    FakeGpu,
    make_amdsmi,
    uuid,
)

Install = Callable[..., tuple[types.ModuleType, list[str]]]
_VARIABLES = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
_CHECK = {"counter_check_s": 0.05}  # a short start-up check keeps the tests quick


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Install:
    """Put a fake amdsmi over these GPUs into sys.modules; returns it and its init/shutdown log."""
    for variable in _VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    # Keep the other hardware meters out of auto on any machine running the tests.
    monkeypatch.setenv("GREENPREC_ENERGIBRIDGE", str(tmp_path / "no-energibridge"))
    monkeypatch.setitem(sys.modules, "pynvml", None)

    def do(gpus: list[FakeGpu], **kwargs: object) -> tuple[types.ModuleType, list[str]]:
        calls: list[str] = []
        module = make_amdsmi(gpus, calls=calls, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setitem(sys.modules, "amdsmi", module)
        return module, calls

    return do


def two_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid(0), power_w=300.0), FakeGpu(uuid(1), power_w=150.0)]


def run(seconds: float = 0.25, **options: object) -> greenprec.Measurement:
    with greenprec.measure("amdsmi", interval=0.05, meter_options={**_CHECK, **options}) as m:
        time.sleep(seconds)
    return m


# -- probe ----------------------------------------------------------------------------------
def test_without_amdsmi_the_reason_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    probe = AmdsmiMeter.probe()
    assert not probe.available
    assert "pip install 'greenprec[amd]'" in probe.reason
    with pytest.raises(MeterUnavailable, match=r"greenprec\[amd\]"):
        run()


class _AmdsmiWithoutRocm(importlib.abc.MetaPathFinder):
    """Imports ``amdsmi`` as it fails without ROCm's library: a print, then OSError."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "amdsmi":
            print("Unable to find amdsmi library try installing amd-smi-lib from your package")
            raise OSError("libamd_smi.so: cannot open shared object file")


def test_an_amdsmi_without_rocm_is_a_reason_and_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_AmdsmiWithoutRocm(), *sys.meta_path])
    probe = AmdsmiMeter.probe()
    assert not probe.available
    assert "could not load ROCm's library (OSError: libamd_smi.so" in probe.reason
    assert "ROCM_PATH" in probe.reason
    assert capsys.readouterr().out == ""


def test_no_driver(install: Install) -> None:
    install([FakeGpu(uuid(0))], init_error=AmdSmiLibraryException(STATUS_DRIVER_NOT_LOADED))
    probe = AmdsmiMeter.probe()
    assert not probe.available
    assert "AMDSMI_STATUS_DRIVER_NOT_LOADED" in probe.reason
    assert "/dev/kfd" in probe.reason and "amd-smi list" in probe.reason


def test_no_gpu(install: Install) -> None:
    _module, calls = install([])
    probe = AmdsmiMeter.probe()
    assert not probe.available and "no AMD GPU" in probe.reason
    assert calls == ["init", "shutdown"]


def test_probe_lists_domains_balances_init_and_runs_no_check(install: Install) -> None:
    gpus = two_gpus()
    _module, calls = install(gpus)
    started = time.monotonic()
    assert AmdsmiMeter.probe() == greenprec.Probe(True, domains=["amdsmi/gpu-0", "amdsmi/gpu-1"])
    assert time.monotonic() - started < 0.4  # the 0.5 s counter check is start()'s, not probe()'s
    assert calls == ["init", "shutdown"]
    assert [gpu.reads for gpu in gpus] == [0, 0]


def test_the_meter_kit_passes(install: Install) -> None:
    install(two_gpus())
    report = check_meter(AmdsmiMeter, options=_CHECK)
    assert report.available, report


# -- energy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["6.0", "6.2.1"])
def test_energy_counters_of_several_gpus(install: Install, api: str) -> None:
    _module, calls = install(two_gpus(), api=api)
    m = run()
    assert m.meters == ["amdsmi"] and m.estimated is False
    assert m.counted_domains == ["amdsmi/gpu-0", "amdsmi/gpu-1"]
    assert m.domains["amdsmi/gpu-0"] == pytest.approx(300.0 * m.duration_s, rel=0.02)
    assert m.domains["amdsmi/gpu-1"] == pytest.approx(150.0 * m.duration_s, rel=0.02)
    assert m.samples["energy_j"].notna().all()  # counter readings, not power
    assert calls.count("init") == calls.count("shutdown") >= 2  # probe, then the block


@pytest.mark.parametrize("resolution_uj", [1.0, 15.259, 1000.0])
def test_ticks_are_scaled_by_the_counter_resolution(install: Install, resolution_uj: float) -> None:
    install([FakeGpu(uuid(0), power_w=200.0, counter_resolution_uj=resolution_uj)])
    m = run()
    assert m.energy_j == pytest.approx(200.0 * m.duration_s, rel=0.03)


def test_a_64_bit_accumulator_is_read_exactly(install: Install) -> None:
    # Far past 32 bits (and past a double's 53-bit integers): only the difference matters.
    install([FakeGpu(uuid(0), power_w=200.0, start_ticks=2**63 + 12_345)])
    m = run()
    assert m.energy_j == pytest.approx(200.0 * m.duration_s, rel=0.02)


def test_a_counter_going_backwards_is_a_meter_error(install: Install) -> None:
    _module, calls = install([FakeGpu(uuid(0), backwards_after_reads=5)])
    with pytest.raises(MeterError, match=r"GPU 0 \(AMD Instinct MI300X\) went backwards"):
        run(0.4)
    assert calls[-1] == "shutdown"


def test_a_driver_error_mid_block_is_a_meter_error(install: Install) -> None:
    _module, calls = install([FakeGpu(uuid(0), fail_after_reads=6)])
    with pytest.raises(MeterError, match=r"amdsmi failed reading GPU 0 .*NOT_FOUND"):
        run(0.4)
    assert calls[-1] == "shutdown"


# -- power ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["current_socket_power", "average_socket_power"])
def test_without_a_counter_power_is_integrated(install: Install, key: str) -> None:
    install(
        [
            FakeGpu(uuid(0), power_w=250.0, energy_supported=False, power_keys=(key,)),
            FakeGpu(uuid(1), power_w=100.0),
        ]
    )
    m = run()
    samples = m.samples
    old = samples[samples["domain"] == "amdsmi/gpu-0"]
    assert old["power_w"].tolist() == pytest.approx([250.0] * len(old))
    assert m.domains["amdsmi/gpu-0"] == pytest.approx(250.0 * m.duration_s, rel=1e-6)
    assert m.domains["amdsmi/gpu-1"] == pytest.approx(100.0 * m.duration_s, rel=0.02)


def test_source_power_integrates_power_on_every_gpu(install: Install) -> None:
    install(two_gpus())
    m = run(source="power")
    assert m.samples["power_w"].notna().all()
    assert m.energy_j == pytest.approx(450.0 * m.duration_s, rel=1e-6)


def test_neither_energy_nor_power_is_a_meter_error(install: Install) -> None:
    install([FakeGpu(uuid(0), energy_supported=False, power_keys=())])
    with pytest.raises(MeterError, match=r"GPU 0 .* reports neither energy nor power"):
        run()


# -- the start-up check ---------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.0, 1000.0])
def test_a_counter_that_disagrees_with_power_is_refused(install: Install, scale: float) -> None:
    install([FakeGpu(uuid(0)), FakeGpu(uuid(1), name="AMD Instinct MI100", counter_scale=scale)])
    with pytest.raises(MeterError) as caught:
        run()
    message = str(caught.value)
    assert "GPU 1 (AMD Instinct MI100)" in message and "GPU 0" not in message
    assert "ROCm/amdsmi#38" in message and "Zeus #113" in message
    assert "-o amdsmi.source=power" in message
    # The way out the message names works, and measures the same GPU from its power.
    m = run(source="power")
    assert m.domains["amdsmi/gpu-1"] == pytest.approx(300.0 * m.duration_s, rel=1e-6)


def test_the_check_can_be_skipped(install: Install) -> None:
    install([FakeGpu(uuid(0), counter_scale=0.0)])
    assert run(counter_check_s=0).energy_j == 0.0  # the user asked not to check


def test_an_idle_gpu_is_not_checked(install: Install) -> None:
    # 3 W cannot tell a stuck counter from an idle GPU: no refusal.
    install([FakeGpu(uuid(0), power_w=3.0, counter_scale=0.0)])
    assert run().energy_j == 0.0


@pytest.mark.parametrize("die_power_keys", [("current_socket_power",), ()])
def test_a_die_reading_nothing_is_named_and_not_summed(
    install: Install, die_power_keys: tuple[str, ...]
) -> None:
    # An MI250X: two dies, only the first reports (0 W or N/A on the second).
    install(
        [
            FakeGpu(uuid(0), name="AMD Instinct MI250X", power_w=500.0),
            FakeGpu(uuid(1), name="AMD Instinct MI250X", power_w=0.0, power_keys=die_power_keys),
        ]
    )
    with pytest.warns(GreenprecWarning, match=r"amdsmi/gpu-1 \(AMD Instinct MI250X\) reads 0 W"):
        m = run()
    assert m.counted_domains == ["amdsmi/gpu-0"]
    assert set(m.domains) == {"amdsmi/gpu-0", "amdsmi/gpu-1"}
    assert m.energy_j == pytest.approx(500.0 * m.duration_s, rel=0.02)


def test_measuring_only_a_silent_die_is_refused(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install([FakeGpu(uuid(0), power_w=500.0), FakeGpu(uuid(1), power_w=0.0)])
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    with pytest.raises(MeterError, match=r"GPU 1 .* read 0 W and no energy.*CodeCarbon #1097"):
        run()


# -- which GPUs -----------------------------------------------------------------------------
def four_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid(n), asic_serial=serial(n), power_w=100.0 + n) for n in range(4)]


def serial(n: int) -> int:
    return 0xCF1182F2988C0A40 + n


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"HIP_VISIBLE_DEVICES": "1"}, ["amdsmi/gpu-1"]),
        ({"CUDA_VISIBLE_DEVICES": "3, 1"}, ["amdsmi/gpu-3", "amdsmi/gpu-1"]),
        ({"ROCR_VISIBLE_DEVICES": "2,3"}, ["amdsmi/gpu-2", "amdsmi/gpu-3"]),
        # HIP picks by position among what ROCr left visible.
        ({"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": "1"}, ["amdsmi/gpu-3"]),
        # HIP_VISIBLE_DEVICES wins over CUDA_VISIBLE_DEVICES.
        ({"HIP_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "2"}, ["amdsmi/gpu-0"]),
        ({"ROCR_VISIBLE_DEVICES": uuid(3)}, ["amdsmi/gpu-3"]),
        ({"ROCR_VISIBLE_DEVICES": "GPU-" + uuid(2).upper()}, ["amdsmi/gpu-2"]),
        # ROCr's own UUIDs (rocminfo): GPU- and the ASIC serial in hex.
        ({"ROCR_VISIBLE_DEVICES": f"GPU-{serial(1):016x}"}, ["amdsmi/gpu-1"]),
        ({"HIP_VISIBLE_DEVICES": f"GPU-{serial(3):016x},0"}, ["amdsmi/gpu-3", "amdsmi/gpu-0"]),
        ({"HIP_VISIBLE_DEVICES": "0,1,1"}, ["amdsmi/gpu-0", "amdsmi/gpu-1"]),
    ],
)
def test_visible_devices_pick_the_jobs_gpus(
    install: Install,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    expected: list[str],
) -> None:
    install(four_gpus())
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert AmdsmiMeter.probe().domains == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error", GreenprecWarning)
        m = run(0.15)
    assert list(m.domains) == expected


def test_a_visible_list_stops_at_the_first_unknown_entry(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(four_gpus())
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1,7,0")
    with pytest.warns(GreenprecWarning, match=r"HIP_VISIBLE_DEVICES='1,7,0': '7' names no GPU"):
        m = run(0.15)
    assert list(m.domains) == ["amdsmi/gpu-1"]


@pytest.mark.parametrize(
    "environment",
    [
        {"HIP_VISIBLE_DEVICES": ""},
        {"CUDA_VISIBLE_DEVICES": "-1"},
        {"ROCR_VISIBLE_DEVICES": "GPU-ffffffff"},
        {"ROCR_VISIBLE_DEVICES": "2", "HIP_VISIBLE_DEVICES": "1"},
    ],
)
def test_visible_devices_hiding_every_gpu_make_it_unavailable(
    install: Install, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    install(four_gpus())
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    probe = AmdsmiMeter.probe()
    assert not probe.available and "makes no GPU visible" in probe.reason
    assert next(iter(environment)) in probe.reason


def test_devices_option_overrides_the_variables(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(four_gpus())
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    assert list(run(0.15, devices="0,2").domains) == ["amdsmi/gpu-0", "amdsmi/gpu-2"]
    assert list(run(0.15, devices=[3]).domains) == ["amdsmi/gpu-3"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"devices": "a"}, "amdsmi option devices"),
        ({"devices": ""}, "amdsmi option devices"),
        ({"source": "counter"}, "amdsmi option source must be 'auto' or 'power'"),
        ({"counter_check_s": -1}, "amdsmi option counter_check_s"),
        ({"counter_check_s": 60}, "at most 10 seconds"),
    ],
)
def test_bad_options_are_config_errors(
    install: Install, options: dict[str, object], match: str
) -> None:
    install(four_gpus())
    with pytest.raises(ConfigError, match=match):
        AmdsmiMeter(**options)


def test_devices_beyond_the_machine_are_config_errors(install: Install) -> None:
    install(two_gpus())
    with pytest.raises(ConfigError, match="names GPU 5, but amdsmi sees 2"):
        run(devices="0,5")


# -- auto -----------------------------------------------------------------------------------
def test_auto_picks_amdsmi_when_it_is_available(install: Install, tmp_path: Path) -> None:
    install(two_gpus())
    options = {"root": str(tmp_path / "none"), **_CHECK}
    with greenprec.measure(interval=0.05, meter_options=options) as m:
        time.sleep(0.15)
    assert m.meters == ["amdsmi"]
    assert set(m.domains) == {"amdsmi/gpu-0", "amdsmi/gpu-1"}


# -- machine state --------------------------------------------------------------------------
def test_machine_state_reads_the_visible_amd_gpus(
    install: Install, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gpus = [
        FakeGpu(uuid(0), hotspot_c=61, gfx_clock_mhz=1700, power_cap_uw=500_000_000),
        FakeGpu(
            uuid(1),
            hotspot_c=75,
            gfx_clock_mhz=1500,
            power_cap_uw=560_000_000,
            violations={"active_ppt_pwr": True, "active_hbm_thrm": True},
        ),
        FakeGpu(uuid(2), hotspot_c=99, violations={"active_prochot_thrm": True}),
    ]
    _module, calls = install(gpus)
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "0,1")
    state = read_machine_state(sysfs_root=tmp_path / "missing")
    assert state.sources == ["amdsmi"]
    assert state.gpu_temp_c == 75.0
    assert state.gpu_sm_clock_mhz == 1600.0
    assert state.gpu_power_limit_w == pytest.approx(1060.0)
    assert state.gpu_throttle_reasons == ["sw_power_cap", "hw_thermal_slowdown"]
    assert calls == ["init", "shutdown"]


def test_machine_state_without_what_amdsmi_cannot_tell(install: Install, tmp_path: Path) -> None:
    # amdsmi before 6.3 has no violation status; a GPU without its power cap leaves the sum out.
    install(
        [FakeGpu(uuid(0), violations=None), FakeGpu(uuid(1), power_cap_uw=None, violations=None)]
    )
    state = read_machine_state(sysfs_root=tmp_path / "missing")
    assert state.gpu_temp_c == 50.0 and state.gpu_sm_clock_mhz == 2100.0
    assert state.gpu_power_limit_w is None
    assert state.gpu_throttle_reasons == []
    assert read_machine_state(sysfs_root=tmp_path / "missing", nvml=False).sources == []
    assert read_machine_state(sysfs_root=tmp_path / "missing", amdsmi=False).sources == []


def test_machine_state_without_amdsmi_or_its_driver(
    install: Install, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install([FakeGpu(uuid(0))], init_error=AmdSmiLibraryException(STATUS_DRIVER_NOT_LOADED))
    assert read_machine_state(sysfs_root=tmp_path / "missing").sources == []
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    assert read_machine_state(sysfs_root=tmp_path / "missing").sources == []

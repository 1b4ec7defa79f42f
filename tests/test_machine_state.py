"""The machine's state per run (greenprec.machine): fake sysfs trees, the fake NVML, runs.csv."""

from __future__ import annotations

import csv
import json
import os
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes.fake_pynvml import REASON_BITS, FakeGpu, NVMLError_DriverNotLoaded, make_pynvml, uuid
from greenprec.cli import app
from greenprec.machine import SYSFS_ROOT_VARIABLE, read_machine_state, throttle_reason_names
from greenprec.results import INDEX_COLUMNS, MachineState, RunRecord
from greenprec.results.index import index_text, read_legacy_runs, record_row

TESTS_DIR = Path(__file__).resolve().parent


# -- fake sysfs trees, laid out as the kernel lays them out -----------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def add_cpu(sysfs: Path, n: int, khz: str, *, policy: bool = False) -> None:
    """cpu<n>/cpufreq; with ``policy``, a symlink to cpufreq/policy<n> as recent kernels have."""
    cpu = sysfs / "devices" / "system" / "cpu" / f"cpu{n}"
    cpu.mkdir(parents=True, exist_ok=True)
    if policy:
        target = sysfs / "devices" / "system" / "cpu" / "cpufreq" / f"policy{n}"
        write(target / "scaling_cur_freq", khz + "\n")
        (cpu / "cpufreq").symlink_to(Path("..") / "cpufreq" / f"policy{n}")
    else:
        write(cpu / "cpufreq" / "scaling_cur_freq", khz + "\n")


def add_zone(sysfs: Path, n: int, kind: str, millidegrees: str) -> None:
    """devices/virtual/thermal/thermal_zone<n>, linked from class/thermal as in /sys."""
    zone = sysfs / "devices" / "virtual" / "thermal" / f"thermal_zone{n}"
    write(zone / "type", kind + "\n")
    write(zone / "temp", millidegrees + "\n")
    link = sysfs / "class" / "thermal" / f"thermal_zone{n}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../../devices/virtual/thermal") / f"thermal_zone{n}")


def add_hwmon(sysfs: Path, n: int, name: str, sensors: dict[int, tuple[str, str | None]]) -> None:
    """devices/platform/<name>.0/hwmon/hwmon<n> with temp<M>_input (and _label), linked from
    class/hwmon."""
    hwmon = sysfs / "devices" / "platform" / f"{name}.0" / "hwmon" / f"hwmon{n}"
    write(hwmon / "name", name + "\n")
    for index, (millidegrees, label) in sensors.items():
        write(hwmon / f"temp{index}_input", millidegrees + "\n")
        if label is not None:
            write(hwmon / f"temp{index}_label", label + "\n")
    link = sysfs / "class" / "hwmon" / f"hwmon{n}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../../devices/platform") / f"{name}.0" / "hwmon" / f"hwmon{n}")


def intel_box(tmp_path: Path) -> Path:
    """Three CPUs at 2.0, 3.0 and 2.5 GHz; x86_pkg_temp at 55 °C, an ACPI zone at 90 °C (not
    a CPU sensor), coretemp with a 61 °C package; and a thermal zone and a cpufreq file that
    are symlinks out of the tree, at 99 °C and 9 GHz."""
    sysfs = tmp_path / "sys"
    add_cpu(sysfs, 0, "2000000")
    add_cpu(sysfs, 1, "3000000")
    add_cpu(sysfs, 2, "2500000", policy=True)
    (sysfs / "devices" / "system" / "cpu" / "cpuidle").mkdir()
    add_zone(sysfs, 0, "x86_pkg_temp", "55000")
    add_zone(sysfs, 1, "acpitz", "90000")
    add_hwmon(sysfs, 0, "coretemp", {1: ("61000", "Package id 0"), 2: ("58000", "Core 0")})
    add_hwmon(sysfs, 1, "nvme", {1: ("70000", "Composite")})  # not a CPU
    outside = tmp_path / "outside"
    write(outside / "thermal_zone9" / "type", "x86_pkg_temp\n")
    write(outside / "thermal_zone9" / "temp", "99000\n")
    (sysfs / "class" / "thermal" / "thermal_zone9").symlink_to(outside / "thermal_zone9")
    freq = write(outside / "scaling_cur_freq", "9000000\n")
    cpu3 = sysfs / "devices" / "system" / "cpu" / "cpu3" / "cpufreq"
    cpu3.mkdir(parents=True)
    (cpu3 / "scaling_cur_freq").symlink_to(freq)
    return sysfs


def test_reads_cpu_frequency_and_the_hottest_cpu_sensor(tmp_path: Path) -> None:
    state = read_machine_state(sysfs_root=intel_box(tmp_path), nvml=False)
    assert state.cpu_freq_mhz == pytest.approx(2500.0)
    assert state.cpu_temp_c == 61.0  # coretemp's package; ACPI's 90 °C is no CPU sensor
    assert state.sources == ["cpufreq", "thermal_zone", "hwmon"]
    assert state.gpu_temp_c is None and state.gpu_throttle_reasons == []


def test_links_out_of_the_sysfs_root_are_not_followed(tmp_path: Path) -> None:
    sysfs = intel_box(tmp_path)
    state = read_machine_state(sysfs_root=sysfs, nvml=False)
    # Neither the 99 °C zone nor the 9 GHz CPU outside the tree is read.
    assert state.cpu_temp_c == 61.0 and state.cpu_freq_mhz == pytest.approx(2500.0)
    # A whole class directory linked out of the tree is not listed either.
    other = tmp_path / "other"
    add_zone(other, 0, "x86_pkg_temp", "45000")
    lonely = tmp_path / "lonely"
    (lonely / "class").mkdir(parents=True)
    (lonely / "class" / "thermal").symlink_to(other / "class" / "thermal")
    assert read_machine_state(sysfs_root=lonely, nvml=False).cpu_temp_c is None
    # The root itself may be a link: its real path is the tree.
    link = tmp_path / "sys-link"
    link.symlink_to(sysfs)
    assert read_machine_state(sysfs_root=link, nvml=False).cpu_temp_c == 61.0


def test_impossible_values_are_refused_never_recorded(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    for n, khz in enumerate(("0", "-100", "20000000", "fast", "1e6", "")):
        add_cpu(sysfs, n, khz)  # 0, negative, 20 GHz, text, not an integer, empty
    add_zone(sysfs, 0, "x86_pkg_temp", "200000")  # 200 °C
    add_zone(sysfs, 1, "cpu-thermal", "-50000")  # -50 °C
    add_zone(sysfs, 2, "k10temp", "hot")
    add_zone(sysfs, 3, "x86_pkg_temp\x1b[31m", "50000")  # a type that is no sensor name
    add_hwmon(sysfs, 0, "k10temp", {1: ("151000", "Tctl"), 2: ("9" * 80, None)})  # > 64 bytes
    state = read_machine_state(sysfs_root=sysfs, nvml=False)
    assert state == MachineState()
    # One plausible value among them is used, and only it.
    add_cpu(sysfs, 9, "1800000")
    add_zone(sysfs, 4, "x86_pkg_temp", "-39000")
    state = read_machine_state(sysfs_root=sysfs, nvml=False)
    assert state.cpu_freq_mhz == 1800.0 and state.cpu_temp_c == -39.0
    assert state.sources == ["cpufreq", "thermal_zone"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and FIFOs")
def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    add_cpu(sysfs, 0, "2000000")
    add_cpu(sysfs, 1, "3000000")
    locked = sysfs / "devices" / "system" / "cpu" / "cpu1" / "cpufreq" / "scaling_cur_freq"
    locked.chmod(0)
    fifo_cpu = sysfs / "devices" / "system" / "cpu" / "cpu2" / "cpufreq"
    fifo_cpu.mkdir(parents=True)
    os.mkfifo(fifo_cpu / "scaling_cur_freq")  # must not hang
    (sysfs / "devices" / "system" / "cpu" / "cpu3" / "cpufreq" / "scaling_cur_freq").mkdir(
        parents=True
    )  # a directory in a file's place
    add_zone(sysfs, 0, "x86_pkg_temp", "52000")
    (sysfs / "devices" / "virtual" / "thermal" / "thermal_zone0" / "temp").chmod(0)
    add_zone(sysfs, 1, "x86_pkg_temp", "48000")
    (sysfs / "class" / "thermal" / "thermal_zone2").symlink_to("nowhere")  # dangling
    try:
        state = read_machine_state(sysfs_root=sysfs, nvml=False)
    finally:
        locked.chmod(0o644)
    if os.geteuid() == 0:  # root reads mode-0 files: only the FIFO and folder are skipped
        assert state.cpu_freq_mhz == pytest.approx(2500.0) and state.cpu_temp_c == 52.0
    else:
        assert state.cpu_freq_mhz == 2000.0 and state.cpu_temp_c == 48.0


def test_amd_tdie_is_preferred_to_tctl_and_unlabelled_sensors_count(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    add_hwmon(
        sysfs, 0, "k10temp", {1: ("80000", "Tctl"), 2: ("60000", "Tdie"), 3: ("58000", "Tccd1")}
    )
    assert read_machine_state(sysfs_root=sysfs, nvml=False).cpu_temp_c == 60.0
    other = tmp_path / "other"
    add_hwmon(other, 3, "zenpower", {1: ("47500", None), 2: ("46000", None)})
    add_hwmon(other, 4, "k10temp", {1: ("71000", "Tctl")})  # no Tdie: Tctl is all there is
    state = read_machine_state(sysfs_root=other, nvml=False)
    assert state.cpu_temp_c == 71.0 and state.sources == ["hwmon"]


def test_no_tree_gives_an_empty_state(tmp_path: Path) -> None:
    assert read_machine_state(sysfs_root=tmp_path / "missing", nvml=False) == MachineState()
    write(tmp_path / "a-file", "x")
    assert read_machine_state(sysfs_root=tmp_path / "a-file", nvml=False) == MachineState()
    # This machine's own /sys: whatever it lets be read, no error.
    state = read_machine_state(sysfs_root="/sys", nvml=False)
    assert set(state.sources) <= {"cpufreq", "thermal_zone", "hwmon"}


def test_the_sysfs_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SYSFS_ROOT_VARIABLE, str(intel_box(tmp_path)))
    assert read_machine_state(nvml=False).cpu_temp_c == 61.0
    other = tmp_path / "other"
    add_zone(other, 0, "x86_pkg_temp", "40000")
    assert read_machine_state(sysfs_root=other, nvml=False).cpu_temp_c == 40.0


# -- NVML ----------------------------------------------------------------------------------
@pytest.fixture
def no_cuda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def install(
    monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu], **kwargs: object
) -> tuple[types.ModuleType, list[str]]:
    calls: list[str] = []
    module = make_pynvml(gpus, calls=calls, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module, calls


def busy_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid(0), temperature_c=50, sm_clock_mhz=1410, power_limit_w=400.0,
                throttle_reasons=REASON_BITS["GpuIdle"]),
        FakeGpu(uuid(1), temperature_c=70, sm_clock_mhz=1200, power_limit_w=300.0,
                throttle_reasons=REASON_BITS["SwThermalSlowdown"] | REASON_BITS["HwSlowdown"]),
    ]  # fmt: skip


@pytest.mark.parametrize("reasons_api", ["event", "throttle"])
def test_nvml_gives_hottest_gpu_mean_clock_summed_limits_and_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cuda_env: None, reasons_api: str
) -> None:
    _, calls = install(monkeypatch, busy_gpus(), reasons_api=reasons_api)
    state = read_machine_state(sysfs_root=tmp_path / "missing")
    assert state.gpu_temp_c == 70.0
    assert state.gpu_sm_clock_mhz == pytest.approx(1305.0)
    assert state.gpu_power_limit_w == pytest.approx(700.0)
    assert state.gpu_throttle_reasons == ["gpu_idle", "hw_slowdown", "sw_thermal_slowdown"]
    assert state.sources == ["nvml"]
    assert calls == ["init", "shutdown"]


def test_nvml_reads_only_the_gpus_the_run_can_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, busy_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid(1))
    state = read_machine_state(sysfs_root=tmp_path / "missing")
    assert (state.gpu_temp_c, state.gpu_sm_clock_mhz, state.gpu_power_limit_w) == (70, 1200, 300)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert read_machine_state(sysfs_root=tmp_path / "missing").gpu_temp_c is None


def test_nvml_values_that_cannot_be_read_or_are_impossible_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cuda_env: None
) -> None:
    gpus = busy_gpus()
    gpus[0].temperature_c = 500  # impossible
    gpus[0].sm_clock_mhz = 0
    gpus[1].power_limit_w = None  # NotSupported: a sum of one of two limits would be wrong
    gpus[1].throttle_reasons = None
    install(monkeypatch, gpus)
    state = read_machine_state(sysfs_root=tmp_path / "missing")
    assert state.gpu_temp_c == 70.0 and state.gpu_sm_clock_mhz == 1200.0
    assert state.gpu_power_limit_w is None
    assert state.gpu_throttle_reasons == ["gpu_idle"]


def test_no_nvml_no_driver_or_a_failing_one_never_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cuda_env: None
) -> None:
    missing = tmp_path / "missing"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert read_machine_state(sysfs_root=missing) == MachineState()
    install(monkeypatch, busy_gpus(), init_error=NVMLError_DriverNotLoaded())
    assert read_machine_state(sysfs_root=missing) == MachineState()
    module, calls = install(monkeypatch, busy_gpus())

    def broken(*args: object) -> int:
        raise RuntimeError("a binding bug")

    module.nvmlDeviceGetCount = broken  # type: ignore[attr-defined]
    assert read_machine_state(sysfs_root=missing) == MachineState()
    assert calls == ["init", "shutdown"]
    install(monkeypatch, [])  # NVML with no GPU
    assert read_machine_state(sysfs_root=missing) == MachineState()


def test_throttle_reason_names_follow_either_pynvml_naming() -> None:
    old = types.SimpleNamespace(nvmlClocksThrottleReasonSwPowerCap=0x4)
    assert throttle_reason_names(old, 0x4 | 0x100) == ["sw_power_cap", "display_clock_setting"]
    assert throttle_reason_names(types.SimpleNamespace(), 0) == []
    assert throttle_reason_names(types.SimpleNamespace(), 1 << 40) == []  # unknown bits


# -- runs.csv ------------------------------------------------------------------------------
def record_with_state() -> RunRecord:
    return RunRecord(
        run_id="fp32-001", order=1, policy="fp32", repetition=1, status="done", energy_j=10.0,
        host="node1", idle_power_w=42.5,
        machine_start=MachineState(
            cpu_freq_mhz=2500.0, cpu_temp_c=55.0, gpu_temp_c=41.0, gpu_sm_clock_mhz=1410.0,
            gpu_power_limit_w=700.0, gpu_throttle_reasons=["gpu_idle", "sw_power_cap"],
        ),
        machine_end=MachineState(cpu_temp_c=71.0, gpu_temp_c=80.0),
    )  # fmt: skip


def test_runs_csv_columns_follow_host_and_read_back() -> None:
    machine_columns = [
        "cpu_freq_mhz_start", "cpu_temp_c_start", "gpu_temp_c_start", "gpu_sm_clock_mhz_start",
        "gpu_power_limit_w", "gpu_throttle_reasons", "idle_power_w", "cpu_temp_c_end",
        "gpu_temp_c_end",
    ]  # fmt: skip
    host = INDEX_COLUMNS.index("host")
    assert list(INDEX_COLUMNS[host + 1 : host + 1 + len(machine_columns)]) == machine_columns
    row = record_row(record_with_state())
    assert row["gpu_throttle_reasons"] == "gpu_idle;sw_power_cap"
    assert (row["cpu_temp_c_start"], row["cpu_temp_c_end"], row["idle_power_w"]) == (55, 71, 42.5)
    bare = record_row(RunRecord(run_id="a", order=1, policy="fp32", repetition=1))
    assert all(bare[column] is None for column in machine_columns)
    text = index_text([record_with_state()])
    records, problems, _ = read_legacy_runs(text, "runs.csv")
    assert problems == []
    (record,) = records
    assert record.machine_start == record_with_state().machine_start
    assert record.machine_end == record_with_state().machine_end
    assert record.idle_power_w == 42.5 and record.metrics == {
        "test_accuracy": None,
        "test_loss": None,
    }


def test_legacy_reader_leaves_out_a_bad_machine_value_and_keeps_the_run() -> None:
    text = (
        "run_id,policy,status,energy_j,cpu_temp_c_start,gpu_temp_c_end,idle_power_w,"
        "gpu_throttle_reasons\n"
        "fp32-001,fp32,done,10.0,warm,80.5,,sw_power_cap; hw_slowdown\n"
        "fp32-002,fp32,done,11.0,,,,\n"
    )
    records, problems, _ = read_legacy_runs(text, "runs.csv")
    assert [(p.line, p.column) for p in problems] == [(2, "cpu_temp_c_start")]
    first, second = records
    assert first.machine_start is not None and first.machine_start.cpu_temp_c is None
    assert first.machine_start.gpu_throttle_reasons == ["sw_power_cap", "hw_slowdown"]
    assert first.machine_end == MachineState(gpu_temp_c=80.5)
    assert first.idle_power_w is None and first.metrics == {}
    assert second.machine_start is None and second.machine_end is None


# -- a whole experiment --------------------------------------------------------------------
@pytest.fixture
def test_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def test_compare_records_the_machine_state_of_each_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_workloads: None, no_cuda_env: None
) -> None:
    monkeypatch.setenv(SYSFS_ROOT_VARIABLE, str(intel_box(tmp_path)))
    install(monkeypatch, busy_gpus())
    out = tmp_path / "exp"
    result = CliRunner().invoke(
        app,
        [
            "compare", "fp32", "mixed", "--workload", "experiment_workloads:sleepy",
            "--runs", "1", "--isolation", "inline", "--param", "sleep_s=0.05", "--out", str(out),
            "--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for run_file in sorted((out / "runs").glob("*.json")):
        run = json.loads(run_file.read_text())
        for state in (run["machine_start"], run["machine_end"]):
            assert state["cpu_freq_mhz"] == pytest.approx(2500.0)
            assert state["cpu_temp_c"] == 61.0 and state["gpu_temp_c"] == 70.0
            assert state["sources"] == ["cpufreq", "thermal_zone", "hwmon", "nvml"]
    with (out / "runs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert float(row["cpu_freq_mhz_start"]) == pytest.approx(2500.0)
        assert float(row["cpu_temp_c_start"]) == 61.0 and float(row["cpu_temp_c_end"]) == 61.0
        assert float(row["gpu_temp_c_start"]) == 70.0 and float(row["gpu_temp_c_end"]) == 70.0
        assert float(row["gpu_sm_clock_mhz_start"]) == pytest.approx(1305.0)
        assert float(row["gpu_power_limit_w"]) == 700.0
        assert row["gpu_throttle_reasons"] == "gpu_idle;hw_slowdown;sw_thermal_slowdown"
        assert row["idle_power_w"] == ""


@pytest.mark.slow
def test_a_run_process_reads_the_tree_the_environment_names_and_a_failed_run_keeps_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_workloads: None
) -> None:
    import subprocess

    sysfs = intel_box(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "exp"
    completed = subprocess.run(
        [
            sys.executable, "-m", "greenprec", "compare", "fp32", "--runs", "2",
            "--workload", "experiment_workloads:fails_on_repetition_two",
            "--param", f"marker_dir={markers}", "--out", str(out), "--no-shuffle",
            "--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet",
        ],
        capture_output=True, text=True, check=False,
        env={**os.environ, SYSFS_ROOT_VARIABLE: str(sysfs)},
    )  # fmt: skip
    runs = {
        path.stem: json.loads(path.read_text()) for path in sorted((out / "runs").glob("*.json"))
    }
    assert len(runs) == 2, completed.stderr
    done = next(run for run in runs.values() if run["status"] == "done")
    failed = next(run for run in runs.values() if run["status"] == "failed")
    assert done["machine_start"]["cpu_temp_c"] == 61.0
    assert done["machine_end"]["cpu_freq_mhz"] == pytest.approx(2500.0)
    assert failed["machine_start"]["cpu_temp_c"] == 61.0 and failed["machine_end"] is None

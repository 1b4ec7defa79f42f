"""The energibridge meter, driven through measure() with fake EnergiBridge executables."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import greenprec
from greenprec import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.formats.energibridge_csv import INTEL_RAPL_RANGE_J, read_energibridge_csv
from greenprec.meters.energibridge import ENV_EXECUTABLE, EnergiBridgeMeter

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fake_energibridge import (
    WRITTEN,
    expected_power_w,
    leftover_groups,
    logged_arguments,
    logged_processes,
    runs_so_far,
    write_fake_energibridge,
)

FAST = {"interval_ms": 50, "stop_timeout_s": 3}


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every EnergiBridge the meter starts is gone when the measurement is, with its group:
    an orphan reparented to init is no child of this process any more, so the groups the
    fakes recorded are checked too."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    runs_before = runs_so_far()
    yield
    left = [
        child
        for child in psutil.Process().children(recursive=True)
        if child.pid not in before and child.status() != psutil.STATUS_ZOMBIE
    ]
    assert not left, f"processes left running: {[c.cmdline() for c in left]}"
    assert leftover_groups(WRITTEN, since=runs_before) == {}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_EXECUTABLE, raising=False)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One fake per layout for the whole module, so each is probed once (probes are cached)."""
    made = {}
    for layout in ("intel", "amd", "macos"):
        made[layout] = write_fake_energibridge(tmp_path_factory.mktemp(layout), layout=layout)
    return made


def measure_fake(
    executable: Path, seconds: float = 0.2, *, until_it_exits: bool = False, **options: object
) -> greenprec.Measurement:
    """A block of ``seconds`` measured by the fake; with ``until_it_exits``, the block lasts
    until the fake's own run has exited (for the fakes that exit or die mid-block).

    Why wait on the process and not a time: on a loaded machine the fake's Python took longer
    to start than a 0.3 s block, the block ended first and nothing raised (a flaky test).
    """
    with greenprec.measure(
        "energibridge",
        interval=0.05,
        meter_options={"executable": str(executable), **FAST, **options},
    ) as m:
        time.sleep(seconds)
        if until_it_exits:
            _wait_until_the_block_run_exits(executable)
    return m


def _wait_until_the_block_run_exits(executable: Path, bound_s: float = 60.0) -> None:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        runs = [run for run in logged_processes(executable) if run["block"]]
        if runs and not _running(runs[-1]["pid"]):
            return
        time.sleep(0.02)
    raise AssertionError(f"the fake's run did not exit within {bound_s} s")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child its parent has not reaped yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("layout", "counted", "reported"),
    [
        (
            "intel",
            ["energibridge/dram", "energibridge/package"],
            ["energibridge/pp0", "energibridge/pp1"],
        ),
        ("amd", ["energibridge/cpu"], ["energibridge/core-0", "energibridge/core-1"]),
        ("macos", ["energibridge/system"], []),
    ],
)
def test_layouts_give_their_domains_and_the_block_energy(
    fakes: dict[str, Path], layout: str, counted: list[str], reported: list[str]
) -> None:
    m = measure_fake(fakes[layout])
    assert m.meters == ["energibridge"] and m.estimated is False
    assert sorted(m.counted_domains) == counted
    assert sorted(m.domains) == sorted(counted + reported)
    # The window is cut to the block: constant power times the block's duration.
    assert m.energy_j == pytest.approx(expected_power_w(layout) * m.duration_s, rel=0.04)
    assert m.duration_s >= 0.2
    samples = m.samples
    assert set(samples["domain"]) == set(counted + reported)
    for domain in m.domains:
        energy = samples[samples["domain"] == domain]["energy_j"]
        assert energy.is_monotonic_increasing


def test_arguments_interval_and_placeholder(fakes: dict[str, Path]) -> None:
    measure_fake(fakes["intel"], 0.05)
    block_run = logged_arguments(fakes["intel"])[-1]
    assert block_run[0] == "-o" and block_run[1].endswith(".csv")
    assert block_run[2:4] == ["-i", "50"]
    assert "-g" not in block_run
    assert Path(block_run[4]).name == "sleep" and float(block_run[5]) > 1e5


def test_gpu_option_passes_dash_g_and_counts_gpus_in_watts(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, layout="intel")
    m = measure_fake(fake, gpu="true")
    assert "-g" in logged_arguments(fake)[-1]
    assert "energibridge/gpu-0" in m.counted_domains and "energibridge/gpu-1" in m.counted_domains
    assert m.domains["energibridge/gpu-0"] == pytest.approx(150.0 * m.duration_s, rel=0.04)
    assert m.energy_j == pytest.approx(expected_power_w("intel", gpu=True) * m.duration_s, rel=0.04)


@pytest.mark.parametrize(
    "counter_range_j",
    [None, str(INTEL_RAPL_RANGE_J), f"PACKAGE_ENERGY (J)={INTEL_RAPL_RANGE_J:g},dram=262144"],
    ids=["inferred", "one-number", "per-column"],
)
def test_a_counter_wrap_during_the_block_is_corrected(
    tmp_path: Path, counter_range_j: str | None
) -> None:
    # The package counter starts 1 J below Intel's range: it wraps 25 ms into the run. Before,
    # without a range the step was taken as a restart from 0 and the block ~5 % short; the
    # range is now inferred, and a range per column arrives as one option string.
    fake = write_fake_energibridge(
        tmp_path,
        ranges={"PACKAGE_ENERGY (J)": INTEL_RAPL_RANGE_J},
        offset_j={"PACKAGE_ENERGY (J)": INTEL_RAPL_RANGE_J - 1.0 - 40.0 * 0.3},
        startup_s=0.0,
    )
    options = {} if counter_range_j is None else {"counter_range_j": counter_range_j}
    # What the reader corrected is said, as it is for an imported file.
    with pytest.warns(
        GreenprecWarning, match=r"EnergiBridge: .*wrap-around.*'PACKAGE_ENERGY \(J\)' corrected"
    ):
        m = measure_fake(fake, 0.4, **options)
    assert m.domains["energibridge/package"] == pytest.approx(40.0 * m.duration_s, rel=0.02)


def test_early_exit_is_a_meter_error_with_its_stderr(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="early-exit")
    with pytest.raises(MeterError, match=r"exited with code 3 before the block ended.*sensor"):
        measure_fake(fake, 0.3, until_it_exits=True)
    assert_whole_group_gone(fake)


def assert_whole_group_gone(fake: Path) -> None:
    """Each run of the fake had a group of its own, and nothing of it is running.

    Before, a failed EnergiBridge's placeholder (``sleep 1000000``) lived on under init, and
    the probe's trial run shared this process's group.
    """
    runs = logged_processes(fake)
    assert runs, "the fake never ran"
    assert all(run["pgid"] == run["pid"] for run in runs)
    # Dead, not yet reaped by init (a zombie), is gone: os.killpg(pgid, 0) still finds those.
    assert leftover_groups([fake]) == {}


def test_an_exit_before_the_first_row_leaves_no_process(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="exit-at-start")
    with pytest.raises(
        MeterError, match=r"exited with code 2 before its first sample.*no RAPL domain"
    ):
        measure_fake(fake)
    assert_whole_group_gone(fake)


def test_a_death_mid_block_leaves_no_process(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="die")
    with pytest.raises(MeterError, match=r"exited with code -9 before the block ended"):
        measure_fake(fake, 0.5, until_it_exits=True)
    assert_whole_group_gone(fake)


def test_a_normal_stop_leaves_no_process(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path)
    measure_fake(fake, 0.1)
    assert [run["block"] for run in logged_processes(fake)] == [False, True]
    assert_whole_group_gone(fake)


def test_a_hung_trial_run_leaves_no_process(tmp_path: Path) -> None:
    # The probe kills a trial run that does not finish; what it started must go with it.
    fake = write_fake_energibridge(tmp_path, behaviour="probe-hang")
    probe = EnergiBridgeMeter.probe(executable=str(fake), start_timeout_s=0.5)
    assert not probe.available
    assert "did not finish a 0.1 s trial run within 0.6 s" in probe.reason
    assert_whole_group_gone(fake)


def test_garbage_output_names_file_and_line(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, layout="macos", behaviour="garbage")
    with pytest.raises(
        MeterError, match=r"malformed CSV: .*energibridge\.csv:4: non-numeric value 'abc'"
    ):
        measure_fake(fake, 0.3)


def test_ignoring_sigint_gets_it_killed_with_a_warning(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="ignore-sigint")
    with pytest.warns(
        GreenprecWarning, match=r"did not stop within 0.3 s of SIGINT and was killed"
    ):
        m = measure_fake(fake, 0.2, stop_timeout_s="0.3")
    # It kept sampling while it ignored SIGINT, so the block is still fully covered.
    assert m.energy_j == pytest.approx(expected_power_w("intel") * m.duration_s, rel=0.04)


def test_a_hung_energibridge_is_an_error_not_a_short_figure(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="stall")
    with (
        pytest.warns(GreenprecWarning, match="was killed"),
        pytest.raises(MeterError, match=r"samples end 0\.\d s before the block did"),
    ):
        measure_fake(fake, 0.9, stop_timeout_s=0.2)


def test_msr_permission_failure_explains_the_fix(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, behaviour="msr-denied")
    probe = EnergiBridgeMeter.probe(executable=str(fake))
    assert not probe.available
    assert "permission denied" in probe.reason and "cap_sys_rawio" in probe.reason
    assert "modprobe msr" in probe.reason and "PermissionDenied" in probe.reason
    with pytest.raises(MeterUnavailable, match="cap_sys_rawio"):
        measure_fake(fake)


def test_missing_executable_is_unavailable_with_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MeterUnavailable, match=r"does not exist: download a release"):
        measure_fake(tmp_path / "nope")
    monkeypatch.setenv("PATH", str(tmp_path))
    probe = EnergiBridgeMeter.probe()
    assert not probe.available and "no `energibridge` on PATH" in probe.reason
    assert "GREENPREC_ENERGIBRIDGE" in probe.reason
    (tmp_path / "plain").write_text("not executable")
    assert "is not executable" in EnergiBridgeMeter.probe(executable=tmp_path / "plain").reason


def test_environment_variable_and_path_find_it(
    fakes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_EXECUTABLE, str(fakes["macos"]))
    with greenprec.measure("energibridge", interval=0.05, meter_options=FAST) as m:
        time.sleep(0.1)
    assert m.counted_domains == ["energibridge/system"]
    monkeypatch.delenv(ENV_EXECUTABLE)
    monkeypatch.setenv("PATH", f"{fakes['amd'].parent}:{monkeypatch_path()}")
    assert EnergiBridgeMeter.probe().domains == [
        "energibridge/core-0",
        "energibridge/core-1",
        "energibridge/cpu",
    ]


def monkeypatch_path() -> str:
    import os

    return os.environ.get("PATH", "")


def test_probe_reports_domains_and_is_cached(fakes: dict[str, Path]) -> None:
    runs = len(logged_arguments(fakes["intel"]))
    first = EnergiBridgeMeter.probe(executable=str(fakes["intel"]))
    assert first.available
    assert first.domains == [
        "energibridge/dram",
        "energibridge/package",
        "energibridge/pp0",
        "energibridge/pp1",
    ]
    again = EnergiBridgeMeter.probe(executable=str(fakes["intel"]), interval_ms="100")
    assert again == first
    assert len(logged_arguments(fakes["intel"])) <= runs + 1


def test_a_machine_without_energy_columns_is_unavailable(tmp_path: Path) -> None:
    fake = write_fake_energibridge(tmp_path, layout="no-energy")
    probe = EnergiBridgeMeter.probe(executable=str(fake))
    assert not probe.available
    assert "no energy or power column" in probe.reason


def test_keep_csv_keeps_the_raw_file(fakes: dict[str, Path], tmp_path: Path) -> None:
    kept = tmp_path / "out" / "run_1.csv"
    m = measure_fake(fakes["macos"], 0.2, keep_csv=str(kept))
    recording = read_energibridge_csv(kept)
    assert recording.counted_domains == ["energibridge/system"]
    # The file runs from EnergiBridge's start to its exit: a little more than the block.
    assert recording.energy_j >= m.energy_j


def test_a_block_shorter_than_one_sample(fakes: dict[str, Path]) -> None:
    m = measure_fake(fakes["macos"], 0.0)
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, abs=0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval_ms": "fast"}, "interval_ms must be a whole number"),
        ({"interval_ms": 0}, "interval_ms must be a whole number"),
        ({"gpu": "maybe"}, "gpu must be true or false"),
        ({"stop_timeout_s": "-1"}, "stop_timeout_s must be a positive number"),
        ({"counter_range_j": "big"}, "counter_range_j"),
        ({"counter_range_j": "CPU_ENERGY(J)=5"}, "no EnergiBridge counter column"),
    ],
)
def test_bad_options_are_config_errors(
    fakes: dict[str, Path], options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        greenprec.measure(
            "energibridge", meter_options={"executable": str(fakes["intel"]), **options}
        ).start()


def test_an_unknown_option_is_refused(fakes: dict[str, Path]) -> None:
    # A typo is the user's to fix (ConfigError), not a property of the machine (unavailable).
    with pytest.raises(ConfigError, match=r"meter 'energibridge' takes no option 'colour' \("):
        greenprec.measure(
            "energibridge", meter_options={"executable": str(fakes["intel"]), "colour": "red"}
        ).start()


def test_auto_uses_energibridge_when_no_rapl_or_nvml(
    fakes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvml: not installed
    monkeypatch.setenv(ENV_EXECUTABLE, str(fakes["intel"]))
    options = {"root": str(tmp_path / "no-powercap"), **FAST}
    with greenprec.measure(interval=0.05, meter_options=options) as m:
        time.sleep(0.1)
    assert m.meters == ["energibridge"]
    assert m.energy_j == pytest.approx(45.0 * m.duration_s, rel=0.05)


def test_auto_prefers_rapl_and_skips_energibridge(
    fakes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv(ENV_EXECUTABLE, str(fakes["intel"]))
    with greenprec.measure(interval=0.05, meter_options={"root": str(zone.parent)}) as m:
        pass
    assert m.meters == ["rapl"]

"""The EnergiBridge CSV reader: real macOS files from the seed study and synthetic layouts."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenprec import ConfigError
from greenprec.formats.energibridge_csv import (
    AMD_RAPL_RANGE_J,
    INTEL_RAPL_RANGE_J,
    EnergiBridgeStream,
    check_counter_range,
    parse_counter_ranges,
    read_energibridge_csv,
)

T0 = 1_700_000_000_000  # epoch ms of the first sample in synthetic files


def _seed_study() -> Path | None:
    for candidate in (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "seed-study",
        Path("/work/shared/data/seed-study"),
    ):
        if (candidate / "mixed_precision_false").is_dir():
            return candidate
    return None


SEED = _seed_study()
needs_seed = pytest.mark.skipif(SEED is None, reason="seed-study data folder is not present")


def write_csv(
    tmp_path: Path, header: list[str], rows: list[list[object]], name: str = "run.csv"
) -> Path:
    path = tmp_path / name
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- real data ------------------------------------------------------------------------------
@needs_seed
@pytest.mark.parametrize("group", ["mixed_precision_false", "mixed_precision_true"])
def test_seed_study_energy_matches_an_independent_computation(group: str) -> None:
    assert SEED is not None
    files = sorted((SEED / group).glob("run_*.csv"))[:3]
    assert files
    for file in files:
        recording = read_energibridge_csv(file)
        frame = pd.read_csv(file)
        expected = float(np.sum(frame["SYSTEM_POWER (Watts)"] * frame["Delta"] / 1000.0))
        assert recording.energy_j == pytest.approx(expected, rel=1e-9)
        assert 2e4 < recording.energy_j < 5e4  # ~32 kJ FP32, ~28 kJ mixed: not 3.2e7
        assert recording.counted_domains == ["energibridge/system"]
        assert list(recording.domains) == ["energibridge/system"]
        assert recording.duration_s == pytest.approx(frame["Delta"].sum() / 1000.0)
        assert 200 < recording.duration_s < 300
        assert recording.mean_power_w == pytest.approx(recording.energy_j / recording.duration_s)
        assert recording.started_at == datetime.fromtimestamp(
            frame["Time"].iloc[0] / 1000.0, tz=timezone.utc
        )
        assert recording.wraps == 0
        assert recording.columns == list(frame.columns)
        samples = recording.samples
        assert list(samples.columns) == ["t_s", "domain", "power_w", "energy_j"]
        assert len(samples) == len(frame)
        assert samples["energy_j"].iloc[-1] == pytest.approx(recording.energy_j)
        assert samples["energy_j"].is_monotonic_increasing


@needs_seed
def test_seed_study_mixed_precision_uses_less_energy_on_average() -> None:
    assert SEED is not None
    means = {
        group: np.mean(
            [read_energibridge_csv(f).energy_j for f in sorted((SEED / group).glob("*.csv"))[:4]]
        )
        for group in ("mixed_precision_false", "mixed_precision_true")
    }
    assert means["mixed_precision_true"] < means["mixed_precision_false"]


# -- synthetic layouts ----------------------------------------------------------------------
def test_intel_counters_parts_are_reported_not_counted(tmp_path: Path) -> None:
    header = [
        "Delta",
        "Time",
        "CPU_USAGE_0",
        "DRAM_ENERGY (J)",
        "PACKAGE_ENERGY (J)",
        "PP0_ENERGY (J)",
        "PP1_ENERGY (J)",
    ]
    rows = [
        [0, T0, 10.0, 100.0, 1000.0, 500.0, 10.0],
        [200, T0, 12.0, 101.0, 1010.0, 508.0, 10.5],
        [200, T0 + 201, 13.0, 102.0, 1020.0, 516.0, 11.0],
        [100, T0 + 402, 14.0, 102.5, 1025.0, 520.0, 11.5],
    ]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains == pytest.approx(
        {
            "energibridge/dram": 2.5,
            "energibridge/package": 25.0,
            "energibridge/pp0": 20.0,
            "energibridge/pp1": 1.5,
        }
    )
    assert sorted(recording.counted_domains) == ["energibridge/dram", "energibridge/package"]
    assert recording.energy_j == pytest.approx(27.5)
    assert recording.duration_s == pytest.approx(0.5)
    assert recording.mean_power_w == pytest.approx(55.0)
    assert recording.started_at == datetime.fromtimestamp(T0 / 1000, tz=timezone.utc)
    package = recording.samples[recording.samples["domain"] == "energibridge/package"]
    assert package["t_s"].tolist() == pytest.approx([0.0, 0.0, 0.201, 0.402])
    assert package["energy_j"].tolist() == pytest.approx([0.0, 10.0, 20.0, 25.0])
    # Power from counter steps over Time: NaN where Time did not advance.
    assert math.isnan(package["power_w"].iloc[1])
    assert package["power_w"].iloc[2] == pytest.approx(10.0 / 0.201)


def test_old_spellings_package_typo_and_unitless_gpu(tmp_path: Path) -> None:
    header = ["Delta", "Time", "GPU0_POWER", "PACAKGE_ENERGY (J)"]
    rows = [[0, T0, 50_000, 10.0], [1000, T0, 50_000, 30.0]]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains == pytest.approx(
        {"energibridge/gpu-0": 50.0, "energibridge/package": 20.0}
    )
    assert recording.energy_j == pytest.approx(70.0)


def test_amd_package_counted_cores_inside_it(tmp_path: Path) -> None:
    header = [
        "Delta",
        "Time",
        "CORE0_ENERGY (J)",
        "CORE0_FREQ (MHZ)",
        "CORE0_VOLT (V)",
        "CORE3_ENERGY (J)",
        "CPU_ENERGY (J)",
    ]
    rows = [
        [0, T0, 5.0, 4000, 1.1, 7.0, 100.0],
        [500, T0, 6.0, 4100, 1.1, 9.0, 130.0],
        [500, T0 + 501, 7.0, 4100, 1.2, 11.0, 160.0],
    ]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains == pytest.approx(
        {"energibridge/core-0": 2.0, "energibridge/core-3": 4.0, "energibridge/cpu": 60.0}
    )
    assert recording.counted_domains == ["energibridge/cpu"]
    assert recording.energy_j == pytest.approx(60.0)


def test_macos_system_power_alone_is_the_total(tmp_path: Path) -> None:
    header = ["Delta", "Time", "CPU_POWER (Watts)", "CPU_TEMP_0", "GPU_POWER (Watts)",
              "SYSTEM_POWER (Watts)"]  # fmt: skip
    rows = [
        [0, T0, 10.0, 40.0, 5.0, 999.0],  # Delta 0: its power adds nothing
        [200, T0, 20.0, 41.0, 6.0, 50.0],
        [300, T0 + 201, 30.0, 42.0, 7.0, 60.0],
    ]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains == pytest.approx(
        {
            "energibridge/cpu-power": 20.0 * 0.2 + 30.0 * 0.3,
            "energibridge/gpu": 6.0 * 0.2 + 7.0 * 0.3,
            "energibridge/system": 50.0 * 0.2 + 60.0 * 0.3,
        }
    )
    assert recording.counted_domains == ["energibridge/system"]
    assert recording.energy_j == pytest.approx(28.0)
    assert recording.duration_s == pytest.approx(0.5)
    system = recording.samples[recording.samples["domain"] == "energibridge/system"]
    # A power row's energy is reached at the end of its interval, Time + Delta.
    assert system["t_s"].tolist() == pytest.approx([0.0, 0.2, 0.501])
    assert system["power_w"].tolist() == pytest.approx([999.0, 50.0, 60.0])
    assert system["energy_j"].tolist() == pytest.approx([0.0, 10.0, 28.0])


def test_macos_cpu_power_counts_when_there_is_no_system_power(tmp_path: Path) -> None:
    header = ["Delta", "Time", "CPU_POWER (Watts)", "GPU_POWER (Watts)"]
    rows = [[0, T0, 10.0, 1.0], [1000, T0, 20.0, 4.0]]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert sorted(recording.counted_domains) == ["energibridge/cpu-power", "energibridge/gpu"]
    assert recording.energy_j == pytest.approx(24.0)


def test_nvidia_gpu_milliwatts_become_watts_and_count(tmp_path: Path) -> None:
    header = [
        "Delta",
        "Time",
        "DRAM_ENERGY (J)",
        "GPU0_MEMORY_USED",
        "GPU0_POWER (mWatts)",
        "GPU0_USAGE",
        "GPU1_POWER (mWatts)",
        "PACKAGE_ENERGY (J)",
    ]
    rows = [
        [0, T0, 0.0, 100, 150_000, 90, 70_000, 0.0],
        [1000, T0, 5.0, 100, 150_000, 90, 70_000, 40.0],
        [500, T0 + 1001, 7.5, 100, 100_000, 90, 60_000, 60.0],
    ]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains["energibridge/gpu-0"] == pytest.approx(150.0 + 50.0)
    assert recording.domains["energibridge/gpu-1"] == pytest.approx(70.0 + 30.0)
    assert sorted(recording.counted_domains) == [
        "energibridge/dram",
        "energibridge/gpu-0",
        "energibridge/gpu-1",
        "energibridge/package",
    ]
    assert recording.energy_j == pytest.approx(60.0 + 7.5 + 200.0 + 100.0)
    gpu = recording.samples[recording.samples["domain"] == "energibridge/gpu-0"]
    assert gpu["power_w"].tolist() == pytest.approx([150.0, 150.0, 100.0])


def test_unknown_energy_and_power_columns_are_reported_not_counted(tmp_path: Path) -> None:
    header = ["Delta", "Time", "FAN_POWER (Watts)", "PACKAGE_ENERGY (J)", "UNCORE_ENERGY (J)"]
    rows = [[0, T0, 3.0, 0.0, 0.0], [1000, T0, 3.0, 10.0, 2.0]]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains == pytest.approx(
        {
            "energibridge/fan-power": 3.0,
            "energibridge/package": 10.0,
            "energibridge/uncore": 2.0,
        }
    )
    assert recording.counted_domains == ["energibridge/package"]


def test_crlf_line_endings_and_a_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "win.csv"
    path.write_bytes(b"Delta,Time,CPU_ENERGY (J)\r\n0,1700000000000,1.0\r\n1000,1700000000000,3.5")
    assert read_energibridge_csv(path).energy_j == pytest.approx(2.5)


# -- wrap-around ----------------------------------------------------------------------------
WRAP_ROWS = [
    [0, T0, 262_000.0],
    [200, T0, 262_100.0],
    [200, T0 + 201, 50.0],  # wrapped
    [200, T0 + 402, 150.0],
]


def test_wrap_with_a_known_range_is_exact(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], WRAP_ROWS)
    recording = read_energibridge_csv(path, counter_range_j=INTEL_RAPL_RANGE_J)
    assert recording.wraps == 1
    assert recording.energy_j == pytest.approx(
        100.0 + (INTEL_RAPL_RANGE_J - 262_100.0 + 50.0) + 100.0
    )
    by_column = read_energibridge_csv(path, counter_range_j={"PACKAGE_ENERGY (J)": 262_144})
    by_domain = read_energibridge_csv(path, counter_range_j={"package": "262144"})
    assert by_column.energy_j == by_domain.energy_j == pytest.approx(recording.energy_j)


def test_wrap_with_an_unknown_range_is_inferred(tmp_path: Path) -> None:
    # Before, a drop was taken as a restart from 0 (250 J here): the 44 J up to the wrap
    # were lost. The range is now inferred: the smallest power of two above 262,100 J.
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], WRAP_ROWS)
    recording = read_energibridge_csv(path)
    assert recording.wraps == 1 and recording.glitches == 0
    assert recording.energy_j == pytest.approx(100.0 + (262_144.0 - 262_100.0 + 50.0) + 100.0)
    assert recording.warnings == [
        f"{path}:4: 1 wrap-around(s) of counted column 'PACKAGE_ENERGY (J)' corrected at "
        "262144 J (inferred)"
    ]
    # A range given for another column leaves this one inferred too.
    other = read_energibridge_csv(path, counter_range_j={"dram": 1e5})
    assert other.energy_j == pytest.approx(recording.energy_j)


@pytest.mark.parametrize("bad", [0, -1, "many", math.inf, {"package": 0}])
def test_bad_counter_range_is_a_config_error(tmp_path: Path, bad: object) -> None:
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], WRAP_ROWS)
    with pytest.raises(ConfigError, match="counter_range_j"):
        read_energibridge_csv(path, counter_range_j=bad)  # type: ignore[arg-type]


def test_counter_above_its_range_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], WRAP_ROWS)
    with pytest.raises(ConfigError, match=r"run.csv:2: .*exceeds counter_range_j=65536"):
        read_energibridge_csv(path, counter_range_j=AMD_RAPL_RANGE_J)


PROPERTY_RANGE_J = 4096.0  # small, so that a few dozen realistic steps wrap


@settings(max_examples=80, deadline=None)
@given(
    start=st.floats(PROPERTY_RANGE_J / 2, PROPERTY_RANGE_J - 1e-3),
    samples=st.lists(
        st.tuples(st.floats(200.0, 800.0), st.integers(100, 300)), min_size=1, max_size=40
    ),
    given_range=st.booleans(),
)
def test_wrap_correction_recovers_the_true_energy(
    start: float, samples: list[tuple[float, int]], given_range: bool
) -> None:
    # Real counters: powers within a few times of each other (200 to 800 W), sampled every
    # 100 to 300 ms, starting above half the range so that the largest value seen before a
    # wrap pins the inferred range to the true one. Given or inferred, every wrap is found.
    stream = EnergiBridgeStream(
        "prop.csv", counter_range_j=PROPERTY_RANGE_J if given_range else None
    )
    stream.feed("Delta,Time,CPU_ENERGY (J)", 1)
    raw, time_ms, steps = start, T0, []
    stream.feed(f"0,{time_ms},{raw!r}", 2)
    for i, (power_w, interval_ms) in enumerate(samples):
        step = power_w * interval_ms / 1e3
        time_ms += interval_ms
        raw = (raw + step) % PROPERTY_RANGE_J
        steps.append(step)
        stream.feed(f"{interval_ms},{time_ms},{raw!r}", i + 3)
    assert stream.totals()["energibridge/cpu"] == pytest.approx(sum(steps), rel=1e-9)
    assert stream.glitches == 0


# -- the stream's window (what the meter uses) ----------------------------------------------
def test_stream_energy_at_interpolates_counters_and_cuts_power_rows() -> None:
    stream = EnergiBridgeStream("live.csv")
    stream.feed("Delta,Time,PACKAGE_ENERGY (J),SYSTEM_POWER (Watts)\n", 1)
    assert stream.rows == 0 and stream.covered_until_ms() == -math.inf
    stream.feed(f"0,{T0},100.0,10.0\n", 2)
    # EnergiBridge's second row is sampled in the same millisecond as its first.
    stream.feed(f"100,{T0},100.0,20.0\n", 3)  # 20 W over [T0, T0+100]
    stream.feed(f"100,{T0 + 100},110.0,40.0\n", 4)  # 40 W over [T0+100, T0+200]
    at = stream.energy_at
    assert at(T0 - 50) == {"energibridge/package": 0.0, "energibridge/system": 0.0}
    assert at(T0 + 50)["energibridge/package"] == pytest.approx(5.0)
    assert at(T0 + 50)["energibridge/system"] == pytest.approx(20.0 * 0.05)
    assert at(T0 + 150)["energibridge/system"] == pytest.approx(2.0 + 40.0 * 0.05)
    # Beyond the known rows the energy stays put until more rows arrive.
    assert at(T0 + 1000) == pytest.approx(
        {"energibridge/package": 10.0, "energibridge/system": 6.0}
    )
    assert stream.covered_until_ms() == T0 + 100  # the counter's last sample


# -- malformed input ------------------------------------------------------------------------
MALFORMED = [
    ("missing-delta", "Time,SYSTEM_POWER (Watts)\n1,2\n", r"bad.csv:1: no 'Delta' column"),
    ("missing-time", "Delta,SYSTEM_POWER (Watts)\n0,2\n", r"bad.csv:1: no 'Time' column"),
    ("empty", "", r"bad.csv:1: empty file"),
    ("header-only", "Delta,Time,SYSTEM_POWER (Watts)\n", r"bad.csv:2: no data rows"),
    (
        "no-energy-column",
        "Delta,Time,CPU_USAGE_0\n0,1700000000000,5\n",
        r"bad.csv:1: no energy or power column",
    ),
    (
        "non-numeric",
        "Delta,Time,SYSTEM_POWER (Watts)\n0,1700000000000,5\n200,1700000000000,abc\n",
        r"^bad.csv:3: non-numeric value 'abc' in column 'SYSTEM_POWER \(Watts\)'$",
    ),
    (
        "non-numeric-other-column",
        "Delta,Time,CPU_TEMP_0,SYSTEM_POWER (Watts)\n0,1700000000000,oops,5\n",
        r"bad.csv:2: non-numeric value 'oops' in column 'CPU_TEMP_0'",
    ),
    (
        "negative-delta",
        "Delta,Time,SYSTEM_POWER (Watts)\n0,1700000000000,5\n-200,1700000000000,5\n",
        r"bad.csv:3: implausible Delta '-200'",
    ),
    (
        "huge-delta",
        "Delta,Time,SYSTEM_POWER (Watts)\n0,1700000000000,5\n3600001,1700000000000,5\n",
        r"bad.csv:3: implausible Delta '3600001'",
    ),
    (
        # Only the last row may be cut short (it is then dropped): one in the middle is damage.
        "short-row",
        "Delta,Time,SYSTEM_POWER (Watts)\n0,1700000000000,5\n200,1700000000000\n"
        "200,1700000000200,5\n",
        r"bad.csv:3: 2 values but the header has 3 columns: a damaged row",
    ),
    (
        "nan-power",
        "Delta,Time,SYSTEM_POWER (Watts)\n0,1700000000000,NaN\n",
        r"bad.csv:2: implausible value 'NaN' in column 'SYSTEM_POWER \(Watts\)'",
    ),
    (
        "negative-counter",
        "Delta,Time,CPU_ENERGY (J)\n0,1700000000000,-4\n",
        r"bad.csv:2: implausible value '-4'",
    ),
    (
        "negative-time",
        "Delta,Time,CPU_ENERGY (J)\n0,-5,4\n",
        r"bad.csv:2: implausible Time",
    ),
    (
        # Before: ValueError "year 31690708 is out of range" from datetime, a traceback.
        "time-1e18",
        "Delta,Time,CPU_ENERGY (J)\n0,1e18,4\n200,1e18,5\n",
        r"bad.csv:2: implausible Time '1e18' \(want epoch ms between 1970 and 2200",
    ),
    (
        "time-in-ns-later",
        "Delta,Time,CPU_ENERGY (J)\n0,1700000000000,4\n200,1700000000200000000,5\n",
        r"bad.csv:3: implausible Time '1700000000200000000' .*µs or ns",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    (tmp_path / "bad.csv").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        read_energibridge_csv("bad.csv")


def test_a_time_beyond_2200_is_one_line_from_the_command_line(tmp_path: Path) -> None:
    good = "Delta,Time,CPU_ENERGY (J)\n0,1700000000000,4\n200,1700000000200,5\n"
    (tmp_path / "good.csv").write_text(good)
    (tmp_path / "bad.csv").write_text("Delta,Time,CPU_ENERGY (J)\n0,1e18,4\n200,1e18,5\n")
    done = subprocess.run(
        [sys.executable, "-m", "greenprec", "import", "energibridge", "-g", "a=good.csv",
         "-g", "b=bad.csv", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("greenprec: error: ") and "bad.csv:2: implausible Time '1e18'" in line
    assert "2200" in line


def test_a_time_up_to_2200_is_read(tmp_path: Path) -> None:
    last = 7_258_118_400_000  # 2200-01-01 UTC
    text = f"Delta,Time,CPU_ENERGY (J)\n0,{last - 200},4\n200,{last},5\n"
    (tmp_path / "late.csv").write_text(text)
    recording = read_energibridge_csv(tmp_path / "late.csv")
    assert recording.started_at.year == 2199 and recording.energy_j == pytest.approx(1.0)


def test_nan_in_a_non_energy_column_is_fine(tmp_path: Path) -> None:
    header = ["Delta", "Time", "CPU_USAGE_0", "SYSTEM_POWER (Watts)"]
    rows = [[0, T0, "NaN", 5.0], [1000, T0, 50, 5.0]]
    assert read_energibridge_csv(write_csv(tmp_path, header, rows)).energy_j == pytest.approx(5.0)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.csv: cannot read"):
        read_energibridge_csv(tmp_path / "nope.csv")


# -- drops that are no wrap-around ----------------------------------------------------------
def counter_rows(values: list[float], interval_ms: int = 200) -> list[list[object]]:
    return [[0 if k == 0 else interval_ms, T0 + k * interval_ms, v] for k, v in enumerate(values)]


def test_an_implausible_drop_is_a_glitch_named_by_file_line_and_column(tmp_path: Path) -> None:
    # 10 J per 200 ms (50 W), then a drop to 500: a wrap at 1024 J (the smallest power of two
    # above 1020) would be 504 J in 0.2 s, 2520 W beside 50 W steps: no wrap-around.
    values = [1000.0, 1010.0, 1020.0, 500.0, 510.0, 520.0]
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], counter_rows(values))
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(40.0)  # the glitched step adds 0 J
    assert recording.wraps == 0 and recording.glitches == 1
    assert len(recording.warnings) == 1
    (warning,) = recording.warnings
    assert warning.startswith(f"{path}:5: column 'PACKAGE_ENERGY (J)' went down from 1020 to 500")
    assert "no wrap-around" in warning and "counts 0 J" in warning and "\n" not in warning


# 1 J per 200 ms (5 W) for four steps, then 12 J (60 W) from the step that wraps on.
LOAD_STARTS_AT_THE_WRAP = [262_130.0 + k for k in range(5)] + [
    (262_134.0 + 12.0 * k) % INTEL_RAPL_RANGE_J for k in range(1, 6)
]


def test_the_steps_after_a_drop_judge_it_too(tmp_path: Path) -> None:
    # Idle at 5 W, then the load starts as the counter wraps and stays at 60 W. Judged by the
    # steps before it alone (limit 5 * 5 + 20 = 45 W) the wrap would be a glitch; the steps
    # after it show the new load.
    values = LOAD_STARTS_AT_THE_WRAP
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], counter_rows(values))
    recording = read_energibridge_csv(path)
    assert recording.wraps == 1 and recording.glitches == 0
    assert recording.energy_j == pytest.approx(4.0 + 5 * 12.0)


def test_a_given_range_that_makes_a_wrap_implausible_is_a_config_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], WRAP_ROWS)
    with pytest.raises(ConfigError) as caught:
        read_energibridge_csv(path, counter_range_j=2.0**20)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: PACKAGE_ENERGY (J) went down from 262100 to 50")
    assert "262144 J" in message and "\n" not in message


def test_a_glitch_stays_a_glitch_when_a_range_is_given(tmp_path: Path) -> None:
    # No range makes this drop plausible: the range is not the problem, the reading is.
    values = [1000.0, 1010.0, 1020.0, 500.0, 510.0, 520.0]
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], counter_rows(values))
    recording = read_energibridge_csv(path, counter_range_j=INTEL_RAPL_RANGE_J)
    assert recording.glitches == 1 and recording.energy_j == pytest.approx(40.0)


def test_a_part_that_jumps_up_and_down_is_named_and_not_a_correction(tmp_path: Path) -> None:
    # EnergiBridge on Windows AMD: CORE0 mixes several cores' registers and jumps around.
    header = ["Delta", "Time", "CORE0_ENERGY (J)", "CPU_ENERGY (J)"]
    core = [2217.0, 2217.1, 1938.6, 2218.2, 1978.7, 1938.7, 2218.3, 2218.4]
    rows = [[0 if k == 0 else 200, T0 + 200 * k, c, 25_935.0 + k] for k, c in enumerate(core)]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.energy_j == pytest.approx(7.0)
    assert recording.counted_domains == ["energibridge/cpu"]
    assert recording.wraps == 0 and recording.glitches == 0
    assert len(recording.warnings) == 1
    (warning,) = recording.warnings
    assert "'CORE0_ENERGY (J)' went down 3 time(s)" in warning
    assert "not in the total" in warning
    assert "corrected" not in warning


def test_a_part_that_wraps_is_corrected_and_said_not_to_be_in_the_total(tmp_path: Path) -> None:
    header = ["Delta", "Time", "PACKAGE_ENERGY (J)", "PP0_ENERGY (J)"]
    pp0 = [262_130.0, 262_138.0, 2.0, 10.0, 18.0]
    rows = [[0 if k == 0 else 200, T0 + 200 * k, 5000.0 + 10 * k, p] for k, p in enumerate(pp0)]
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows))
    assert recording.domains["energibridge/pp0"] == pytest.approx(8.0 + 8.0 + 8.0 + 8.0)
    assert recording.wraps == 0  # none in a counted column: the total needed no correction
    assert len(recording.warnings) == 1
    assert "'PP0_ENERGY (J)' wrapped around 1 time(s)" in recording.warnings[0]
    assert "not in the total" in recording.warnings[0]


# -- implausible units ----------------------------------------------------------------------
def test_raw_register_counts_are_warned_about_not_rescaled(tmp_path: Path) -> None:
    # EnergiBridge before v0.0.7 on Intel: counts of 2**-14 J. 15 W is 245,760 counts/s.
    header = ["Delta", "Time", "DRAM_ENERGY (J)", "PACKAGE_ENERGY (J)"]
    rows = [[0 if k == 0 else 1000, T0 + 1000 * k, 1e6 + 16_384 * k, 3e8 + 245_760 * k]
            for k in range(4)]  # fmt: skip
    recording = read_energibridge_csv(write_csv(tmp_path, header, rows, name="raw.csv"))
    assert recording.energy_j == pytest.approx(3 * (16_384 + 245_760))  # not rescaled
    (warning,) = recording.warnings
    assert warning.startswith(f"{tmp_path / 'raw.csv'}: mean power beyond")
    assert "energibridge/package 245,760 W" in warning and "energibridge/dram 16,384 W" in warning
    assert "raw RAPL register counts" in warning and "v0.0.7" in warning and "2**14" in warning
    assert "energibridge/package 15 W" in warning


def test_a_power_column_beyond_hardware_names_its_unit(tmp_path: Path) -> None:
    header = ["Delta", "Time", "GPU0_POWER (mWatts)", "PACKAGE_ENERGY (J)"]
    rows = [[0, T0, 5e9, 0.0], [1000, T0 + 1000, 5e9, 10.0]]
    (warning,) = read_energibridge_csv(write_csv(tmp_path, header, rows)).warnings
    assert "energibridge/gpu-0 5,000,000 W" in warning and "unit" in warning


def test_hardware_sized_powers_give_no_warning(tmp_path: Path) -> None:
    header = ["Delta", "Time", "GPU0_POWER (mWatts)", "PACKAGE_ENERGY (J)"]
    rows = [[0, T0, 700_000, 0.0], [1000, T0 + 1000, 700_000, 400.0]]
    assert read_energibridge_csv(write_csv(tmp_path, header, rows)).warnings == []


# -- formats --------------------------------------------------------------------------------
POWER_TEXT = "Delta{s}Time{s}CPU_USAGE_0{s}SYSTEM_POWER (Watts)\n0{s}{t}{s}5{s}10.5\n" \
    "1000{s}{t}{s}6{s}20.25\n500{s}{t}{s}7{s}30.0\n"  # fmt: skip
POWER_TEXT_J = 20.25 + 15.0


@pytest.mark.parametrize("separator", [";", "\t", ","])
def test_the_separator_is_detected_from_the_header(tmp_path: Path, separator: str) -> None:
    path = tmp_path / "sep.csv"
    path.write_text(POWER_TEXT.format(s=separator, t=T0))
    assert read_energibridge_csv(path).energy_j == pytest.approx(POWER_TEXT_J)
    assert read_energibridge_csv(path, separator=separator).energy_j == pytest.approx(POWER_TEXT_J)


def test_a_given_separator_that_does_not_split_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sep.csv"
    path.write_text(POWER_TEXT.format(s=";", t=T0))
    with pytest.raises(ConfigError, match=r"sep\.csv:1: no 'Delta' column .*separator given"):
        read_energibridge_csv(path, separator=",")
    with pytest.raises(ConfigError, match="separator must be one character"):
        read_energibridge_csv(path, separator="ab")


def test_a_decimal_comma_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(f"Delta;Time;SYSTEM_POWER (Watts)\n0;{T0};10,5\n")
    with pytest.raises(ConfigError, match=r"excel\.csv:2: non-numeric value '10,5'.*decimal comma"):
        read_energibridge_csv(path)


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b"\xef\xbb\xbf"),
        ("utf-16-le", b"\xff\xfe"),  # PowerShell 5's `>`
        ("utf-16-be", b"\xfe\xff"),
        ("utf-16-le", b""),
    ],
    ids=["utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le-no-bom"],
)
def test_byte_order_marks_and_utf16(tmp_path: Path, encoding: str, bom: bytes) -> None:
    path = tmp_path / "ps.csv"
    text = POWER_TEXT.format(s=",", t=T0).replace("\n", "\r\n")
    path.write_bytes(bom + text.encode(encoding))
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(POWER_TEXT_J)
    assert recording.columns[0] == "Delta"


def test_a_trailing_separator_adds_no_column(tmp_path: Path) -> None:
    path = tmp_path / "trail.csv"
    path.write_text(f"Delta,Time,SYSTEM_POWER (Watts),\n0,{T0},5,\n1000,{T0},7,\n")
    assert read_energibridge_csv(path).energy_j == pytest.approx(7.0)


def test_one_data_row_is_refused_not_a_zero_joule_run(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], [[0, T0, 5.0]])
    with pytest.raises(ConfigError) as caught:
        read_energibridge_csv(path)
    assert str(caught.value) == (
        f"{path}:2: only one sample: no energy can be measured (the run was shorter than "
        "EnergiBridge's interval, or the file was cut); record longer or leave this file out"
    )


def test_a_column_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    header = ["Delta", "Time", "SYSTEM_POWER (Watts)", "SYSTEM_POWER (Watts)"]
    path = write_csv(tmp_path, header, [[0, T0, 10, 1000], [1000, T0, 10, 1000]])
    with pytest.raises(ConfigError, match=r"run\.csv:1: column 'SYSTEM_POWER \(Watts\)' appears "
                       r"twice in the header \(columns 3 and 4\)"):  # fmt: skip
        read_energibridge_csv(path)


# -- ranges per column ----------------------------------------------------------------------
def test_ranges_per_column_from_strings_and_a_default_for_the_rest(tmp_path: Path) -> None:
    assert parse_counter_ranges([]) is None
    assert parse_counter_ranges(["262144"]) == 262_144.0
    assert parse_counter_ranges(["CPU_ENERGY (J)=4294967296", "65536"]) == {
        "CPU_ENERGY (J)": 2.0**32,
        "*": 65_536.0,
    }
    assert check_counter_range("CPU_ENERGY (J)=4294967296,dram=262144") == {
        "CPU_ENERGY (J)": 2.0**32,
        "dram": 262_144.0,
    }
    header = ["Delta", "Time", "DRAM_ENERGY (J)", "PACKAGE_ENERGY (J)"]
    rows = [[0, T0, 100.0, 262_000.0], [200, T0 + 200, 90_000.0, 262_100.0]]
    path = write_csv(tmp_path, header, rows)
    # "*" gives the package 65536 J, below its values; the DRAM entry overrides it.
    with pytest.raises(ConfigError, match=r"PACKAGE_ENERGY .* exceeds counter_range_j=65536"):
        read_energibridge_csv(path, counter_range_j={"dram": 262_144, "*": 65_536})
    with pytest.raises(ConfigError, match=r"DRAM_ENERGY .* exceeds counter_range_j=65536"):
        read_energibridge_csv(path, counter_range_j={"package": 262_144, "*": 65_536})


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["CPU_ENERGY(J)=5"], "no EnergiBridge counter column"),
        (["SYSTEM_POWER (Watts)=5"], "no EnergiBridge counter column"),
        (["cpu=0"], "must be a positive number"),
        (["1", "2"], "one number for all counters given twice"),
        (["cpu=1", "cpu=2"], "'cpu' given twice"),
    ],
)
def test_bad_range_specs_are_config_errors(specs: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_counter_ranges(specs)


def test_a_stream_fed_row_by_row_ends_as_the_whole_file(tmp_path: Path) -> None:
    # The meter reads the file as it grows: once all rows are in, its figures are the file's.
    values = LOAD_STARTS_AT_THE_WRAP
    path = write_csv(tmp_path, ["Delta", "Time", "PACKAGE_ENERGY (J)"], counter_rows(values))
    stream = EnergiBridgeStream(str(path))
    seen = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        stream.feed(line, lineno)
        seen.append(stream.energy_at(T0 + 10_000)["energibridge/package"])
    assert seen[-1] == pytest.approx(read_energibridge_csv(path).energy_j)
    assert seen == sorted(seen)  # judged as a glitch first (0 J), then as the wrap it is

"""29 EnergiBridge CSV files written on real machines (../shared/data/energibridge-real, see
its SOURCES.md), read with default options: every total against a hand computation, and
warnings exactly where the files call for them."""

from __future__ import annotations

import csv
import io
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.formats.energibridge_csv import read_energibridge_csv
from greenprec.importers import import_energibridge
from greenprec.results import ResultsStore, record_row

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "energibridge-real"
pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"the real EnergiBridge recordings are not here ({DATA})"
)

TRUE_RANGE_J = 262144.0  # Intel: 2**32 RAPL units of 2**-14 J

# What each file should be warned about: "wrap" (a counted column wrapped: corrected),
# "part-wrap" (a column outside the total wrapped), "core0" (Windows AMD's CORE0 column jumps up
# and down), "raw" (EnergiBridge < v0.0.7 raw counts on Intel), or nothing.
FILES: dict[str, str | None] = {
    "eb-analytics/large_specific_extensions_0.csv": None,
    "eb-analytics/large_specific_extensions_1.csv": None,
    "eb-analytics/result_mac.csv": None,
    "eb-analytics/results_windows.csv": None,
    "eb-analytics/results_windows_w_gpu.csv": None,
    "eb-experiments/darwin-arm_chrome_1.csv": None,
    "eb-experiments/darwin-arm_idle_21.csv": None,
    "eb-experiments/darwin-intel_chrome_1.csv": None,
    "eb-experiments/darwin-intel_idle_21.csv": None,
    "eb-experiments/linux_chrome_1.csv": None,
    "eb-experiments/linux_idle_21.csv": None,
    "eb-experiments/win32_chrome_1.csv": "core0",
    "eb-experiments/win32_idle_21.csv": "core0",
    "llm-comparison/control_trial-001.csv": None,
    "llm-comparison/deepseek-q4_K_M_trial-009.csv": "wrap",
    "llm-comparison/llama-fp16_trial-001.csv": None,
    "promptenergy/answer_only_r1.csv": "core0",
    "promptenergy/baseline_r1.csv": "core0",
    "promptenergy/think_r2.csv": "core0",
    "sse24-react/react-latest_1.csv": "raw",
    "sse24-react/react-legacy_33.csv": "raw",
    "sse25-g24/energy_Python3.11_run1.csv": None,
    "sse25-g24/energy_Python3.14_run31.csv": None,
    "sse25-g24/energy_matrix_benchmark.py_python3.11_normal_run1.csv": None,
    "sse25-g24/energy_matrix_benchmark.py_python3.14_normal_run1.csv": None,
    "sse26-g10/docker_measurement1_20260227_095350.csv": None,
    "sse26-g10/docker_measurement1_20260227_095834.csv": None,
    "sse26-g10/podman_measurement1_20260227_101210.csv": "wrap",
    "sse26-g10/podman_measurement1_20260227_103930.csv": "part-wrap",
}


def test_the_set_is_complete() -> None:
    assert sorted(str(p.relative_to(DATA)) for p in DATA.glob("*/*.csv")) == sorted(FILES)


# -- the hand computation: plain csv, nothing from greenprec ----------------------------------
def by_hand(path: Path) -> dict[str, object]:
    """Totals per column, unwrapping at the true Intel range; the counted columns chosen by
    EnergiBridge's platforms: system power alone, else package (else AMD CPU) + DRAM + GPUs."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    header, data = rows[0], rows[1:]
    column = {name: [float(row[i]) for row in data] for i, name in enumerate(header) if name}
    if "SYSTEM_POWER (Watts)" in column:
        counted = ["SYSTEM_POWER (Watts)"]
    else:
        cpu = "PACKAGE_ENERGY (J)" if "PACKAGE_ENERGY (J)" in column else "CPU_ENERGY (J)"
        counted = [cpu] + [n for n in column if n == "DRAM_ENERGY (J)" or "GPU0_POWER" in n]
    energy: dict[str, float] = {}
    wraps: dict[str, list[int]] = {}  # column -> line numbers of the rows that wrapped
    for name, values in column.items():
        if name.endswith("(Watts)") or name.endswith("(mWatts)"):
            scale = 1e-3 if name.endswith("(mWatts)") else 1.0
            energy[name] = (
                sum(p * d for p, d in zip(values, column["Delta"], strict=True)) / 1e3 * scale
            )
        elif name.endswith("_ENERGY (J)") and not name.startswith("CORE"):
            total = 0.0
            for k in range(1, len(values)):
                step = values[k] - values[k - 1]
                if step < 0:
                    step += TRUE_RANGE_J
                    wraps.setdefault(name, []).append(k + 2)  # header is line 1
                total += step
            energy[name] = total
    return {
        "total_j": sum(energy[name] for name in counted),
        "energy": energy,
        "wraps": wraps,
        "duration_s": sum(column["Delta"]) / 1e3,
    }


@pytest.mark.parametrize("name", sorted(FILES))
def test_total_matches_the_hand_computation(name: str) -> None:
    path = DATA / name
    recording = read_energibridge_csv(path)
    hand = by_hand(path)
    assert recording.energy_j == pytest.approx(hand["total_j"], rel=1e-4)
    assert recording.duration_s == pytest.approx(hand["duration_s"])
    energy = hand["energy"]
    assert isinstance(energy, dict)
    for column, joules in energy.items():
        domain = {
            "SYSTEM_POWER (Watts)": "energibridge/system",
            "PACKAGE_ENERGY (J)": "energibridge/package",
            "CPU_ENERGY (J)": "energibridge/cpu",
            "DRAM_ENERGY (J)": "energibridge/dram",
            "PP0_ENERGY (J)": "energibridge/pp0",
            "PP1_ENERGY (J)": "energibridge/pp1",
            "GPU0_POWER (mWatts)": "energibridge/gpu-0",
        }[column]
        assert recording.domains[domain] == pytest.approx(joules, rel=1e-4, abs=1e-9), column


@pytest.mark.parametrize("name", sorted(FILES))
def test_warnings_are_where_the_file_calls_for_them(name: str) -> None:
    path = DATA / name
    recording = read_energibridge_csv(path)
    hand = by_hand(path)
    wraps = hand["wraps"]
    assert isinstance(wraps, dict)
    kind = FILES[name]
    assert recording.glitches == 0
    if kind is None:
        assert recording.warnings == []
        assert recording.wraps == 0 and wraps == {}
        return
    assert len(recording.warnings) == 1, recording.warnings
    (warning,) = recording.warnings
    assert "\n" not in warning and warning.startswith(str(path))
    if kind == "wrap":
        ((column, lines),) = wraps.items()
        assert column == "PACKAGE_ENERGY (J)" and recording.wraps == len(lines) == 1
        assert warning == (
            f"{path}:{lines[0]}: 1 wrap-around(s) of counted column 'PACKAGE_ENERGY (J)' "
            "corrected at 262144 J (inferred)"
        )
    elif kind == "part-wrap":
        ((column, lines),) = wraps.items()
        assert column == "PP0_ENERGY (J)"
        assert recording.wraps == 0  # the total needed no correction
        assert warning.startswith(f"{path}:{lines[0]}: column 'PP0_ENERGY (J)' wrapped around")
        assert "not in the total" in warning
    elif kind == "core0":
        assert recording.wraps == 0 and wraps == {}
        assert "column 'CORE0_ENERGY (J)' went down" in warning
        assert "not in the total, which is unaffected" in warning
        assert "corrected" not in warning and "wrap-around(s)" not in warning
    else:
        assert kind == "raw"
        assert recording.mean_power_w > 200_000  # what greenprec reported before, silently
        assert ": mean power beyond what one CPU package" in warning
        assert "raw RAPL register counts" in warning and "v0.0.7" in warning
        assert "2**14" in warning


def test_the_wrap_is_not_taken_as_a_restart_from_zero() -> None:
    # Before, the drop 262141.15 -> 6.01 counted 6.01 J (a restart from 0 assumed): the
    # 2.85 J up to the wrap were lost. By hand, the restart reading of the package column:
    path = DATA / "sse26-g10/podman_measurement1_20260227_101210.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    package = [float(row["PACKAGE_ENERGY (J)"]) for row in rows]
    restart_j = sum(b - a if b >= a else b for a, b in itertools.pairwise(package))
    recording = read_energibridge_csv(path)
    lost_j = recording.domains["energibridge/package"] - restart_j
    assert lost_j == pytest.approx(TRUE_RANGE_J - 262141.15197753906)
    assert lost_j == pytest.approx(2.85, abs=0.01)


# -- AMD ranges -------------------------------------------------------------------------------
AMD = ["eb-experiments/linux_chrome_1.csv", "promptenergy/think_r2.csv"]


@pytest.mark.parametrize("name", AMD)
def test_the_old_amd_advice_refuses_real_amd_files(name: str) -> None:
    with pytest.raises(ConfigError, match=r"CPU_ENERGY \(J\) = .* exceeds counter_range_j=65536"):
        read_energibridge_csv(DATA / name, counter_range_j=65536)
    by_column = read_energibridge_csv(DATA / name, counter_range_j={"CPU_ENERGY (J)": 2.0**32})
    assert by_column.energy_j == pytest.approx(by_hand(DATA / name)["total_j"], rel=1e-4)


# -- the importer and the command line --------------------------------------------------------
@pytest.mark.slow
def test_import_of_every_real_file(tmp_path: Path) -> None:
    groups = sorted({name.split("/")[0] for name in FILES})
    out = tmp_path / "all"
    result = import_energibridge([f"{g.replace('-', '_')}={DATA / g}/*.csv" for g in groups], out)
    folder = ResultsStore(out).load()
    rows = {row["run_id"]: row for row in map(record_row, folder.runs)}
    assert len(rows) == 29
    files = folder.experiment.imported["files"]
    for run_id, row in rows.items():
        path = Path(files[run_id])
        assert run_id == path.stem
        hand = by_hand(path)
        assert row["energy_j"] == pytest.approx(hand["total_j"], rel=1e-4)
        recording = read_energibridge_csv(path)
        assert row["counted_domains"].split(";") == recording.counted_domains
        for line in recording.warnings:
            assert line in result.warnings
    per_file = [w for w in result.warnings if w.startswith(str(DATA))]
    assert len(per_file) == sum(1 for kind in FILES.values() if kind)


@pytest.mark.slow
def test_import_of_runs_kept_as_r1_energy_csv(tmp_path: Path) -> None:
    # The PromptEnergy layout, as in its repository: <prompt>/humaneval_custom/r<k>/energy.csv.
    source = {
        "answer_only_no_expl/humaneval_custom/r1": "promptenergy/answer_only_r1.csv",
        "baseline_single_shot/humaneval_custom/r1": "promptenergy/baseline_r1.csv",
        "think_step_by_step/humaneval_custom/r2": "promptenergy/think_r2.csv",
    }
    for folder, name in source.items():
        (tmp_path / "runs" / folder).mkdir(parents=True)
        shutil.copyfile(DATA / name, tmp_path / "runs" / folder / "energy.csv")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["import", "energibridge", "-g", f"coder={tmp_path}/runs/**/energy.csv"]
    result = runner.invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    rows = {
        row["run_id"]: row for row in [record_row(run) for run in ResultsStore(out).load().runs]
    }
    assert sorted(rows) == [
        "answer_only_no_expl-r1",
        "baseline_single_shot-r1",
        "think_step_by_step-r2",
    ]
    files = ResultsStore(out).load().experiment.imported["files"]
    for run_id, row in rows.items():
        original = DATA / source[str(Path(files[run_id]).parent.relative_to(tmp_path / "runs"))]
        assert row["energy_j"] == pytest.approx(by_hand(original)["total_j"], rel=1e-4)
    assert result.stderr.count("'CORE0_ENERGY (J)' went down") == 3  # warnings: on stderr
    assert "wrap-around(s) corrected" not in result.stderr


def test_command_line_on_the_intel_files_that_wrap(tmp_path: Path) -> None:
    out = tmp_path / "intel"
    args = ["import", "energibridge", "-g", f"podman={DATA}/sse26-g10/podman_*.csv"]
    args += ["-g", f"docker={DATA}/sse26-g10/docker_*.csv", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "wrap-around(s) of counted column 'PACKAGE_ENERGY (J)'" in result.stderr
    assert "'PP0_ENERGY (J)' wrapped around 1 time(s)" in result.stderr
    for row in [record_row(run) for run in ResultsStore(out).load().runs]:
        path = DATA / "sse26-g10" / f"{row['run_id']}.csv"
        assert row["energy_j"] == pytest.approx(by_hand(path)["total_j"], rel=1e-4)


def test_command_line_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    # Through the console entry point: the old AMD advice, on a real AMD file.
    command = [sys.executable, "-m", "greenprec", "import", "energibridge"]
    command += ["-g", f"amd={DATA}/eb-experiments/linux_*.csv", "--counter-range-j", "65536"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("greenprec: error: ") and "linux_chrome_1.csv:2: CPU_ENERGY (J)" in line
    assert "exceeds counter_range_j=65536" in line
    assert not (tmp_path / "out").exists()

"""EnergiBridge files as users really have them (issue 16): real recordings from
../shared/data/energibridge-real (see its SOURCES.md) with the damage applied. Each case
asserts the energy against the undamaged rows' figure (to 0.01 %) or the exact message."""

from __future__ import annotations

import csv
import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from greenprec.counters import MAX_DOMAIN_POWER_W
from greenprec.errors import ConfigError
from greenprec.formats.energibridge_csv import NewColumnsError, read_energibridge_csv
from greenprec.importers import import_energibridge

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "energibridge-real"
pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"the real EnergiBridge recordings are not here ({DATA})"
)

INTEL = "sse26-g10/docker_measurement1_20260227_095350.csv"  # Linux Intel counters, 702 rows
MAC = "eb-experiments/darwin-arm_chrome_1.csv"  # macOS SYSTEM_POWER, 95 rows
AMD_LINUX = "eb-experiments/linux_chrome_1.csv"  # CPU_ENERGY (J) + CORE<n>_ENERGY (J)
AMD_WINDOWS = "eb-experiments/win32_chrome_1.csv"  # CPU_ENERGY (J) of about 26,000 J
REL = 1e-4  # 0.01 %


def lines_of(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def rows_of(name: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO((DATA / name).read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


# -- a truncated last line ------------------------------------------------------------------
def test_a_last_row_cut_mid_write_is_dropped_with_one_warning(tmp_path: Path) -> None:
    lines = lines_of(INTEL)
    undamaged = read_energibridge_csv(write(tmp_path / "whole.csv", lines[:-1])).energy_j
    cut = lines[-1][: len(lines[-1]) // 2]  # killed mid-row: no newline, 19 of 26 values
    path = write(tmp_path / "cut.csv", [*lines[:-1], cut])
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(undamaged, rel=REL)
    assert recording.warnings == [
        f"{path}:703: the last row is cut short (19 of 26 values): EnergiBridge was stopped "
        "while writing it; it is dropped, the 701 row(s) before it count"
    ]


def test_a_last_row_cut_inside_its_last_number_is_dropped(tmp_path: Path) -> None:
    lines = lines_of(MAC)
    undamaged = read_energibridge_csv(write(tmp_path / "whole.csv", lines[:-1])).energy_j
    last = lines[-1].rstrip("\n")
    path = write(tmp_path / "cut.csv", [*lines[:-1], last.rsplit(",", 1)[0] + ",1e"])
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(undamaged, rel=REL)
    assert recording.warnings == [
        f"{path}:96: the last row is cut short (its last value '1e' is cut): EnergiBridge was "
        "stopped while writing it; it is dropped, the 94 row(s) before it count"
    ]


def test_a_short_row_anywhere_but_the_last_line_is_refused_with_its_line(tmp_path: Path) -> None:
    lines = lines_of(INTEL)
    damaged = [*lines[:100], lines[100][:40] + "\n", *lines[101:]]
    path = write(tmp_path / "middle.csv", damaged)
    with pytest.raises(ConfigError) as caught:
        read_energibridge_csv(path)
    assert str(caught.value) == (
        f"{path}:101: 7 values but the header has 26 columns: a damaged row (only the last "
        "row of a file may be cut short, when EnergiBridge is stopped while writing it)"
    )


# -- console text inside the CSV ------------------------------------------------------------
def test_console_text_between_rows_is_skipped_with_one_warning(tmp_path: Path) -> None:
    lines = lines_of(MAC)
    undamaged = read_energibridge_csv(DATA / MAC).energy_j
    damaged = [
        *lines[:30],
        "\n",
        "Received Ctrl+C, stopping...\n",
        *lines[30:],
        "Energy consumption in joules: 135.2 for 19.1 sec of execution.\n",
    ]
    path = write(tmp_path / "console.csv", damaged)
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(undamaged, rel=REL)
    assert recording.warnings == [
        f"{path}:32: 2 line(s) that are no data skipped (console output in the CSV: "
        "EnergiBridge's stdout redirected into it?); the first: 'Received Ctrl+C, stopping...'"
    ]


def test_console_text_is_quoted_bounded_and_escaped(tmp_path: Path) -> None:
    lines = lines_of(MAC)
    noise = "\x1b[31mpanic: " + "x" * 5000 + "\n"
    path = write(tmp_path / "noise.csv", [lines[0], "[WARNING] interval\n", *lines[1:40], noise])
    recording = read_energibridge_csv(path)
    (warning,) = recording.warnings
    assert warning.startswith(f"{path}:2: 2 line(s) that are no data skipped")
    assert warning.endswith("the first: '[WARNING] interval'")
    # The long line is never echoed: a second file whose first console line is the long one.
    path = write(tmp_path / "noise2.csv", [*lines[:40], noise])
    (warning,) = read_energibridge_csv(path).warnings
    quoted = warning.split("the first: ", 1)[1]
    assert quoted == repr("\x1b[31mpanic: " + "x" * (80 - 1 - len("\x1b[31mpanic: ")) + "…")
    assert "\x1b" not in warning and len(warning) < 300


def test_console_text_before_the_header_is_skipped(tmp_path: Path) -> None:
    lines = lines_of(MAC)
    banner = "[WARNING] Interval must be at least 200ms to accurately measure CPU usage.\n"
    path = write(tmp_path / "banner.csv", [banner, *lines])
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(read_energibridge_csv(DATA / MAC).energy_j)
    assert len(recording.warnings) == 1 and recording.warnings[0].startswith(f"{path}:1: 1 line")


def test_a_second_header_is_refused(tmp_path: Path) -> None:
    lines = lines_of(MAC)
    path = write(tmp_path / "twice.csv", [*lines, *lines])
    with pytest.raises(ConfigError, match=r"twice.csv:97: a second header"):
        read_energibridge_csv(path)


# -- rows wider than the header -------------------------------------------------------------
def widened(tmp_path: Path, from_line: int) -> Path:
    """darwin-arm with a GPU_POWER (Watts) value appearing at ``from_line``, in its sorted
    place (before SYSTEM_POWER): every column after it shifts by one."""
    header, rows = rows_of(MAC)
    place = header.index("SYSTEM_POWER (Watts)")
    for k, row in enumerate(rows):
        if k + 2 >= from_line:
            row.insert(place, "1.5")
    return write_rows(tmp_path / "sensor.csv", header, rows)


def test_a_sensor_appearing_mid_run_names_the_line_and_offers_the_rows_before(
    tmp_path: Path,
) -> None:
    path = widened(tmp_path, 60)
    with pytest.raises(NewColumnsError) as caught:
        read_energibridge_csv(path)
    error = caught.value
    assert (error.lineno, error.rows_before) == (60, 58)
    assert str(error) == (
        f"{path}:60: 38 fields but the header has 37: a new sensor appeared mid-run "
        "(EnergiBridge adds its value to the rows, sorted by name among the others, but never "
        "rewrites the header: the columns after it are shifted, and which value belongs to "
        "which is unknown and not guessed); the 58 row(s) before line 60 can be used alone "
        "(before_line=60)"
    )
    assert "truncated" not in str(error)
    before = read_energibridge_csv(write(tmp_path / "before.csv", lines_of(MAC)[:59]))
    recording = read_energibridge_csv(path, before_line=60)
    assert recording.energy_j == pytest.approx(before.energy_j, rel=REL)
    assert recording.warnings == [
        f"{path}:60: read up to this line as asked (before_line): the rows from here on are "
        "left out; the 58 row(s) before it count"
    ]


def test_the_command_line_gives_the_exact_command_that_imports_the_rows_before(
    tmp_path: Path,
) -> None:
    widened(tmp_path, 60)
    first = [sys.executable, "-m", "greenprec", "import", "energibridge"]
    done = subprocess.run(
        [*first, "-g", "mac=sensor.csv", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    expected = (
        "greenprec import energibridge --group mac=sensor.csv --before-line sensor.csv=60 --out out"
    )
    assert line.startswith("greenprec: error: sensor.csv:60: 38 fields but the header has 37")
    assert line.endswith(f"; to import them: {expected}")
    again = subprocess.run(
        [*first, *shlex.split(expected)[3:]],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "sensor.csv:60: read up to this line as asked" in again.stderr  # a warning


def test_before_line_must_name_an_imported_file(tmp_path: Path) -> None:
    path = widened(tmp_path, 60)
    with pytest.raises(ConfigError, match="none of the files the groups match") as caught:
        import_energibridge(
            [f"mac={path}"], tmp_path / "out", before_line={str(tmp_path / "other.csv"): 60}
        )
    assert caught.value.param == "before_line"
    result = import_energibridge([f"mac={path}"], tmp_path / "out", before_line={path: 60})
    assert result.runs[0].energy_j == pytest.approx(
        read_energibridge_csv(path, before_line=60).energy_j
    )


# -- empty cells ----------------------------------------------------------------------------
def test_empty_cells_outside_the_total_are_ignored(tmp_path: Path) -> None:
    header, rows = rows_of(AMD_LINUX)
    undamaged = read_energibridge_csv(DATA / AMD_LINUX)
    frequency, core = header.index("CPU_FREQUENCY_3"), header.index("CORE3_ENERGY (J)")
    for k in (10, 11, 50):
        rows[k][frequency] = ""
    rows[20][core] = ""
    path = write_rows(tmp_path / "empty.csv", header, rows)
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(undamaged.energy_j, rel=REL)
    # A counter outside the total loses nothing: its next value spans the missing one.
    assert recording.domains["energibridge/core-3"] == pytest.approx(
        undamaged.domains["energibridge/core-3"], rel=REL
    )
    assert recording.warnings == [
        f"{path}:22: column 'CORE3_ENERGY (J)' has 1 empty cell(s); its figure "
        "(energibridge/core-3) is not in the total, and the counter's next value spans them"
    ]


def test_an_empty_cell_in_a_counted_column_is_refused_with_line_and_column(
    tmp_path: Path,
) -> None:
    header, rows = rows_of(AMD_LINUX)
    rows[20][header.index("CPU_ENERGY (J)")] = ""
    path = write_rows(tmp_path / "empty.csv", header, rows)
    with pytest.raises(ConfigError) as caught:
        read_energibridge_csv(path)
    assert str(caught.value) == (
        f"{path}:22: empty cell in column 'CPU_ENERGY (J)', which the energy is computed "
        "from: the row cannot be read"
    )


# -- a counter range that fits one column but not another -----------------------------------
def test_a_range_that_makes_an_amd_wrap_implausible_is_an_error_not_energy(
    tmp_path: Path,
) -> None:
    # win32's AMD counter (about 26,000 J), moved so that it wraps at 65,536 J mid-run, and
    # sampled every ~100 s instead of ~100 ms: 262144 J given for every counter would make
    # that wrap 196,608 J in 100 s, under the 2 kW a known range may reach (the old reading:
    # 67.5 J became 196,675 J, silently).
    header, rows = rows_of(AMD_WINDOWS)
    undamaged = read_energibridge_csv(DATA / AMD_WINDOWS).energy_j
    column = header.index("CPU_ENERGY (J)")
    start = float(rows[0][1])
    for row in rows:
        row[column] = repr((float(row[column]) + 65536.0 - 25970.0) % 65536.0)
        row[0] = str(int(row[0]) * 1000)
        row[1] = str(int(start + (float(row[1]) - start) * 1000))
    path = write_rows(tmp_path / "amd.csv", header, rows)
    assert read_energibridge_csv(path).energy_j == pytest.approx(undamaged, rel=REL)
    assert MAX_DOMAIN_POWER_W > (262144.0 - 65536.0) / 109.0  # the old rule let it through
    with pytest.raises(ConfigError) as caught:
        read_energibridge_csv(path, counter_range_j=262144)
    message = str(caught.value)
    assert caught.value.param == "counter_range_j"
    assert message.startswith(f"{path}:34: CPU_ENERGY (J) went down from 65535.6 to 0.376465")
    assert message.endswith(
        "but it wraps plausibly at 65536 J: give that range for this column "
        "(CPU_ENERGY (J)=65536), or none (greenprec infers it)"
    )
    fixed = read_energibridge_csv(path, counter_range_j={"CPU_ENERGY (J)": 65536})
    assert fixed.energy_j == pytest.approx(undamaged, rel=REL)


# -- old EnergiBridge column labels ---------------------------------------------------------
def relabelled(tmp_path: Path, name: str, labels: dict[str, str]) -> Path:
    header, rows = rows_of(name)
    return write_rows(tmp_path / "old.csv", [labels.get(h, h) for h in header], rows)


def test_intel_w_labels_of_energibridge_v0_0_1_to_v0_0_4_are_counters_in_joules(
    tmp_path: Path,
) -> None:
    old = {
        "PACKAGE_ENERGY (J)": "PACAKGE_ENERGY (W)",
        "DRAM_ENERGY (J)": "DRAM_ENERGY (W)",
        "PP0_ENERGY (J)": "PP0_ENERGY (W)",
        "PP1_ENERGY (J)": "PP1_ENERGY (W)",
    }
    path = relabelled(tmp_path, INTEL, old)
    today = read_energibridge_csv(DATA / INTEL)
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(today.energy_j, rel=REL)
    assert recording.counted_domains == today.counted_domains
    assert recording.domains == pytest.approx(today.domains, rel=REL)
    assert recording.notes == [
        f"{path}: 'DRAM_ENERGY (W)', 'PACAKGE_ENERGY (W)', 'PP0_ENERGY (W)', 'PP1_ENERGY (W)': "
        "labels of EnergiBridge v0.0.1 to v0.0.4, which wrote energy counters (cumulative "
        "joules: the energy-status register times the RAPL energy unit) under a '(W)' label; "
        "read as counters in joules, like today's '..._ENERGY (J)' columns"
    ]


def test_amd_w_labels_are_counters_and_the_note_reaches_the_import(tmp_path: Path) -> None:
    header, _ = rows_of(AMD_LINUX)
    old = {"CPU_ENERGY (J)": "PACAKGE0_ENERGY (W)"}
    old.update({h: h.replace("(J)", "(W)") for h in header if h.startswith("CORE")})
    path = relabelled(tmp_path, AMD_LINUX, old)
    today = read_energibridge_csv(DATA / AMD_LINUX)
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(today.energy_j, rel=REL)
    assert recording.counted_domains == ["energibridge/cpu"]
    assert recording.domains["energibridge/core-0"] == pytest.approx(
        today.domains["energibridge/core-0"], rel=REL
    )
    result = import_energibridge([f"amd={path}"], tmp_path / "out")
    assert result.notes == recording.notes and len(result.notes) == 1
    assert "'PACAKGE0_ENERGY (W)'" in result.notes[0]
    experiment = result.store.read_experiment()
    assert experiment.imported is not None and experiment.imported["notes"] == result.notes

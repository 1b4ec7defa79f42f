"""greenprec import, as an unlucky user and an attacker meet it: a file that is no EnergiBridge
CSV (a link to a secret), a glob over a symbolic-link loop or /proc, a clock set back while
EnergiBridge ran, warnings on the right stream; and the fast reader, whose numbers must be the
pre-change reader's to the last bit (golden: tests/fixtures/energibridge-golden.json)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.formats import energibridge_csv
from greenprec.formats.energibridge_csv import EnergiBridgeRecording, read_energibridge_csv
from greenprec.importers import _files
from greenprec.results import ResultsStore
from greenprec.results.index import format_cell

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "energibridge-real"
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "energibridge-golden.json"
TEMPLATE = DATA / "llm-comparison" / "control_trial-001.csv"
SECRET = "root:*:20228:0:99999:7:::"


def greenprec_cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("greenprec: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def power_csv(path: Path, times_ms: list[int], power_w: float = 10.0) -> None:
    """A macOS-style file: Delta 200 ms after the first row, the given Times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["Delta,Time,SYSTEM_POWER (Watts)"]
    lines += [f"{0 if k == 0 else 200},{t},{power_w}" for k, t in enumerate(times_ms)]
    path.write_text("\n".join(lines) + "\n")


# -- nothing echoed from a file that is no EnergiBridge CSV -------------------------------------
def test_a_link_to_a_secret_is_refused_without_quoting_it(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text(f"{SECRET}\ndaemon:*:20228:0:99999:7:::\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run_1.csv").symlink_to(secret)
    for source, flags in (
        ("energibridge", ["-g", f"fp32={tmp_path}/runs/*.csv"]),
        ("codecarbon", ["-g", f"fp32={tmp_path}/outside/shadow"]),
    ):
        result = greenprec_cli("import", source, *flags, "--out", tmp_path / f"out-{source}")
        line = one_error_line(result)
        assert "root:*" not in result.stderr + result.stdout, line
        assert "20228" not in result.stderr + result.stdout, line
        expected = "Delta" if source == "energibridge" else "energy_consumed"
        assert expected in line, line  # what a file of that tool starts with, instead
        assert not (tmp_path / f"out-{source}").exists()


def test_proc_environ_is_not_printed(tmp_path: Path) -> None:
    # First in the environment: the start of /proc/self/environ, which 0.2.0 quoted.
    result = subprocess.run(
        [sys.executable, "-m", "greenprec", "import", "energibridge",
         "-g", "fp32=/proc/self/environ", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False,
        env={"GREENPREC_TEST_TOKEN": "hunter2-very-secret", **os.environ},
    )  # fmt: skip
    one_error_line(result, "not an EnergiBridge CSV")
    assert "hunter2" not in result.stderr + result.stdout
    assert "GREENPREC_TEST_TOKEN" not in result.stderr + result.stdout


def test_an_endless_first_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = tmp_path / "one-line.csv"
    with open(huge, "w") as handle:
        for _ in range(64):
            handle.write("x" * (1 << 20))  # 64 MiB with no line end
    with pytest.raises(ConfigError, match="no EnergiBridge header") as caught:
        read_energibridge_csv(huge)
    assert "xxx" not in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "run.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"run\.csv: not a regular file"):
        read_energibridge_csv(fifo)  # 0.2.0 opened it and waited for a writer forever


def test_a_recognised_file_still_names_its_bad_cell(tmp_path: Path) -> None:
    """Quoting stays where the file is an EnergiBridge CSV: the user's own damaged cell."""
    path = tmp_path / "run.csv"
    path.write_text("Delta,Time,SYSTEM_POWER (Watts)\n0,1000,5\n200,1200,abc\n200,1400,5\n")
    with pytest.raises(ConfigError, match=r"run.csv:3: non-numeric value 'abc'"):
        read_energibridge_csv(path)


# -- no endless walk ------------------------------------------------------------------------------
def test_a_symlink_loop_under_a_recursive_glob_returns(tmp_path: Path) -> None:
    power_csv(tmp_path / "data" / "run_1.csv", [1_000_000 + 200 * k for k in range(5)])
    power_csv(tmp_path / "data" / "deeper" / "run_2.csv", [2_000_000 + 200 * k for k in range(5)])
    for name in ("loop_a", "loop_b", "loop_c"):
        (tmp_path / "data" / name).symlink_to(tmp_path / "data")  # 3**depth paths if followed
        (tmp_path / "data" / "deeper" / name).symlink_to(tmp_path / "data")
    result = greenprec_cli(
        "import", "energibridge", "-g", f"a={tmp_path}/data/**/*.csv", "--out", tmp_path / "out",
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = ResultsStore(tmp_path / "out").load().runs
    assert sorted(run.run_id for run in runs) == ["run_1", "run_2"]


@pytest.mark.parametrize("source", ["energibridge", "codecarbon"])
def test_a_glob_over_proc_stops_at_the_cap_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setattr(_files, "MAX_ENTRIES", 2_000)
    flags = (
        ["-g", "a=/proc/**/*.csv"]
        if source == "energibridge"
        else ["--group-by", "project_name", "--files", "/proc/**/*.csv"]
    )
    result = CliRunner().invoke(app, ["import", source, *flags, "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "2,000 files and folders" in message and "/proc/**/*.csv" in message
    assert "narrow the glob" in message
    assert "\n" not in message


def test_a_glob_that_takes_too_long_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(30):
        (tmp_path / "tree" / f"d{k}").mkdir(parents=True)
    monkeypatch.setattr(_files, "MAX_WALK_S", 0.0)
    with pytest.raises(ConfigError, match=r"took more than 0 s .* narrow the glob"):
        _files.find_files(f"{tmp_path}/tree/**/*.csv", "group a", "groups")


def test_a_glob_over_proc_returns_from_the_command_line(tmp_path: Path) -> None:
    """Unpatched: /proc's links (/proc/self/root, cwd) are not followed and the caps hold, so
    the walk ends with one line and exit code 2, whether it finished or reached a cap."""
    result = greenprec_cli(
        "import", "energibridge", "-g", "a=/proc/**/*.csv", "--out", tmp_path / "out", timeout=90
    )
    line = one_error_line(result, "/proc/**/*.csv")
    assert "matches no file" in line or "narrow the glob" in line, line


# -- Time going back ------------------------------------------------------------------------------
def test_time_going_back_keeps_the_trace_in_order_and_says_so(tmp_path: Path) -> None:
    start = 1_700_000_000_000
    times = [start + 200 * k for k in range(10)]
    times += [start + 200 * 9 - 3_600_000 + 200 * k for k in range(1, 11)]  # NTP: 1 h back
    path = tmp_path / "run.csv"
    power_csv(path, times)
    recording = read_energibridge_csv(path)
    assert recording.energy_j == pytest.approx(10.0 * 0.2 * 19)  # energy never used Time
    assert recording.clock_steps_back == 1
    (warning,) = [w for w in recording.warnings if "Time goes back" in w]
    assert warning.startswith(f"{path}:12: Time goes back 3599.8 s here")
    t_s = list(recording.samples["t_s"])
    assert t_s == sorted(t_s) and len(set(t_s)) == len(t_s)  # no instant holds two samples
    assert t_s[-1] == pytest.approx(0.2 * 20)  # 19 steps of Delta, and the last row's Delta
    result = greenprec_cli("import", "energibridge", "-g", f"a={path}", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "run.csv:12: Time goes back" in result.stderr
    assert "Time goes back" in " ".join(ResultsStore(tmp_path / "out").read_experiment().warnings)


# -- warnings on stderr ---------------------------------------------------------------------------
def test_import_warnings_go_to_stderr(tmp_path: Path) -> None:
    values = [262_100.0, 262_110.0, 262_120.0, 262_130.0, 262_140.0, 6.0, 16.0, 26.0, 36.0]
    lines = ["Delta,Time,PACKAGE_ENERGY (J)"]
    lines += [f"{0 if k == 0 else 200},{1_000_000 + 200 * k},{v}" for k, v in enumerate(values)]
    (tmp_path / "wrap.csv").write_text("\n".join(lines) + "\n")
    result = greenprec_cli(
        "import", "energibridge", "-g", f"a={tmp_path}/wrap.csv", "--out", tmp_path / "out"
    )
    assert result.returncode == 0, result.stderr
    assert "wrap-around" not in result.stdout
    assert "greenprec: warning: " in result.stderr and "wrap.csv:7: 1 wrap-around" in result.stderr
    assert "next: greenprec report" in result.stdout


# -- the fast reader gives the pre-change reader's numbers ----------------------------------------
def fingerprint(recording: EnergiBridgeRecording) -> dict[str, object]:
    """Everything a reading gives, floats as repr (every bit), samples as a hash of the rows
    written to samples/<run>.csv."""
    digest = hashlib.sha256()
    for row in recording.samples.itertuples(index=False, name=None):
        digest.update((",".join(str(format_cell(v)) for v in row) + "\n").encode())
    return {
        "energy_j": repr(recording.energy_j),
        "duration_s": repr(recording.duration_s),
        "mean_power_w": repr(recording.mean_power_w),
        "started_at": recording.started_at.isoformat(),
        "domains": {k: repr(v) for k, v in recording.domains.items()},
        "counted": recording.counted_domains,
        "wraps": recording.wraps,
        "glitches": recording.glitches,
        "warnings": [w.replace(str(recording.path), "FILE") for w in recording.warnings],
        "notes": [n.replace(str(recording.path), "FILE") for n in recording.notes],
        "columns": recording.columns,
        "samples_rows": len(recording.samples),
        "samples_sha256": digest.hexdigest(),
    }


def replayed(path: Path, rows: int, *, damaged: bool) -> Path:
    """A long file made of the template's rows replayed (counters continued, wrapping at
    262144 J); ``damaged`` adds what costs a row mid-file: console text and empty cells in
    columns outside the total, and a last row cut short."""
    table = list(csv.reader(io.StringIO(TEMPLATE.read_text(encoding="utf-8"))))
    header, data = table[0], table[1:]
    counters = [i for i, name in enumerate(header) if name.endswith("_ENERGY (J)")]
    pp0, usage = header.index("PP0_ENERGY (J)"), header.index("CPU_USAGE_3")
    value = {i: float(data[0][i]) for i in counters}
    lines = [",".join(header)]
    time_ms = int(data[0][1])
    for k in range(rows):
        row = list(data[k % (len(data) - 1) + 1])
        previous = data[k % (len(data) - 1)]
        time_ms += 0 if k == 0 else 200
        row[0], row[1] = ("0" if k == 0 else "200"), str(time_ms)
        for i in counters:
            if k:
                value[i] = (value[i] + (float(row[i]) - float(previous[i])) % 262144.0) % 262144.0
            row[i] = repr(value[i])
        if damaged and k % 997 == 500:
            row[pp0] = ""
        if damaged and k % 1201 == 700:
            row[usage] = ""
        if damaged and k % 1999 == 1000:
            lines.append("Received Ctrl+C, stopping...")
        lines.append(",".join(row))
    if damaged:
        lines.append(lines[-1][: len(lines[-1]) // 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _cases(tmp_path: Path) -> dict[str, Path]:
    names = sorted(p.relative_to(DATA).as_posix() for p in DATA.glob("*/*.csv"))
    cases = {name: DATA / name for name in names}
    cases["replayed-clean-24000"] = replayed(tmp_path / "clean.csv", 24_000, damaged=False)
    cases["replayed-damaged-9000"] = replayed(tmp_path / "damaged.csv", 9_000, damaged=True)
    return cases


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the real recordings are not here ({DATA})")
@pytest.mark.parametrize("batch_rows", [None, 400])
def test_every_number_is_the_pre_change_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int | None
) -> None:
    """29 real recordings and two long replayed ones (one with damage mid-file), read with the
    fast path in its usual batches and in batches of 400 rows (fast and line-by-line mixed):
    every figure, warning and sample row as the reader before the fast path gave them."""
    if batch_rows is not None:
        monkeypatch.setattr(energibridge_csv, "_BATCH_ROWS", batch_rows)
    golden = json.loads(GOLDEN.read_text())
    for name, path in _cases(tmp_path).items():
        assert fingerprint(read_energibridge_csv(path)) == golden[name], name


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the real recordings are not here ({DATA})")
def test_the_imported_samples_file_is_the_stores_byte_for_byte(tmp_path: Path) -> None:
    """The importer streams samples/<run>.csv itself: the bytes ResultsStore.write_samples
    writes, NaN cells and all."""
    sources = [
        replayed(tmp_path / "in" / "long.csv", 12_000, damaged=True),
        DATA / "eb-experiments" / "linux_chrome_1.csv",
    ]
    for k, source in enumerate(sources):
        out = tmp_path / f"out{k}"
        result = CliRunner().invoke(
            app, ["import", "energibridge", "-g", f"a={source}", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        reference = ResultsStore(tmp_path / f"reference{k}")
        written = reference.write_samples(
            "x", read_energibridge_csv(source).samples.itertuples(index=False, name=None)
        )
        assert (out / "samples" / f"{source.stem}.csv").read_bytes() == written.read_bytes()

"""What a new user hit on the command line (issue 11): --resume after the original command,
failed runs on resume, --help, output to logs, rich markup in text, Ctrl-C in measure."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.experiment.config import PRESETS

TESTS_DIR = Path(__file__).resolve().parent
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock"]
SLEEPY = [
    "--workload",
    "experiment_workloads:sleepy",
    "--param",
    "sleep_s=0.02",
    "--isolation",
    "inline",
]
BRACKETS = "missing [/data/cifar-10]"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path]), **extra}


def greenprec_cli(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *map(str, args)],
        capture_output=True, text=True, env=_env(), timeout=timeout, check=False,
    )  # fmt: skip


def runs_of(folder: Path) -> dict[str, dict[str, object]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((folder / "runs").iterdir())}


# -- --resume appended to the original command -------------------------------------------------
ORIGINAL = ["fp32", "mixed", "--runs", "2", *SLEEPY, *FAST, "--quiet"]


def _interrupted_experiment(tmp_path: Path) -> Path:
    """A finished experiment with one run marked interrupted: --resume has one run to do."""
    out = tmp_path / "exp"
    assert greenprec_cli("compare", *ORIGINAL, "--out", out).returncode == 0
    path = out / "runs" / "mixed-001.json"
    run = json.loads(path.read_text())
    path.write_text(json.dumps({**run, "status": "failed", "error": "interrupted (Ctrl-C)"}))
    return out


@pytest.mark.slow
def test_resume_appended_to_the_original_command_continues(tmp_path: Path) -> None:
    out = _interrupted_experiment(tmp_path)
    before = runs_of(out)
    # The very command that started it, --resume appended; policies in another order and a
    # shortcut given as --param are the same settings.
    result = greenprec_cli(
        "compare", "mixed", "fp32", "--runs", "2", *SLEEPY, *FAST, "--quiet", "--out", out,
        "--resume",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = runs_of(out)
    assert after["mixed-001"]["status"] == "done"
    for run_id in ("fp32-001", "fp32-002", "mixed-002"):
        assert after[run_id] == before[run_id]  # done runs are not repeated


@pytest.mark.slow
def test_resume_with_conflicting_flags_names_each_difference(tmp_path: Path) -> None:
    out = _interrupted_experiment(tmp_path)
    before = runs_of(out)
    result = greenprec_cli(
        "compare", "fp32", "mixed", "--runs", "3", "--quick", *SLEEPY, "-o", "power_w=7",
        *FAST, "--quiet", "--out", out, "--resume",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("greenprec: error: --resume continues")
    assert "runs: 3 given, the experiment has 2 (--runs)" in line
    assert "protocol: 'quick' given, the experiment has 'default' (--protocol/--quick)" in line
    assert "meter_options.power_w: '7' given, the experiment has none (-o)" in line
    assert "policies" not in line and "sleep_s" not in line  # those match
    assert "start a new experiment with another --out" in line
    assert runs_of(out) == before


@pytest.mark.slow
def test_resume_when_every_run_failed_counts_them_and_says_how_to_retry(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    args = ["mixed", "--runs", "2", "--workload", "experiment_workloads:fails_with_brackets"]
    first = greenprec_cli("compare", *args, *FAST, "--out", out)
    assert first.returncode == 1, first.stderr
    resumed = greenprec_cli("compare", "--resume", "--out", out)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
    assert f"2 runs (0 already done, 2 failed) -> {out}" in resumed.stderr
    assert "--resume alone does not run failed runs again" in resumed.stderr
    assert f"--resume --retry-failed --out {out}" in resumed.stderr


# -- --help --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["--help"], ["compare", "--help"], ["measure", "--help"], ["meters", "--help"],
     ["runs", "--help"], ["report", "--help"], ["import", "energibridge", "--help"]],
)  # fmt: skip
def test_help_tags_no_flag_with_a_python_type(command: list[str]) -> None:
    result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    options = result.output.split("Options")[1]
    assert "<bool>" not in options and "<list[str]>" not in options, result.output


def test_help_shows_metavars() -> None:
    measure = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--option\s+-o\s+KEY=VALUE", measure), measure
    assert re.search(r"--meter\s+-m\s+NAME", measure), measure
    compare = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--param\s+KEY=VALUE", compare), compare


def test_compare_help_shows_each_preset_and_the_protocols() -> None:
    result = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert "default, quick, paper" in text
    for name, values in PRESETS.items():
        warmup = f"warm-up {values['warmup_s']:g} s" if values["warmup_s"] else "no warm-up"
        assert (
            f"{name}: {values['runs']} runs per policy, {warmup}, "
            f"cool-down {values['cooldown_s']:g} s, workload {values['workload']}"
        ) in text, text


def test_quick_with_a_misspelt_protocol_names_the_typo(tmp_path: Path) -> None:
    result = greenprec_cli("compare", "fp32", "--quick", "--protocol", "papr", "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "unknown protocol 'papr'; choose one of default, quick, paper" in line


# -- output that is not a terminal ---------------------------------------------------------------
@pytest.mark.slow
def test_plain_progress_prints_each_phase_with_its_length_and_each_run(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = greenprec_cli(
        "compare", "fp32", "--runs", "2", *SLEEPY, "--meter", "mock", "--warmup", "0.3",
        "--baseline", "0.2", "--cooldown", "0.1", "--no-shuffle", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    expected = [
        "baseline (idle power) for 0.2 s",
        "warm-up (all cores busy) for 0.3 s",
        "run 1 of 2: fp32-001 [fp32] training",
        "cool-down for 0.1 s before fp32-002 [fp32]",
        "run 2 of 2: fp32-002 [fp32] training",
    ]
    for text in expected:
        assert text in lines, result.stderr
    assert [line for line in lines if line in expected] == expected  # in the order they happen
    assert sum(line.startswith("fp32-00") and "energy_j" in line for line in lines) == 2


@pytest.mark.slow
def test_tables_are_never_cut_when_not_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    made = greenprec_cli(
        "compare", "fp32", "mixed", "--runs", "1", *SLEEPY, "--meter", "estimate",
        "--warmup", "0", "--cooldown", "0", "--quiet", "--out", out,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    runner = CliRunner()
    narrow = {"COLUMNS": "80"}
    runs = runner.invoke(app, ["runs", str(out)], env=narrow)
    assert runs.exit_code == 0, runs.output
    assert "energy_j (estimated)" in runs.stdout and "mixed-001" in runs.stdout
    assert "…" not in runs.stdout
    meters = runner.invoke(app, ["meters"], env=narrow)
    assert "estimated" in meters.stdout and "…" not in meters.stdout
    measured = runner.invoke(app, ["measure", "-m", "estimate", "--", "true"], env=narrow)
    assert "mean_power_w (estimated)" in measured.stdout and "…" not in measured.stdout
    workloads = runner.invoke(app, ["workloads"], env=narrow)
    assert "digits-cnn" in workloads.stdout and "…" not in workloads.stdout


# -- rich markup in text that is not greenprec's -------------------------------------------------
@pytest.fixture(scope="module")
def bracketed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """An experiment whose mixed runs failed with an error holding square brackets."""
    out = tmp_path_factory.mktemp("brackets") / "exp"
    result = greenprec_cli(
        "compare", "fp32", "mixed", "--runs", "3", "--workload",
        "experiment_workloads:fails_with_brackets", *FAST, "--out", out,
    )  # fmt: skip
    return out, result


@pytest.mark.slow
def test_compare_prints_an_error_with_brackets_as_it_is(
    bracketed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = bracketed
    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert "MarkupError" not in output and "Traceback" not in output
    assert f"mixed-001 [mixed] failed: RuntimeError: {BRACKETS}" in result.stderr
    assert f"RuntimeError: {BRACKETS}" in result.stdout  # the report's warnings


@pytest.mark.slow
@pytest.mark.parametrize("command", ["runs", "report"])
def test_runs_and_report_print_an_error_with_brackets_as_it_is(
    bracketed: tuple[Path, subprocess.CompletedProcess[str]], command: str
) -> None:
    out, _ = bracketed
    result = greenprec_cli(command, out)
    assert result.returncode == 0, result.stderr
    assert "MarkupError" not in result.stderr and "Traceback" not in result.stderr
    assert BRACKETS in result.stdout


def test_progress_bar_on_a_terminal_prints_brackets_as_they_are(tmp_path: Path) -> None:
    """With stderr a terminal, compare draws its live progress (rich): a failed run's line and
    the policy in brackets must print whole there too."""
    pty = pytest.importorskip("pty")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", "mixed", "--runs", "1", "--workload",
         "experiment_workloads:fails_with_brackets", *FAST, "--out", str(tmp_path / "exp")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary, env=_env(),
    )  # fmt: skip
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    assert "MarkupError" not in text and "Traceback" not in text
    assert f"mixed-001 [mixed] failed: RuntimeError: {BRACKETS}" in " ".join(text.split())


def test_meters_prints_install_hints_whole() -> None:
    listed = json.loads(greenprec_cli("meters", "--json").stdout)["meters"]
    hints = [m["reason"] for m in listed if m["reason"] and "greenprec[" in m["reason"]]
    if not hints:
        pytest.skip("every meter with an install hint is installed here")
    table = greenprec_cli("meters")
    assert table.returncode == 0
    for hint in hints:
        assert re.search(r"pip install '(greenprec\[\w+\])'", hint)
        extra = re.search(r"greenprec\[\w+\]", hint)
        assert extra is not None and extra.group(0) in table.stdout, table.stdout


# -- Ctrl-C and SIGTERM during measure -----------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "code", "by"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_interrupted_measure_says_what_was_stopped_and_what_was_measured(
    sent: signal.Signals, code: int, by: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "measure", "-m", "mock", "--json", "--",
         "sleep", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(2.0)
        if sent == signal.SIGINT:
            os.killpg(process.pid, sent)  # as a terminal does: the whole foreground group
        else:
            process.send_signal(sent)  # as Slurm or timeout do: greenprec only
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"greenprec: interrupted ({by}) while measuring sleep 30")
    assert "first" in line and " s only" in line
    record = json.loads(stdout)
    assert record["interrupted"] == by and record["exit_code"] is None
    assert record["duration_s"] > 0.5 and record["energy_j"] > 0
    assert shutil.which("sleep")

"""The CLI through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from greenprec import __version__
from greenprec.cli import app

runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *args], capture_output=True, text=True, check=False
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_meters_lists_every_meter_with_availability() -> None:
    result = runner.invoke(app, ["meters", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["meters"]}
    assert rows["mock"]["available"] and rows["estimate"]["kind"] == "estimated"
    table = runner.invoke(app, ["meters"])
    assert "estimate" in table.stdout and "estimated" in table.stdout


def test_measure_json_through_clirunner() -> None:
    result = runner.invoke(
        app, ["measure", "-m", "mock", "-o", "power_w=50", "--json", "--", "sleep", "0.3"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["meter"] == "mock" and record["exit_code"] == 0
    assert record["energy_j"] == pytest.approx(50 * record["duration_s"], rel=1e-9)
    assert record["duration_s"] >= 0.3


def test_measure_table_in_a_real_subprocess_keeps_the_exit_code() -> None:
    result = run_cli("measure", "-m", "mock", "--", sys.executable, "-c", "raise SystemExit(7)")
    assert result.returncode == 7
    assert "mock/cpu" in result.stdout and "energy_j" in result.stdout


def test_estimated_output_is_labelled_estimated() -> None:
    result = run_cli("measure", "-m", "estimate", "--", "true")
    assert result.returncode == 0, result.stderr
    assert "estimated" in result.stdout
    as_json = run_cli("measure", "--json", "--", "true")
    record = json.loads(as_json.stdout)
    assert record["estimated"] is True
    assert "using the CPU-time estimate" in as_json.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["measure", "-m", "nope", "--", "true"], "unknown meter 'nope'"),
        (["measure", "-o", "power_w", "--", "true"], "malformed option 'power_w'"),
        (["measure"], "no command given"),
        (["measure", "--interval", "-1", "--", "true"], "--interval"),
        (["measure", "--", "/no/such/program"], "cannot run '/no/such/program'"),
        (["measure", "-m", "mock", "-o", "power_w=lots", "--", "true"], "number of watts"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("greenprec: error:") and message in lines[0]
    assert "Traceback" not in result.stderr

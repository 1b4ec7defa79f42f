"""The CLI through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from greenprec import __version__
from greenprec.cli import app
from greenprec.cli.settings import (
    COMPARE_OPTIONS,
    Setting,
    config_overrides,
    flag_of,
    option_parameters,
    with_flags,
)
from greenprec.experiment.config import PARAM_SHORTCUTS, ExperimentConfig, SlurmConfig

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


@pytest.mark.slow
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


# -- compare's options, declared once (greenprec.cli.settings) -----------------------------------
_SETTINGS = [setting for setting in COMPARE_OPTIONS if setting.fields]

# Settings that only a config file gives: named here, so that a new setting gets a flag (an
# entry in COMPARE_OPTIONS) or a place on this list, not neither. ``greenprec recommend``
# sets the last three from its own options (greenprec.cli.recommend.RECOMMEND_OPTIONS).
_FILE_ONLY = {
    "min_runs",
    "train_size",
    "slurm.poll_s",
    "configurations",
    "selection",
    "grid_intensity",
}


def _config_settings() -> set[str]:
    """Every setting of compare's config: its fields, the params shortcuts, the [slurm] keys."""
    top = set(ExperimentConfig.model_fields) - {"slurm"}
    slurm = {f"slurm.{name}" for name in SlurmConfig.model_fields}
    return top | set(PARAM_SHORTCUTS) | slurm


def test_each_setting_has_exactly_one_option_or_only_a_config_file() -> None:
    declared = [field for setting in COMPARE_OPTIONS for field in setting.fields]
    assert len(declared) == len(set(declared)), "a setting given by two options"
    assert set(declared) <= _config_settings(), "an option for a setting the config lacks"
    assert set(declared) | _FILE_ONLY == _config_settings()
    assert not set(declared) & _FILE_ONLY
    names = [setting.name for setting in COMPARE_OPTIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("setting", _SETTINGS, ids=lambda setting: setting.name)
def test_a_problem_with_a_setting_names_its_flag(setting: Setting) -> None:
    for field in setting.fields:
        assert flag_of(field, COMPARE_OPTIONS) == setting.named
        table, dot, key = field.partition(".")
        overrides: dict[str, object] = {table: {key: 1}} if dot else {field: 1}
        message = f"{field}: Input should be valid (got 1)\nmin_runs: from the file"
        assert with_flags(message, overrides, COMPARE_OPTIONS).splitlines() == [
            f"{field}: Input should be valid (got 1) ({setting.named})",
            "min_runs: from the file",
        ]
        # Given by a config file, not a flag: the line stays the config's.
        assert with_flags(message, {}, COMPARE_OPTIONS) == message


def test_table_keys_and_params_name_their_flags() -> None:
    assert flag_of("params.epochs", COMPARE_OPTIONS) == "--epochs"
    assert flag_of("params.lr", COMPARE_OPTIONS) == "--param"
    assert flag_of("meter_options.rapl.root", COMPARE_OPTIONS) == "-o"
    assert flag_of("margins.test_accuracy", COMPARE_OPTIONS) == "--margin"
    assert flag_of("slurm.exclusive", COMPARE_OPTIONS) == "--shared"
    assert flag_of("min_runs", COMPARE_OPTIONS) == "min_runs"  # a config file's only


def test_compare_help_shows_every_option_of_the_table_in_its_panel() -> None:
    result = runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for setting in COMPARE_OPTIONS:
        starts = re.compile(rf"│\s+{re.escape(setting.flag)}\s")
        line = next(line for line in result.stdout.splitlines() if starts.match(line))
        assert setting.help[:30] in line or setting.name == "protocol", line
    panels = [line for line in result.stdout.splitlines() if line.startswith("╭─ ")]
    assert [panel.strip("╭─╮ ") for panel in panels] == [
        "Arguments",
        "Options",
        "Workload",
        "Protocol",
        "Meters",
        "Output and resuming",
        "Statistics",
        "Cluster (--executor slurm)",
    ]


def test_flags_become_config_overrides() -> None:
    given: dict[str, object] = {
        "policies": ["fp32", "mixed"],
        "warmup": "auto",
        "no_shuffle": True,
        "epochs": 3,
        "option": ["rapl.root=/x"],
        "target": ["test_accuracy=0.4"],
        "margin": ["test_accuracy=1pp"],
        "shared": True,
        "sbatch": ["--constraint=a100"],
        "partition": "gpu",
        "out": Path("somewhere"),  # compare's own: no setting
        "runs": None,  # not given
        "meter": [],
    }
    assert config_overrides(COMPARE_OPTIONS, given) == {
        "policies": ["fp32", "mixed"],
        "warmup_auto": True,
        "meter_options": {"rapl.root": "/x"},
        "shuffle": False,
        "epochs": 3,
        "margins": {"test_accuracy": "1pp"},
        "targets": {"test_accuracy": 0.4},
        "slurm": {"partition": "gpu", "exclusive": False, "sbatch": {"constraint": "a100"}},
    }
    assert config_overrides(COMPARE_OPTIONS, {"warmup": "90", "no_shuffle": False}) == {
        "warmup_s": 90.0
    }


def test_another_command_reuses_the_entries_it_shares() -> None:
    """What a later command (``recommend``) does: its signature from the entries it shares."""

    def recommend(**given: object) -> None:
        typer.echo(json.dumps(config_overrides(COMPARE_OPTIONS, given)))

    parameters = option_parameters(COMPARE_OPTIONS, ["workload", "meter", "margin"])
    recommend.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command = typer.Typer()
    command.command()(recommend)
    args = ["--workload", "digits-cnn", "-m", "mock", "--margin", "test_accuracy=1pp"]
    result = runner.invoke(command, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "workload": "digits-cnn",
        "meters": ["mock"],
        "margins": {"test_accuracy": "1pp"},
    }
    assert "--runs" not in runner.invoke(command, ["--help"]).stdout


@pytest.mark.slow
def test_a_bad_value_names_the_flag_it_came_through(tmp_path: Path) -> None:
    result = run_cli("compare", "fp32", "--runs", "0", "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "runs: Input should be greater than or equal to 1 (got 0) (--runs)" in result.stderr
    config = tmp_path / "c.toml"
    config.write_text("runs = 0\n", encoding="utf-8")
    from_file = run_cli("compare", "fp32", "--config", str(config), "--out", str(tmp_path / "o"))
    assert from_file.returncode == 2, from_file.stderr
    assert from_file.stderr.rstrip().endswith("(got 0)")  # the file's setting, no flag
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()

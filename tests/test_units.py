"""Units are never guessed (issue 20): a margin or target whose unit is ambiguous is refused
before anything runs, and every margin is printed with its unit and its value in the metric's
own units."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec import stats
from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.report import build_report
from test_report_equivalence import _folder, _normal

TESTS_DIR = Path(__file__).resolve().parent
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet"]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip


def _one_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("greenprec: error:")]
    assert len(errors) == 1, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


OFFERS = ("test_accuracy=1pp", "test_accuracy=1%", "test_accuracy=0.01")


# -- margins with no unit on an accuracy -----------------------------------------------------------


def test_compare_refuses_a_unitless_accuracy_margin_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = _cli("compare", "fp32", "mixed", "--quick", "--margin", "test_accuracy=1",
                  "--out", out, *FAST)  # fmt: skip
    _one_error(result, "test_accuracy=1 has no unit", *OFFERS)
    assert not (out / "experiment.json").exists()
    assert not (out / "runs").exists()


def test_config_file_margin_without_a_unit_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text('policies = ["fp32", "mixed"]\n[margins]\ntest_accuracy = "-2"\n')
    out = tmp_path / "exp"
    result = _cli("compare", "--config", config, "--out", out, *FAST)
    _one_error(result, "test_accuracy=-2pp", "test_accuracy=-2%", "test_accuracy=-0.02")
    assert not (out / "experiment.json").exists()


def test_report_refuses_a_unitless_accuracy_margin(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "r",
        {"fp32": _normal(1000, 10, 5, 1), "mixed": _normal(900, 10, 5, 2)},
        {"fp32": _normal(0.46, 0.004, 5, 3), "mixed": _normal(0.46, 0.004, 5, 4)},
    )
    result = _cli("report", folder, "--margin", "test_accuracy=1")
    _one_error(result, "--margin:", *OFFERS)
    assert not (folder / "stats.json").exists()


@pytest.mark.parametrize("text", ["test_accuracy=1", "val_accuracy=2.5", "top1_acc=+1", "acc=-5"])
def test_parse_margin_refuses_a_unitless_accuracy_of_one_or_more(text: str) -> None:
    with pytest.raises(ConfigError, match="has no unit") as error:
        stats.parse_margin(text)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="has no unit"):
        stats.Margin("test_accuracy", 1.0, "abs", "equivalence")


def test_not_every_name_with_acc_is_an_accuracy() -> None:
    assert stats.accuracy_like("test_accuracy") and stats.accuracy_like("top5_acc")
    assert stats.accuracy_like("acc1") and stats.accuracy_like("balanced_accuracy")
    assert not stats.accuracy_like("access_count") and not stats.accuracy_like("energy_j")
    assert stats.parse_margin("access_count=3").describe() == "±3"
    assert stats.parse_margin("test_loss=0.02").describe() == "±0.02"


def test_a_bare_fraction_on_an_accuracy_is_a_fraction_of_one_and_says_so() -> None:
    margin = stats.parse_margin("test_accuracy=0.01")
    assert margin.describe() == "±0.01 (a fraction of 1: ±1 pp)"
    assert margin.absolute(0.46) == pytest.approx(0.01)
    # ... also when the runs record percentages: 0.01 is still 1 pp
    assert margin.absolute(46.0) == pytest.approx(1.0)
    assert margin.absolute(46.0, "percent") == pytest.approx(1.0)


# -- every margin is printed with its unit and its value in the metric's units --------------------


def test_margins_describe_themselves_in_the_metrics_units() -> None:
    pp = stats.parse_margin("test_accuracy=1pp")
    assert pp.describe(absolute=0.01, accuracy_scale="fraction") == "±1 pp (±0.010)"
    pct = stats.parse_margin("test_accuracy=2%")
    assert pct.describe() == "±2 % of the reference mean"
    assert (
        pct.describe(absolute=pct.absolute(0.465), reference="fp32", accuracy_scale="fraction")
        == "±2 % of fp32's mean (±0.93 pp)"
    )
    energy = stats.parse_margin("energy_j=+5%")
    assert energy.describe(absolute=50.0, reference="fp32") == (
        "not more than +5 % of fp32's mean (+50 J)"
    )


def test_report_prints_a_percent_accuracy_margin_with_its_value_in_pp(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "pct",
        {"fp32": _normal(1000, 10, 6, 1), "mixed": _normal(900, 10, 6, 2)},
        {"fp32": _normal(0.465, 0.004, 6, 3), "mixed": _normal(0.466, 0.004, 6, 4)},
    )
    result = CliRunner().invoke(
        app, ["report", str(folder), "--margin", "test_accuracy=2%"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    margins = json.loads((folder / "stats.json").read_text())["margins"]
    text = margins["test_accuracy"]["text"]
    assert text == "±2 % of fp32's mean (±0.93 pp)"
    assert margins["test_accuracy"]["absolute"] == pytest.approx(0.0093)
    assert margins["test_accuracy"]["reference"] == "fp32"
    assert text in (folder / "report.md").read_text()


def test_report_prints_the_default_margin_in_the_metrics_units(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "pp",
        {"fp32": _normal(1000, 10, 6, 1), "mixed": _normal(900, 10, 6, 2)},
        {"fp32": _normal(0.8, 0.004, 6, 3), "mixed": _normal(0.8, 0.004, 6, 4)},
    )
    report = build_report(folder)
    assert report.stats["margins"]["test_accuracy"]["text"] == "±1 pp (±0.010)"


# -- targets are checked before anything runs ------------------------------------------------------


def test_compare_refuses_a_percent_target_where_a_fraction_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = _cli("compare", "fp32", "mixed", "--quick", "--target", "test_accuracy=97",
                  "--out", out, *FAST)  # fmt: skip
    line = _one_error(result, "target test_accuracy=97", "a fraction of 1", "test_accuracy=0.97")
    assert "digits-cnn" in line
    assert not (out / "experiment.json").exists()


def test_compare_refuses_a_target_no_workload_records(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = _cli("compare", "fp32", "mixed", "--quick", "--target", "accuracy=0.97",
                  "--out", out, *FAST)  # fmt: skip
    _one_error(result, "does not record accuracy", "test_accuracy", "test_loss",
               "did you mean test_accuracy=0.97?")  # fmt: skip
    assert not (out / "experiment.json").exists()


def test_target_in_a_config_file_is_checked_too(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text('policies = ["fp32"]\nprotocol = "quick"\n[targets]\ntest_loss = -0.5\n')
    out = tmp_path / "exp"
    _one_error(_cli("compare", "--config", config, "--out", out, *FAST), "test_loss is 0 or more")
    assert not (out / "experiment.json").exists()


def test_a_workload_that_declares_nothing_gets_the_accuracy_range_rule(tmp_path: Path) -> None:
    from greenprec.experiment.config import load_config
    from greenprec.workloads import STANDARD_METRICS, get_workload, recorded_metrics

    assert recorded_metrics(get_workload("digits-cnn")) == STANDARD_METRICS
    overrides = {"policies": ["fp32"], "workload": "experiment_workloads:sleepy"}
    with pytest.raises(ConfigError, match="an accuracy lies between 0 and 1"):
        load_config({**overrides, "targets": {"top1_acc": 150.0}})
    with pytest.warns(UserWarning, match="could not be checked"):
        config = load_config({**overrides, "targets": {"test_accuracy": 0.5}})
    assert config.targets == {"test_accuracy": 0.5}


def test_report_says_why_no_run_reached_a_target(tmp_path: Path) -> None:
    from greenprec.results import RunRecord
    from greenprec.results.models import EpochRecord, TargetRecord
    from test_report_equivalence import write_folder

    runs = []
    for index, (policy, best) in enumerate([("fp32", 0.95), ("fp32", 0.96), ("mixed", 0.975)]):
        epochs = [
            EpochRecord(epoch=e, duration_s=e, energy_j=10.0 * e, metrics={"test_accuracy": v})
            for e, v in ((1, best - 0.1), (2, best - 0.05), (3, best))
        ]
        runs.append(
            RunRecord(
                run_id=f"{policy}-{index + 1:03d}", order=index + 1, policy=policy,
                repetition=index + 1, status="done", duration_s=3.0, energy_j=30.0,
                mean_power_w=10.0, meter="rapl", estimated=False,
                metrics={"test_accuracy": best, "test_loss": 0.1}, epochs=epochs,
                targets=[TargetRecord(metric="test_accuracy", value=0.99, reached=False)],
            )
        )  # fmt: skip
    folder = write_folder(
        tmp_path / "t",
        runs,
        {"targets": {"test_accuracy": 0.99}, "protocol": "quick", "params": {"epochs": 3}},
    )
    report = build_report(folder)
    expected = (
        "no run reached test_accuracy ≥ 0.99: the runs trained 3 epochs (protocol quick), and "
        "the best test_accuracy any run reached was 0.975 (mixed-003, epoch 3); train longer "
        "(--epochs more than 3) or set a target the runs reach (e.g. --target "
        "test_accuracy=0.975)"
    )
    assert expected in report.warnings
    best = report.stats["energy_to_target"][0]["best"]
    assert best["best_value"] == pytest.approx(0.975) and best["epochs_param"] == 3

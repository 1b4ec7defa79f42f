"""The report's margins and verdicts: "not significant" is never read as "no difference".

Test accuracy is always asked with a margin (±1 pp by default): equivalent, not worse,
different, or inconclusive with the runs that would settle it. Energy without a margin says
"inconclusive: no difference shown" with the runs that would detect the observed change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from greenprec import stats
from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.report import build_report
from greenprec.results import (
    MetersRecord,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    new_experiment_record,
)
from greenprec.results.models import PhaseRecord, SequentialRecord

NOT_SIGNIFICANT = re.compile(r"not significant", re.IGNORECASE)


def write_folder(
    path: Path,
    runs: list[RunRecord],
    config: dict[str, object] | None = None,
    *,
    sequential: SequentialRecord | None = None,
    warmups: list[PhaseRecord] | None = None,
) -> Path:
    """A results folder holding exactly these runs, through ResultsStore and the models."""
    policies = list(dict.fromkeys(run.policy for run in runs))
    experiment = new_experiment_record(
        source="greenprec compare",
        config={"policies": policies, "workload": "test", **(config or {})},
        schedule=[
            ScheduledRun(
                run_id=run.run_id, order=run.order, policy=run.policy, repetition=run.repetition
            )
            for run in runs
        ],
        meters=MetersRecord(requested=["rapl"], used=["rapl"]),
    )
    experiment.sequential = sequential
    experiment.warmups = list(warmups or [])
    store = ResultsStore(path)
    store.create(experiment, runs)
    for run in runs:
        store.write_run(run)
    store.write_index(runs)
    return path


def _folder(
    path: Path,
    energy: dict[str, list[float]],
    accuracy: dict[str, list[float]] | None = None,
    *,
    config: dict[str, object] | None = None,
    metric: str = "test_accuracy",
) -> Path:
    """A results folder with exactly these runs (through ResultsStore and the models)."""
    runs: list[RunRecord] = []
    for policy, values in energy.items():
        for index, joules in enumerate(values):
            metrics: dict[str, float | str | None] = {}
            if accuracy is not None:
                metrics[metric] = accuracy[policy][index]
            runs.append(
                RunRecord(
                    run_id=f"{re.sub('[^A-Za-z0-9]', 'x', policy)}-{index + 1:03d}",
                    order=len(runs) + 1,
                    policy=policy,
                    repetition=index + 1,
                    status="done",
                    duration_s=10.0,
                    energy_j=joules,
                    mean_power_w=joules / 10.0,
                    meter="rapl",
                    estimated=False,
                    metrics=metrics,
                )
            )
    return write_folder(path, runs, config)


def _everything(folder: Path, cli_output: str = "") -> str:
    return "\n".join(
        [
            (folder / "report.md").read_text(),
            (folder / "report.html").read_text(),
            cli_output,
        ]
    )


def _normal(mean: float, sd: float, n: int, seed: int) -> list[float]:
    values = np.random.default_rng(seed).normal(mean, sd, n)
    # exactly this mean and SD, so that the verdicts do not depend on the draw
    values = (values - values.mean()) / values.std(ddof=1) * sd + mean
    return [float(v) for v in values]


# -- the four verdicts -----------------------------------------------------------------------------


def test_equivalent_when_the_interval_lies_inside_the_margin(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "eq",
        {"fp32": _normal(1000, 10, 30, 1), "mixed": _normal(880, 10, 30, 2)},
        {"fp32": _normal(0.80, 0.004, 30, 3), "mixed": _normal(0.799, 0.004, 30, 4)},
    )
    report = build_report(folder)
    comparison = report.stats["metrics"]["test_accuracy"]["comparisons"][0]
    eq = comparison["equivalence"]
    assert eq["test"] == "tost_welch"
    assert eq["equivalent"] is True and eq["verdict"] == "equivalent within ±1 pp (±0.010)"
    assert eq["margin"]["unit"] == "pp" and eq["margin"]["value"] == 1.0
    assert eq["margin"]["absolute"] == pytest.approx(0.01)  # in the metric's units
    assert eq["margin"]["source"] == "default"
    assert eq["ci_level"] == pytest.approx(0.9)
    assert -0.01 < eq["ci_low"] < eq["ci_high"] < 0.01
    assert comparison["verdict"] == "equivalent within ±1 pp (±0.010)"
    line = report.verdict[1]
    assert line.startswith("mixed vs fp32, test accuracy: −0.10 pp (")
    assert line.endswith(": equivalent within ±1 pp (±0.010).")
    text = _everything(folder)
    assert (
        "margin ±1 pp (±0.010; greenprec's default for accuracy; give your own margin to change it)"
        in text
    )
    assert not NOT_SIGNIFICANT.search(text)


@pytest.mark.slow
def test_the_studys_mistake_is_inconclusive_not_comparable(tmp_path: Path) -> None:
    """−0.96 pp with p ≈ 0.09 is not "comparable accuracy": equivalence is not shown."""
    folder = _folder(
        tmp_path / "study-like",
        {"fp32": _normal(32000, 900, 29, 5), "mixed": _normal(28000, 900, 30, 6)},
        {"fp32": _normal(0.700, 0.021, 29, 7), "mixed": _normal(0.6904, 0.021, 30, 8)},
    )
    result = CliRunner().invoke(app, ["report", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    stats_json = json.loads((folder / "stats.json").read_text())
    eq = stats_json["metrics"]["test_accuracy"]["comparisons"][0]["equivalence"]
    assert eq["equivalent"] is False
    # one question, one test: the verdict reads TOST's interval only (no second difference
    # test deciding "different" beside it)
    assert "difference_significant" not in eq and "difference_p" not in eq
    assert eq["verdict"] == "inconclusive: equivalence within ±1 pp (±0.010) not shown"
    text = _everything(folder, result.output)
    assert "inconclusive: equivalence within ±1 pp (±0.010) not shown" in text
    assert "set your own with --margin" in result.output  # the CLI names its flag
    assert "--margin" not in (folder / "report.md").read_text()  # the library does not
    assert not NOT_SIGNIFICANT.search(text)


def test_beyond_the_margin_when_the_interval_lies_outside_it(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "diff",
        {"fp32": _normal(1000, 10, 20, 1), "mixed": _normal(880, 10, 20, 2)},
        {"fp32": _normal(0.80, 0.005, 20, 3), "mixed": _normal(0.77, 0.005, 20, 4)},
    )
    report = build_report(folder)
    eq = report.stats["metrics"]["test_accuracy"]["comparisons"][0]["equivalence"]
    assert eq["verdict"] == "lower by more than 1 pp" and eq["equivalent"] is False
    assert report.verdict[1].startswith("mixed vs fp32, test accuracy: −3.00 pp (")
    assert report.verdict[1].endswith(": lower by more than 1 pp.")


def test_noninferiority_margin_given_to_the_report(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "ni",
        {"fp32": _normal(1000, 10, 20, 1), "mixed": _normal(880, 10, 20, 2)},
        {"fp32": _normal(80.0, 0.4, 20, 3), "mixed": _normal(80.3, 0.4, 20, 4)},  # percent
    )
    report = build_report(folder, margins=["test_accuracy=-1pp"])
    eq = report.stats["metrics"]["test_accuracy"]["comparisons"][0]["equivalence"]
    assert eq["test"] == "noninferiority_welch"
    assert eq["noninferior"] is True and eq["verdict"] == "not worse than −1 pp"
    assert eq["margin"]["absolute"] == pytest.approx(1.0)  # percent: 1 pp is 1
    assert eq["margin"]["source"] == "given"
    assert eq["ci_low"] > -1.0
    text = _everything(folder)
    assert "greenprec's default" not in text
    assert report.verdict[1].endswith(": not worse than −1 pp.")


def test_margin_from_the_experiment_and_for_energy(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "cfg",
        {"fp32": _normal(1000, 10, 20, 1), "mixed": _normal(1001, 10, 20, 2)},
        {"fp32": _normal(0.80, 0.004, 20, 3), "mixed": _normal(0.80, 0.004, 20, 4)},
        config={"margins": {"test_accuracy": "0.5pp", "energy_j": "+5%"}},
    )
    report = build_report(folder)
    margins = report.stats["margins"]
    assert margins["test_accuracy"]["source"] == "experiment"
    assert margins["test_accuracy"]["text"] == "±0.5 pp (±0.0050)"
    energy = report.stats["metrics"]["energy_j"]["comparisons"][0]
    # a margin in % of the reference mean is tested on the log ratio of the means
    assert energy["equivalence"]["test"] == "noninferiority_log_ratio"
    assert energy["equivalence"]["scale"] == "log_ratio"
    assert energy["equivalence"]["margin"]["absolute"] == pytest.approx(50.0, rel=1e-6)
    assert energy["verdict"] == "not worse than +5%"
    assert report.verdict[0].startswith("mixed vs fp32, energy: +0.1% (")
    assert "non-inferiority test (on the log ratio)" in report.verdict[0]
    # a margin given to the report wins over the experiment's
    again = build_report(folder, margins=[stats.parse_margin("test_accuracy=2pp")])
    assert again.stats["margins"]["test_accuracy"]["source"] == "given"
    assert again.stats["margins"]["test_accuracy"]["text"] == "±2 pp (±0.020)"


def test_energy_without_a_margin_is_inconclusive_not_no_difference(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "energy",
        {"fp32": _normal(1000, 40, 5, 1), "mixed": _normal(985, 40, 5, 2)},
        {"fp32": _normal(0.80, 0.004, 5, 3), "mixed": _normal(0.80, 0.004, 5, 4)},
    )
    report = build_report(folder)
    comparison = report.stats["metrics"]["energy_j"]["comparisons"][0]
    assert comparison["equivalence"] is None
    assert comparison["verdict"] == "inconclusive: the interval includes no change"
    assert ": inconclusive: the interval includes no change;" in report.verdict[0]
    assert not NOT_SIGNIFICANT.search(_everything(folder))


def test_holm_correction_is_inconclusive_too(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "holm",
        {
            "fp32": _normal(1000, 20, 6, 1),
            "mixed": _normal(975, 20, 6, 2),
            "bf16": _normal(1001, 20, 6, 3),
        },
    )
    report = build_report(folder)
    verdicts = [c["verdict"] for c in report.stats["metrics"]["energy_j"]["comparisons"]]
    assert all(v.startswith("inconclusive:") or v.endswith("energy than fp32") for v in verdicts)
    assert not NOT_SIGNIFICANT.search(_everything(folder))


# -- the command line ------------------------------------------------------------------------------


def test_cli_margin_option(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "cli",
        {"fp32": _normal(1000, 10, 10, 1), "mixed": _normal(880, 10, 10, 2)},
        {"fp32": _normal(0.80, 0.004, 10, 3), "mixed": _normal(0.80, 0.004, 10, 4)},
    )
    args = ["report", str(folder), "--margin", "test_accuracy=2pp", "--margin", "energy_j=+5%"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads((folder / "stats.json").read_text())
    assert saved["margins"]["test_accuracy"]["spec"] == "test_accuracy=2pp"
    assert saved["margins"]["energy_j"]["spec"] == "energy_j=+5%"
    assert "default" not in result.output.split("wrote")[0].lower().replace("defaults", "")


@pytest.mark.parametrize("spec", ["test_accuracy", "test_accuracy=abc", "=1pp", "x=-0pp"])
def test_cli_bad_margin_is_one_line_and_exit_2(tmp_path: Path, spec: str) -> None:
    folder = _folder(tmp_path / "bad", {"fp32": [1.0, 2.0], "mixed": [1.0, 2.0]})
    with pytest.raises(ConfigError) as expected:
        stats.parse_margin(spec)
    result = CliRunner().invoke(app, ["report", str(folder), "--margin", spec])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"--margin: {expected.value}"
    # the console entry point: one line on stderr, exit code 2
    run = subprocess.run(
        [sys.executable, "-m", "greenprec", "report", str(folder), "--margin", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [f"greenprec: error: --margin: {expected.value}"]
    assert run.stdout == ""
    assert not (folder / "report.md").exists()


def test_bad_margin_in_the_library_is_a_config_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "lib", {"fp32": [1.0, 2.0], "mixed": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="margin"):
        build_report(folder, margins=["test_accuracy=?"])


def test_unreadable_margin_in_the_experiment_is_a_warning(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "cfgbad",
        {"fp32": _normal(1000, 10, 5, 1), "mixed": _normal(880, 10, 5, 2)},
        {"fp32": _normal(0.80, 0.004, 5, 3), "mixed": _normal(0.80, 0.004, 5, 4)},
        config={"margins": {"test_accuracy": "lots"}},
    )
    report = build_report(folder)
    assert any("margin for test_accuracy is ignored" in w for w in report.warnings)
    assert report.stats["margins"]["test_accuracy"]["source"] == "default"


# -- text from files is escaped --------------------------------------------------------------------


def test_metric_and_policy_names_are_escaped(tmp_path: Path) -> None:
    metric = "val_acc_"
    folder = _folder(
        tmp_path / "esc",
        {"fp<b>32": _normal(1000, 10, 6, 1), "mi*xed|": _normal(880, 10, 6, 2)},
        config={"margins": {metric: "0.01"}},
    )
    # the metric is not one the report analyses: the margin is named as unused
    report = build_report(folder)
    assert any(f"margin {metric}=0.01 is not used" in w for w in report.warnings)
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    assert "margin val_acc\\_=0.01 is not used" in md and "fp&lt;b>32" in md and "mi\\*xed\\|" in md
    assert "<b>32" not in html and "fp&lt;b&gt;32" in html


# -- the published study ---------------------------------------------------------------------------


@pytest.mark.slow
def test_seed_study_equivalence_is_not_shown(seed_study_reported: tuple[Path, str]) -> None:
    statsmodels = pytest.importorskip("statsmodels.stats.weightstats")
    out, output = seed_study_reported
    saved = json.loads((out / "stats.json").read_text())
    removed = {r["run_id"] for r in saved["outliers"]["removed"]}
    assert len(removed) == 1  # the study's fp32 outlier
    # the same runs the report uses: every done run but the removed outlier
    snapshot = ResultsStore(out).load()
    values: dict[str, list[float]] = {"fp32": [], "mixed": []}
    for run in snapshot.runs:
        accuracy = run.metrics.get("test_accuracy")
        if run.status == "done" and run.run_id not in removed and isinstance(accuracy, float):
            values[run.policy].append(accuracy)
    a, b = np.array(values["fp32"]), np.array(values["mixed"])
    assert (a.size, b.size) == (29, 30)
    m = 0.01 if max(a.max(), b.max()) <= 1 else 1.0
    p, *_ = statsmodels.ttost_ind(b, a, -m, m, usevar="unequal")
    comparison = saved["metrics"]["test_accuracy"]["comparisons"][0]
    eq = comparison["equivalence"]
    assert eq["p"] == pytest.approx(p, abs=1e-6)
    assert eq["p"] == pytest.approx(0.4707, abs=5e-4)
    assert eq["equivalent"] is False
    assert eq["margin"]["source"] == "given"
    assert eq["verdict"] == "inconclusive: equivalence within ±1 pp (±0.010) not shown"
    md = (out / "report.md").read_text()
    assert "equivalence within ±1 pp (±0.010) not shown" in md and "equivalent within" not in md
    text = _everything(out, output)
    assert not NOT_SIGNIFICANT.search(text)
    assert saved["verdict"][1].startswith("mixed vs fp32, test accuracy: −0.96 pp (")
    # TOST p = 0.47 in the sentence (Holm-adjusted too: the family has 2 questions)
    assert "TOST (Welch), margin ±1 pp (±0.010), p = 0.47" in saved["verdict"][1]

"""Outlier sensitivity: the report says whether its verdict depends on the outlier rule.

0.2.0 removed the runs with |z| > 3 and said nothing about what keeping them would change; the
study's TOST p is 0.471 with run_2 removed and 0.418 with it kept, and neither verdict moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.report import build_report
from greenprec.testing.synthetic import write_synthetic_folder


@pytest.mark.slow
def test_seed_study_states_what_keeping_its_outlier_changes(
    seed_study_reported: tuple[Path, str],
) -> None:
    out, _ = seed_study_reported
    saved = json.loads((out / "stats.json").read_text())
    sensitivity = saved["outlier_sensitivity"]
    assert sensitivity["runs"] == ["run_2"]
    assert (sensitivity["report"], sensitivity["alternative"]) == ("removed", "kept")
    assert sensitivity["verdict_changes"] is False
    by_metric = {q["metric"]: q for q in sensitivity["questions"]}
    tost = by_metric["test_accuracy"]
    assert tost["kind"] == "equivalence"
    assert tost["p_removed"] == pytest.approx(0.4707, abs=5e-4)
    assert tost["p_kept"] == pytest.approx(0.4176, abs=5e-4)
    assert tost["outcome_removed"] == tost["outcome_kept"]
    energy = by_metric["energy_j"]
    assert energy["outcome_removed"] == energy["outcome_kept"] == "lower"
    sentence = (
        "Keeping the 1 removed outlier (run_2) gives TOST p = 0.418 instead of 0.471; "
        "the verdicts do not change."
    )
    assert sentence in saved["warnings"]
    assert sentence in (out / "report.md").read_text()


@pytest.mark.slow
def test_an_outlier_that_decides_the_verdict_is_named(tmp_path: Path) -> None:
    """With a 12-SD outlier kept, fp32's spread hides the energy difference; the sentence says
    that the verdict changes, question by question."""
    path = write_synthetic_folder(
        tmp_path / "outlier", runs=12, samples_per_run=60, outlier_runs=["fp32-003"]
    ).path
    report = build_report(path)
    sensitivity = report.stats["outlier_sensitivity"]
    assert sensitivity["runs"] == ["fp32-003"]
    questions = {q["metric"]: q for q in sensitivity["questions"]}
    assert set(questions) >= {"energy_j", "test_accuracy"}
    for question in questions.values():
        assert question["changed"] == (question["outcome_removed"] != question["outcome_kept"])
    (line,) = [w for w in report.warnings if w.startswith("Keeping the 1 removed outlier")]
    assert "(fp32-003)" in line
    if sensitivity["verdict_changes"]:
        assert "the verdict changes (" in line
    else:
        assert line.endswith("the verdicts do not change.")


def test_no_outliers_states_what_removing_them_would_change(tmp_path: Path) -> None:
    path = write_synthetic_folder(
        tmp_path / "kept", runs=12, samples_per_run=60, outlier_runs=["fp32-003"]
    ).path
    result = CliRunner().invoke(app, ["report", str(path), "--no-outliers"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    saved = json.loads((path / "stats.json").read_text())
    sensitivity = saved["outlier_sensitivity"]
    assert (sensitivity["report"], sensitivity["alternative"]) == ("kept", "removed")
    (line,) = [w for w in saved["warnings"] if w.startswith("Removing the 1 outlier")]
    assert "that --no-outliers kept (fp32-003) would give" in line


@pytest.mark.slow
def test_no_outlier_no_sentence(tmp_path: Path) -> None:
    report = build_report(write_synthetic_folder(tmp_path / "clean", samples_per_run=60).path)
    assert report.stats["outlier_sensitivity"] is None
    assert not any(w.startswith(("Keeping the", "Removing the")) for w in report.warnings)

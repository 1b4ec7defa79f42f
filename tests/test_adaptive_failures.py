"""Adaptive experiments with a failed run, as the user meets them (issue 24): looks on time,
all of alpha spent at the last look, and a stopping section that says what happened, before
and after ``compare --resume --retry-failed``.

The experiments run :func:`fails_in_block` (below, importable once ``tests/`` is on the path)
in-process with the mock meter. Its test accuracy is the same in every run, so the accuracy
question can never be settled (zero variance) and every experiment runs to its last block:
where the looks fall does not depend on chance.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.report import build_report
from greenprec.results import RunRecord
from greenprec.results.models import AnswerRecord, LookRecord, SequentialRecord
from greenprec.sequential import Question, SequentialDesign, information, look
from greenprec.workloads import workload

TESTS_DIR = Path(__file__).parent
MAX_RUNS = 6


@workload(keras=False)
def fails_in_block(ctx: Any) -> dict[str, float]:
    """The ``params['fail_at']``-th run of fp32 raises, once (marker files in
    ``params['marker_dir']``); a run again succeeds. Accuracy 0.9 in every run."""
    folder = Path(ctx.params["marker_dir"])
    with ctx.measured():
        time.sleep(0.02)
    if ctx.policy == "fp32":
        done = len(list(folder.glob("fp32-*")))
        if done == int(ctx.params["fail_at"]) - 1 and not (folder / "failed").exists():
            (folder / "failed").touch()
            raise RuntimeError("simulated out-of-memory in fit()")
        (folder / f"fp32-{done}").touch()
    return {"test_accuracy": 0.9, "test_loss": 0.3}


@pytest.fixture(autouse=True)
def _workloads_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def _failed_experiment(tmp_path: Path) -> Path:
    """compare --adaptive --max-runs 6 whose fourth fp32 run (block 4) fails."""
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    result = CliRunner().invoke(
        app,
        [
            *("compare", "fp32", "mixed", "--workload", "test_adaptive_failures:fails_in_block"),
            *("--warmup", "0", "--cooldown", "0", "--meter", "mock", "--isolation", "inline"),
            *("--adaptive", "--max-runs", str(MAX_RUNS), "--quiet", "--out", str(out)),
            *("--param", f"marker_dir={markers}", "--param", "fail_at=4"),
        ],
    )
    assert result.exit_code == 1, result.output  # a failed run
    return out


def _sequential(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "experiment.json").read_text())["sequential"])


def _stopping_section(out: Path) -> str:
    md = (out / "report.md").read_text()
    start = md.index("## Why the experiment stopped")
    return md[start : md.index("\n### Looks", start)]


@pytest.mark.slow
def test_a_failed_run_moves_no_look_and_the_last_look_spends_all_alpha(tmp_path: Path) -> None:
    """0.2.0 skipped the look after block 4 (fp32-004 failed) and then looked one block late
    at 4 and 5 runs per policy: its last look was at 83 % of the information and spent 0.032 of
    0.05. Now each look is at its planned block, on the information present, and the last one
    spends all of alpha."""
    out = _failed_experiment(tmp_path)
    sequential = _sequential(out)
    looks = sequential["looks"]
    assert [look["block"] for look in looks] == [3, 4, 5, 6]  # min_runs 3 .. max_runs 6
    assert sequential["skipped"] == []
    counts = [look["runs_by_policy"] for look in looks]
    assert counts == [
        {"fp32": 3, "mixed": 3},
        {"fp32": 3, "mixed": 4},
        {"fp32": 4, "mixed": 5},
        {"fp32": 5, "mixed": 6},
    ]
    assert [look["failed"] for look in looks] == [[], ["fp32-004"], ["fp32-004"], ["fp32-004"]]
    for look_made, by_policy in zip(looks, counts, strict=True):
        assert look_made["information"] == pytest.approx(information(by_policy, "fp32", 6))
    times = [look["information"] for look in looks]
    assert times == sorted(set(times))
    final = looks[-1]
    # All 11 done runs are used, and all of alpha is spent although one run is missing.
    assert final["information"] == pytest.approx(2 * 5 * 6 / 11 / MAX_RUNS)
    assert final["alpha_spent"] == sequential["alpha"] == 0.05
    assert sequential["stopped_early"] is False
    section = _stopping_section(out)
    assert "short of the planned maximum of 6 runs per policy" in section
    assert "fp32-004 failed" in section
    assert "fp32 5 and mixed 6 runs at the last look" in section
    assert "which spent all the α left" in section
    # Neither "ran to its maximum/end" nor any saving: the rule did not stop it.
    assert "ran to its" not in section and "saved" not in section and "unmade" not in section


@pytest.mark.slow
def test_after_retry_failed_the_stopping_section_says_the_failed_run_was_run_again(
    tmp_path: Path,
) -> None:
    """0.2.0 kept saying "5 runs per policy done (fewer than the maximum of 6: runs failed)"
    after --resume --retry-failed had run fp32-004 again: the section now says it was run again
    after the last look, and that the design's answers are still those of its looks."""
    out = _failed_experiment(tmp_path)
    looks_before = _sequential(out)["looks"]
    again = CliRunner().invoke(
        app, ["compare", "--resume", "--retry-failed", "--out", str(out), "--quiet"]
    )
    assert again.exit_code == 0, again.output
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["status"] == "complete"
    assert experiment["sequential"]["looks"] == looks_before  # no look is made twice
    section = _stopping_section(out)
    assert "After the last look, fp32-004 was run again and now done" in section
    assert "not tested again" in section


def test_the_last_look_spends_all_alpha_short_of_the_maximum_information() -> None:
    """A single look that is also the design's last, at 90 % of the information (runs
    failed), is tested at the whole alpha: 0.2.0 spent only alpha(0.9) there."""
    design = SequentialDesign(alpha=0.05, min_runs=3, max_runs=10)
    data = {"energy_j": {"a": [1.0, 1.1, 0.9, 1.05, 0.95], "b": [1.0, 1.2, 0.8, 1.1, 0.9]}}
    question = Question("energy_j", "a", "b", "difference")
    last = look(design, 5, None, data, [question], information=[0.9], final=True)
    assert last.level == pytest.approx(0.05, rel=1e-6) and last.alpha_spent == 0.05
    assert last.stop and "every planned block has run" in last.reason
    interim = look(design, 5, None, data, [question], information=[0.9])
    assert interim.level < 0.05 and not interim.stop
    # Looks at 0.5, then a last one at 0.9: together they spend exactly alpha.
    two = look(design, 5, [3], data, [question], information=[0.5, 0.9], final=True)
    assert two.alpha_spent == 0.05 and 0.0 < two.level < 0.05


def test_information_is_that_of_the_runs_done() -> None:
    assert information({"fp32": 4, "mixed": 4}, "fp32", 8) == 0.5
    assert information({"fp32": 3, "mixed": 4}, "fp32", 6) == pytest.approx(24 / 7 / 6)
    assert information({"fp32": 3, "mixed": 4, "bf16": 2}, "fp32", 6) == pytest.approx(2.4 / 6)
    assert information({"fp32": 0, "mixed": 4}, "fp32", 6) == 0.0
    assert information({"fp32": 9, "mixed": 9}, "fp32", 6) == 1.0


def _run(policy: str, repetition: int, energy_j: float) -> RunRecord:
    return RunRecord(
        run_id=f"{policy}-{repetition:03d}",
        order=2 * repetition - (policy == "fp32"),
        policy=policy,
        repetition=repetition,
        block=repetition,
        status="done",
        energy_j=energy_j,
        duration_s=10.0,
        metrics={"test_accuracy": 0.9},
    )


def test_savings_are_counted_against_the_planned_maximum_only_when_the_rule_stopped_it(
    tmp_path: Path,
) -> None:
    """0.2.0 said "stopping at 5 saved 2496 runs": the saving now counts the planned runs the
    stop left unmade (the blocks after it, every policy), and only when the rule stopped it."""
    from test_report_equivalence import write_folder

    answer = AnswerRecord(
        metric="energy_j", policy="mixed", reference="fp32", kind="difference",
        settled=True, verdict="different", p=1e-6, level=0.01, settled_at=4,
    )  # fmt: skip
    runs = [_run(p, i, (100.0 if p == "fp32" else 80.0) + i) for i in range(1, 5)
            for p in ("fp32", "mixed")]  # fmt: skip
    sequential = SequentialRecord(
        method="group sequential, exact boundaries",
        alpha=0.05,
        min_runs=3,
        max_runs=20,
        looks=[
            LookRecord(
                block=4, runs_per_policy=4, information=0.2, alpha_spent=0.001, answers=[answer]
            )
        ],
        stopped_early=True,
        reason="every question is settled",
        runs_per_policy=4,
    )
    folder = write_folder(
        tmp_path / "f", runs, {"adaptive": True, "runs": 20}, sequential=sequential
    )
    lines = build_report(folder).prose.stopping
    text = " ".join(lines)
    assert "The stopping rule stopped it early, after block 4 at 4 runs per policy" in text
    assert "of the planned maximum of 20 runs per policy" in text
    assert "Stopping after block 4 of 20 left 32 planned runs unmade (16 per policy × 2" in text


def test_a_recommendation_that_failed_runs_left_short_has_ended_and_says_why() -> None:
    """A recommendation whose last planned block ran with failed runs, its last look short of
    the maximum and undecided: 0.2.0 said "No recommendation yet: the selection has not
    ended", though every planned block had run and resuming runs nothing."""
    from greenprec.report.recommendation import recommendation
    from test_recommendation import _one_best

    folder = _one_best()
    selection = folder.experiment.selection
    assert selection is not None and not selection.looks[0].stop
    ended = selection.model_copy(
        update={
            "looks": selection.looks[:1],
            "stopped": True,
            "stopped_early": False,
            "reason": "every planned block has run, with 3 runs per configuration (fewer than "
            "the maximum: runs failed); the survivors are not yet separated",
        }
    )
    experiment = folder.experiment.model_copy(update={"selection": ended})
    rec = recommendation(experiment, folder.runs)
    assert rec is not None and rec.outcome == "not_separated" and rec.recommended is None
    assert "not ended" not in rec.sentence and "yet" not in rec.sentence
    assert rec.sentence.startswith("No single best: ")
    assert (
        "after 3 runs per configuration: every planned block has run, but failed runs left it "
        "short of the maximum of 10" in rec.sentence
    )

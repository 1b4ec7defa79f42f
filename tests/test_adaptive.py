"""Adaptive experiments, automatic warm-ups and energy to a target, through the real entry
points: ``greenprec compare`` (CliRunner and a subprocess) and the library functions.

The adaptive runs use tiny workloads (tests/experiment_workloads.py) and the mock meter, whose
energy is exactly its power times the time, so a policy that sleeps longer uses more energy.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.experiment.config import load_config
from greenprec.experiment.execute import energy_to_targets
from greenprec.experiment.phases import SETTLE_WINDOWS, warm_up_until_stable
from greenprec.meters.mock import MockMeter
from greenprec.results import ResultsStore
from greenprec.workloads.core import EpochPoint

TESTS_DIR = Path(__file__).parent


@pytest.fixture(autouse=True)
def _workloads_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def _compare(out: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            "compare",
            "fp32",
            "mixed",
            "--workload",
            "experiment_workloads:policy_sleeps",
            "--warmup",
            "0",
            "--cooldown",
            "0",
            "--meter",
            "mock",
            "--isolation",
            "inline",
            "--quiet",
            "--out",
            str(out),
            *args,
        ],
    )


def _experiment(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "experiment.json").read_text()))


@pytest.mark.slow
def test_a_settled_question_stops_the_experiment_early(tmp_path: Path) -> None:
    """mixed sleeps 50 % longer: the energy difference and the accuracy equivalence (the
    workload's accuracies differ by well under 1 pp) settle long before 12 runs per policy."""
    out = tmp_path / "settled"
    result = _compare(out, "--param", "sleep_mixed_s=0.3", "--adaptive", "--max-runs", "12")
    assert result.exit_code == 0, result.output
    experiment = _experiment(out)
    sequential = experiment["sequential"]
    assert sequential["stopped_early"] is True
    n = sequential["runs_per_policy"]
    assert sequential["min_runs"] <= n < 12
    assert "every question is settled" in sequential["reason"]
    # The folder is a complete experiment of that size: the runs never made are cut.
    assert len(experiment["schedule"]) == 2 * n
    assert len(list((out / "runs").glob("*.json"))) == 2 * n
    assert experiment["status"] == "complete"
    last = sequential["looks"][-1]
    verdicts = {(a["metric"], a["verdict"]) for a in last["answers"]}
    assert verdicts == {("energy_j", "different"), ("test_accuracy", "equivalent")}
    # Every look is after a whole block, and spends more alpha than the one before.
    spent = [look["alpha_spent"] for look in sequential["looks"]]
    assert spent == sorted(spent) and spent[-1] < 0.05
    assert [look["runs_per_policy"] for look in sequential["looks"]] == list(
        range(sequential["min_runs"], n + 1)
    )
    # Resuming a stopped experiment runs nothing.
    again = CliRunner().invoke(app, ["compare", "--resume", "--out", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert len(list((out / "runs").glob("*.json"))) == 2 * n
    _check_answers(sequential)
    section = _stopping_section(out)
    assert "repeated confidence intervals" in section and "biased away from zero" in section
    # Savings only against the fixed design for the question that drove the stop.
    stats_json = json.loads((out / "stats.json").read_text())["stopping"]
    driver = stats_json["driver"]
    assert driver is not None and f"The question that stopped it was {driver['metric']}" in section
    assert {(a["metric"], a["verdict"]) for a in stats_json["final_answers"]} == verdicts
    _check_verdict_is_the_designs(out)


def _check_verdict_is_the_designs(out: Path) -> None:
    """After an adaptive experiment the verdict is the design's answers with their repeated
    CIs: 0.2.0 re-tested the stopped data at a fixed 0.05 and could call accuracy "different"
    while the design had left it open."""
    saved = json.loads((out / "stats.json").read_text())
    answers = {(a["metric"], a["policy"]): a for a in saved["stopping"]["final_answers"]}
    words = {"equivalent": "equivalent", "beyond margin": "beyond", "not worse": "not worse",
             "worse": "worse"}  # fmt: skip
    questions = saved["decisions"]["questions"]
    assert questions
    for question in questions:
        answer = answers[(question["metric"], question["policy"])]
        assert question["source"] == "sequential" and question["p_adjusted"] is None
        if not answer["settled"]:
            assert question["outcome"] == "open"
        elif answer["verdict"] == "different":
            assert question["outcome"] in ("lower", "higher")
        else:
            assert question["outcome"] == words[answer["verdict"]]
        assert question["interval_level"] == pytest.approx(answer["confidence"])
        factor = 100.0 if question["unit"] == "pp" else 1.0  # fractions shown in pp
        expected = [factor * answer["ci_low"], factor * answer["ci_high"]]
        assert question["interval"] == pytest.approx(expected)
    verdict = saved["verdict"]
    assert all("repeated CI" in line for line in verdict[: len(questions)])
    assert "Holm" not in " ".join(verdict)
    assert any("sequential design" in line for line in verdict)


def _stopping_section(out: Path) -> str:
    md = (out / "report.md").read_text()
    start = md.index("## Why the experiment stopped")
    end = md.index("\n## ", start + 1)
    return md[start:end]


def _check_answers(sequential: dict[str, Any]) -> None:
    """Every answer carries its repeated CI, and its decision is read off it; a carried answer
    keeps the level of the look that settled it (0.2.0 showed the current look's)."""
    levels = {
        (look["runs_per_policy"], a["metric"]): a["level"]
        for look in sequential["looks"]
        for a in look["answers"]
    }
    for look in sequential["looks"]:
        for a in look["answers"]:
            assert a["ci_low"] is not None and a["ci_low"] <= a["ci_high"], a
            if a["verdict"] == "different":
                assert a["ci_low"] > 0 or a["ci_high"] < 0
            if a["verdict"] == "equivalent":
                assert -a["margin"] < a["ci_low"] and a["ci_high"] < a["margin"]
            assert a["verdict"] in (None, "different", "equivalent", "beyond margin")
            if a["kind"] != "difference":
                assert a["verdict"] != "different"
            if a["carried"]:
                assert a["level"] == levels[(a["settled_at"], a["metric"])]
                assert a["level"] != look["level"] or a["kind"] != "difference"


@pytest.mark.slow
def test_an_open_question_runs_to_the_maximum_and_says_so(tmp_path: Path) -> None:
    """The same energy for both policies: a difference is never shown, so the experiment goes
    to its maximum and says which question stayed open (never "no difference")."""
    out = tmp_path / "open"
    result = _compare(out, "--adaptive", "--max-runs", "4")
    assert result.exit_code == 0, result.output
    sequential = _experiment(out)["sequential"]
    assert sequential["stopped_early"] is False
    assert sequential["runs_per_policy"] == 4
    assert "maximum" in sequential["reason"] and "energy_j" in sequential["reason"]
    assert len(list((out / "runs").glob("*.json"))) == 8
    # It ran to its maximum: no savings are claimed (0.2.0 printed "stopping at 4 saved ...").
    section = _stopping_section(out)
    assert "It ran to the planned maximum of 4 runs per policy" in section
    assert "saved" not in section and "unmade" not in section
    assert "biased" not in section
    _check_verdict_is_the_designs(out)


@pytest.mark.slow
def test_a_run_failing_after_the_first_look_skips_a_look_and_the_experiment_finishes(
    tmp_path: Path,
) -> None:
    """0.2.0 died (exit 2) at the block after a failed run: 3 runs per policy again, and the
    design refused a look "before" the previous one; --resume hit the same error. The look is
    made on the information present; the experiment runs to its end and resumes."""
    out = tmp_path / "failing"
    markers = tmp_path / "markers"
    markers.mkdir()
    args = [
        *("--workload", "experiment_workloads:fails_once", "--adaptive", "--max-runs", "6"),
        *("--param", f"marker_dir={markers}", "--param", "fail_at=4"),
    ]
    result = _compare(out, *args)
    assert result.exit_code == 1, result.output  # a failed run, not a design error (2)
    assert "must come before" not in result.output
    sequential = _experiment(out)["sequential"]
    assert sequential["reason"] is not None
    times = [look["information"] for look in sequential["looks"]]
    assert times == sorted(set(times)) and sequential["looks"][0]["runs_per_policy"] == 3
    if sequential["stopped_early"] is False:  # not settled at the first look by chance
        # The failed run moves no look (tests/test_adaptive_failures.py has the details).
        assert sequential["skipped"] == []
        assert [look["block"] for look in sequential["looks"]] == [3, 4, 5, 6]
        assert sequential["looks"][-1]["alpha_spent"] == sequential["alpha"]
    again = CliRunner().invoke(
        app, ["compare", "--resume", "--retry-failed", "--out", str(out), "--quiet"]
    )
    assert again.exit_code == 0, again.output
    assert _experiment(out)["status"] == "complete"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-runs", "5"], "add --adaptive"),
        (["--adaptive", "--max-runs", "5", "--runs", "5"], "alternatives"),
        (["--adaptive", "--max-runs", "2"], "min_runs"),
        (["--margin", "test_accuracy=1parsec"], "test_accuracy"),
        (["--margin", "no-equals-sign"], "--margin"),
        (["--target", "test_accuracy=high"], "--target"),
        (["--warmup", "soon"], "--warmup"),
    ],
)
def test_bad_adaptive_settings_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "bad"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "greenprec", "compare", "fp32", "mixed"),
            *("--meter", "mock", "--out", str(out), *args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "experiment.json").exists()


def test_warmup_auto_takes_the_presets_warmup_or_300_s_as_its_cap() -> None:
    quick = load_config({"policies": ["fp32"], "protocol": "quick", "warmup_auto": True})
    assert quick.warmup_auto and quick.warmup_s == 300.0
    paper = load_config(
        {
            "policies": ["fp32"],
            "protocol": "paper",
            "warmup_auto": True,
            "workload": "experiment_workloads:sleepy",  # the paper's CIFAR-10 is not here
        }
    )
    assert paper.warmup_s == 300.0  # the paper's own five minutes, as the cap
    given = load_config({"policies": ["fp32"], "warmup_auto": True, "warmup_s": 42.0})
    assert given.warmup_s == 42.0


def _config(**values: Any) -> Any:
    return load_config({"policies": ["fp32"], "interval_s": 0.05, **values})


@pytest.mark.slow
def test_an_automatic_warm_up_stops_when_the_power_settles(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.ensure_dirs()
    phase = warm_up_until_stable(store, _config(), [MockMeter(power_w=80.0)], "warmup", cap_s=30.0)  # type: ignore[list-item]
    assert phase.settled is True
    assert phase.criterion is not None and "2 %" in phase.criterion
    # Constant power settles after the first SETTLE_WINDOWS windows (each 5 samples long here).
    assert phase.duration_s is not None and phase.duration_s < 30.0
    assert phase.duration_s >= SETTLE_WINDOWS * 5 * 0.05 * 0.9
    assert phase.power_w == pytest.approx(80.0, rel=1e-6)


def test_an_automatic_warm_up_that_never_settles_stops_at_its_cap(tmp_path: Path) -> None:
    """A machine still heating up (power rising 20 % a second) never meets the criterion."""
    store = ResultsStore(tmp_path)
    store.ensure_dirs()
    rising = MockMeter(power_w=lambda t_s: 100.0 * math.exp(0.2 * t_s))
    phase = warm_up_until_stable(store, _config(), [rising], "warmup", cap_s=2.0)  # type: ignore[list-item]
    assert phase.settled is False
    assert phase.duration_s is not None and 2.0 <= phase.duration_s < 3.0
    assert (tmp_path / "samples" / "warmup.csv").is_file()


def _epochs(*accuracies: float, joules_per_epoch: float = 10.0) -> list[EpochPoint]:
    return [
        EpochPoint(i, 2.0 * i, joules_per_epoch * i, {"test_accuracy": a, "test_loss": 1 - a})
        for i, a in enumerate(accuracies, start=1)
    ]


def test_energy_to_a_target_is_the_energy_at_the_first_epoch_that_reached_it() -> None:
    (record,) = energy_to_targets({"test_accuracy": 0.5}, _epochs(0.3, 0.55, 0.4, 0.7))
    assert record.reached and record.epoch == 2
    assert record.energy_j == 20.0 and record.duration_s == 4.0
    # A loss is reached from above.
    (loss,) = energy_to_targets({"test_loss": 0.5}, _epochs(0.3, 0.55))
    assert loss.higher_is_better is False and loss.epoch == 2
    # Never reached, or never reported: recorded as not reached, not as a number.
    (never,) = energy_to_targets({"test_accuracy": 0.9}, _epochs(0.3, 0.55))
    assert never.reached is False and never.energy_j is None
    (unknown,) = energy_to_targets({"f1": 0.5}, _epochs(0.3))
    assert unknown.reached is False


def test_cheaper_epochs_that_need_more_of_them_cost_more_to_the_target() -> None:
    """8 J per epoch for 4 epochs is more than 10 J per epoch for 2."""
    (slow,) = energy_to_targets(
        {"test_accuracy": 0.5}, _epochs(0.2, 0.3, 0.4, 0.6, joules_per_epoch=8.0)
    )
    (fast,) = energy_to_targets({"test_accuracy": 0.5}, _epochs(0.4, 0.6, joules_per_epoch=10.0))
    assert slow.energy_j is not None and fast.energy_j is not None
    assert slow.energy_j > fast.energy_j


@pytest.mark.slow
@pytest.mark.tensorflow
def test_quick_workload_with_warmup_auto_and_a_target_end_to_end(tmp_path: Path) -> None:
    """The quick protocol with an automatic warm-up and a target, in a real subprocess."""
    # Not importorskip: importing TensorFlow here would tie its logging to this test's
    # captured stderr, which is closed when the test ends (later tests then crash pytest).
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs TensorFlow: pip install 'greenprec[tensorflow]'")
    config = tmp_path / "auto.toml"
    # A short cap keeps the test quick: the mock meter's power settles at once.
    config.write_text("warmup_auto = true\nwarmup_s = 6.0\nidle_before_run_s = 0.3\n")
    out = tmp_path / "quick"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenprec",
            "compare",
            "fp32",
            "mixed",
            "--quick",
            "--runs",
            "2",
            "--meter",
            "mock",
            "--target",
            "test_accuracy=0.5",
            "--config",
            str(config),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = _experiment(out)
    (warmup,) = experiment["warmups"]
    assert warmup["settled"] is True and warmup["duration_s"] < 6.0
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(runs) == 4
    for run in runs:
        assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2, 3]
        energies = [epoch["energy_j"] for epoch in run["epochs"]]
        assert energies == sorted(energies) and energies[-1] <= run["energy_j"]
        (target,) = run["targets"]
        assert target["metric"] == "test_accuracy" and target["reached"] is True
        assert target["energy_j"] == energies[target["epoch"] - 1]
        assert run["idle_power_w"] == pytest.approx(100.0)
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert "idle_power_w" in header

"""`greenprec compare`: protocol, results-folder contract, failures, isolation, kill and resume."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.experiment.config import PRESETS, load_config
from greenprec.experiment.schedule import make_schedule, run_seed
from greenprec.results import INDEX_COLUMNS as RUN_COLUMNS
from greenprec.results import ResultsStore
from workload_helpers import make_cifar_archive

TESTS_DIR = Path(__file__).resolve().parent
runner = CliRunner()


@pytest.fixture(autouse=True)
def importable_test_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes find tests/experiment_workloads.py through PYTHONPATH."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def compare(*args: str) -> Any:
    result = runner.invoke(app, ["compare", *args])
    return result


def compare_subprocess(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", "compare", *args],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet"]


def test_schedule_is_a_seeded_permutation_of_every_policy_and_repetition() -> None:
    schedule = make_schedule(["fp32", "mixed"], 5, seed=42)
    pairs = [(run.policy, run.repetition) for run in schedule]
    expected = [(p, r) for r in range(1, 6) for p in ("fp32", "mixed")]
    random.Random(42).shuffle(expected)
    assert pairs == expected
    assert [run.order for run in schedule] == list(range(1, 11))
    assert make_schedule(["fp32", "mixed"], 5, seed=42) == schedule
    assert make_schedule(["fp32", "mixed"], 5, seed=7) != schedule
    unshuffled = make_schedule(["fp32", "mixed"], 2, seed=42, shuffle=False)
    assert [run.run_id for run in unshuffled] == ["fp32-001", "mixed-001", "fp32-002", "mixed-002"]
    assert schedule[0].seed == run_seed(42, schedule[0].run_id)
    assert len({run.seed for run in schedule}) == 10


@pytest.mark.slow
def test_inline_experiment_matches_the_results_folder_contract(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = compare(
        "fp32", "mixed", "--workload", "experiment_workloads:sleepy", "--runs", "2",
        "--isolation", "inline", "-o", "power_w=50", "--param", "sleep_s=0.15",
        "--param", "setup_s=1.0",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["config"]["policies"] == ["fp32", "mixed"]
    assert experiment["config"]["params"] == {"sleep_s": 0.15, "setup_s": 1.0}
    assert experiment["meters"] == {
        "requested": ["mock"],
        "used": ["mock"],
        "estimated": False,
        "simulated": ["mock"],
    }
    assert experiment["status"] == "complete"
    assert {"versions", "host", "precision_support", "schedule", "warnings"} <= set(experiment)
    assert experiment["host"]["logical_cpus"] >= 1
    rows = read_csv(out / "runs.csv")
    assert list(rows[0])[: len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    assert "energy_j:mock/cpu" in rows[0] and "epochs_run" in rows[0]
    schedule = {run["run_id"]: run for run in experiment["schedule"]}
    assert len(rows) == 4
    for row in rows:
        assert row["status"] == "done"
        assert int(row["order"]) == schedule[row["run_id"]]["order"]
        assert int(row["seed"]) == schedule[row["run_id"]]["seed"]
        duration_s, energy_j = float(row["duration_s"]), float(row["energy_j"])
        # The mock's power times the measured window only: set-up (1 s) is outside it (a
        # loaded machine may stretch the 0.15 s window, never by a second).
        assert 0.15 <= duration_s < 1.0
        assert energy_j == pytest.approx(50.0 * duration_s, rel=1e-9)
        assert float(row["energy_j:mock/cpu"]) == pytest.approx(energy_j)
        assert float(row["mean_power_w"]) == pytest.approx(50.0, rel=1e-9)
        assert row["estimated"] == "false" and row["meter"] == "mock"
        assert float(row["test_accuracy"]) > 0.9 and row["net_energy_j"] == ""
        samples = read_csv(out / "samples" / f"{row['run_id']}.csv")
        assert list(samples[0]) == ["t_s", "domain", "power_w", "energy_j"]
        assert float(samples[-1]["energy_j"]) == pytest.approx(energy_j)


@pytest.mark.slow
def test_process_isolation_with_warm_up_and_idle_baseline(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = compare_subprocess(
        "fp32", "mixed", "--workload", "experiment_workloads:sleepy", "--runs", "1",
        "--warmup", "0.3", "--baseline", "0.3", "--cooldown", "0.1", "--meter", "mock",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The full report follows the experiment.
    assert "fp32" in result.stdout and "report.html" in result.stdout
    assert (out / "report.html").exists() and (out / "stats.json").exists()
    experiment = json.loads((out / "experiment.json").read_text())
    baseline = experiment["baseline"]
    assert baseline["power_w"] == pytest.approx(100.0, rel=1e-9)
    assert experiment["warmups"][0]["duration_s"] >= 0.3
    assert (out / "samples" / "warmup.csv").exists() and (out / "samples" / "baseline.csv").exists()
    for row in read_csv(out / "runs.csv"):
        assert row["status"] == "done"
        net = float(row["energy_j"]) - baseline["power_w"] * float(row["duration_s"])
        assert float(row["net_energy_j"]) == pytest.approx(net, abs=1e-9)
        assert (out / "logs" / f"{row['run_id']}.log").exists()


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    markers = tmp_path / "markers"
    markers.mkdir()
    result = compare(
        "fp32", "mixed", "--workload", "experiment_workloads:fails_on_repetition_two",
        "--runs", "3", "--isolation", "inline", "--param", f"marker_dir={markers}",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.exit_code == 1
    rows = read_csv(out / "runs.csv")
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["policy"] == "fp32"
    assert failed[0]["error"] == "RuntimeError: simulated out-of-memory in fit()"
    assert failed[0]["energy_j"] == ""
    assert sum(row["status"] == "done" for row in rows) == 5


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    result = compare(
        "fp32", "--workload", "experiment_workloads:fails_on_repetition_two", "--runs", "3",
        "--isolation", "inline", "--param", f"marker_dir={markers}", "--fail-fast",
        "--out", str(tmp_path / "exp"), *FAST,
    )  # fmt: skip
    assert result.exit_code == 1
    statuses = [row["status"] for row in read_csv(tmp_path / "exp" / "runs.csv")]
    assert statuses.count("failed") == 1 and statuses.count("pending") == 1


@pytest.mark.slow
def test_process_isolation_keeps_one_runs_state_from_the_next(tmp_path: Path) -> None:
    args = ["fp32", "mixed", "--workload", "experiment_workloads:leaks_state", "--runs", "2"]
    isolated = compare(*args, "--out", str(tmp_path / "isolated"), *FAST)
    assert isolated.exit_code == 0, isolated.output
    # The same workload inline sees the state its earlier runs left: the test has teeth.
    inline = compare(*args, "--isolation", "inline", "--out", str(tmp_path / "inline"), *FAST)
    assert inline.exit_code == 1
    rows = read_csv(tmp_path / "inline" / "runs.csv")
    assert sum(row["status"] == "failed" for row in rows) == 3
    os.environ.pop("GREENPREC_TEST_LEAK", None)


def _wait_for(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _statuses(out: Path) -> list[str]:
    try:
        return [row["status"] for row in read_csv(out / "runs.csv")]
    except (FileNotFoundError, KeyError):
        return []


@pytest.mark.slow
def test_sigkill_mid_experiment_then_resume_runs_each_run_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    args = [
        "fp32", "mixed", "--workload", "experiment_workloads:slow", "--runs", "3",
        "--param", "sleep_s=0.6", "--out", str(out), *FAST,
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _statuses(out).count("done") >= 2 and "running" in _statuses(out))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    before = {row["run_id"]: row for row in read_csv(out / "runs.csv")}
    done_before = {run_id for run_id, row in before.items() if row["status"] == "done"}
    assert len(done_before) >= 2 and len(done_before) < 6

    refused = compare_subprocess(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = compare_subprocess("--resume", "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    after = read_csv(out / "runs.csv")
    assert sorted(row["run_id"] for row in after) == sorted(before)
    assert all(row["status"] == "done" for row in after)
    for row in after:
        if row["run_id"] in done_before:  # not repeated: the original measurement is kept
            assert row["started_at"] == before[row["run_id"]]["started_at"]
            assert row["energy_j"] == before[row["run_id"]]["energy_j"]
    assert json.loads((out / "experiment.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_the_folder_resumes(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", "fp32", "--runs", "2",
         "--workload", "experiment_workloads:slow", "--param", "sleep_s=2",
         "--out", str(out), *FAST],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: "running" in _statuses(out))
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "--resume" in stderr
    rows = read_csv(out / "runs.csv")
    interrupted = [row for row in rows if row["status"] == "failed"]
    assert len(interrupted) == 1 and interrupted[0]["error"].startswith("interrupted")
    resumed = compare_subprocess("--resume", "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert [row["status"] for row in read_csv(out / "runs.csv")] == ["done", "done"]


def test_config_file_then_flags_override_the_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "experiment.toml"
    config_file.write_text(
        'policies = ["fp32", "fp16"]\nruns = 5\ncooldown_s = 7.5\nepochs = 2\n'
        '[meter_options]\npower_w = "10"\n'
    )
    config = load_config({"runs": 2, "batch_size": 64}, config_file)
    assert config.policies == ["fp32", "mixed"]  # aliases are resolved
    assert config.runs == 2 and config.cooldown_s == 7.5
    assert config.params == {"epochs": 2, "batch_size": 64}
    assert config.meter_options == {"power_w": "10"}
    assert config.warmup_s == PRESETS["default"]["warmup_s"]
    quick = load_config({"policies": ["fp32"], "protocol": "quick"})
    assert (quick.workload, quick.runs, quick.warmup_s, quick.cooldown_s) == (
        "digits-cnn",
        3,
        0.0,
        2.0,
    )
    # The paper's workload checks for CIFAR-10 up front: give it a tiny archive in the format.
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setenv("GREENPREC_DATA", str(archive))
    paper = load_config({"policies": ["fp32", "mixed"], "protocol": "paper"})
    assert (paper.workload, paper.runs, paper.seed, paper.warmup_s, paper.cooldown_s) == (
        "cifar10-cnn",
        30,
        42,
        300.0,
        120.0,
    )
    assert paper.interval_s == 0.2


@pytest.mark.parametrize(
    ("args", "messages", "lines"),
    [
        (["fp32", "fp64"], ["policies: unknown precision policy 'fp64'"], 1),
        (["fp32", "--runs", "0", "--warmup", "-1"], ["runs:", "warmup_s:"], 2),
        (
            ["fp32", "--runs", "0", "--workload", "nope", "--meter", "nope"],
            ["runs:", "workload:", "meters: unknown meter 'nope'"],
            3,
        ),
        (["fp32", "--meter", "rapl", "-o", "root=/nonexistent"], ["meters:", "unavailable"], 1),
        (["fp32", "--isolation", "threads"], ["isolation:"], 1),
        (["fp32", "--data", "/x"], ["params: bad params for workload 'digits-cnn': data"], 1),
        (["fp32", "--quick", "--protocol", "paper"], ["alternatives"], 1),
        (["fp32", "--protocol", "fast"], ["unknown protocol 'fast'"], 1),
        ([], ["no policies given"], 1),
    ],
)
def test_invalid_input_is_reported_before_anything_runs(
    tmp_path: Path, args: list[str], messages: list[str], lines: int
) -> None:
    out = tmp_path / "exp"
    result = compare_subprocess(*args, "--out", str(out), "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for message in messages:
        assert message in result.stderr
    problem_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(problem_lines) == lines, result.stderr
    assert not out.exists()


def test_paper_protocol_without_cifar10_stops_before_anything_runs(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "KERAS_HOME": str(tmp_path / "keras")}
    env.pop("GREENPREC_DATA", None)
    out = tmp_path / "exp"
    result = compare_subprocess("fp32", "mixed", "--protocol", "paper", "--out", str(out), env=env)
    assert result.returncode == 2
    assert "params: CIFAR-10 not found" in result.stderr and "GREENPREC_DATA" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("runs = [unclosed\n")
    result = compare_subprocess("fp32", "--config", str(bad), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('policies = ["fp32"]\nrunz = 3\n')
    result = compare_subprocess("--config", str(unknown), "--out", str(tmp_path / "y"))
    assert result.returncode == 2 and "runz: unknown setting" in result.stderr


def test_runs_command_and_jsonl_progress(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = compare(
        "fp32", "--workload", "experiment_workloads:sleepy", "--runs", "2", "--isolation",
        "inline", "--param", "sleep_s=0.05", "--out", str(out), "--warmup", "0",
        "--cooldown", "0", "--meter", "mock", "--jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("run") == 2
    table = runner.invoke(app, ["runs", str(out)])
    assert table.exit_code == 0 and "fp32-001" in table.stdout and "done" in table.stdout
    as_json = runner.invoke(app, ["runs", str(out), "--json"])
    assert {row["run_id"] for row in json.loads(as_json.stdout)} == {"fp32-001", "fp32-002"}
    missing = runner.invoke(app, ["runs", str(tmp_path / "nothing")])
    assert missing.exit_code != 0
    assert ResultsStore(out).load().runs[0].status == "done"


@pytest.mark.slow
@pytest.mark.tensorflow
def test_quick_digits_experiment_with_the_mock_meter_end_to_end(tmp_path: Path) -> None:
    """The README's main job, shrunk: real digits-cnn runs in fresh processes, then a report."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    out = tmp_path / "exp"
    result = compare_subprocess(
        "fp32", "mixed", "--quick", "--runs", "1", "--meter", "mock", "--cooldown", "0",
        "--param", "train_size=200", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["config"]["workload"] == "digits-cnn"
    assert experiment["config"]["params"] == {"epochs": 3, "train_size": 200}
    if not experiment["precision_support"]["fp16"]["native"]:
        # Emulated float16 is announced before the first run and kept with the results.
        assert any(line.startswith("mixed (float16)") for line in experiment["warnings"])
        assert "warning: mixed (float16)" in result.stderr
    rows = read_csv(out / "runs.csv")
    assert sorted(row["policy"] for row in rows) == ["fp32", "mixed"]
    for row in rows:
        assert row["status"] == "done", row["error"]
        assert float(row["energy_j"]) == pytest.approx(100.0 * float(row["duration_s"]), rel=1e-9)
        assert 0.0 < float(row["test_accuracy"]) <= 1.0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["reference"] == "fp32"
    assert (out / "report.html").exists()


@pytest.mark.slow
@pytest.mark.tensorflow
def test_estimate_meter_experiment_is_labelled_estimated(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    out = tmp_path / "exp"
    result = compare_subprocess(
        "fp32", "--quick", "--runs", "1", "--meter", "estimate", "--cooldown", "0",
        "--param", "train_size=200", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "every energy figure of this experiment is estimated" in result.stderr
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["meters"] == {
        "requested": ["estimate"],
        "used": ["estimate"],
        "estimated": True,
        "simulated": [],
    }
    (row,) = read_csv(out / "runs.csv")
    assert row["status"] == "done" and row["estimated"] == "true" and row["meter"] == "estimate"
    assert float(row["energy_j"]) > 0
    assert "estimated" in (out / "report.md").read_text().lower()


def test_the_quick_preset_shortens_the_torch_twin_of_its_workload_too() -> None:
    quick = load_config({"policies": ["fp32"], "protocol": "quick", "workload": "digits-cnn-torch"})
    assert quick.params == {"epochs": 3}
    other = load_config(
        {"policies": ["fp32"], "protocol": "quick", "workload": "experiment_workloads:sleepy"}
    )
    assert "epochs" not in other.params  # a preset's params never leak into another workload


def test_the_stored_config_reads_back_typed_and_checked() -> None:
    from greenprec.errors import ConfigError
    from greenprec.experiment.config import stored_config
    from greenprec.results import ExperimentRecord

    config = load_config({"policies": ["fp32", "mixed"], "runs": 3, "meters": ["mock"]})
    experiment = ExperimentRecord(config=config.model_dump(mode="json"))
    assert stored_config(experiment) == config
    experiment.config["runs"] = 0
    experiment.config["policies"] = []
    with pytest.raises(ConfigError) as raised:
        stored_config(experiment)
    assert len(str(raised.value).splitlines()) >= 2  # every problem, one per line


def test_runs_stop_at_the_target_and_record_what_they_reached(tmp_path: Path) -> None:
    """fp32 reaches test_accuracy 0.55 at epoch 3, mixed at epoch 2 (experiment_workloads:
    learns): with --stop-at-target each run (a process of its own: the setting travels in
    its spec) ends there, with its throughput recorded."""
    out = tmp_path / "stop"
    result = compare(
        "fp32", "mixed", "--workload", "experiment_workloads:learns", "--runs", "1",
        "--target", "test_accuracy=0.55", "--stop-at-target",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = ResultsStore(out)
    runs = {run.policy: run for run in store.load().runs}
    for policy, epoch, accuracy in (("fp32", 3, 0.7), ("mixed", 2, 0.6)):
        run = runs[policy]
        assert run.stopped_at_target is True and run.epochs_run == epoch
        assert [point.epoch for point in run.epochs] == list(range(1, epoch + 1))
        (target,) = run.targets
        assert target.reached and target.epoch == epoch
        assert target.final_value == pytest.approx(accuracy)
        assert run.samples_trained == 100 * epoch
        assert run.duration_s is not None and run.energy_j is not None
        assert run.samples_per_s == pytest.approx(100 * epoch / run.duration_s)
        assert run.energy_per_sample_j == pytest.approx(run.energy_j / (100 * epoch))
    rows = {row["policy"]: row for row in read_csv(out / "runs.csv")}
    assert list(rows["fp32"])[: len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    assert rows["fp32"]["stopped_at_target"] == "true" and rows["mixed"]["epochs_run"] == "2"
    assert float(rows["fp32"]["energy_per_sample_j"]) > 0
    assert json.loads((out / "experiment.json").read_text())["config"]["stop_at_target"] is True


def test_without_stop_at_target_runs_train_every_epoch(tmp_path: Path) -> None:
    out = tmp_path / "observe"
    result = compare(
        "fp32", "--workload", "experiment_workloads:learns", "--runs", "1",
        "--isolation", "inline", "--target", "test_accuracy=0.55", "--param", "epochs=4",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = ResultsStore(out).load().runs
    assert run.stopped_at_target is False and run.epochs_run == 4
    (target,) = run.targets
    assert target.epoch == 3 and target.final_value == pytest.approx(0.9)


def test_stop_at_target_without_a_target_is_refused_with_the_fix(tmp_path: Path) -> None:
    result = compare_subprocess(
        "fp32", "--workload", "experiment_workloads:learns", "--stop-at-target",
        "--out", str(tmp_path / "refused"), *FAST,
    )  # fmt: skip
    assert result.returncode == 2
    (message,) = result.stderr.strip().splitlines()
    assert "needs a target" in message and "--target test_accuracy=" in message
    assert message.endswith("(--stop-at-target)")
    assert not (tmp_path / "refused").exists()

"""The results store through the real command line: locks, damaged folders, hostile run ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenprec.results import ResultsStore

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES = TESTS_DIR / "fixtures" / "folders-0.1"
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet"]


def greenprec(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _wait_for(predicate: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_a_second_compare_or_resume_on_a_driven_folder_gets_one_line(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    first = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", "fp32", "--runs", "2", "--workload",
         "experiment_workloads:slow", "--param", "sleep_s=1.5", "--out", str(out), *FAST],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(lambda: (out / "runs" / "fp32-001.json").exists())
        resumed = greenprec("compare", "--resume", "--out", str(out), "--quiet")
        assert resumed.returncode == 2
        assert f"{out} is in use by another greenprec process (greenprec compare, pid " in (
            resumed.stderr
        )
        assert "Traceback" not in resumed.stderr and len(resumed.stderr.splitlines()) == 1
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            first.kill()
    snapshot = ResultsStore(out).load()
    assert [run.status for run in snapshot.runs] == ["done", "done"] and not snapshot.problems


def test_compare_into_a_folder_of_other_files_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "mine"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "fp32-001.log").write_text("my own notes\n")
    result = greenprec(
        "compare", "fp32", "--workload", "experiment_workloads:sleepy", "--runs", "1",
        "--isolation", "inline", "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.returncode == 2
    assert "is not empty (logs) and is not a greenprec experiment" in result.stderr
    assert (out / "logs" / "fp32-001.log").read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["logs"]


@pytest.mark.slow
def test_resume_of_a_folder_with_a_traversing_run_id_writes_nothing_outside(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    first = greenprec(
        "compare", "fp32", "--workload", "experiment_workloads:sleepy", "--runs", "1",
        "--isolation", "inline", "--param", "sleep_s=0.05", "--out", str(out), *FAST,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    data = json.loads((out / "experiment.json").read_text())
    data["schedule"][0]["run_id"] = "../../../escaped"
    (out / "experiment.json").write_text(json.dumps(data))
    resumed = greenprec("compare", "--resume", "--out", str(out))
    assert resumed.returncode == 2
    assert "experiment.json is damaged: schedule.0.run_id" in resumed.stderr
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.slow
def test_resume_names_missing_runs_and_runs_them_instead_of_declaring_completion(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    first = greenprec(
        "compare", "fp32", "mixed", "--workload", "experiment_workloads:sleepy", "--runs", "3",
        "--isolation", "inline", "--param", "sleep_s=0.02", "--out", str(out), *FAST,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    gone = sorted((out / "runs").iterdir())[:3]
    for path in gone:
        path.unlink()
    (out / "runs.csv").write_text((out / "runs.csv").read_text()[:200])  # cut mid-row
    resumed = greenprec("compare", "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    for path in gone:
        assert f"run {path.stem}: runs/: missing: scheduled but not recorded; it runs again" in (
            resumed.stderr
        )
    assert "greenprec: 6 runs (3 already done)" in resumed.stderr
    snapshot = ResultsStore(out).load()
    assert [r.status for r in snapshot.runs] == ["done"] * 6 and not snapshot.problems
    assert json.loads((out / "experiment.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_runs_names_a_damaged_run_file_and_prints_only_json(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    first = greenprec(
        "compare", "fp32", "--workload", "experiment_workloads:sleepy", "--runs", "2",
        "--isolation", "inline", "--param", "sleep_s=0.02", "--out", str(out), *FAST,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    (out / "runs" / "fp32-002.json").write_text('{"run_id": "fp32-0')
    shown = greenprec("runs", str(out), "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [row["run_id"] for row in rows] == ["fp32-001"]
    assert "run fp32-002: runs/fp32-002.json: run file is not valid JSON" in shown.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compare", "import"])
def test_runs_and_report_read_a_0_1_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    import shutil

    shutil.copytree(FIXTURES / name, folder)
    shown = greenprec("runs", str(folder), "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 4
    report = greenprec("report", str(folder), "--quiet")
    assert report.returncode == 0, report.stderr
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["runs"]["used"] == 4 and stats["excluded_runs"] == []


@pytest.mark.slow
def test_resume_of_a_0_1_folder_upgrades_it_to_run_files(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "compare", folder)
    resumed = greenprec("compare", "--resume", "--out", str(folder), "--retry-failed")
    assert resumed.returncode == 0, resumed.stderr
    assert "written by greenprec 0.1" in resumed.stderr
    assert sorted(p.stem for p in (folder / "runs").iterdir()) == [
        "fp32-001", "fp32-002", "mixed-001", "mixed-002",
    ]  # fmt: skip
    assert json.loads((folder / "experiment.json").read_text())["schema_version"] == "2.0"

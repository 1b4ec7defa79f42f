"""``greenprec compare --executor slurm`` against a real Slurm cluster (not a mock).

``.ci/slurm-up.sh`` starts a one-node cluster on this machine (CI runs it). The tests submit
real jobs, so they run only when asked: ``GREENPREC_TEST_SLURM=1`` (or ``CI`` set, as
``.ci/run`` does); a ``sinfo`` that happens to answer on a user's login node is not a reason to
submit jobs there. Asked, a missing or unreachable Slurm is a failure, not a skip.
Every test runs the real CLI in a subprocess, the way a user runs it on a login node, and
jobs run the same executor as the local runner on the cluster's node.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenprec.results import ResultsStore

pytestmark = [pytest.mark.slurm]

TESTS_DIR = Path(__file__).parent
WAIT_S = 180.0
"""The longest a test waits for the cluster to get somewhere (a job to start, runs to end)."""


def _slurm_problem() -> str | None:
    for command in ("sbatch", "squeue", "sinfo", "scancel"):
        if shutil.which(command) is None:
            return f"{command} is not installed (sudo .ci/slurm-up.sh installs and starts Slurm)"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"sinfo did not answer ({error}); start Slurm with sudo .ci/slurm-up.sh"
    if states.returncode != 0:
        return f"Slurm is not reachable ({states.stderr.strip()[:200]}); run sudo .ci/slurm-up.sh"
    if not any(s.strip() in ("idle", "mixed", "allocated") for s in states.stdout.split()):
        return f"no Slurm node is up (sinfo: {states.stdout.split()}); run sudo .ci/slurm-up.sh"
    return None


ASKED = "GREENPREC_TEST_SLURM"
"""Set to 1 to run these tests (CI sets ``CI``, which asks too)."""


def slurm_asked() -> bool:
    return os.environ.get(ASKED) == "1" or bool(os.environ.get("CI"))


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if not slurm_asked():
        pytest.skip(
            f"submits real Slurm jobs: runs only when asked ({ASKED}=1, after sudo "
            ".ci/slurm-up.sh starts a one-node cluster on this machine)"
        )
    problem = _slurm_problem()
    if problem is None:
        return
    pytest.fail(f"the Slurm tests were asked for but cannot run: {problem}")


@pytest.fixture(autouse=True)
def _workloads_on_path(monkeypatch: pytest.MonkeyPatch, slurm_cluster: None) -> None:
    """Jobs inherit the submitter's environment: they find tests/experiment_workloads.py."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def _config(tmp_path: Path, **slurm: Any) -> Path:
    """A config file with a fast poll (a user's default is 10 s) and the given [slurm] keys."""
    lines = ["[slurm]", "poll_s = 0.5"]
    for key, value in slurm.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _command(
    out: Path, config: Path, *extra: str, sleep_s: float = 0.2, runs: int = 2
) -> list[str]:
    return _held_command(
        out, config, *extra, runs=runs, workload="slow", param=f"sleep_s={sleep_s}"
    )


def _held(out: Path, config: Path, *extra: str, runs: int = 1) -> list[str]:
    """Runs that hold until ``out/../release`` exists (touch it, and resumed runs end at once)."""
    release = out.parent / "release"
    return _held_command(
        out, config, *extra, runs=runs, workload="held", param=f"release={release}"
    )


def _held_command(
    out: Path, config: Path, *extra: str, runs: int, workload: str, param: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "greenprec",
        "compare",
        "fp32",
        "mixed",
        "--workload",
        f"experiment_workloads:{workload}",
        "--param",
        param,
        "--runs",
        str(runs),
        "--warmup",
        "0",
        "--cooldown",
        "0",
        "--meter",
        "mock",
        "--executor",
        "slurm",
        "--config",
        str(config),
        "--out",
        str(out),
        *extra,
    ]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT_S * 2, check=False)


def _resume(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [sys.executable, "-m", "greenprec", "compare", "--resume", "--out", str(out), *extra]
    )


def _runs(out: Path) -> dict[str, dict[str, Any]]:
    runs = {}
    for path in (out / "runs").glob("*.json"):
        try:
            runs[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being replaced: read again on the next poll
    return runs


def _submissions(out: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((out / "submissions.json").read_text())["jobs"])
    except (OSError, json.JSONDecodeError, KeyError):
        return []


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what} after {WAIT_S:g} s")


def _job_state(job_id: str) -> str:
    listing = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return listing.stdout.strip() or "UNKNOWN"


@pytest.fixture
def submitter() -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    """Start a submitting ``greenprec compare`` in the background; stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_quick_compare_on_slurm_gives_the_local_layout_and_report(tmp_path: Path) -> None:
    """The issue's command: compare fp32 mixed --quick --executor slurm --meter mock."""
    out = tmp_path / "quick"
    config = _config(tmp_path)
    result = _run(
        [
            sys.executable,
            "-m",
            "greenprec",
            "compare",
            "fp32",
            "mixed",
            "--quick",
            "--executor",
            "slurm",
            "--meter",
            "mock",
            "--config",
            str(config),
            "--out",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(out)
    assert len(runs) == 6
    assert {run["status"] for run in runs.values()} == {"done"}
    host = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    jobs = {job["job_id"]: job for job in _submissions(out)}
    for run in runs.values():
        assert run["host"] == host.split(".")[0] or run["host"] == host
        assert run["slurm_job_id"] in jobs
        assert run["node"]["cpu_model"]
        assert run["block"] in (1, 2, 3)
    # Blocked: each block is one job holding one run of each policy.
    assert sorted(job["block"] for job in jobs.values()) == [1, 2, 3]
    for job in jobs.values():
        assert sorted(rid.split("-")[0] for rid in job["run_ids"]) == ["fp32", "mixed"]
        assert job["state"] == "COMPLETED"
    # The local executor's layout, and the same report files.
    for name in ("experiment.json", "runs.csv", "report.md", "report.html", "stats.json"):
        assert (out / name).is_file(), name
    for folder in ("runs", "samples", "logs", "figures"):
        assert (out / folder).is_dir(), folder
    report = (out / "report.md").read_text()
    assert "mixed" in report and "fp32" in report
    stats = json.loads((out / "stats.json").read_text())
    assert stats["reference"] == "fp32"
    assert ResultsStore(out).load().problems == []


def test_killing_the_submitter_leaves_the_jobs_and_resume_reattaches(
    tmp_path: Path, submitter: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "killed"
    config = _config(tmp_path, max_in_flight=1)
    process = submitter(_command(out, config, sleep_s=1.0, runs=3))
    _wait_for(
        "a first run done",
        lambda: any(run.get("status") == "done" for run in _runs(out).values()),
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    live = [job for job in _submissions(out) if job.get("job_id")]
    assert len(live) == 1  # max_in_flight = 1: one block submitted so far

    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = _runs(out)
    assert len(runs) == 6 and {run["status"] for run in runs.values()} == {"done"}
    jobs = _submissions(out)
    # None submitted twice: one job per block, and every run executed by the job of its block.
    assert sorted(job["block"] for job in jobs) == [1, 2, 3]
    by_block = {job["block"]: job["job_id"] for job in jobs}
    for run in runs.values():
        assert run["slurm_job_id"] == by_block[run["block"]]
    executed = [
        run_id
        for path in (out / "jobs").glob("*.json")
        for run_id in json.loads(path.read_text())["run_ids"]
    ]
    assert sorted(executed) == sorted(runs)  # every run executed exactly once


def test_a_cancelled_job_is_recorded_and_resubmitted_on_resume(
    tmp_path: Path, submitter: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "cancelled"
    config = _config(tmp_path)
    process = submitter(_held(out, config))
    _wait_for(
        "a run running in its job",
        lambda: any(run.get("status") == "running" for run in _runs(out).values()),
    )
    (job,) = _submissions(out)
    subprocess.run(["scancel", job["job_id"]], check=True, timeout=30)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 1, stderr[-3000:]
    runs = _runs(out)
    assert {run["status"] for run in runs.values()} == {"failed"}
    for run in runs.values():
        assert run["job_state"] == "CANCELLED"
        assert f"Slurm job {job['job_id']} ended CANCELLED" in run["error"]
    # The closing line says what a plain --resume does (tests/test_resume_advice.py).
    assert "runs 2 of them again (2 whose Slurm job ended CANCELLED)" in stderr
    assert "--retry-failed" not in stderr

    # No --retry-failed: the cluster's failures are run again. How jobs are submitted may
    # change on resume (here the time a run may take: what a TIMEOUT calls for).
    resumed = _resume(out, "--time-per-run", "7", "--param", "release=elsewhere")
    assert resumed.returncode == 2, resumed.stderr  # the workload's params may not change
    assert "params.release" in resumed.stderr
    (out.parent / "release").touch()  # the resumed runs end at once
    resumed = _resume(out, "--time-per-run", "7")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "time_per_run_min = 7" in resumed.stderr
    runs = _runs(out)
    assert {run["status"] for run in runs.values()} == {"done"}
    assert all(run["job_state"] is None for run in runs.values())
    attempts = _submissions(out)
    assert [(j["block"], j["attempt"]) for j in attempts] == [(1, 1), (1, 2)]
    assert attempts[0]["state"] == "CANCELLED" and attempts[1]["state"] == "COMPLETED"
    script = (out / "slurm" / attempts[1]["job_id"]).glob("*_submission.sh")
    # Two runs of 7 minutes, no warm-up or cool-down, and the 5-minute margin: 19 minutes.
    assert "#SBATCH --time=19" in next(script).read_text()


def test_a_node_failure_is_recorded_as_node_fail_and_resubmitted(
    tmp_path: Path, submitter: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "node-fail"
    config = _config(tmp_path)
    process = submitter(_held(out, config))
    _wait_for(
        "a run running in its job",
        lambda: any(run.get("status") == "running" for run in _runs(out).values()),
    )
    (job,) = _submissions(out)
    node = subprocess.run(
        ["squeue", "-h", "-j", job["job_id"], "-o", "%N"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=down", "reason=greenprec-test"],
            check=True,
            timeout=30,
        )
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        _bring_back(node)
    assert process.returncode == 1, stderr[-3000:]
    runs = _runs(out)
    assert {run["job_state"] for run in runs.values()} == {"NODE_FAIL"}
    assert "runs 2 of them again (2 whose Slurm job ended NODE_FAIL)" in stderr
    assert "--retry-failed" not in stderr

    (out.parent / "release").touch()  # the resumed runs end at once
    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {run["status"] for run in _runs(out).values()} == {"done"}


def _bring_back(node: str) -> None:
    """The node returns to service (slurm-up.sh sets ReturnToService=2; resume it if not)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            return
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=resume"],
            capture_output=True,
            check=False,
        )
        time.sleep(1)


def test_ctrl_c_with_cancel_on_interrupt_cancels_the_jobs(
    tmp_path: Path, submitter: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "interrupted"
    config = _config(tmp_path)
    process = submitter(_held(out, config, "--cancel-on-interrupt"))
    _wait_for(
        "a run running in its job",
        lambda: any(run.get("status") == "running" for run in _runs(out).values()),
    )
    (job,) = _submissions(out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 130, stderr[-3000:]
    assert "were cancelled" in stderr and job["job_id"] in stderr
    assert _job_state(job["job_id"]) == "CANCELLED"
    assert {run["job_state"] for run in _runs(out).values()} == {"CANCELLED"}


def test_sigterm_or_ctrl_c_in_a_script_leaves_the_jobs_running(
    tmp_path: Path, submitter: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    """No terminal and no --cancel-on-interrupt: the jobs are the experiment; they go on."""
    out = tmp_path / "terminated"
    config = _config(tmp_path)
    process = submitter(_command(out, config, sleep_s=3.0, runs=1))
    _wait_for("a job submitted", lambda: any(j.get("job_id") for j in _submissions(out)))
    (job,) = _submissions(out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 143, stderr[-3000:]
    assert "keep running" in stderr and "--resume" in stderr
    _wait_for("the job to end by itself", lambda: _job_state(job["job_id"]) == "COMPLETED")
    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {run["status"] for run in _runs(out).values()} == {"done"}
    assert len(_submissions(out)) == 1  # picked up, not submitted again


def test_runs_shows_each_runs_host_and_job_state(tmp_path: Path) -> None:
    out = tmp_path / "shown"
    result = _run(_command(out, _config(tmp_path), "--quiet", runs=1))
    assert result.returncode == 0, result.stderr[-3000:]
    listing = _run([sys.executable, "-m", "greenprec", "runs", str(out), "--json"])
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    jobs = {job["job_id"] for job in _submissions(out)}
    for row in rows:
        assert row["host"] and row["slurm_job_id"] in jobs
        assert row["job"] == "COMPLETED"
    table = _run([sys.executable, "-m", "greenprec", "runs", str(out)])
    assert "COMPLETED" in table.stdout and "host" in table.stdout


def test_sbatch_refusing_a_job_is_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "refused"
    config = _config(tmp_path, partition="no-such-partition")
    result = _run(_command(out, config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "sbatch refused the job" in result.stderr and "partition" in result.stderr
    # The experiment is saved with every run pending, and nothing is recorded as submitted.
    assert {run["status"] for run in _runs(out).values()} == {"pending"}
    assert _submissions(out) == []

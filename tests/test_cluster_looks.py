"""Looks on the cluster executors: ``compare --adaptive`` and a recommendation's selection submit
their blocks in waves, look after each completed wave, never submit what a look cut, and resume
by re-attaching to the wave in flight (greenprec.experiment.cluster.Waves).

Most tests use the debug executor (each block's job a local process, the Slurm executor's whole
bookkeeping, no Slurm); those marked ``slurm`` run the same against the one-node Slurm cluster of
``.ci/slurm-up.sh``, only when asked (``GREENPREC_TEST_SLURM=1``, as tests/test_cluster_slurm.py).
The mock meter's energy is its constant power times the time, so a configuration that trains
more epochs to the target, or sleeps longer, uses more energy by a known factor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.experiment.cluster import Waves
from greenprec.experiment.config import validate
from greenprec.experiment.runner import run_experiment
from greenprec.experiment.schedule import make_blocked_schedule
from greenprec.experiment.session import Session
from greenprec.results import RunRecord
from test_cli_recommend import check_looks_replay, quiet_enough
from test_cluster_slurm import ASKED, _slurm_problem, slurm_asked

TESTS_DIR = Path(__file__).resolve().parent
WAIT_S = 180.0
"""The longest a test waits for a job to get somewhere."""

SLOW, FAST, TIED = "fp32-step=0.1", "fp32-step=0.25", "fp32-step=0.3"
"""Three configurations: SLOW needs 5 epochs to the target, FAST and TIED 2 (the same energy:
a tie no look separates early, so the selection goes on after dropping SLOW)."""


@pytest.fixture(autouse=True)
def _workloads_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs (and their runs) find tests/experiment_workloads.py through PYTHONPATH."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


@pytest.fixture
def slurm_cluster() -> None:
    if not slurm_asked():
        pytest.skip(f"submits real Slurm jobs: runs only when asked ({ASKED}=1)")
    problem = _slurm_problem()
    if problem is not None:
        pytest.fail(f"the Slurm tests were asked for but cannot run: {problem}")


# -- helpers -------------------------------------------------------------------------------------


def _selection(executor: str, workload: str = "to_target", **params: object) -> dict[str, Any]:
    """A recommendation's settings: at most 6 runs per configuration, the first look after 3."""
    return {
        "policies": ["fp32"],
        "workload": f"experiment_workloads:{workload}",
        "params": {"epoch_s": 0.05, **params},
        "runs": 6,
        "min_runs": 3,
        "warmup_s": 0,
        "cooldown_s": 0,
        "meters": ["mock"],
        "isolation": "inline",
        "executor": executor,
        "slurm": {"poll_s": 0.2},
        "targets": {"test_accuracy": 0.5},
        "stop_at_target": True,
        # Tiny: the tie is never "within the zone" at a look, so only a drop can end it early.
        "selection": {"indifference": "0.5%"},
        "configurations": [
            {"label": SLOW, "policy": "fp32", "params": {"step": 0.1}},
            {"label": FAST, "policy": "fp32", "params": {"step": 0.25}},
            {"label": TIED, "policy": "fp32", "params": {"step": 0.3}},
        ],
    }


def _experiment(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "experiment.json").read_text()))


def _jobs(out: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((out / "submissions.json").read_text())["jobs"])
    except (OSError, ValueError, KeyError):
        return []


def _executed(out: Path) -> list[str]:
    """Every run a job executed, by the jobs' own records (jobs/<job id>.json)."""
    return [
        run_id
        for path in sorted((out / "jobs").glob("*.json"))
        for run_id in json.loads(path.read_text())["run_ids"]
    ]


def _run_files(out: Path) -> dict[str, dict[str, Any]]:
    runs = {}
    for path in (out / "runs").glob("*.json"):
        try:
            runs[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced: read again
    return runs


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what} after {WAIT_S:g} s")


def _check_selection(out: Path) -> None:
    """SLOW dropped at the first look (after block 3) and none of its later runs submitted, made
    or scheduled; the tie went on in later blocks, one look after each; a complete folder."""
    experiment = _experiment(out)
    selection = experiment["selection"]
    first, *later = selection["looks"]
    assert first["block"] == 3 and first["runs"] == 3
    status = {c["name"]: c for c in first["configurations"]}
    assert status[SLOW]["status"] == "dropped" and status[SLOW]["dropped_at_look"] == 1
    assert status[FAST]["status"] != "dropped" and status[TIED]["status"] != "dropped"
    assert later, "the tie is not separated at the first look: the selection goes on"
    blocks = [look["block"] for look in selection["looks"]]
    assert blocks == list(range(3, blocks[-1] + 1))  # one look per block, none made twice
    assert selection["stopped"] is True
    jobs = _jobs(out)
    # The blocks before the first look, then one wave (one job) per block; SLOW never again.
    assert [job["block"] for job in jobs] == list(range(1, blocks[-1] + 1))
    assert all(job["attempt"] == 1 and job["state"] == "COMPLETED" for job in jobs)
    for job in jobs:
        labels = sorted(run_id.rsplit("-", 1)[0] for run_id in job["run_ids"])
        assert labels == sorted([SLOW, FAST, TIED] if job["block"] <= 3 else [FAST, TIED])
    executed = _executed(out)
    assert sorted(executed) == sorted(set(executed))  # each run executed once
    runs = _run_files(out)
    assert sorted(executed) == sorted(runs)
    assert sorted(p["run_id"] for p in experiment["schedule"]) == sorted(runs)
    assert sum(run_id.startswith(SLOW + "-") for run_id in runs) == 3
    assert {run["status"] for run in runs.values()} == {"done"}
    assert experiment["status"] == "complete"


# -- compare --adaptive ----------------------------------------------------------------------------


def _adaptive_args(out: Path, config: Path, executor: str) -> list[str]:
    return [
        "compare", "fp32", "mixed", "--workload", "experiment_workloads:policy_sleeps",
        # mixed sleeps 50 % longer: 50 % more energy, a difference the first looks settle.
        "--param", "sleep_fp32_s=0.2", "--param", "sleep_mixed_s=0.3",
        "--adaptive", "--max-runs", "12", "--warmup", "0", "--cooldown", "0",
        "--meter", "mock", "--isolation", "inline", "--executor", executor,
        "--config", str(config), "--quiet", "--out", str(out),
    ]  # fmt: skip


def _poll_config(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text("[slurm]\npoll_s = 0.2\n")
    return path


def _check_adaptive(out: Path) -> None:
    """Stopped early at n runs per policy: n blocks submitted, one job each, nothing after."""
    experiment = _experiment(out)
    sequential = experiment["sequential"]
    assert sequential["stopped_early"] is True, sequential["reason"]
    n = sequential["runs_per_policy"]
    assert 3 <= n < 12
    assert [look["block"] for look in sequential["looks"]] == list(range(3, n + 1))
    jobs = _jobs(out)
    assert [job["block"] for job in jobs] == list(range(1, n + 1))
    assert all(job["state"] == "COMPLETED" for job in jobs)
    runs = _run_files(out)
    assert len(runs) == len(experiment["schedule"]) == 2 * n
    assert sorted(_executed(out)) == sorted(runs)
    assert {run["status"] for run in runs.values()} == {"done"}
    assert experiment["status"] == "complete"


@pytest.mark.slow
def test_compare_adaptive_on_the_debug_executor_stops_early_in_waves(tmp_path: Path) -> None:
    out = tmp_path / "adaptive"
    result = CliRunner().invoke(app, _adaptive_args(out, _poll_config(tmp_path), "debug"))
    assert result.exit_code == 0, result.output
    _check_adaptive(out)


def test_an_adaptive_or_selection_experiment_is_accepted_on_a_cluster_executor() -> None:
    base = {"policies": ["fp32", "mixed"], "meters": ["mock"], "executor": "debug"}
    assert validate({**base, "adaptive": True, "runs": 10}).adaptive
    selection = validate(_selection("debug"))
    assert selection.selection is not None and selection.executor == "debug"
    # The other checks of adaptive stay.
    with pytest.raises(ConfigError, match="min_runs"):
        validate({**base, "adaptive": True, "runs": 2})


def test_a_wave_is_the_blocks_before_the_first_look_then_one_block() -> None:
    """No look can be due before some configuration has min_runs done runs: the blocks needed
    to get there go out together; after that, a look follows every block."""
    config = validate(_selection("debug"))
    schedule = make_blocked_schedule(config.arms(), config.runs, config.seed)
    runs = {planned.run_id: RunRecord.planned(planned) for planned in schedule}
    assert sorted(runs) == sorted(f"{a}-{b:03d}" for a in (SLOW, FAST, TIED) for b in range(1, 7))
    session = Session(store=None, config=config, experiment=None, runs=runs)  # type: ignore[arg-type]
    waves = Waves(session)
    waiting = [(b, [f"{label}-{b:03d}" for label in (SLOW, FAST, TIED)]) for b in range(1, 7)]
    wave, rest = waves.next_wave(waiting)
    assert [block for block, _ in wave] == [1, 2, 3] and [b for b, _ in rest] == [4, 5, 6]
    # Resumed after block 1 (a run of block 2 failed): two blocks more before a look is due.
    for label in (SLOW, FAST, TIED):
        runs[f"{label}-001"] = runs[f"{label}-001"].model_copy(update={"status": "done"})
    wave, _ = waves.next_wave(waiting[1:])
    assert [block for block, _ in wave] == [2, 3]
    # After the first look dropped SLOW (its later runs cut from session.runs): one block a
    # wave, without SLOW's runs; a block left with no run is not submitted.
    for block in (2, 3):
        for label in (SLOW, FAST, TIED):
            run_id = f"{label}-{block:03d}"
            runs[run_id] = runs[run_id].model_copy(update={"status": "done"})
    for block in (4, 5, 6):
        del runs[f"{SLOW}-{block:03d}"]
    del runs[f"{FAST}-005"], runs[f"{TIED}-005"]
    wave, rest = waves.next_wave(waiting[3:])
    assert wave == [(4, [f"{FAST}-004", f"{TIED}-004"])]
    assert rest == [(6, [f"{FAST}-006", f"{TIED}-006"])]


def test_a_debug_job_is_known_to_a_later_submitter_running_ended_or_cancelled(
    tmp_path: Path,
) -> None:
    """The debug executor's jobs outlive their submitter, as Slurm's do: a new one re-attaches
    (a job still running, then how it ended), and a job it never started is unknown."""
    from greenprec.experiment.executors.debug import LocalProcesses
    from greenprec.experiment.slurm import JobRequest

    folder = tmp_path / "slurm"
    first = LocalProcesses(folder)
    job = first.submit(folder, JobRequest(name="job-a", time_min=1), time.sleep, 1.0)
    later = LocalProcesses(folder)  # the first submitter "killed": it is never asked again
    assert later.job_states([job])[job].state == "RUNNING"
    found = later.find_by_name("job-a")
    assert found is not None and found.job_id == job
    _wait_for("the job to end", lambda: later.job_states([job])[job].state != "RUNNING")
    assert later.job_states([job])[job].state == "COMPLETED"
    assert later.job_states(["999"]) == {}  # never started: unknown, its runs submitted again

    cancelled = later.submit(folder, JobRequest(name="job-b", time_min=1), time.sleep, 30.0)
    third = LocalProcesses(folder)
    assert third.job_states([cancelled])[cancelled].state == "RUNNING"
    third.cancel([cancelled])  # SIGTERM to a process this submitter did not start
    _wait_for("the job to end", lambda: third.job_states([cancelled])[cancelled].state != "RUNNING")
    assert third.job_states([cancelled])[cancelled].state == "CANCELLED"


# -- a recommendation's selection ----------------------------------------------------------------


_SUBMITTER = """
import json, sys
from greenprec.experiment.cluster import Waves
from greenprec.experiment.config import validate
from greenprec.experiment.runner import run_experiment
from greenprec.experiment.schedule import make_blocked_schedule
from greenprec.experiment.session import Session
from greenprec.results import RunRecord
run_experiment(validate(json.loads(sys.argv[1])), sys.argv[2])
"""


@pytest.fixture
def submitter() -> Iterator[Callable[[dict[str, Any], Path], subprocess.Popen[str]]]:
    """A submitting process, in the background, in its own session (killed at the end)."""
    started: list[subprocess.Popen[str]] = []

    def start(settings: dict[str, Any], out: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", _SUBMITTER, json.dumps(settings), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _kill_mid_wave_and_resume(
    tmp_path: Path,
    executor: str,
    start: Callable[[dict[str, Any], Path], subprocess.Popen[str]],
) -> Path:
    """Start a selection whose first run after the first look holds; kill the submitter while
    that run's job is in flight; resume (the run is let go a moment later)."""
    out, markers = tmp_path / "resumed", tmp_path / "markers"
    markers.mkdir()
    release = tmp_path / "release"
    settings = _selection(
        executor,
        "to_target_held",
        marker_dir=str(markers),
        hold_at=10,  # the first run of block 4: 9 runs (3 blocks of 3) before it
        release=str(release),
    )
    process = start(settings, out)
    _wait_for("the held run of block 4", (markers / "holding").exists)
    os.killpg(process.pid, signal.SIGKILL)  # the submitter; the job runs in its own session
    process.communicate(timeout=30)
    (in_flight,) = [job for job in _jobs(out) if job["block"] == 4]
    assert _experiment(out)["selection"]["looks"][0]["block"] == 3  # the look before it, made

    timer = threading.Timer(1.0, release.touch)  # the resumed submitter finds the job running
    timer.start()
    try:
        _, runs = run_experiment(None, out, resume=True)
    finally:
        timer.cancel()
    assert all(run.status == "done" for run in runs)
    # Re-attached: the job in flight was never submitted again, and ran its runs.
    block_4 = [job for job in _jobs(out) if job["block"] == 4]
    assert [job["job_id"] for job in block_4] == [in_flight["job_id"]]
    _check_selection(out)
    return out


@pytest.mark.slow
def test_a_selection_on_the_debug_executor_drops_and_resumes_by_reattaching(
    tmp_path: Path, submitter: Callable[[dict[str, Any], Path], subprocess.Popen[str]]
) -> None:
    """The dropped configuration's later runs are never submitted (nor made, nor scheduled);
    the submitter killed mid-wave, a resumed one re-attaches to the job in flight and ends the
    selection without looking twice at a block."""
    _kill_mid_wave_and_resume(tmp_path, "debug", submitter)


# -- the same on the one-node Slurm ----------------------------------------------------------------


@pytest.mark.slurm
def test_compare_adaptive_on_slurm_stops_early_in_waves(
    tmp_path: Path, slurm_cluster: None
) -> None:
    out = tmp_path / "adaptive"
    result = subprocess.run(
        [sys.executable, "-m", "greenprec", *_adaptive_args(out, _poll_config(tmp_path), "slurm")],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_adaptive(out)


@pytest.mark.slurm
def test_a_selection_on_slurm_drops_and_resumes_by_reattaching(
    tmp_path: Path,
    slurm_cluster: None,
    submitter: Callable[[dict[str, Any], Path], subprocess.Popen[str]],
) -> None:
    out = _kill_mid_wave_and_resume(tmp_path, "slurm", submitter)
    assert all(job["job_id"].isdigit() for job in _jobs(out))  # Slurm's own job ids


# -- greenprec recommend end to end on the cluster executors: the scripted meter's known answer ---


def _recommend(out: Path, config: Path, executor: str) -> subprocess.CompletedProcess[str]:
    """bf16 with accuracy_step 0.5 needs 2 J to 50 % (1 epoch x 200 ms x 10 W); the next best
    five times as much: all three others are dropped at the first look, after block 3, even
    when a loaded machine delays epochs by tens of milliseconds."""
    return subprocess.run(
        [
            sys.executable, "-m", "greenprec", "recommend", "fp32", "bf16",
            "--workload", "greenprec.testing.scripted:training",
            "--meter", "scripted", "-o", "scripted.power_w=fp32:100,bf16:10",
            "--param", "epoch_s=0.2", "--vary", "accuracy_step=0.1,0.5",
            "--target", "test_accuracy=0.5", "--warmup", "0", "--cooldown", "0",
            "--max-runs", "6", "--executor", executor, "--config", str(config),
            "--out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def _check_recommendation(out: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Use bf16 with accuracy step 0.5" in result.stdout
    looks = check_looks_replay(out)
    assert looks[-1].recommended == "bf16-accuracy_step=0.5"
    runs = _run_files(out)
    assert {run["status"] for run in runs.values()} == {"done"}
    for run in runs.values():
        assert run["stopped_at_target"] is True
        assert run["epochs_run"] == (1 if run["params"]["accuracy_step"] == 0.5 else 5)
    if quiet_enough(out):
        # All three others dropped at the first look, after block 3: the first wave held the
        # blocks before it, and nothing was submitted after it.
        (look,) = looks
        assert look.block == 3
        assert sorted(job["block"] for job in _jobs(out)) == [1, 2, 3]
        assert len(runs) == 12
    else:
        # A dropped configuration's runs were never submitted after its drop (checked above
        # from the runs); every submitted job is a block that ran.
        assert {job["block"] for job in _jobs(out)} == {run["block"] for run in runs.values()}
    assert json.loads((out / "recommendation.json").read_text())["recommended"] == (
        "bf16-accuracy_step=0.5"
    )


@pytest.mark.slow
def test_recommend_on_the_debug_executor_picks_the_known_best(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    _check_recommendation(out, _recommend(out, _poll_config(tmp_path), "debug"))


@pytest.mark.slurm
def test_recommend_on_slurm_picks_the_known_best(tmp_path: Path, slurm_cluster: None) -> None:
    out = tmp_path / "rec"
    _check_recommendation(out, _recommend(out, _poll_config(tmp_path), "slurm"))

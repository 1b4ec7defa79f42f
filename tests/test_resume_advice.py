"""What a stopped or unfinished experiment says comes next, and that it is true.

Three defects of issue #24, each met as a user meets it:

* the closing line of ``compare`` recommended ``--retry-failed`` after a kill -9, a killed
  submitter, scancel, a node going down and a Slurm TIMEOUT, although a plain ``--resume``
  runs those runs again: it now counts what the next plain ``--resume`` runs, and names
  ``--retry-failed`` only for runs that failed on their own;
* a submitter killed between ``sbatch`` and writing submitit's files left a job that could
  only fail (``JobLaunchFailure``), which the resume adopted: it is now cancelled and its
  block submitted again;
* SIGTERM during a cool-down or the warm-up said "the current run is marked failed" when no
  run was running.

Slurm is faked by small executables first on PATH (``tests/fake_slurm.py``); the runs of a
local experiment are real (the ``sleepy`` workload, the mock meter).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_slurm import FakeSlurm
from greenprec.experiment.runner import SOURCE, resume_outlook
from greenprec.experiment.schedule import make_blocked_schedule, make_schedule
from greenprec.results import ResultsStore, RunRecord, Submission, SubmissionsRecord
from greenprec.results.models import INTERRUPTED, MetersRecord
from greenprec.results.records import new_experiment_record
from test_cluster_slurm import ASKED, _slurm_problem, slurm_asked

TESTS_DIR = Path(__file__).resolve().parent
POLICIES = ["fp32", "mixed"]
SLEEPY = ["--workload", "experiment_workloads:sleepy", "--param", "sleep_s=0.01"]
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--isolation", "inline"]

CliResult = tuple[int, str, str]


@pytest.fixture(autouse=True)
def importable_test_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes find tests/experiment_workloads.py through PYTHONPATH."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    return FakeSlurm(tmp_path / "fake-slurm").install(monkeypatch)


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """The console entry point, as a user runs it: (exit code, stdout, stderr)."""
    from greenprec.cli import main

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main replaces it
    monkeypatch.setenv("COLUMNS", "250")

    def invoke(*args: str | Path) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["greenprec", *map(str, args)])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else 0), captured.out, captured.err

    return invoke


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this host that is alive (a run's process a killed driver left behind)."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def closing_line(err: str) -> str:
    """The last line of stderr: the one that says what comes next."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, err
    assert "Traceback" not in err, err
    return lines[-1]


def set_run(store: ResultsStore, run_id: str, **update: Any) -> RunRecord:
    run = store.read_run(run_id).model_copy(update=update)
    store.write_run(run)
    return run


def make_folder(path: Path, *, blocked: bool, **config: Any) -> ResultsStore:
    """An experiment's folder as compare makes it, before any run executes."""
    from greenprec.experiment.config import load_config

    values = {"policies": POLICIES, "runs": 2, "workload": "experiment_workloads:sleepy",
              "meters": ["mock"], "warmup_s": 0, "cooldown_s": 0, **config}  # fmt: skip
    settings = load_config(values)
    arms = settings.arms()
    schedule = (
        make_blocked_schedule(arms, settings.runs, settings.seed)
        if blocked
        else make_schedule(arms, settings.runs, settings.seed)
    )
    experiment = new_experiment_record(
        source=SOURCE,
        config=settings.model_dump(mode="json"),
        schedule=schedule,
        meters=MetersRecord(requested=["mock"], used=["mock"]),
    )
    store = ResultsStore(path)
    store.create(experiment, [RunRecord.planned(run) for run in schedule])
    store.ensure_dirs()
    return store


def run_ids(store: ResultsStore) -> list[str]:
    return [run.run_id for run in store.read_experiment().schedule]


# -- 1. the outlook: each kind of run not done, counted -----------------------------------------
def test_the_outlook_counts_what_a_plain_resume_runs_and_what_only_a_retry_runs(
    tmp_path: Path, live_process: subprocess.Popen[bytes]
) -> None:
    store = make_folder(tmp_path / "out", blocked=False, runs=4)
    ended = subprocess.Popen(["true"])
    ended.wait()  # a process that has ended, and been reaped
    ids = run_ids(store)
    here = platform.node()
    set_run(store, ids[0], status="done", energy_j=1.0, duration_s=1.0)
    set_run(store, ids[1], status="failed", error=f"{INTERRUPTED} (SIGTERM); resuming ...")
    set_run(store, ids[2], status="failed", error="RuntimeError: out of memory")
    set_run(store, ids[3], status="running", host=here, executor_pid=ended.pid)
    set_run(store, ids[4], status="running", host=here, executor_pid=live_process.pid)
    set_run(store, ids[5], status="failed", error="Slurm job 7 ended", job_state="TIMEOUT")
    # ids[6], ids[7]: pending, never run
    outlook = resume_outlook(store)
    assert outlook.again == {
        "interrupted": 1,
        "left running by a process or job that has ended": 1,
        "whose Slurm job ended TIMEOUT": 1,
        "never run": 2,
    }
    assert (outlook.runs_again, outlook.held, outlook.own_failures) == (5, 1, 1)
    assert outlook.not_done == 7


def test_runs_a_live_job_holds_are_held_not_run_again(tmp_path: Path) -> None:
    store = make_folder(tmp_path / "out", blocked=True, executor="slurm")
    first, second, third, fourth = run_ids(store)
    set_run(store, first, status="running", host="node1", slurm_job_id="77")
    live = Submission(name="a", block=1, run_ids=[first, second], job_id="77")
    ended = Submission(name="b", block=2, run_ids=[third, fourth], job_id="78",
                       state="CANCELLED", settled=True)  # fmt: skip
    store.write_submissions(SubmissionsRecord(jobs=[live, ended]))
    set_run(store, third, status="failed", error="ended", job_state="CANCELLED")
    outlook = resume_outlook(store)
    assert outlook.held == 2 and outlook.own_failures == 0
    assert outlook.again == {"whose Slurm job ended CANCELLED": 1, "never run": 1}


# -- 2. the closing line after each of the five situations ---------------------------------------
def test_after_a_kill_9_the_resume_says_the_next_plain_resume_runs_the_run_left(
    tmp_path: Path, cli: Callable[..., CliResult], live_process: subprocess.Popen[bytes]
) -> None:
    """kill -9 of the runner leaves its run ``running``, its process still there (a zombie
    nobody reaps counts as alive): the resume leaves it, and must not say --retry-failed."""
    out = tmp_path / "exp"
    code, _, err = cli("compare", *POLICIES, "--runs", "1", *SLEEPY, *FAST, "--jsonl",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    store = ResultsStore(out)
    left = run_ids(store)[1]
    set_run(store, left, status="running", host=platform.node(), executor_pid=live_process.pid,
            energy_j=None, duration_s=None)  # fmt: skip
    code, _, err = cli("compare", "--resume", "--out", out, "--jsonl")
    assert code == 1
    line = closing_line(err)
    assert line.startswith(f"greenprec: 1 run(s) not done (see runs.csv in {out}); "), line
    assert "1 still held by a process or Slurm job of an earlier session" in line
    assert "runs them again if it ends without finishing them" in line
    assert "--retry-failed" not in line and "failed" not in line
    # The advice is true: once that process has ended, a plain --resume runs the run.
    live_process.kill()
    live_process.wait()
    code, _, err = cli("compare", "--resume", "--out", out, "--jsonl")
    assert code == 0, err
    assert store.read_run(left).status == "done"


def cluster_config(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text("[slurm]\npoll_s = 0.2\n")
    return path


def cluster_compare(out: Path, config: Path) -> list[str | Path]:
    return ["compare", *POLICIES, "--workload", "experiment_workloads:sleepy", "--runs", "2",
            "--warmup", "0", "--cooldown", "0", "--meter", "mock", "--executor", "slurm",
            "--config", config, "--out", out, "--quiet"]  # fmt: skip


def submitted_runs(store: ResultsStore, after: int) -> list[str]:
    """The runs of the jobs submitted after the first ``after`` of the ledger."""
    return sorted(run_id for job in store.read_submissions().jobs[after:] for run_id in job.run_ids)


@pytest.mark.parametrize(
    ("situation", "state"),
    [("a Slurm TIMEOUT", "TIMEOUT"), ("scancel", "CANCELLED"), ("a node down", "NODE_FAIL")],
)
def test_runs_slurm_ended_are_run_again_by_a_plain_resume_and_said_so(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult], situation: str, state: str
) -> None:
    fake.update(submit_state=state, submit_node="node1")
    out = tmp_path / "exp"
    code, _, err = cli(*cluster_compare(out, cluster_config(tmp_path)))
    assert code == 1, err
    line = closing_line(err)
    assert line == (
        f"greenprec: 4 run(s) not done (see runs.csv in {out}); the next greenprec compare "
        f"--resume --out {out} runs 4 of them again (4 whose Slurm job ended {state})"
    ), situation
    # True: a plain --resume submits exactly those four runs again.
    store = ResultsStore(out)
    before = len(store.read_submissions().jobs)
    fake.update(submit_state="COMPLETED")
    cli("compare", "--resume", "--out", out, "--quiet")
    assert submitted_runs(store, before) == sorted(run_ids(store))


def test_after_a_killed_submitter_a_plain_resume_is_advised(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    """The submitter was killed after sbatch, its job's id never recorded: the resume finds the
    job by its name, and the job then fails. Its runs are the cluster's failures, not their
    own: a plain --resume runs them again."""
    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm", runs=1,
                        slurm={"poll_s": 0.2})  # fmt: skip
    name = "greenprec-x-b001-a1"
    store.write_submissions(
        SubmissionsRecord(jobs=[Submission(name=name, block=1, run_ids=run_ids(store))])
    )
    (store.slurm_dir / "500").mkdir(parents=True)
    (store.slurm_dir / "500" / "500_submitted.pkl").write_bytes(b"submitit's pickle")
    fake.job("500", "RUNNING", node="node1", name=name, then=("FAILED",))
    code, _, err = cli("compare", "--resume", "--out", store.path, "--quiet")
    assert code == 1, err
    out = store.path
    assert closing_line(err) == (
        f"greenprec: 2 run(s) not done (see runs.csv in {out}); the next greenprec compare "
        f"--resume --out {out} runs 2 of them again (2 whose Slurm job ended FAILED)"
    )
    # True: a plain --resume submits both again.
    fake.update(submit_state="COMPLETED")
    cli("compare", "--resume", "--out", out, "--quiet")
    assert submitted_runs(store, 1) == sorted(run_ids(store))


def test_runs_that_failed_on_their_own_are_the_only_ones_sent_to_retry_failed(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    """One run of a block failed on its own (its job wrote it); its job then timed out."""
    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm",
                        slurm={"poll_s": 0.2})  # fmt: skip
    own = run_ids(store)[0]
    set_run(store, own, status="failed", error="RuntimeError: out of memory")
    fake.update(submit_state="TIMEOUT")
    code, _, err = cli("compare", "--resume", "--out", store.path, "--quiet")
    assert code == 1, err
    line = closing_line(err)
    out = store.path
    assert line == (
        f"greenprec: 4 run(s) not done (see runs.csv in {out}); the next greenprec compare "
        f"--resume --out {out} runs 3 of them again (3 whose Slurm job ended TIMEOUT); 1 failed "
        "on their own (the error is in runs.csv and logs/), and --resume alone does not run "
        "failed runs again: fix the cause, then run them again with greenprec compare --resume "
        f"--retry-failed --out {out}"
    )


# -- 3. a job its killed submitter never wrote files for -----------------------------------------
def test_an_orphaned_job_is_cancelled_and_its_block_submitted_again(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    """Killed between sbatch and submitit writing the job's pickle: the job waits for a file
    that never comes, then fails (JobLaunchFailure). Found by its name, it is cancelled."""
    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm",
                        slurm={"poll_s": 0.2})  # fmt: skip
    first_block = run_ids(store)[:2]
    name = "greenprec-x-b001-a1"
    store.write_submissions(
        SubmissionsRecord(jobs=[Submission(name=name, block=1, run_ids=first_block)])
    )
    # Left alone, it would wait for the pickle, then fail (JobLaunchFailure).
    fake.job("500", "PENDING", name=name, then=("RUNNING", "FAILED"))
    fake.update(submit_state="COMPLETED")
    cli("compare", "--resume", "--out", store.path)
    assert ["scancel", "500"] in fake.calls("scancel")
    jobs = store.read_submissions().jobs
    assert [(job.block, job.attempt, job.job_id, job.state, job.settled) for job in jobs] == [
        (1, 1, "500", "CANCELLED", True),
        (1, 2, "1000", "COMPLETED", True),
        (2, 1, "1001", "COMPLETED", True),
    ]
    assert jobs[1].run_ids == first_block
    assert jobs[0].reason is not None and "submitter was killed" in jobs[0].reason


def test_an_orphan_is_said_in_one_line(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm",
                        slurm={"poll_s": 0.2})  # fmt: skip
    name = "greenprec-x-b001-a1"
    store.write_submissions(
        SubmissionsRecord(jobs=[Submission(name=name, block=1, run_ids=run_ids(store)[:2])])
    )
    fake.job("500", "RUNNING", node="node1", name=name, then=("FAILED",))
    fake.update(submit_state="COMPLETED")
    _, _, err = cli("compare", "--resume", "--out", store.path)
    said = [line for line in err.splitlines() if "Slurm job 500" in line]
    assert said == [
        "Slurm job 500 (block 1) was submitted by a submitter killed before it "
        "wrote the job's files, so it could only fail: cancelled it, and block 1 is submitted "
        "again"
    ], err


def test_a_job_whose_files_were_written_is_adopted_not_cancelled(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    """Killed after submitit wrote the pickle, before the id was recorded: the job runs."""
    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm",
                        slurm={"poll_s": 0.2})  # fmt: skip
    name = "greenprec-x-b001-a1"
    store.write_submissions(
        SubmissionsRecord(jobs=[Submission(name=name, block=1, run_ids=run_ids(store)[:2])])
    )
    (store.slurm_dir / "500").mkdir(parents=True)
    (store.slurm_dir / "500" / "500_submitted.pkl").write_bytes(b"submitit's pickle")
    fake.job("500", "RUNNING", node="node1", name=name, then=("COMPLETED",))
    fake.update(submit_state="COMPLETED")
    cli("compare", "--resume", "--out", store.path, "--quiet")
    assert fake.calls("scancel") == []
    jobs = store.read_submissions().jobs
    assert [(job.block, job.job_id, job.state) for job in jobs] == [
        (1, "500", "COMPLETED"),
        (2, "1000", "COMPLETED"),
    ]


# -- 4. SIGTERM between runs ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phase", "flags", "said"),
    [
        ("cool-down", ["--warmup", "0", "--cooldown", "120"], "the cool-down before run "),
        ("warm-up", ["--warmup", "120", "--cooldown", "0"], "the warm-up was stopped"),
    ],
)
def test_sigterm_between_runs_says_what_it_stopped_and_marks_no_run_failed(
    tmp_path: Path, phase: str, flags: list[str], said: str
) -> None:
    out = tmp_path / "exp"
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", *POLICIES, "--runs", "1", *SLEEPY,
         *flags, "--meter", "mock", "--isolation", "inline", "--jsonl", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the progress, one JSON event a line
            event = json.loads(line)
            if event.get("event") == "phase" and event.get("phase") == phase:
                break
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, err
    line = closing_line(err)
    assert line.startswith("greenprec: interrupted (SIGTERM); "), line
    assert said in line and "no run was running, and nothing recorded is lost" in line, line
    assert "marked failed" not in line
    assert f"Continue with: greenprec compare --resume --out {out}" in line
    assert {run.status for run in ResultsStore(out).load().runs} <= {"done", "pending"}


# -- 5. the orphan on a real Slurm (GREENPREC_TEST_SLURM=1, after .ci/slurm-up.sh) ---------------
@pytest.fixture
def real_slurm() -> None:
    """The one-node cluster of .ci/slurm-up.sh, when the Slurm tests are asked for."""
    if not slurm_asked():
        pytest.skip(f"submits real Slurm jobs: runs only when asked ({ASKED}=1)")
    problem = _slurm_problem()
    if problem is not None:
        pytest.fail(f"the Slurm tests were asked for but cannot run: {problem}")


@pytest.mark.slurm
def test_a_real_orphaned_job_is_cancelled_and_its_block_run_again(
    tmp_path: Path, real_slurm: None
) -> None:
    """A real job whose submitit pickle is missing, as a submitter killed between sbatch and
    writing it leaves one: the resume cancels it and runs its block as a new attempt."""
    import dataclasses

    from greenprec.experiment import slurm
    from greenprec.experiment.block import run_block
    from greenprec.experiment.cluster import job_request
    from greenprec.experiment.config import stored_config

    store = make_folder(tmp_path / "exp", blocked=True, executor="slurm", runs=1,
                        slurm={"poll_s": 0.5})  # fmt: skip
    name = f"greenprec-orphan-{os.getpid()}-b001-a1"
    store.write_submissions(
        SubmissionsRecord(jobs=[Submission(name=name, block=1, run_ids=run_ids(store))])
    )
    config = stored_config(store.read_experiment())
    # Held while its pickle is taken away, so that it cannot have read it first.
    held = dataclasses.replace(job_request(config, name, 2), sbatch=(("hold", True),))
    job_id = slurm.submit(store.slurm_dir, held, run_block, str(store.path.resolve()), 1)
    (store.slurm_dir / job_id / f"{job_id}_submitted.pkl").unlink()
    subprocess.run(["scontrol", "release", job_id], check=True, timeout=30)
    resumed = subprocess.run(
        [sys.executable, "-m", "greenprec", "compare", "--resume", "--out", str(store.path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Slurm job {job_id} (block 1) was submitted by a submitter killed" in resumed.stderr
    jobs = store.read_submissions().jobs
    assert [(job.attempt, job.job_id == job_id, job.state) for job in jobs] == [
        (1, True, "CANCELLED"),
        (2, False, "COMPLETED"),
    ]
    assert {run.status for run in store.load().runs} == {"done"}

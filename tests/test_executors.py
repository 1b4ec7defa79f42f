"""Executors: one is picked by name through one lookup, a new one plugs in there, and the debug
executor runs a cluster experiment's blocks as local processes, through the block code a Slurm
job runs, leaving the folder a local experiment leaves (plus the job ledger)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import ClassVar

import pytest

from fake_slurm import FakeSlurm
from greenprec.errors import ConfigError
from greenprec.experiment.config import ExperimentConfig, load_config
from greenprec.experiment.executors import (
    EXECUTORS,
    DebugExecutor,
    LocalExecutor,
    SlurmExecutor,
    executor_for,
)
from greenprec.experiment.looks import configured_margins, look_data, questions
from greenprec.experiment.runner import run_experiment
from greenprec.experiment.session import Session
from greenprec.results import RunRecord

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _workloads_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run and job processes find tests/experiment_workloads.py through PYTHONPATH."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), path])))


def small(**values: object) -> ExperimentConfig:
    return load_config(
        {
            "policies": ["fp32", "mixed"],
            "runs": 2,
            "workload": "experiment_workloads:sleepy",
            "params": {"sleep_s": 0.05},
            "meters": ["mock"],
            "warmup_s": 0,
            "cooldown_s": 0,
            "isolation": "inline",
            **values,
        }
    )


def test_executors_are_picked_by_name() -> None:
    assert isinstance(executor_for("local"), LocalExecutor)
    assert isinstance(executor_for("slurm"), SlurmExecutor)
    assert isinstance(executor_for("debug"), DebugExecutor)
    with pytest.raises(ConfigError, match=r"unknown executor 'pbs' \(known: debug, local, slurm\)"):
        executor_for("pbs")


class Recording:
    """An executor that runs nothing: it records the session and ends each run as done."""

    blocked = True
    measures_here = True
    sessions: ClassVar[list[Session]] = []

    def drive(self, session: Session) -> list[RunRecord]:
        Recording.sessions.append(session)
        session.report_start()
        for run_id, run in session.runs.items():
            session.runs[run_id] = run.model_copy(update={"status": "done"})
        return session.final_runs()


def test_a_new_executor_plugs_in_through_the_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(EXECUTORS, "local", Recording)
    Recording.sessions.clear()
    store, runs = run_experiment(small(), tmp_path / "out", retry_failed=True)
    (session,) = Recording.sessions
    assert session.store.path == store.path and session.retry_failed
    assert session.config.policies == ["fp32", "mixed"]
    # The executor's shape decided the schedule: blocked (one run of each policy a block).
    assert sorted(run.block for run in runs) == [1, 1, 2, 2]
    # The runner wrote the index and the status from the runs the executor returned.
    experiment = json.loads((store.path / "experiment.json").read_text())
    assert experiment["status"] == "complete"
    assert store.index_file.read_text().count(",done,") == 4


def _no_slurm_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """No sbatch found and no submitit importable, as greenprec's checks look for them."""
    real_which, real_find_spec = shutil.which, importlib.util.find_spec
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "sbatch" else real_which(name)
    )
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "submitit" else real_find_spec(name, *a, **k),
    )


def test_only_slurm_needs_sbatch_and_submitit(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_slurm_here(monkeypatch)
    assert small(executor="debug").executor == "debug"
    with pytest.raises(ConfigError) as refused:
        small(executor="slurm")
    assert "needs submitit" in str(refused.value) and "no sbatch" in str(refused.value)
    with pytest.raises(ConfigError, match="meters: name the meters for a cluster"):
        small(executor="debug", meters=["auto"])  # each job opens them: auto is refused too


def _layout(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_the_debug_executor_runs_blocks_as_local_jobs_to_the_local_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSlurm(tmp_path / "fake-slurm").install(monkeypatch)  # records any Slurm command
    _no_slurm_here(monkeypatch)  # the debug executor needs neither sbatch nor submitit
    local_store, local_runs = run_experiment(small(), tmp_path / "local")
    cluster = small(executor="debug", slurm={"poll_s": 0.2, "max_in_flight": 1})
    store, runs = run_experiment(cluster, tmp_path / "debug")
    assert not fake.calls_file.exists()  # no Slurm command was run
    assert [run.status for run in runs] == ["done"] * 4
    assert sorted(run.run_id for run in runs) == sorted(run.run_id for run in local_runs)
    local, debug = _layout(local_store.path), _layout(store.path)
    assert local - {".greenprec.lock"} <= debug
    jobs = store.read_submissions().jobs
    assert [(job.block, job.state, job.settled) for job in jobs] == [
        (1, "COMPLETED", True),
        (2, "COMPLETED", True),
    ]
    for job in jobs:
        assert job.job_id is not None and f"jobs/{job.job_id}.json" in debug
        record = store.read_job(job.job_id)
        assert record.block == job.block and record.ended_at is not None
        assert {run.slurm_job_id for run in runs if run.block == job.block} == {job.job_id}
    experiment = json.loads((store.path / "experiment.json").read_text())
    assert experiment["status"] == "complete"


def test_the_looks_read_each_margin_once_parsed() -> None:
    config = small(margins={"energy_j": "+5%", "test_loss": "0.02"})
    margins = configured_margins(config)
    assert {metric: margin.kind for metric, margin in margins.items()} == {
        "energy_j": "noninferiority",
        "test_loss": "equivalence",
    }
    data = look_data(margins, [])
    assert set(data) == {"energy_j", "test_loss"}
    asked = questions(config.policies, margins, data)
    assert [(q.metric, q.kind, q.margin is not None) for q in asked] == [
        ("energy_j", "noninferiority", True),
        ("test_loss", "equivalence", True),
    ]


@pytest.mark.slow
def test_a_debug_job_that_dies_is_settled_and_its_runs_go_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submitter's settling, with a real job process ending under it: the job that died
    is FAILED, each run it left without a final record fails for that reason, and resuming
    submits those runs again (here, with the workload mended, to the end)."""
    pytest.importorskip("submitit")
    FakeSlurm(tmp_path / "fake-slurm").install(monkeypatch)
    monkeypatch.setenv("GREENPREC_TEST_DIE_POLICY", "mixed")
    config = small(
        workload="executor_workloads:dies_on_policy",
        executor="slurm",  # a Slurm experiment, handed the debug executor by the caller
        slurm={"poll_s": 0.2},
        runs=1,
    )
    store, runs = run_experiment(config, tmp_path / "out", executor=DebugExecutor())
    (job,) = store.read_submissions().jobs
    assert (job.state, job.settled) == ("FAILED", True)
    mixed = next(run for run in runs if run.policy == "mixed")
    assert (mixed.status, mixed.job_state, mixed.slurm_job_id) == ("failed", "FAILED", job.job_id)
    assert mixed.error is not None and f"Slurm job {job.job_id} ended FAILED" in mixed.error
    assert json.loads(store.experiment_file.read_text())["status"] == "incomplete"

    monkeypatch.delenv("GREENPREC_TEST_DIE_POLICY")
    store, runs = run_experiment(None, store.path, resume=True, executor=DebugExecutor())
    assert [run.status for run in runs] == ["done", "done"]
    assert [job.attempt for job in store.read_submissions().jobs] == [1, 2]

"""The cluster executor's bookkeeping without a cluster: its settings, the blocked schedule,
the time a job asks for, what Slurm's commands say, and how the submitter settles and
re-attaches to jobs.

Slurm is faked by small executables first on PATH (``tests/fake_slurm.py``), never by
patching greenprec: ``sbatch`` takes submitit's real batch script and answers ``Submitted
batch job N``, ``squeue`` answers from a scripted table. tests/test_cluster_slurm.py runs the
same executor against a real Slurm.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_slurm import FakeSlurm
from greenprec.errors import ConfigError
from greenprec.experiment import slurm
from greenprec.experiment.cluster import (
    JOB_START_MARGIN_S,
    UNKNOWN_POLLS,
    Watch,
    job_request,
    latest_jobs,
    needs_submitting,
)
from greenprec.experiment.config import (
    MAX_JOB_MINUTES,
    ExperimentConfig,
    differences,
    load_config,
    run_timeout_for,
)
from greenprec.experiment.progress import Reporter
from greenprec.experiment.runner import SOURCE, run_experiment
from greenprec.experiment.schedule import make_blocked_schedule
from greenprec.experiment.slurm import JobRequest, SlurmError, job_states
from greenprec.results import ResultsStore, RunRecord, Submission, SubmissionsRecord
from greenprec.results.models import JOB_STOPPED, MetersRecord, ScheduledRun
from greenprec.results.records import new_experiment_record

POLICIES = ["fp32", "mixed"]
WORKLOAD = "experiment_workloads:sleepy"  # no TensorFlow; no run executes here anyway
NO_ACCOUNTING = "sacct: error: Slurm accounting storage is disabled"


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    """squeue, sacct, scancel and sbatch, faked, first on PATH."""
    return FakeSlurm(tmp_path / "fake-slurm").install(monkeypatch)


def cluster_values(**values: Any) -> dict[str, Any]:
    """The settings of a small cluster experiment, a fast poll, ``values`` on top."""
    slurm_table = {"poll_s": 0.2, **values.pop("slurm", {})}
    return {
        "policies": POLICIES,
        "runs": 2,
        "workload": WORKLOAD,
        "executor": "slurm",
        "meters": ["mock"],
        "warmup_s": 0,
        "cooldown_s": 0,
        "slurm": slurm_table,
        **values,
    }


def cluster_config(**values: Any) -> ExperimentConfig:
    return load_config(cluster_values(**values))


class Recorder(Reporter):
    """A reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.finished_runs: list[RunRecord] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def run_finished(self, run: RunRecord) -> None:
        self.finished_runs.append(run)


CliResult = tuple[int, str, str]


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """The console entry point (``greenprec.cli.main``, which turns a ConfigError into one
    line and exit code 2, unlike CliRunner on the bare app): (exit code, stdout, stderr)."""
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


def one_error_line(result: CliResult, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code`` and said so in one line holding every fragment."""
    exit_code, _, err = result
    assert exit_code == code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("greenprec: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


def config_error(values: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(values)
    return str(raised.value)


def compare_args(out: Path, *extra: str, meter: str | None = "mock") -> list[str]:
    meters = ["--meter", meter] if meter else []
    return [
        "compare", *POLICIES, "--workload", WORKLOAD, "--runs", "2", "--warmup", "0",
        "--cooldown", "0", *meters, "--executor", "slurm", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def poll_fast(tmp_path: Path, **slurm_table: Any) -> Path:
    """A config file with a fast poll (a user's default is 10 s) and the given [slurm] keys."""
    path = tmp_path / "cluster.toml"
    sbatch = slurm_table.pop("sbatch", {})
    lines = ["[slurm]", "poll_s = 0.2", *(f"{k} = {json.dumps(v)}" for k, v in slurm_table.items())]
    lines += ["[slurm.sbatch]", *(f"{k} = {json.dumps(v)}" for k, v in sbatch.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 1. settings -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["Constraint", "--constraint", "mail type", "x=y", "c" * 50, ""])
def test_sbatch_keys_that_are_not_option_names_are_refused(fake: FakeSlurm, key: str) -> None:
    message = config_error(cluster_values(slurm={"sbatch": {key: "a100"}}))
    assert "is not an sbatch option name" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "key", ["output", "error", "array", "exclusive", "requeue", "no-requeue", "job-name", "signal"]
)
def test_sbatch_keys_greenprec_sets_itself_are_refused(fake: FakeSlurm, key: str) -> None:
    message = config_error(cluster_values(slurm={"sbatch": {key: "x"}}))
    assert f"{key!r} is set by greenprec itself" in message


@pytest.mark.parametrize("key", ["arr", "outp", "exclusiv", "no-requ"])
def test_abbreviations_of_options_greenprec_sets_are_refused(fake: FakeSlurm, key: str) -> None:
    message = config_error(cluster_values(slurm={"sbatch": {key: "1-3"}}))
    assert "set by greenprec itself" in message


def test_sbatch_time_is_refused_greenprec_computes_it(fake: FakeSlurm) -> None:
    message = config_error(cluster_values(slurm={"sbatch": {"time": "5"}}))
    assert "time" in message


@pytest.mark.parametrize(
    "table",
    [
        {"partition": "gpu\n#SBATCH --uid=0"},
        {"account": "lab\r#SBATCH --uid=0"},
        {"qos": "normal\0"},
        {"gres": "gpu:1\n"},
        {"sbatch": {"constraint": "a100\n#SBATCH --wrap=id"}},
    ],
)
def test_a_newline_cannot_reach_the_batch_script(fake: FakeSlurm, table: dict[str, Any]) -> None:
    message = config_error(cluster_values(slurm=table))
    assert "must be one line (it goes into the batch script)" in message
    assert "\n" not in message  # the value is shown escaped, in one line


def test_a_newline_in_a_flag_is_one_line_on_the_command_line(
    fake: FakeSlurm, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    one_error_line(
        cli(*compare_args(out, "--partition", "gpu\n#SBATCH --uid=0")), "partition", "one line"
    )
    one_error_line(
        cli(*compare_args(out, "--sbatch", "constraint=a\n#SBATCH --wrap=id")),
        "sbatch.constraint",
        "one line",
    )
    assert fake.calls("sbatch") == []


def test_a_slurm_table_with_the_local_executor_is_refused(fake: FakeSlurm) -> None:
    message = config_error(cluster_values(executor="local", slurm={"partition": "gpu"}))
    assert 'set executor = "slurm"' in message


def test_the_cluster_executor_needs_meters_named_not_auto(fake: FakeSlurm) -> None:
    message = config_error(cluster_values(meters=["auto"]))
    assert "name the meters for a cluster" in message
    assert "not on the compute nodes" in message


def test_the_cluster_executor_needs_sbatch_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_sbatch = FakeSlurm(tmp_path / "no-sbatch", commands=("squeue", "sacct", "scancel"))
    monkeypatch.setenv("PATH", str(without_sbatch.bin))  # not even the machine's own Slurm
    message = config_error(cluster_values())
    assert "no sbatch on this machine's PATH" in message


@pytest.mark.parametrize("item", ["constraint", "=a100", " =x"])
def test_a_malformed_sbatch_flag_is_one_line(
    fake: FakeSlurm, cli: Callable[..., CliResult], tmp_path: Path, item: str
) -> None:
    one_error_line(cli(*compare_args(tmp_path / "out", "--sbatch", item)), "--sbatch: expected")


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--sbatch", "output=/tmp/x"], ["'output' is set by greenprec itself"]),
        (["--sbatch", "--exclusive=user"], ["'exclusive' is set by greenprec itself"]),
        (["--sbatch", "Mail_Type=END"], ["not an sbatch option name"]),
        (["--meter", "auto"], ["meters: name the meters for a cluster"]),
        ([], ["meters: name the meters for a cluster"]),  # no --meter: auto
        (["--executor", "local", "--partition", "gpu"], ['set executor = "slurm"']),
    ],
)
def test_bad_cluster_flags_are_one_line(
    fake: FakeSlurm,
    cli: Callable[..., CliResult],
    tmp_path: Path,
    flags: list[str],
    fragments: list[str],
) -> None:
    out = tmp_path / "out"
    meter = None if "--meter" in flags or not flags else "mock"
    one_error_line(cli(*compare_args(out, *flags, meter=meter)), *fragments)
    assert fake.calls("sbatch") == []
    assert not ResultsStore(out).exists()


def test_flags_reach_the_batch_script_and_shared_means_not_exclusive(
    fake: FakeSlurm, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """A whole compare through the CLI: the fake sbatch sees submitit's real batch script; the
    jobs end TIMEOUT at once, so the runs fail with Slurm's state and compare exits 1."""
    fake.update(submit_state="TIMEOUT", submit_reason="TimeLimit")
    out = tmp_path / "out"
    config = poll_fast(tmp_path, partition="file-part", qos="file-qos")
    code, _, err = cli(
        *compare_args(out, "--config", str(config), "--partition", "flag-part", "--shared"),
        "--mem-gb", "1.5", "--sbatch", "constraint=a100", "--time-per-run", "3",
    )  # fmt: skip
    assert code == 1, err
    assert "Traceback" not in err
    stored = ResultsStore(out).read_experiment().config["slurm"]
    # The [slurm] table merged key by key: the flag's partition, the file's qos and poll.
    assert stored["partition"] == "flag-part" and stored["qos"] == "file-qos"
    assert stored["poll_s"] == 0.2 and stored["exclusive"] is False
    scripts = [call[-1] for call in fake.calls("sbatch")]
    assert len(scripts) == 2  # one job per block
    for script in scripts:
        options = [line for line in script.splitlines() if line.startswith("#SBATCH ")]
        assert "#SBATCH --partition=flag-part" in options
        assert "#SBATCH --qos=file-qos" in options
        assert "#SBATCH --constraint=a100" in options
        assert "#SBATCH --no-requeue" in options
        assert "#SBATCH --mem=1536M" in options
        assert "#SBATCH --time=11" in options  # 2 runs x 3 min + 5 min margin
        assert not any("exclusive" in line for line in options), options


def test_resume_may_change_how_jobs_are_submitted_not_what_is_measured(
    fake: FakeSlurm, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    fake.update(submit_state="COMPLETED")  # every job ends at once, its runs unfinished
    out = tmp_path / "out"
    config = poll_fast(tmp_path, partition="gpu", sbatch={"constraint": "a100"})
    assert cli(*compare_args(out, "--config", str(config)))[0] == 1
    submitted = len(fake.calls("sbatch"))
    resume = ["compare", "--resume", "--out", str(out)]
    line = one_error_line(cli(*resume, "--runs", "3", "--partition", "cpu"), "--resume continues")
    assert "runs: 3 given, the experiment has 2 (--runs)" in line
    assert "partition" not in line  # the [slurm] settings may change
    one_error_line(cli(*resume, "--sbatch", "output=/tmp/x"), "'output' is set by greenprec")
    one_error_line(cli(*resume, "--partition", "cpu\n#SBATCH --uid=0"), "one line")
    assert len(fake.calls("sbatch")) == submitted  # nothing submitted by a refused resume
    assert ResultsStore(out).read_experiment().config["slurm"]["partition"] == "gpu"

    code, _, err = cli(*resume, "--partition", "cpu")
    assert code == 1, err  # the jobs end COMPLETED again without the runs' records
    assert "[slurm] settings for the jobs submitted from now on: partition = 'cpu'" in err
    stored = ResultsStore(out).read_experiment().config["slurm"]
    assert stored["partition"] == "cpu" and stored["sbatch"] == {"constraint": "a100"}
    scripts = [call[-1] for call in fake.calls("sbatch")[submitted:]]
    assert len(scripts) == 2  # the runs the COMPLETED jobs left, submitted again
    assert all("#SBATCH --partition=cpu" in script for script in scripts)
    assert all("#SBATCH --constraint=a100" in script for script in scripts)


def test_differences_compares_only_the_slurm_keys_given(fake: FakeSlurm) -> None:
    stored = cluster_config(slurm={"partition": "gpu", "qos": "long"})
    assert differences(stored, {"slurm": {"partition": "gpu"}}) == []
    assert differences(stored, {"executor": "slurm", "slurm": {"qos": "long"}}) == []
    found = differences(stored, {"slurm": {"partition": "cpu", "max_in_flight": 2}})
    assert [(d.setting, d.given, d.stored) for d in found] == [
        ("slurm.partition", "cpu", "gpu"),
        ("slurm.max_in_flight", 2, None),
    ]


# -- 2. the blocked schedule -------------------------------------------------------------------
NAMES = ["fp32", "mixed", "bf16", "fp16", "tf32", "int8"]


@settings(max_examples=60, deadline=None)
@given(
    policies=st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True),
    runs=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_blocked_schedule_properties(policies: list[str], runs: int, seed: int) -> None:
    schedule = make_blocked_schedule(policies, runs, seed)
    assert len(schedule) == len(policies) * runs
    assert [run.order for run in schedule] == list(range(1, len(schedule) + 1))
    blocks: dict[int, list[ScheduledRun]] = {}
    for run in schedule:
        blocks.setdefault(run.block or 0, []).append(run)
        assert run.run_id == f"{run.policy}-{run.block:03d}"
        assert run.repetition == run.block
    assert sorted(blocks) == list(range(1, runs + 1))
    # Blocks are contiguous, in order, and each holds every policy exactly once.
    assert [run.block for run in schedule] == sorted(run.block or 0 for run in schedule)
    for members in blocks.values():
        assert sorted(run.policy for run in members) == sorted(policies)
    assert len({run.run_id for run in schedule}) == len(schedule)
    assert make_blocked_schedule(policies, runs, seed) == schedule


def test_blocked_schedule_shuffles_within_blocks() -> None:
    for policies in (["fp32", "mixed"], ["fp32", "mixed", "bf16"]):
        schedule = make_blocked_schedule(policies, 40, seed=42)
        orders = {
            tuple(run.policy for run in schedule if run.block == block) for block in range(1, 41)
        }
        assert len(orders) > 1, orders
    two = make_blocked_schedule(["fp32", "mixed"], 40, seed=42)
    firsts = [run.policy for run in two if run.order % 2 == 1]
    assert 5 < firsts.count("fp32") < 35  # neither policy always goes first
    assert make_blocked_schedule(["fp32", "mixed"], 40, seed=43) != two


# -- 3. the time and resources a job asks for --------------------------------------------------
def expected_minutes(config: ExperimentConfig, runs: int, per_run_s: float) -> int:
    seconds = (
        config.baseline_s
        + config.warmup_s
        + runs * per_run_s
        + (runs - 1) * config.cooldown_s
        + JOB_START_MARGIN_S
    )
    return math.ceil(seconds / 60)


@pytest.mark.parametrize("runs", [1, 2, 5])
def test_job_time_covers_baseline_warmup_runs_and_cooldowns(fake: FakeSlurm, runs: int) -> None:
    config = cluster_config(baseline_s=90, warmup_s=300, cooldown_s=120, run_timeout_s=1000)
    request = job_request(config, "job", runs)
    assert request.time_min == expected_minutes(config, runs, config.run_timeout_s or 0)
    default = cluster_config(baseline_s=0, warmup_s=61, cooldown_s=7)  # the workload's limit
    assert job_request(default, "job", runs).time_min == expected_minutes(
        default, runs, run_timeout_for(default)
    )


def test_time_per_run_wins_over_the_run_timeout(fake: FakeSlurm) -> None:
    config = cluster_config(
        warmup_s=300, cooldown_s=120, run_timeout_s=5000, slurm={"time_per_run_min": 45}
    )
    assert job_request(config, "job", 2).time_min == expected_minutes(config, 2, 45 * 60)
    # docs/cluster.md's example: 300 + 2 x 2700 + 120 + 300 s = 102 minutes.
    assert job_request(config, "job", 2).time_min == 102
    huge = cluster_config(runs=1, slurm={"time_per_run_min": MAX_JOB_MINUTES})
    assert job_request(huge, "job", 100).time_min == MAX_JOB_MINUTES


def test_job_request_parameters(fake: FakeSlurm) -> None:
    table = {
        "partition": "gpu", "account": "lab", "qos": "long", "gres": "gpu:1",
        "cpus_per_task": 16, "mem_gb": 1.5, "sbatch": {"constraint": "a100", "mail-type": "END"},
    }  # fmt: skip
    parameters = job_request(cluster_config(slurm=table), "greenprec-x-b001-a1", 2).parameters()
    assert parameters["job_name"] == "greenprec-x-b001-a1"
    assert parameters["exclusive"] is True and parameters["nodes"] == 1
    assert parameters["mem"] == "1536M"
    assert {key: parameters[key] for key in ("partition", "account", "qos", "gres")} == {
        "partition": "gpu", "account": "lab", "qos": "long", "gres": "gpu:1",
    }  # fmt: skip
    assert parameters["cpus_per_task"] == 16
    assert parameters["additional_parameters"] == {
        "constraint": "a100",
        "mail-type": "END",
        "no-requeue": True,
    }
    shared = job_request(cluster_config(slurm={"exclusive": False}), "n", 1).parameters()
    assert "exclusive" not in shared and "mem" not in shared and "partition" not in shared
    assert shared["additional_parameters"] == {"no-requeue": True}
    assert JobRequest("n", 1, mem_gb=0.0001).parameters()["mem"] == "1M"


# -- 4. what Slurm says of jobs ----------------------------------------------------------------
def test_job_states_from_squeue(fake: FakeSlurm) -> None:
    fake.job("11", "RUNNING", node="node1")
    fake.job("12", "PENDING", reason="Resources")
    fake.job("13", "CANCELLED by 0", node="node2")
    fake.job("14", "COMPLETED+", reason="(null)")
    fake.job("15_3", "TIMEOUT", reason="TimeLimit", node="node3")
    states = job_states(["11", "12", "13", "14", "15_3", "11"])
    assert {job_id: state.state for job_id, state in states.items()} == {
        "11": "RUNNING", "12": "PENDING", "13": "CANCELLED", "14": "COMPLETED", "15_3": "TIMEOUT",
    }  # fmt: skip
    assert states["11"].node == "node1" and states["11"].reason is None
    assert states["12"].reason == "Resources" and states["12"].node is None
    assert states["14"].reason is None
    assert states["15_3"].final and not states["11"].final
    assert len(fake.calls("squeue")) == 1  # one question for every job
    assert fake.calls("sacct") == []


def test_a_job_squeue_forgot_is_asked_of_sacct(fake: FakeSlurm) -> None:
    fake.job("11", "RUNNING")
    fake.update(accounting={"21": "NODE_FAIL|node7", "22": "CANCELLED by 1000|"})
    states = job_states(["11", "21", "22"])
    assert (states["21"].state, states["21"].node) == ("NODE_FAIL", "node7")
    assert (states["22"].state, states["22"].node) == ("CANCELLED", None)
    assert sorted(call[call.index("-j") + 1] for call in fake.calls("sacct")) == ["21", "22"]


@pytest.mark.parametrize("sacct", [{"fail": NO_ACCOUNTING}, {}])
def test_a_job_nobody_knows_is_unknown_with_the_reason(
    fake: FakeSlurm, sacct: dict[str, Any]
) -> None:
    fake.update(sacct=sacct)
    state = job_states(["31"])["31"]
    assert state.state == "UNKNOWN" and state.final
    assert state.reason is not None and "no longer knows the job" in state.reason


def test_a_failing_squeue_raises_with_its_first_line(fake: FakeSlurm) -> None:
    fake.update(
        squeue={"fail": "slurm_load_jobs error: Unable to contact slurm controller\nmore", "rc": 1}
    )
    with pytest.raises(SlurmError, match="squeue failed: slurm_load_jobs error: Unable to contact"):
        job_states(["11"])
    with pytest.raises(SlurmError, match="squeue failed"):
        slurm.find_by_name("greenprec-x-b001-a1")


def test_slurm_missing_from_path_is_a_slurm_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="squeue is not on this machine's PATH"):
        job_states(["11"])


def test_a_hanging_squeue_is_bounded(fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
    # _COMMAND_TIMEOUT_S is _run's default argument, bound when slurm.py was imported:
    # patching the constant would not reach job_states, so the default itself is patched.
    monkeypatch.setattr(slurm._run, "__defaults__", (1.0,))
    fake.update(squeue={"sleep_s": 30})
    started = time.monotonic()
    with pytest.raises(SlurmError, match="squeue did not answer within 1 s"):
        job_states(["11"])
    assert time.monotonic() - started < 15


def test_invalid_job_ids_never_reach_a_command(fake: FakeSlurm) -> None:
    fake.job("12", "RUNNING")
    hostile = ["1;rm -rf /", "$(id)", "12 13", "-1", "", "12\n", "1234567890123"]
    states = job_states([*hostile, "12"])
    assert list(states) == ["12"]
    assert job_states(hostile) == {}
    slurm.cancel(hostile)
    slurm.cancel(["12", "1;rm -rf /"])
    calls = fake.calls()
    assert [call[0] for call in calls] == ["squeue", "scancel"]
    assert calls[0][calls[0].index("-j") + 1] == "12"
    assert calls[1] == ["scancel", "12"]
    assert fake.state["jobs"]["12"]["state"] == "CANCELLED"


def test_cancel_of_a_job_already_gone_is_no_error(fake: FakeSlurm) -> None:
    fake.update(scancel={"fail": "scancel: error: Kill job error on job id 99: Invalid job id"})
    slurm.cancel(["99"])
    fake.update(scancel={"fail": "scancel: error: Unable to contact slurm controller"})
    with pytest.raises(SlurmError, match="scancel failed: scancel: error: Unable to contact"):
        slurm.cancel(["99"])


def test_find_by_name_takes_the_newest_job_of_that_name(fake: FakeSlurm) -> None:
    fake.job("98", "CANCELLED", name="greenprec-x-b001-a1")
    fake.job("120", "PENDING", reason="Priority", name="greenprec-x-b001-a1")
    fake.job("121", "RUNNING", name="greenprec-x-b002-a1")
    found = slurm.find_by_name("greenprec-x-b001-a1")
    assert found is not None
    assert (found.job_id, found.state, found.reason) == ("120", "PENDING", "Priority")
    assert slurm.find_by_name("greenprec-x-b003-a1") is None


# -- 5. the submitter: settling and re-attaching -----------------------------------------------
def make_folder(path: Path, config: ExperimentConfig | None = None) -> ResultsStore:
    """A cluster experiment's folder, made as compare makes it, before anything is submitted."""
    config = config or cluster_config()
    schedule = make_blocked_schedule(config.policies, config.runs, config.seed)
    experiment = new_experiment_record(
        source=SOURCE,
        config=config.model_dump(mode="json"),
        schedule=schedule,
        meters=MetersRecord(requested=["mock"], used=["mock"]),
    )
    store = ResultsStore(path)
    store.create(experiment, [RunRecord.planned(run) for run in schedule])
    store.ensure_dirs()
    return store


def block_runs(store: ResultsStore, block: int) -> list[str]:
    return [run.run_id for run in store.read_experiment().schedule if run.block == block]


def set_run(store: ResultsStore, run_id: str, **update: Any) -> RunRecord:
    run = store.read_run(run_id).model_copy(update=update)
    store.write_run(run)
    return run


def done(store: ResultsStore, run_id: str, job_id: str) -> RunRecord:
    return set_run(
        store, run_id, status="done", energy_j=12.5, duration_s=1.0, host="node1",
        slurm_job_id=job_id, started_at="2026-11-29T12:00:00+00:00",
        ended_at="2026-11-29T12:00:01+00:00",
    )  # fmt: skip


def ledger(store: ResultsStore, *jobs: Submission) -> None:
    store.write_submissions(SubmissionsRecord(jobs=list(jobs)))


def watch(store: ResultsStore, reporter: Reporter | None = None) -> Watch:
    config = ExperimentConfig.model_validate(store.read_experiment().config)
    runs = {run.run_id: run for run in store.load().runs}
    return Watch(store, config, runs, store.read_submissions(), reporter or Recorder(), slurm)


@pytest.fixture
def timed_out(tmp_path: Path, fake: FakeSlurm) -> ResultsStore:
    """Block 1's job 77 ran its first run, was running its second, and Slurm ended it
    (TIMEOUT) while the submitter was away."""
    store = make_folder(tmp_path / "out")
    first, second = block_runs(store, 1)
    done(store, first, "77")
    set_run(store, second, status="running", host="node1", slurm_job_id="77")
    ledger(store, Submission(name="greenprec-x-b001-a1", block=1, run_ids=[first, second],
                             job_id="77", state="RUNNING"))  # fmt: skip
    fake.job("77", "TIMEOUT", reason="TimeLimit", node="node1")
    return store


def test_reattach_settles_a_job_that_ended_meanwhile(
    timed_out: ResultsStore, fake: FakeSlurm
) -> None:
    first, second = block_runs(timed_out, 1)
    before = timed_out.run_file(first).read_bytes()
    reporter = Recorder()
    watcher = watch(timed_out, reporter)
    watcher.reattach()
    failed = timed_out.read_run(second)
    assert failed.status == "failed" and failed.job_state == "TIMEOUT"
    assert failed.slurm_job_id == "77" and failed.executor_pid is None
    assert failed.error is not None
    assert "Slurm job 77 ended TIMEOUT (TimeLimit)" in failed.error
    assert failed.ended_by_scheduler and needs_submitting(failed, retry_failed=False)
    assert timed_out.run_file(first).read_bytes() == before  # a done run is untouched
    job = timed_out.read_submissions().jobs[0]
    assert job.settled and (job.state, job.reason, job.node) == ("TIMEOUT", "TimeLimit", "node1")
    assert watcher.held() == set()
    assert [run.run_id for run in reporter.finished_runs] == [second]
    assert second in timed_out.index_file.read_text()


def test_settling_rewrites_a_run_its_job_stopped_and_leaves_failed_runs_alone(
    tmp_path: Path, fake: FakeSlurm
) -> None:
    store = make_folder(tmp_path / "out", cluster_config(policies=["fp32", "mixed", "bf16"]))
    stopped, own_failure, running = block_runs(store, 1)
    set_run(store, stopped, status="failed", job_state=JOB_STOPPED, slurm_job_id="77",
            error="stopped: Slurm ended the job")  # fmt: skip
    set_run(store, own_failure, status="failed", error="RuntimeError: out of memory")
    set_run(store, running, status="running", slurm_job_id="77")
    ledger(store, Submission(name="n", block=1, run_ids=[stopped, own_failure, running],
                             job_id="77", state="RUNNING"))  # fmt: skip
    fake.job("77", "CANCELLED by 1000")
    reporter = Recorder()
    watch(store, reporter).reattach()
    for run_id in (stopped, running):
        run = store.read_run(run_id)
        assert (run.status, run.job_state) == ("failed", "CANCELLED"), run_id
        assert run.error is not None and "Slurm job 77 ended CANCELLED" in run.error
    mine = store.read_run(own_failure)
    assert mine.job_state is None and mine.error == "RuntimeError: out of memory"
    assert not needs_submitting(mine, retry_failed=False)
    # The stopped run was reported when its job wrote it: only the running one is new.
    assert [run.run_id for run in reporter.finished_runs] == [running]


def test_a_job_still_running_holds_its_runs(timed_out: ResultsStore, fake: FakeSlurm) -> None:
    fake.job("77", "RUNNING", node="node1")
    watcher = watch(timed_out, Recorder())
    watcher.reattach()
    second = block_runs(timed_out, 1)[1]
    assert timed_out.read_run(second).status == "running"
    assert watcher.held() == set(block_runs(timed_out, 1))
    job = timed_out.read_submissions().jobs[0]
    assert not job.settled and job.state == "RUNNING"


def test_a_job_submitted_without_a_recorded_id_is_adopted_by_name(
    tmp_path: Path, fake: FakeSlurm
) -> None:
    store = make_folder(tmp_path / "out")
    runs = block_runs(store, 1)
    ledger(store, Submission(name="greenprec-x-b001-a1", block=1, run_ids=runs))
    fake.job("88", "RUNNING", node="node2", name="greenprec-x-b001-a1")
    # submitit wrote the job's files before the submitter was killed (tests/
    # test_resume_advice.py: a job without them is cancelled and its block submitted again).
    (store.slurm_dir / "88").mkdir(parents=True)
    (store.slurm_dir / "88" / "88_submitted.pkl").write_bytes(b"submitit's pickle")
    watcher = watch(store)
    watcher.reattach()
    job = store.read_submissions().jobs[0]
    assert (job.job_id, job.state, job.settled, job.node) == ("88", "RUNNING", False, "node2")
    assert watcher.held() == set(runs)
    names = [call for call in fake.calls("squeue") if "--name" in call]
    assert [call[call.index("--name") + 1] for call in names] == ["greenprec-x-b001-a1"]


def test_a_job_slurm_never_got_is_not_submitted(tmp_path: Path, fake: FakeSlurm) -> None:
    store = make_folder(tmp_path / "out")
    runs = block_runs(store, 1)
    ledger(store, Submission(name="greenprec-x-b001-a1", block=1, run_ids=runs))
    watcher = watch(store)
    watcher.reattach()
    job = store.read_submissions().jobs[0]
    assert (job.job_id, job.state, job.settled) == (None, "NOT_SUBMITTED", True)
    assert job.reason is not None and "submitted again" in job.reason
    assert watcher.held() == set()
    assert all(needs_submitting(store.read_run(run_id), False) for run_id in runs)
    assert not any("-j" in call for call in fake.calls("squeue"))  # no id to ask about


def test_a_job_is_settled_as_unknown_only_after_polls_in_a_row(
    timed_out: ResultsStore, fake: FakeSlurm
) -> None:
    fake.forget("77")
    fake.update(sacct={"fail": NO_ACCOUNTING})
    second = block_runs(timed_out, 1)[1]
    watcher = watch(timed_out)
    for _ in range(UNKNOWN_POLLS - 1):
        watcher.refresh()
        assert not timed_out.read_submissions().jobs[0].settled
        assert timed_out.read_run(second).status == "running"
    watcher.refresh()
    job = timed_out.read_submissions().jobs[0]
    assert job.settled and job.state == "UNKNOWN"
    assert job.reason is not None and "no longer knows the job" in job.reason
    failed = timed_out.read_run(second)
    assert (failed.status, failed.job_state) == ("failed", "UNKNOWN")


def test_unknown_polls_must_be_in_a_row(timed_out: ResultsStore, fake: FakeSlurm) -> None:
    fake.forget("77")
    fake.update(sacct={"fail": NO_ACCOUNTING})
    watcher = watch(timed_out)
    watcher.refresh()  # a controller restarting: unknown once
    fake.job("77", "RUNNING", node="node1")
    watcher.refresh()  # known again
    fake.forget("77")
    watcher.refresh()  # unknown once more: one poll, not UNKNOWN_POLLS in a row
    assert not timed_out.read_submissions().jobs[0].settled


def test_a_compare_submits_one_job_per_block_and_records_slurm_state(
    tmp_path: Path, fake: FakeSlurm
) -> None:
    """run_experiment end to end: submitit writes its files, the fake sbatch accepts them,
    the fake squeue ends each job TIMEOUT; max_in_flight 1 submits a block at a time."""
    fake.update(submit_state="TIMEOUT", submit_reason="TimeLimit", submit_node="node9")
    config = cluster_config(slurm={"max_in_flight": 1})
    store, runs = run_experiment(config, tmp_path / "out", reporter=Recorder())
    assert [call[0] for call in fake.calls()] == ["sbatch", "squeue", "sbatch", "squeue"]
    jobs = store.read_submissions().jobs
    assert [(job.block, job.attempt, job.job_id, job.state, job.settled) for job in jobs] == [
        (1, 1, "1000", "TIMEOUT", True),
        (2, 1, "1001", "TIMEOUT", True),
    ]
    assert [job.run_ids for job in jobs] == [block_runs(store, 1), block_runs(store, 2)]
    names = [job.name for job in jobs]
    assert len(set(names)) == 2 and all(name.startswith("greenprec-") for name in names)
    for run in runs:
        assert (run.status, run.job_state, run.slurm_job_id) == (
            "failed", "TIMEOUT", "1000" if run.block == 1 else "1001",
        )  # fmt: skip
    assert store.read_experiment().status == "incomplete"
    assert (store.slurm_dir / "1000").is_dir()


def test_resume_reattaches_and_submits_only_what_is_left(
    timed_out: ResultsStore, fake: FakeSlurm
) -> None:
    """job 77 (block 1) ended TIMEOUT meanwhile: its unfinished run is submitted again, with
    block 2; the run it finished is not."""
    fake.update(submit_state="COMPLETED")
    first, second = block_runs(timed_out, 1)
    before = timed_out.run_file(first).read_bytes()
    reporter = Recorder()
    run_experiment(None, timed_out.path, resume=True, reporter=reporter)
    jobs = timed_out.read_submissions().jobs
    assert [(job.block, job.attempt, job.job_id, job.state) for job in jobs] == [
        (1, 1, "77", "TIMEOUT"),
        (1, 2, "1000", "COMPLETED"),
        (2, 1, "1001", "COMPLETED"),
    ]
    assert jobs[1].run_ids == [second] and jobs[2].run_ids == block_runs(timed_out, 2)
    assert timed_out.run_file(first).read_bytes() == before
    assert any("submitted block 1 (" + second + ")" in text for text in reporter.messages)


def test_resume_never_submits_runs_a_live_job_holds(
    timed_out: ResultsStore, fake: FakeSlurm
) -> None:
    fake.job("77", "RUNNING", then=("RUNNING", "COMPLETED"))
    fake.update(submit_state="COMPLETED")
    reporter = Recorder()
    run_experiment(None, timed_out.path, resume=True, reporter=reporter)
    jobs = timed_out.read_submissions().jobs
    assert [(job.block, job.job_id) for job in jobs] == [(1, "77"), (2, "1000")]
    assert any("re-attached to 1 Slurm job" in text for text in reporter.messages)
    # job 77 ended COMPLETED without the run's final record: that run failed for it.
    second = timed_out.read_run(block_runs(timed_out, 1)[1])
    assert (second.status, second.job_state) == ("failed", "COMPLETED")


def test_sbatch_refusing_a_job_stops_with_its_words(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    fake.update(
        sbatch={"fail": "sbatch: error: Batch job submission failed: Invalid account specified"}
    )
    out = tmp_path / "out"
    code, _, err = cli(*compare_args(out, "--config", str(poll_fast(tmp_path))))
    assert code == 2 and "Traceback" not in err, err
    # submitit echoes sbatch's stderr first; greenprec's own line is the last, and the only one.
    errors = [line for line in err.splitlines() if line.startswith("greenprec: error: ")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    assert (
        "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid account"
        in (errors[0])
    )
    assert "resuming submits its runs" in errors[0]
    assert ResultsStore(out).read_submissions().jobs == []  # no job recorded that is not there


# -- 6. greenprec runs -------------------------------------------------------------------------
@pytest.fixture
def watched(tmp_path: Path, fake: FakeSlurm) -> ResultsStore:
    """Block 1's job 77 last recorded PENDING; block 2's job 78 settled, COMPLETED."""
    store = make_folder(tmp_path / "out")
    first, second = block_runs(store, 1)
    done(store, first, "77")
    set_run(store, second, status="running", host="node1", slurm_job_id="77")
    third, fourth = block_runs(store, 2)
    done(store, third, "78")
    done(store, fourth, "78")
    ledger(
        store,
        Submission(name="a", block=1, run_ids=[first, second], job_id="77", state="PENDING"),
        Submission(name="b", block=2, run_ids=[third, fourth], job_id="78", state="COMPLETED",
                   settled=True),
    )  # fmt: skip
    fake.job("77", "RUNNING", node="node1")
    return store


def test_runs_shows_host_and_the_live_job_state(
    watched: ResultsStore, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    code, out, err = cli("runs", watched.path, "--json")
    assert code == 0, err
    rows = {row["run_id"]: row for row in json.loads(out)}
    first, second = block_runs(watched, 1)
    third, _ = block_runs(watched, 2)
    assert rows[first]["job"] == rows[second]["job"] == "RUNNING"  # asked of squeue now
    assert rows[third]["job"] == "COMPLETED"  # final: as recorded, Slurm not asked
    assert rows[first]["host"] == "node1" and rows[first]["slurm_job_id"] == "77"
    asked = [call[call.index("-j") + 1] for call in fake.calls("squeue")]
    assert asked == ["77"]
    code, table, err = cli("runs", watched.path)
    assert code == 0, err
    header = next(line for line in table.splitlines() if "run_id" in line)
    assert "host" in header and "job" in header
    assert "77 RUNNING" in table and "78 COMPLETED" in table and "node1" in table


def test_runs_falls_back_to_the_recorded_state_when_squeue_fails(
    watched: ResultsStore, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    fake.update(squeue={"fail": "slurm_load_jobs error: Unable to contact slurm controller"})
    code, out, err = cli("runs", watched.path, "--json")
    assert code == 0, err
    rows = {row["run_id"]: row for row in json.loads(out)}
    assert rows[block_runs(watched, 1)[0]]["job"] == "PENDING"
    warning = [line for line in err.splitlines() if "job states as last recorded" in line]
    assert len(warning) == 1 and "Unable to contact slurm controller" in warning[0]
    assert warning[0].startswith("greenprec: warning: ")


def test_runs_before_any_job_has_no_job_and_asks_nothing(
    tmp_path: Path, fake: FakeSlurm, cli: Callable[..., CliResult]
) -> None:
    store = make_folder(tmp_path / "out")
    assert latest_jobs(store) == {}
    code, out, err = cli("runs", store.path, "--json")
    assert code == 0 and err == "", err
    assert all("job" not in row for row in json.loads(out))
    assert fake.calls() == []


@pytest.mark.parametrize(("key", "table_key"), [("partition", "partition"), ("mem", "mem_gb")])
def test_sbatch_options_with_a_slurm_key_are_refused(
    fake: FakeSlurm, key: str, table_key: str
) -> None:
    message = config_error(cluster_values(slurm={"sbatch": {key: "x"}}))
    assert f"set {table_key} there" in message


def test_sbatch_options_from_the_file_and_the_flags_are_merged_option_by_option(
    tmp_path: Path,
) -> None:
    from greenprec.experiment.config import given_table

    file = tmp_path / "cluster.toml"
    file.write_text('[slurm.sbatch]\nconstraint = "a100"\n')
    table = given_table("slurm", {"slurm": {"sbatch": {"mail-type": "END"}}}, file)
    assert table["sbatch"] == {"constraint": "a100", "mail-type": "END"}


def test_submitting_keeps_the_handlers_of_a_process_that_imported_tensorflow() -> None:
    """submitit's import runs logging.config.dictConfig, which closes every handler already
    there; absl's (TensorFlow's) closes the stream it writes to: the process's stderr. A fresh
    Python with such a handler imports submitit as greenprec does, then writes to stderr."""
    pytest.importorskip("submitit")
    script = textwrap.dedent(
        """
        import logging, os, sys

        class ClosesItsStream(logging.StreamHandler):  # absl's PythonHandler does this
            def close(self):
                self.stream.close()
                super().close()

        logging.getLogger().addHandler(ClosesItsStream(sys.stderr))
        from greenprec.experiment.slurm import _import_submitit

        _import_submitit()
        print("stderr still open", file=sys.stderr)
        print(os.environ.get("SUBMITIT_LOG_LEVEL"))  # restored for the jobs
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "SUBMITIT_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stderr still open" in done.stderr
    assert done.stdout.strip() == "None"

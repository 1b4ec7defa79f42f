"""``compare`` runs that span several processes or nodes (``--nproc-per-node``, ``--nodes``).

Each run is launched through torchrun on CPU (gloo), with the mock meter: one run record per
run, written by global rank 0 alone, whose ``energy_j`` is the job's total and ``hosts`` each
host's share (each joule once). Several nodes are simulated on this machine by the debug
executor (a torchrun launcher per node, each with a ``GREENPREC_HOST_ID`` of its own); the Slurm
launch is checked as a command built from a node list (docs/cluster.md says why).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.experiment.execute import (
    RunSpec,
    launches,
    simulated_node_launches,
    slurm_launch_argv,
    torchrun_argv,
)
from greenprec.experiment.slurm import JobRequest, job_hostnames
from greenprec.results import RunRecord

TESTS_DIR = Path(__file__).resolve().parent
QUICK = ["--meter", "mock", "--runs", "1", "--warmup", "0", "--cooldown", "0", "-q"]
CHILD = ["FOLDER", "SPEC"]


def _compare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "greenprec", "compare", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip


def _runs(folder: Path) -> dict[str, dict[str, object]]:
    return {
        path.stem: json.loads(path.read_text()) for path in sorted((folder / "runs").glob("*.json"))
    }


def _hosts(record: dict[str, object]) -> list[dict[str, object]]:
    hosts = record["hosts"]
    assert isinstance(hosts, list)
    return hosts


@pytest.mark.slow
def test_two_processes_per_run_record_one_host_and_the_total_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _compare(
        "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", "--nproc-per-node", "2",
        *QUICK, "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    runs = _runs(out)
    # One file per run: rank 1 wrote none of its own.
    assert sorted(runs) == ["bf16-001", "fp32-001"]
    assert sorted(path.name for path in (out / "samples").iterdir()) == [
        "bf16-001.csv",
        "fp32-001.csv",
    ]
    for record in runs.values():
        assert record["status"] == "done", record.get("error")
        hosts = _hosts(record)
        assert len(hosts) == 1  # both ranks on this machine: its energy once, not twice
        energy_j = record["energy_j"]
        assert isinstance(energy_j, float) and energy_j > 0
        assert energy_j == pytest.approx(sum(float(h["energy_j"]) for h in hosts), rel=1e-12)
        assert hosts[0]["domains"] == record["domains"]
        assert hosts[0]["ranks"] == [0, 1]  # rank 0 measured, rank 1 opened no meter
    # Every rank's output went to the run's log (torchrun's banner among it).
    assert "OMP_NUM_THREADS" in (out / "logs" / "fp32-001.log").read_text()


@pytest.mark.slow
def test_simulated_nodes_give_two_hosts_and_their_sum(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _compare(
        "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", "--nodes", "2",
        "--executor", "debug", *QUICK, "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    runs = _runs(out)
    assert sorted(runs) == ["bf16-001", "fp32-001"]
    for record in runs.values():
        assert record["status"] == "done", record.get("error")
        hosts = _hosts(record)
        names = sorted(str(h["hostname"]) for h in hosts)
        assert [name.rsplit("/", 1)[1] for name in names] == ["node0", "node1"]
        energies = [float(h["energy_j"]) for h in hosts]
        assert all(energy_j > 0 for energy_j in energies)
        assert record["energy_j"] == pytest.approx(sum(energies), rel=1e-12)
        assert sorted(rank for h in hosts for rank in h["ranks"]) == [0, 1]  # each rank once


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _compare(
        "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", "--nproc-per-node", "2",
        "--param", "fail_rank=1", "--fail-fast", *QUICK, "--out", out,
    )  # fmt: skip
    assert done.returncode != 0
    records = list(_runs(out).values())
    failed = [record for record in records if record["status"] == "failed"]
    assert len(failed) == 1  # --fail-fast: the experiment stops at the first
    assert all(record["status"] == "pending" for record in records if record not in failed)
    for record in failed:
        error = str(record["error"])
        assert "\n" not in error
        assert error.startswith("rank 1: RuntimeError: rank 1 fails on purpose"), error
        assert "torchrun exited with code 1" in error


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--nproc-per-node", "2", "--isolation", "inline"], 'isolation = "process"'),
        (["--nodes", "2"], 'executor = "slurm"'),
        (["--nodes", "2", "--executor", "local"], 'executor = "slurm"'),
        (["--nodes", "2", "--executor", "debug", "--isolation", "inline"], "not inline"),
        (["--nproc-per-node", "0"], "greater than or equal to 1"),
        (["--nodes", "65", "--executor", "debug"], "less than or equal to 64"),
    ],
)
def test_refusals_are_one_config_error(
    flags: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The console entry (greenprec.cli.main) turns a ConfigError into one line and exit 2:
    # see test_a_refusal_exits_2 for the real command.
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    args = ["compare", "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", *flags]
    result = CliRunner().invoke(app, [*args, "--meter", "mock", "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert "\n" not in message and fragment in message, message
    assert message.endswith(("(--nproc-per-node)", "(--nodes)")), message
    assert not (tmp_path / "o" / "runs").exists()


def test_a_workload_that_is_not_pytorch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    args = ["compare", "fp32", "bf16", "--workload", "executor_workloads:dies_on_policy"]
    result = CliRunner().invoke(
        app, [*args, "--nproc-per-node", "2", "--meter", "mock", "--out", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert "\n" not in message and "is not a PyTorch workload" in message
    assert message.endswith("(--nproc-per-node)")


@pytest.mark.slow
def test_a_refusal_exits_2(tmp_path: Path) -> None:
    done = _compare(
        "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", "--nodes", "2", *QUICK,
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("greenprec: error: nodes:"), done.stderr


# -- the launch commands, built without launching ---------------------------------------------


def _spec(**values: object) -> RunSpec:
    run = RunRecord(run_id="fp32-001", order=1, policy="fp32", repetition=1)
    return RunSpec.model_validate(
        {"run": run, "workload": "w", "meters": ["mock"], "interval_s": 0.2, **values}
    )


def test_one_process_runs_the_child_as_before() -> None:
    (launch,) = launches(_spec(), CHILD)
    assert launch.argv == [sys.executable, "-m", "greenprec.experiment.child", *CHILD]
    assert launch.env == {"GREENPREC_RUNNER_PID": str(os.getpid())}


def test_several_processes_go_through_a_standalone_torchrun() -> None:
    (launch,) = launches(_spec(nproc_per_node=4), CHILD)
    assert launch.argv == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
        "--max-restarts", "0", "-m", "greenprec.experiment.child", *CHILD,
    ]  # fmt: skip
    assert launch.env == {}  # the ranks' parent is torchrun, not the runner


def test_a_multi_node_run_is_one_srun_step_meeting_at_the_first_node() -> None:
    argv = slurm_launch_argv(
        ["gpu01", "gpu02", "gpu03"], CHILD, nodes=2, nproc_per_node=4, port=29511,
        run_id="bf16-003",
    )  # fmt: skip
    assert argv == [
        "srun", "--nodes", "2", "--ntasks", "2", "--ntasks-per-node", "1",
        "--kill-on-bad-exit=1",
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu01:29511", "--rdzv-id", "bf16-003",
        "--nproc-per-node", "4", "--max-restarts", "0",
        "-m", "greenprec.experiment.child", *CHILD,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="spans 3 nodes but its Slurm job has 2"):
        slurm_launch_argv(["a", "b"], CHILD, nodes=3, nproc_per_node=1, port=1, run_id="r")


def test_simulated_nodes_are_launchers_with_hosts_of_their_own() -> None:
    first, second = simulated_node_launches(
        CHILD, nodes=2, nproc_per_node=1, port=29600, run_id="r-1", host="box"
    )
    assert first.env == {"GREENPREC_HOST_ID": "box/node0"}
    assert second.env == {"GREENPREC_HOST_ID": "box/node1"}
    for index, launch in enumerate((first, second)):
        assert launch.argv == torchrun_argv(
            CHILD,
            nproc_per_node=1,
            nnodes=2,
            rdzv_endpoint="127.0.0.1:29600",
            rdzv_id="r-1",
            rdzv_conf=f"is_host={int(index == 0)}",
        )
    assert "--rdzv-conf" in first.argv


def test_the_node_list_comes_from_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scontrol = tmp_path / "scontrol"
    # A stand-in that expands gpu[01-02] as Slurm's would.
    scontrol.write_text('#!/bin/sh\n[ "$3" = "gpu[01-02]" ] && printf "gpu01\\ngpu02\\n"\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-02]")
    assert job_hostnames() == ["gpu01", "gpu02"]


def test_a_multi_node_job_asks_for_its_nodes_and_runs_its_loop_once() -> None:
    one = JobRequest("n", 10).parameters()
    assert one["nodes"] == 1 and "use_srun" not in one  # one node: as before
    two = JobRequest("n", 10, nodes=2).parameters()
    assert two["nodes"] == 2 and two["ntasks_per_node"] == 1
    assert two["use_srun"] is False


# -- a real two-node Slurm cluster, when one is given ---------------------------------------

TWO_NODES = "GREENPREC_TEST_SLURM_TWO_NODES"
"""The slurm.conf of a two-node cluster (two slurmd on one machine: docs/cluster.md starts
one beside .ci/slurm-up.sh's); the test runs only when it is set."""

_NODE_AS_HOST = """\
# The two nodes share one machine and host name: group each rank by its Slurm node instead.
import os
if os.environ.get("SLURMD_NODENAME"):
    os.environ["GREENPREC_HOST_ID"] = "slurm-" + os.environ["SLURMD_NODENAME"]
"""


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.skipif(not os.environ.get(TWO_NODES), reason=f"{TWO_NODES} names no cluster")
def test_a_run_across_two_real_slurm_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NODE_AS_HOST)
    monkeypatch.setenv("SLURM_CONF", os.environ[TWO_NODES])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(TESTS_DIR), *sys.path]))
    out = tmp_path / "out"
    args = ["compare", "fp32", "bf16", "--workload", "ddp_workloads:tiny_ddp", "--nodes", "2"]
    result = CliRunner().invoke(
        app, [*args, "--executor", "slurm", *QUICK, "--shared", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for record in _runs(out).values():
        assert record["status"] == "done", record.get("error")
        hosts = _hosts(record)
        assert len(hosts) == 2
        assert all(str(h["hostname"]).startswith("slurm-") for h in hosts)
        assert record["energy_j"] == pytest.approx(sum(float(h["energy_j"]) for h in hosts))
        assert record["slurm_job_id"]

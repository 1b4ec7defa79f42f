"""A run's processes and files (issue 24): a log is never written through a link or into a FIFO,
a zombie is dead, whatever a workload starts ends with its run, a huge error is cut, a full
disk is named, and a non-finite metric is said to be one.

The workloads are written into the test's own folder (hostile ones, as a user or an attacker
would write them) and run in real child processes, as ``greenprec compare`` runs them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from greenprec.experiment.config import load_config
from greenprec.experiment.progress import Reporter
from greenprec.experiment.runner import run_experiment
from greenprec.results import ResultsStore, RunRecord

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, FIFOs and /dev/full"
)

_WORKLOADS = '''
import errno, os, subprocess, time
from pathlib import Path
from greenprec.workloads import workload

OK = {"test_accuracy": 0.5, "test_loss": 1.0}


@workload(keras=False)
def quick(ctx):
    print("the run's own output", flush=True)
    with ctx.measured():
        time.sleep(0.02)
    return OK


@workload(keras=False)
def spawns(ctx):
    """Starts two sleeps it never ends: one in a session of its own, one in the run's."""
    away = subprocess.Popen(["sleep", "300"], start_new_session=True)
    near = subprocess.Popen(["sleep", "300"])
    Path(ctx.params["pids"]).write_text(f"{away.pid} {near.pid}")
    with ctx.measured():
        time.sleep(float(ctx.params.get("sleep_s", 0.02)))
    return OK


@workload(keras=False)
def loud(ctx):
    with ctx.measured():
        time.sleep(0.02)
    raise RuntimeError(ctx.params.get("char", "x") * 200_000)


@workload(keras=False)
def fills_the_disk(ctx):
    """The disk fills while the run trains: every later write fails as a full disk's does."""
    with ctx.measured():
        time.sleep(0.02)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, 1)
    os.dup2(full, 2)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = no_space
    return OK


@workload(keras=False)
def diverges(ctx):
    with ctx.measured():
        time.sleep(0.02)
        ctx.epoch_end(1, {"test_loss": float("inf"), "test_accuracy": None})
    return {"test_accuracy": 0.5, "test_loss": float("inf"), "perplexity": float("nan")}
'''


@pytest.fixture(autouse=True)
def _workloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run processes import ``hostile_workloads`` from the test's folder."""
    folder = tmp_path / "workloads"
    folder.mkdir()
    (folder / "hostile_workloads.py").write_text(textwrap.dedent(_WORKLOADS))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), path])))
    monkeypatch.syspath_prepend(str(folder))


def _config(workload: str, **values: object) -> object:
    return load_config(
        {
            "policies": ["fp32"],
            "runs": 1,
            "workload": f"hostile_workloads:{workload}",
            "meters": ["mock"],
            "warmup_s": 0,
            "cooldown_s": 0,
            **values,
        }
    )


def _run(workload: str, out: Path, **values: object) -> list[RunRecord]:
    config = _config(workload, **values)
    _, runs = run_experiment(config, out)  # type: ignore[arg-type]
    return runs


_RESUME = (
    "import sys; from greenprec.experiment.runner import run_experiment; "
    "run_experiment(None, sys.argv[1], resume=True)"
)


def _resume(out: Path) -> subprocess.CompletedProcess[str]:
    """``--resume`` in a process of its own: a resume that blocks fails the test, not hangs it."""
    return subprocess.run(
        [sys.executable, "-c", _RESUME, str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _pending_again(out: Path) -> None:
    store = ResultsStore(out)
    store.write_run(store.read_run("fp32-001").cleared())


# -- logs --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_log_that_is_a_link_out_of_the_folder_is_replaced_and_its_target_kept(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    _pending_again(out)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("someone's notes\n")
    log = out / "logs" / "fp32-001.log"
    log.unlink()
    log.symlink_to(Path("..") / ".." / "outside" / "victim.txt")
    result = _resume(out)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "someone's notes\n"
    assert not log.is_symlink() and "the run's own output" in log.read_text()


@pytest.mark.slow
def test_a_log_linked_to_dev_full_or_hard_linked_out_keeps_the_output_and_the_other_file(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    _pending_again(out)
    log = out / "logs" / "fp32-001.log"
    log.unlink()
    log.symlink_to("/dev/full")
    assert _resume(out).returncode == 0
    assert "the run's own output" in log.read_text()  # not lost into /dev/full

    _pending_again(out)
    shared = tmp_path / "shared.txt"
    shared.write_text("kept\n")
    log.unlink()
    os.link(shared, log)
    assert _resume(out).returncode == 0
    assert shared.read_text() == "kept\n"
    assert "the run's own output" in log.read_text()


@pytest.mark.slow
def test_a_fifo_as_a_log_neither_blocks_the_resume_nor_stays(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    _pending_again(out)
    log = out / "logs" / "fp32-001.log"
    log.unlink()
    os.mkfifo(log)
    started = time.monotonic()
    result = _resume(out)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert log.is_file() and "the run's own output" in log.read_text()
    assert ResultsStore(out).read_run("fp32-001").status == "done"


@pytest.mark.slow
def test_a_folder_in_place_of_a_log_is_refused_by_name_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    _pending_again(out)
    log = out / "logs" / "fp32-001.log"
    log.unlink()
    log.mkdir()
    (log / "mine.txt").write_text("mine")
    result = _resume(out)
    assert (log / "mine.txt").read_text() == "mine"
    run = ResultsStore(out).read_run("fp32-001")
    assert run.status == "failed" and run.error is not None
    assert "fp32-001.log" in run.error and "folder" in run.error, run.error
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_logs_folder_that_is_a_link_out_is_not_written_through(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    _pending_again(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for old in (out / "logs").iterdir():
        old.unlink()
    (out / "logs").rmdir()
    (out / "logs").symlink_to(elsewhere)
    result = _resume(out)
    assert list(elsewhere.iterdir()) == []
    assert "symbolic link" in result.stderr  # refused by name before anything runs
    assert "Traceback" not in result.stderr or "ConfigError" in result.stderr


def test_a_log_is_never_opened_inside_a_linked_folder(tmp_path: Path) -> None:
    """The run's own guard, whoever calls it: a logs folder that is a link is not entered."""
    from greenprec._processes import open_log
    from greenprec.errors import ConfigError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "logs").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        open_log(tmp_path / "logs" / "fp32-001.log")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("kind", ["link", "dangling link", "hard link", "fifo", "device link"])
def test_whatever_stands_in_a_logs_place_only_its_name_is_replaced(
    tmp_path: Path, kind: str
) -> None:
    from greenprec._processes import open_log

    outside = tmp_path / "outside.txt"
    outside.write_text("kept\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "fp32-001.log"
    if kind == "link":
        log.symlink_to(outside)
    elif kind == "dangling link":
        log.symlink_to(tmp_path / "created-outside.txt")
    elif kind == "hard link":
        os.link(outside, log)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.symlink_to("/dev/full")
    with open_log(log) as handle:
        handle.write(b"output\n")
    assert log.read_bytes() == b"output\n" and not log.is_symlink()
    assert outside.read_text() == "kept\n"
    assert not (tmp_path / "created-outside.txt").exists()


@pytest.mark.slow
def test_a_debug_jobs_files_are_not_written_through_links(tmp_path: Path) -> None:
    from greenprec.experiment.executors.debug import LocalProcesses
    from greenprec.experiment.slurm import JobRequest

    folder = tmp_path / "slurm"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")
    (folder / "job.log").symlink_to(victim)
    jobs = LocalProcesses(folder)
    job_id = jobs.submit(folder, JobRequest(name="job", time_min=1), os.getpid)
    deadline = time.monotonic() + 30
    while jobs.job_states([job_id])[job_id].state == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jobs.job_states([job_id])[job_id].state == "COMPLETED"
    assert victim.read_text() == "kept\n"
    assert (folder / "job.log").is_file() and not (folder / "job.log").is_symlink()


# -- zombies -----------------------------------------------------------------------------------


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and that this process does not reap (yet)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return child
        time.sleep(0.01)
    raise AssertionError("the child did not exit")


@pytest.mark.slow
def test_a_run_whose_process_is_a_zombie_is_stale_and_the_next_resume_runs_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    _run("quick", out)
    store = ResultsStore(out)
    zombie = _zombie()
    try:
        running = (
            store.read_run("fp32-001")
            .cleared()
            .started(host=platform.node(), executor_pid=zombie.pid)
        )
        store.write_run(running)
        assert store.is_stale(running)
        _, runs = run_experiment(None, out, resume=True)
        assert [run.status for run in runs] == ["done"]
    finally:
        zombie.wait()


def test_the_debug_executor_takes_a_zombie_job_for_ended(tmp_path: Path) -> None:
    from greenprec._processes import process_alive
    from greenprec.experiment.executors.debug import LocalProcesses

    zombie = _zombie()
    try:
        assert not process_alive(zombie.pid)
        jobs = LocalProcesses(tmp_path)
        (tmp_path / "debug-7.json").write_text(json.dumps({"pid": zombie.pid, "name": "job"}))
        assert jobs.job_states(["7"])["7"].state == "FAILED"
    finally:
        zombie.wait()
    assert process_alive(os.getpid())


# -- descendants -------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie has: only its parent's bookkeeping is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait_gone(pids: list[int], within_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if not _gone(pid)]


def _kill_left(pids: list[int]) -> None:
    for pid in pids:
        if not _gone(pid):
            os.kill(pid, 9)


@pytest.mark.slow
def test_what_a_workload_starts_ends_with_its_run(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    runs = _run("spawns", tmp_path / "exp", params={"pids": str(pids_file)})
    pids = [int(pid) for pid in pids_file.read_text().split()]
    try:
        assert [run.status for run in runs] == ["done"]
        left = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        assert not left, f"still there after the run: {left}"
    finally:
        _kill_left(pids)


@pytest.mark.slow
def test_a_runs_time_limit_covers_what_its_workload_started(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    started = time.monotonic()
    runs = _run(
        "spawns", tmp_path / "exp", params={"pids": str(pids_file), "sleep_s": 300},
        run_timeout_s=8,  # time for a fresh Python to start the workload on a busy machine
    )  # fmt: skip
    pids = [int(pid) for pid in pids_file.read_text().split()]
    try:
        assert time.monotonic() - started < 40
        assert runs[0].status == "failed" and "timed out" in (runs[0].error or "")
        left = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        assert not left, f"still there after the time limit: {left}"
    finally:
        _kill_left(pids)


@pytest.mark.slow
def test_what_a_killed_runner_left_of_a_run_ends_when_the_resume_runs_it_again(
    tmp_path: Path,
) -> None:
    """kill -9 of the runner mid-run: its run's process dies with it (PR_SET_PDEATHSIG), but
    what the workload started stays, re-parented to PID 1; the resume ends it before the run
    runs again (it would otherwise share the machine with the measured run)."""
    out, pids_file = tmp_path / "exp", tmp_path / "pids"
    config = _config("spawns", params={"pids": str(pids_file), "sleep_s": 300})
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json())  # type: ignore[attr-defined]
    runner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from greenprec.experiment.config import ExperimentConfig; "
         "from greenprec.experiment.runner import run_experiment; "
         "run_experiment(ExperimentConfig.model_validate_json(open(sys.argv[1]).read()), "
         "sys.argv[2])", str(config_file), str(out)],
    )  # fmt: skip
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not pids_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the run is in its measured phase now
        pids = [int(pid) for pid in pids_file.read_text().split()]
        runner.kill()
        runner.wait()
        assert _wait_gone(pids, within_s=1.0), "nothing was left: the test proves nothing"
        pids_file.unlink()
        ResultsStore(out).write_experiment(
            ResultsStore(out).read_experiment().model_copy(
                update={"config": {**ResultsStore(out).read_experiment().config,
                                   "params": {"pids": str(tmp_path / "pids-2")}}}
            )
        )  # fmt: skip
        _, runs = run_experiment(None, out, resume=True)
        assert [run.status for run in runs] == ["done"]
        assert not _wait_gone(pids), "the killed runner's leftovers outlived the resume"
    finally:
        if runner.poll() is None:
            runner.kill()
        _kill_left(pids)
        if (tmp_path / "pids-2").exists():
            _kill_left([int(pid) for pid in (tmp_path / "pids-2").read_text().split()])


# -- what a failure says -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("char", ["x", "é"])
def test_a_huge_error_is_cut_and_says_so(tmp_path: Path, char: str) -> None:
    out = tmp_path / "exp"
    (run,) = _run("loud", out, params={"char": char})
    assert run.status == "failed" and run.error is not None
    assert len(run.error.encode("utf-8")) < 8192
    assert run.error.startswith(f"RuntimeError: {char * 10}")
    assert "more characters]" in run.error and "[cut: " in run.error
    longest = max(len(line) for line in (out / "logs" / "fp32-001.log").read_text().splitlines())
    assert longest < 8192  # the traceback the run printed is cut too
    stored = json.loads((out / "runs" / "fp32-001.json").read_text())
    assert stored["error"] == run.error


@pytest.mark.slow
def test_a_full_disk_is_named_with_the_file_that_could_not_be_written(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    (run,) = _run("fills_the_disk", out)
    assert run.status == "failed" and run.error is not None
    assert "No space left on device" in run.error, run.error
    assert "fp32-001" in run.error and "(no output)" not in run.error, run.error


@pytest.mark.slow
def test_a_non_finite_metric_is_kept_by_name_and_said(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    said: list[str] = []

    class Listening(Reporter):
        def message(self, text: str) -> None:
            said.append(text)

    _, (run,) = run_experiment(_config("diverges"), out, reporter=Listening())  # type: ignore[arg-type]
    assert run.status == "done"
    stored = json.loads((out / "runs" / "fp32-001.json").read_text())
    assert stored["metrics"]["test_loss"] == "inf"
    assert stored["metrics"]["perplexity"] == "nan"
    assert stored["epochs"][0]["metrics"] == {"test_loss": "inf", "test_accuracy": None}
    assert any("test_loss" in text and "inf" in text for text in said), said
    from greenprec.report.data import load

    excluded = load(out).excluded
    assert any(e.column == "test_loss" and "inf" in e.reason for e in excluded), excluded


@pytest.mark.slow
def test_a_full_disk_under_the_runner_names_the_run_file_it_could_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk is full for the runner too: writing the failed run's record fails in write(),
    which names no file; the error that reaches the command line names the run file."""
    import errno

    real_write_run = ResultsStore.write_run

    def full_for_failures(store: ResultsStore, run: RunRecord) -> Path:
        if run.status == "failed":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_run(store, run)

    monkeypatch.setattr(ResultsStore, "write_run", full_for_failures)
    with pytest.raises(OSError) as raised:
        _run("fills_the_disk", tmp_path / "exp")
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value.filename).endswith(os.path.join("runs", "fp32-001.json"))

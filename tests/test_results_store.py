"""greenprec.results: one typed store, many writers, and integrity found by damaging folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenprec.errors import ConfigError
from greenprec.results import (
    Location,
    MetersRecord,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    check_run_id,
    new_experiment_record,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "folders-0.1"


def _schedule(n: int = 3) -> list[ScheduledRun]:
    runs = []
    for k in range(n):
        policy = ("fp32", "mixed")[k % 2]
        runs.append(
            ScheduledRun(
                run_id=f"{policy}-{k // 2 + 1:03d}",
                order=k + 1,
                policy=policy,
                repetition=k // 2 + 1,
                seed=k,
            )
        )
    return runs


def _new_store(path: Path, n: int = 4) -> ResultsStore:
    schedule = _schedule(n)
    record = new_experiment_record(
        source="test",
        config={"policies": ["fp32", "mixed"]},
        schedule=schedule,
        meters=MetersRecord(requested=["mock"], used=["mock"]),
    )
    store = ResultsStore(path)
    store.check_new()
    store.create(record, [RunRecord.planned(run) for run in schedule])
    return store


def _new_run() -> RunRecord:
    return RunRecord.planned(_schedule(1)[0])


def _done(run: RunRecord, energy_j: float = 10.0) -> RunRecord:
    return run.model_copy(
        update={
            "status": "done",
            "energy_j": energy_j,
            "duration_s": 1.0,
            "domains": {"mock/cpu": energy_j},
            "counted_domains": ["mock/cpu"],
            "metrics": {"test_accuracy": 0.9, "test_loss": 0.3},
        }
    )


def test_a_new_folder_round_trips_and_its_index_is_rebuilt(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    snapshot = store.load()
    assert [r.status for r in snapshot.runs] == ["pending"] * 4 and not snapshot.problems
    first = _done(snapshot.runs[0])
    store.write_run(first)
    runs = [first, *snapshot.runs[1:]]
    store.write_index(runs)
    again = store.load()
    assert again.runs[0] == first and not again.problems and not again.legacy
    header, row = (store.index_file.read_text().splitlines())[:2]
    assert header.startswith("run_id,order,policy,repetition,seed,status")
    assert "energy_j:mock/cpu" in header and row.startswith("fp32-001,1,fp32,1,0,done")
    assert json.loads(store.experiment_file.read_text())["schema_version"] == "2.0"


def test_run_files_written_before_the_run_outcome_fields_still_load(tmp_path: Path) -> None:
    """A 0.2 run file with a target has no final_value, stopped_at_target, epochs_run or
    throughput: it loads with their defaults, and its index gains no columns."""
    store = _new_store(tmp_path / "exp")
    run = _done(store.load().runs[0])
    old = run.model_dump(mode="json")
    for name in (
        "stopped_at_target",
        "epochs_run",
        "samples_trained",
        "samples_per_s",
        "energy_per_sample_j",
    ):
        del old[name]
    old["targets"] = [
        {"metric": "test_accuracy", "value": 0.5, "higher_is_better": True, "reached": True,
         "epoch": 2, "energy_j": 4.0, "duration_s": 0.4}
    ]  # fmt: skip
    store.run_file(run.run_id).write_text(json.dumps(old))
    # The index as a 0.2 greenprec rebuilt it from these files: no new columns.
    store.write_index(store.load().runs)
    header = store.index_file.read_text().splitlines()[0].split(",")
    assert "stopped_at_target" not in header and "samples_per_s" not in header
    snapshot = store.load()
    loaded = next(r for r in snapshot.runs if r.run_id == run.run_id)
    assert not snapshot.problems
    assert loaded.stopped_at_target is False and loaded.epochs_run is None
    assert loaded.samples_per_s is None and loaded.energy_per_sample_j is None
    assert loaded.targets[0].reached and loaded.targets[0].final_value is None


def test_a_run_that_stopped_at_its_target_records_its_throughput() -> None:
    run = _new_run().finished(
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:00:02+00:00",
        duration_s=2.0,
        energy_j=50.0,
        mean_power_w=25.0,
        meter="mock",
        estimated=False,
        domains={"mock/cpu": 50.0},
        counted_domains=["mock/cpu"],
        metrics={"test_accuracy": 0.9},
        stopped_at_target=True,
        epochs_run=3,
        samples_trained=300,
    )
    assert run.samples_per_s == 150.0 and run.energy_per_sample_j == pytest.approx(50.0 / 300)
    assert RunRecord.model_validate_json(run.model_dump_json()) == run
    # No samples reported: no throughput, not a division by zero.
    assert run.cleared().started().samples_per_s is None


def test_a_non_empty_folder_that_is_not_an_experiment_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "fp32-001.log").write_text("a user's own log\n")
    with pytest.raises(ConfigError, match=r"is not empty .*logs.* not a greenprec experiment"):
        ResultsStore(out).check_new()
    assert (out / "logs" / "fp32-001.log").read_text() == "a user's own log\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        ResultsStore(tmp_path / "file").check_new()


@pytest.mark.parametrize(
    "run_id", ["../../../escaped", "a/b", ".hidden", "", "x" * 200, "a\nb", "..", "/abs"]
)
def test_run_ids_that_could_name_a_path_are_refused(run_id: str) -> None:
    with pytest.raises(ValueError, match="not a valid run id"):
        check_run_id(run_id)
    with pytest.raises(ConfigError, match="not a valid run id"):
        ResultsStore("/tmp/x").run_file(run_id)


@given(st.text(min_size=1, max_size=40))
def test_no_accepted_run_id_leaves_its_folder(text: str) -> None:
    try:
        check_run_id(text)
    except ValueError:
        return
    path = ResultsStore("/base/exp").run_file(text)
    assert path.parent == Path("/base/exp/runs") and os.path.normpath(path) == str(path)


def test_a_traversing_run_id_in_a_tampered_schedule_makes_the_folder_unreadable(
    tmp_path: Path,
) -> None:
    store = _new_store(tmp_path / "exp")
    data = json.loads(store.experiment_file.read_text())
    data["schedule"][0]["run_id"] = "../../../escaped"
    store.experiment_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"experiment.json is damaged: schedule.0.run_id"):
        store.load()
    assert not (tmp_path.parent / "escaped.json").exists()


def test_missing_extra_damaged_and_tampered_runs_are_each_named(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp", n=6)
    runs = store.load().runs
    for run in runs:
        store.write_run(_done(run))
    store.run_file(runs[1].run_id).unlink()  # missing
    store.run_file(runs[2].run_id).write_text('{"run_id": "mixed-00')  # cut mid-write
    tampered = _done(runs[3]).model_copy(update={"policy": "fp32"})
    store.write_run(tampered)  # edited to look like the other policy
    store.write_run(_done(RunRecord(run_id="bf16-009", order=9, policy="bf16", repetition=9)))
    store.run_file(runs[4].run_id).write_text(
        json.dumps({**json.loads(store.run_file(runs[4].run_id).read_text()), "energy_j": "abc"})
    )
    snapshot = store.load()
    by_run = {p.run_id: p.reason for p in snapshot.problems if p.run_id}
    assert [r.run_id for r in snapshot.runs] == [runs[0].run_id, runs[5].run_id]
    assert by_run[runs[1].run_id].startswith("missing")
    assert "not valid JSON" in by_run[runs[2].run_id]
    assert "policy differ from the schedule" in by_run[runs[3].run_id]
    assert "energy_j" in by_run[runs[4].run_id]
    assert "not in the experiment's schedule" in by_run["bf16-009"]
    assert any(p.where == "runs.csv" for p in snapshot.problems)  # the index is stale


def test_a_truncated_or_edited_index_is_named_and_never_used(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    runs = [_done(run, 10.0 + k) for k, run in enumerate(store.load().runs)]
    for run in runs:
        store.write_run(run)
    store.write_index(runs)
    text = store.index_file.read_text()
    store.index_file.write_text(text[: len(text) // 2])  # cut in the middle of a row
    snapshot = store.load()
    assert [r.energy_j for r in snapshot.runs] == [10.0, 11.0, 12.0, 13.0]
    assert [p.where for p in snapshot.problems] == ["runs.csv"]


def test_a_newer_schema_is_refused_with_one_line(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    data = json.loads(store.experiment_file.read_text())
    store.experiment_file.write_text(json.dumps({**data, "schema_version": "3.0"}))
    with pytest.raises(ConfigError, match=r"newer greenprec \(schema 3.0.*upgrade greenprec"):
        store.load()
    store.experiment_file.write_text(json.dumps({**data, "schema_version": "2.7", "new": 1}))
    assert store.load().experiment.model_extra == {"new": 1}  # a newer minor is read


def test_a_symlinked_run_file_is_not_followed(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"run_id": "fp32-001", "secret": "do not read"}))
    target = store.run_file("fp32-001")
    target.unlink()
    target.symlink_to(secret)
    snapshot = store.load()
    (problem,) = [p for p in snapshot.problems if p.run_id == "fp32-001"]
    assert "do not read" not in problem.reason and "cannot read" in problem.reason


def _writer_script(folder: Path, run_id: str, count: int) -> str:
    return textwrap.dedent(
        f"""
        from greenprec.results import ResultsStore
        store = ResultsStore({str(folder)!r})
        run = store.read_run({run_id!r})
        for k in range({count}):
            store.write_run(run.model_copy(update={{"status": "done", "energy_j": float(k),
                "metrics": {{"pad": "x" * 20000}}}}))
        """
    )


def test_two_processes_write_their_own_run_files_at_once(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    writers = [
        subprocess.Popen([sys.executable, "-c", _writer_script(store.path, run_id, 200)])
        for run_id in ("fp32-001", "mixed-001")
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    snapshot = store.load()
    energies = {r.run_id: r.energy_j for r in snapshot.runs}
    assert energies["fp32-001"] == energies["mixed-001"] == 199.0
    assert [p for p in snapshot.problems if p.run_id] == []


@pytest.mark.slow
def test_a_kill_during_a_run_file_write_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    for attempt in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", _writer_script(store.path, "fp32-001", 100_000)]
        )
        time.sleep(0.6 + 0.1 * attempt)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        run = store.read_run("fp32-001")  # whole, never half-written
        assert run.status in ("pending", "done")
        assert not [p for p in store.load().problems if p.run_id]


def test_a_second_driver_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from greenprec.results import ResultsStore; "
            f"lock = ResultsStore({str(store.path)!r}).lock('greenprec compare').acquire(); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by .*pid {holder.pid} on"):
            store.lock("greenprec compare --resume").acquire()
        # Run executors never take the lock: writing a run file still works.
        store.write_run(_done(store.read_run("fp32-001")))
    finally:
        holder.kill()
        holder.wait()
    with store.lock("greenprec compare") as lock:  # the kernel released it with the holder
        assert lock.held


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "exp"
    code = textwrap.dedent(
        f"""
        import os, sys
        os.umask({umask})
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from test_results_store import _new_store
        from pathlib import Path
        store = _new_store(Path({str(out)!r}))
        store.write_samples("fp32-001", [(0.0, "mock/cpu", 1.0, 0.0)])
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    for path in [
        out / "experiment.json",
        out / "runs.csv",
        out / "runs" / "fp32-001.json",
        out / "samples" / "fp32-001.csv",
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_stale_running_state_is_recognised(tmp_path: Path) -> None:
    store = _new_store(tmp_path / "exp")
    run = store.read_run("fp32-001")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import platform

    running = run.model_copy(update={"status": "running", "host": platform.node()})
    assert store.is_stale(running.model_copy(update={"executor_pid": dead.pid}))
    assert not store.is_stale(running.model_copy(update={"executor_pid": os.getpid()}))
    assert store.is_stale(running)  # nobody claimed it
    assert not store.is_stale(running.model_copy(update={"host": "another-node"}))


@pytest.mark.parametrize("name", ["compare", "import"])
def test_folders_written_by_greenprec_0_1_still_open(name: str) -> None:
    snapshot = ResultsStore(FIXTURES / name).load()
    assert snapshot.legacy and not snapshot.problems
    assert len(snapshot.runs) == 4 and all(r.status == "done" for r in snapshot.runs)
    assert all(r.energy_j and r.energy_j > 0 for r in snapshot.runs)
    assert {r.policy for r in snapshot.runs} == {"fp32", "mixed"}
    assert all(0 < float(r.metrics["test_accuracy"] or 0) < 1 for r in snapshot.runs)


def test_a_damaged_0_1_runs_csv_names_each_row(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "compare", folder)
    lines = (folder / "runs.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",done,", ",DONE,")
    lines[2] = lines[2].rsplit(",", 3)[0]  # cut
    del lines[3]  # a scheduled run gone
    (folder / "runs.csv").write_text("\ufeff" + "\n".join(lines) + "\n")  # and a BOM
    snapshot = ResultsStore(folder).load()
    reasons = {p.where: p.reason for p in snapshot.problems}
    assert "status 'DONE' is not one of" in reasons["runs.csv:2"]
    assert "cells where the header has" in reasons["runs.csv:3"]
    assert any(r.startswith("missing") for r in reasons.values())
    assert len(snapshot.runs) == 1


# -- locations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "file", "line"),
    [
        ("runs.csv:5", "runs.csv", 5),
        ("runs.csv", "runs.csv", None),
        ("runs/fp32-001.json", "runs/fp32-001.json", None),
        ("runs/", "runs/", None),
        ("C:/data/exp/runs.csv:12", "C:/data/exp/runs.csv", 12),  # a path with colons
        ("runs/'a:b'", "runs/'a:b'", None),  # the colon of a named file, not a line
        ("runs/'a:12'", "runs/'a:12'", None),
        ("runs.csv:x", "runs.csv:x", None),  # a line that is not a number
        ("runs.csv:", "runs.csv:", None),
        ("runs.csv:-1", "runs.csv:-1", None),
        ("runs.csv:5.0", "runs.csv:5.0", None),
        ("runs.csv:05", "runs.csv:05", None),  # not as a line is written
        ("runs.csv:0", "runs.csv", 0),
        ("runs.csv:\u00b2", "runs.csv:\u00b2", None),  # isdigit() says yes, int() says no
        (":5", ":5", None),  # no file before the colon
        ("", "", None),
    ],
)
def test_a_location_parses_hostile_text_without_losing_it(
    text: str, file: str, line: int | None
) -> None:
    location = Location.parse(text)
    assert (location.file, location.line) == (file, line)
    assert str(location) == text  # the text it came from, unchanged


@given(st.text(), st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)))
def test_a_location_round_trips_through_its_text(file: str, line: int | None) -> None:
    location = Location(file, line)
    text = str(location)
    assert text == (file if line is None else f"{file}:{line}")
    parsed = Location.parse(text)
    assert str(parsed) == text
    if line is not None and file:
        assert parsed == location  # the line is always the last colon's
    assert Location.parse(str(parsed)) == parsed


def test_a_location_refuses_a_negative_line() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Location("runs.csv", -1)


def test_problems_and_runs_carry_typed_locations(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "compare", folder)
    lines = (folder / "runs.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",done,", ",DONE,")
    (folder / "runs.csv").write_text("\n".join(lines) + "\n")
    snapshot = ResultsStore(folder).load()
    assert Location("runs.csv", 2) in {p.location for p in snapshot.problems}
    (run,) = [r for r in snapshot.runs if r.location == Location("runs.csv", 3)]
    assert run.where == "runs.csv:3" and snapshot.locations[run.run_id] == run.location


@given(st.text())
def test_any_text_parses_to_a_location_that_writes_it_back(text: str) -> None:
    assert str(Location.parse(text)) == text

"""A hostile or damaged results folder (issue 24): nothing read or written outside it, nothing
hangs, every damaged file named.

Each folder is built in the test as a user, an unlucky user or an attacker would leave it:
``runs/``, ``samples/`` or ``figures/`` a symbolic link out of the folder, a samples file that
is a FIFO or a link to ``/dev/zero``, a run file nested 200,000 levels deep or holding a
5,000-digit integer, a NaN accuracy, a total that its own domains contradict. The commands run
as the user runs them: ``greenprec runs``, ``greenprec report`` and ``compare --resume`` in a
subprocess of their own.
"""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from greenprec.errors import ConfigError
from greenprec.results import ResultsStore, RunRecord
from greenprec.results.files import read_bounded, write_atomic
from greenprec.testing.synthetic import write_synthetic_folder

TESTS_DIR = Path(__file__).resolve().parent
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet"]
SUBFOLDERS = ("runs", "samples", "figures", "logs", ".work", "jobs", "slurm")
# What a command may use before the test calls it a runaway (the /dev/zero samples file took
# 24 GB): far above what these small folders need.
MEMORY_BYTES = 3 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def greenprec(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, its memory bounded; a hang fails the test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        preexec_fn=_limited,
    )


def resume(
    folder: Path, timeout: float = 60, *, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    return greenprec(
        "compare", "--resume", "--out", folder, *(["--quiet"] if quiet else []), timeout=timeout
    )


def error_line(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    """The one line a command refused with (exit code 2, no traceback), holding ``parts``."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to see a write)."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder ``greenprec compare`` made: three fp32 runs, reported."""
    folder = tmp_path_factory.mktemp("compared") / "exp"
    made = greenprec(
        "compare", "fp32", "--runs", "3", "--workload", "experiment_workloads:sleepy",
        "--isolation", "inline", "--param", "sleep_s=0.02", "--out", folder, *FAST,
        timeout=180,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return folder


@pytest.fixture
def folder(compared: Path, tmp_path: Path) -> Path:
    """A copy of ``compared`` of this test's own, with its last run pending again (so a
    ``--resume`` has a run to write)."""
    copy = tmp_path / "exp"
    shutil.copytree(compared, copy, symlinks=True)
    store = ResultsStore(copy)
    store.write_run(store.read_run("fp32-003").cleared())
    (copy / "samples" / "fp32-003.csv").unlink()
    return copy


def link_out(folder: Path, name: str, outside: Path) -> None:
    """Move ``folder/name`` (if any) to ``outside`` and leave a symbolic link to it."""
    inside = folder / name
    if inside.exists():
        shutil.move(inside, outside)
    else:
        outside.mkdir()
    inside.symlink_to(outside)


# -- 1. a sub-folder that is a link out of the folder ------------------------------------------
@pytest.mark.slow  # the command line in fresh processes
@pytest.mark.parametrize("name", SUBFOLDERS)
@pytest.mark.parametrize("command", ["runs", "report", "resume"])
def test_a_linked_subfolder_is_refused_and_nothing_outside_is_read_or_written(
    folder: Path, tmp_path: Path, name: str, command: str
) -> None:
    outside = tmp_path / "outside"
    link_out(folder, name, outside)
    before = listing(outside)
    result = resume(folder) if command == "resume" else greenprec(command, folder)
    error_line(
        result, f"{folder / name} is a symbolic link", "never reads or writes through a link"
    )
    assert listing(outside) == before


@pytest.mark.slow  # the command line in fresh processes
def test_a_file_where_samples_belong_is_refused(folder: Path) -> None:
    shutil.rmtree(folder / "samples")
    (folder / "samples").write_text("not a folder\n")
    error_line(greenprec("report", folder), f"{folder / 'samples'} is not a folder")
    error_line(resume(folder), f"{folder / 'samples'} is not a folder")


@pytest.mark.slow  # the command line in fresh processes
def test_a_linked_run_file_is_named_and_not_followed(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "fp32-002.json"
    shutil.move(folder / "runs" / "fp32-002.json", outside)
    (folder / "runs" / "fp32-002.json").symlink_to(outside)
    shown = greenprec("runs", folder, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [row["run_id"] for row in json.loads(shown.stdout)] == ["fp32-001", "fp32-003"]
    assert (
        "run fp32-002: runs/fp32-002.json: cannot read run file: a symbolic link, which "
        "greenprec never follows in a results folder"
    ) in shown.stderr


@pytest.mark.slow  # the command line in fresh processes
def test_a_report_replaces_a_linked_report_file_and_leaves_its_target(
    folder: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    for name in ("report.md", "report.html", "stats.json"):
        (folder / name).unlink()
        (folder / name).symlink_to(victim)
    result = greenprec("report", folder)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me\n"
    for name in ("report.md", "report.html", "stats.json"):
        assert not (folder / name).is_symlink() and (folder / name).is_file()


# -- 1. and 2. a samples file that is a link, a FIFO or /dev/zero ------------------------------
def _trace_warnings(folder: Path) -> list[str]:
    return [w for w in json.loads((folder / "stats.json").read_text())["warnings"] if "fp32" in w]


@pytest.mark.slow  # the command line in fresh processes
def test_a_linked_samples_file_is_named_and_not_read(folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow.csv"
    secret.write_text("t_s,domain,power_w,energy_j\n0.0,secret/domain,4242.0,0.0\n")
    (folder / "samples" / "fp32-001.csv").unlink()
    (folder / "samples" / "fp32-001.csv").symlink_to(secret)
    result = greenprec("report", folder)
    assert result.returncode == 0, result.stderr
    warnings = _trace_warnings(folder)
    assert any("fp32-001" in w and "symbolic link" in w for w in warnings), warnings
    assert "secret/domain" not in (folder / "report.md").read_text()


@pytest.fixture(params=["fifo", "dev-zero"])
def endless_samples(request: pytest.FixtureRequest, folder: Path) -> Path:
    """``samples/fp32-001.csv`` as a FIFO nobody writes (a reader blocks forever) or a link to
    /dev/zero (a reader fills its memory)."""
    path = folder / "samples" / "fp32-001.csv"
    path.unlink()
    if request.param == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return folder


@pytest.mark.slow  # the command line in fresh processes
@pytest.mark.parametrize("command", ["report", "resume"])
def test_an_endless_samples_file_neither_hangs_nor_fills_memory(
    endless_samples: Path, command: str
) -> None:
    folder = endless_samples
    # A resume runs the folder's pending run, then writes its closing report.
    result = greenprec("report", folder) if command == "report" else resume(folder, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = _trace_warnings(folder)
    assert any("fp32-001" in w for w in warnings), warnings


# -- 3. a run file nested 200,000 levels deep, or holding a 5,000-digit integer ----------------
def _damage(path: Path, how: str) -> str:
    """Damage the run file at ``path`` as ``how`` says; the reason the store gives for it."""
    if how == "nested":
        path.write_text("[" * 200_000 + "]" * 200_000)
        return "run file is nested too deeply to be a record"
    if how == "nested-parsable":  # parses, but could never be written back
        data = json.loads(path.read_text())
        data["note"] = json.loads("[" * 150 + "]" * 150)
        path.write_text(json.dumps(data))
        return "run file is nested too deeply to be a record (more than 100 levels)"
    text = path.read_text().replace('"seed": ', '"seed": ' + "9" * 5000 + ', "was": ', 1)
    path.write_text(text)
    return "run file holds an integer of more than 4300 digits, which no record of greenprec has"


@pytest.mark.slow  # the command line in fresh processes
@pytest.mark.parametrize("how", ["nested", "nested-parsable", "long-integer"])
def test_runs_and_report_name_a_run_file_python_cannot_parse_and_go_on(
    folder: Path, how: str
) -> None:
    reason = _damage(folder / "runs" / "fp32-001.json", how)
    shown = greenprec("runs", folder, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert [row["run_id"] for row in json.loads(shown.stdout)] == ["fp32-002", "fp32-003"]
    assert f"run fp32-001: runs/fp32-001.json: {reason}" in shown.stderr
    reported = greenprec("report", folder)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert f"runs/fp32-001.json, run fp32-001 (fp32): {reason}" in reported.stderr


@pytest.mark.slow  # a resume runs two runs, then its report
def test_resume_runs_again_a_run_whose_file_python_cannot_parse(folder: Path) -> None:
    _damage(folder / "runs" / "fp32-001.json", "nested")
    _damage(folder / "runs" / "fp32-002.json", "long-integer")
    result = resume(folder, timeout=180, quiet=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "runs/fp32-001.json: run file is nested too deeply to be a record; it runs" in (
        result.stderr
    )
    assert "runs/fp32-002.json: run file holds an integer of more than 4300" in result.stderr
    snapshot = ResultsStore(folder).load()
    assert [run.status for run in snapshot.runs] == ["done"] * 3 and not snapshot.problems


# -- 4. a done run with a NaN accuracy --------------------------------------------------------
@pytest.mark.slow  # the command line in fresh processes
def test_runs_shows_a_nan_accuracy_and_prints_strict_json(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    write_synthetic_folder(folder, runs=3, samples_per_run=30)
    path = folder / "runs" / "fp32-001.json"
    data = json.loads(path.read_text())
    data["metrics"]["test_accuracy"] = math.nan
    path.write_text(json.dumps(data))  # NaN: what Python's json writes for it
    table = greenprec("runs", folder)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "Traceback" not in table.stderr
    shown = greenprec("runs", folder, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in --json output: not JSON")

    rows = json.loads(shown.stdout, parse_constant=refuse)
    assert next(r for r in rows if r["run_id"] == "fp32-001")["test_accuracy"] is None


# -- 5. a total its own counted domains contradict -------------------------------------------
@pytest.mark.slow  # the command line in fresh processes
def test_a_run_whose_energy_is_not_its_counted_domains_is_named_and_left_out(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "exp"
    write_synthetic_folder(folder, runs=3, samples_per_run=30)
    path = folder / "runs" / "fp32-001.json"
    data = json.loads(path.read_text())
    data["energy_j"] = 30.7
    data["domains"] = {"rapl/package-0": 0.8, "rapl/dram": 0.2, "rapl/core": 0.5}
    path.write_text(json.dumps(data))
    reason = (
        "damaged run file (energy_j 30.7 J is not the sum of its counted domains "
        "(rapl/package-0, rapl/dram: 1 J))"
    )
    shown = greenprec("runs", folder, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "fp32-001" not in [row["run_id"] for row in json.loads(shown.stdout)]
    assert f"run fp32-001: runs/fp32-001.json: {reason}" in shown.stderr
    reported = greenprec("report", folder)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert f"runs/fp32-001.json, run fp32-001 (fp32): {reason}" in reported.stderr
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["metrics"]["energy_j"]["groups"]["fp32"]["n"] == 2


def test_run_files_without_a_breakdown_still_load_and_rounding_is_not_damage(
    tmp_path: Path,
) -> None:
    store = write_synthetic_folder(tmp_path / "exp", runs=3, samples_per_run=30)
    done = store.read_run("fp32-001")
    parts = {"a": 0.1, "b": 0.2, "c": 0.3}
    updates: dict[str, dict[str, object]] = {
        # An import or a hand-made record: a total and no domains, or none counted.
        "fp32-001": {"domains": {}, "counted_domains": []},
        "fp32-002": {"domains": {"x": 1.0}, "counted_domains": []},
        # A counted domain whose energy is not recorded: nothing to check the total against.
        "fp32-003": {"domains": {}, "counted_domains": ["x"]},
        # Sums in another order, CodeCarbon's parts (which it checks to 1e-6): not damage.
        "mixed-001": {"energy_j": 0.6 * (1 + 1e-6), "domains": parts, "counted_domains": [*parts]},
    }
    for run_id, update in updates.items():
        planned = store.read_run(run_id)
        identity = {n: getattr(planned, n) for n in ("run_id", "order", "policy", "repetition")}
        store.write_run(done.model_copy(update={**update, **identity}))
    snapshot = store.load()
    assert [p for p in snapshot.problems if p.location.file != "runs.csv"] == []
    assert len(snapshot.runs) == 6


def test_the_writer_never_records_a_total_its_domains_contradict() -> None:
    pending = RunRecord(run_id="a-001", order=1, policy="a", repetition=1)
    common = {
        "started_at": "2025-01-01T00:00:00+00:00",
        "ended_at": "2025-01-01T00:00:01+00:00",
        "duration_s": 1.0,
        "mean_power_w": 30.7,
        "meter": "rapl",
        "estimated": False,
        "counted_domains": ["rapl/package-0"],
        "metrics": {},
    }
    with pytest.raises(ValueError, match="is not the sum of its counted domains"):
        pending.finished(energy_j=30.7, domains={"rapl/package-0": 1.0}, **common)  # type: ignore[arg-type]
    done = pending.finished(energy_j=1.0, domains={"rapl/package-0": 1.0}, **common)  # type: ignore[arg-type]
    assert RunRecord.model_validate_json(done.model_dump_json()).energy_j == 1.0


# -- the primitives every read and write goes through ----------------------------------------
def test_write_atomic_replaces_a_link_and_never_writes_through_a_linked_folder(
    tmp_path: Path,
) -> None:
    folder, outside = tmp_path / "exp", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    victim = outside / "victim.json"
    victim.write_text("keep me\n")
    (folder / "runs").mkdir()
    (folder / "runs" / "a.json").symlink_to(victim)
    write_atomic(folder / "runs" / "a.json", "new\n", folder=folder)
    assert victim.read_text() == "keep me\n"
    assert not (folder / "runs" / "a.json").is_symlink()
    assert (folder / "runs" / "a.json").read_text() == "new\n"
    (folder / "figures").symlink_to(outside)
    with pytest.raises(OSError) as caught:
        write_atomic(folder / "figures" / "f.png", b"png", folder=folder)
    assert caught.value.errno == errno.ELOOP
    assert sorted(p.name for p in outside.iterdir()) == ["victim.json"]


def test_read_bounded_refuses_links_fifos_devices_and_large_files(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    (folder / "samples").mkdir(parents=True)
    os.mkfifo(folder / "samples" / "fifo.csv")
    (folder / "samples" / "zero.csv").symlink_to("/dev/zero")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.csv").write_text("x\n")
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    big = folder / "samples" / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(2**20 + 1)  # sparse
    for name in ("fifo.csv", "zero.csv", "big.csv"):
        with pytest.raises(OSError):
            read_bounded(folder / "samples" / name, 2**20, folder=folder)
    with pytest.raises(OSError):
        read_bounded(folder / "linked" / "x.csv", folder=folder)
    assert read_bounded(tmp_path / "elsewhere" / "x.csv") == b"x\n"  # no folder: as given


def test_the_store_refuses_a_linked_subfolder_before_writing(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    store = write_synthetic_folder(folder, runs=2, samples_per_run=30)
    link_out(folder, "runs", tmp_path / "outside")
    before = listing(tmp_path / "outside")
    with pytest.raises(ConfigError, match="runs is a symbolic link"):
        store.ensure_dirs()
    with pytest.raises(ConfigError, match="runs is a symbolic link"):
        store.write_run(RunRecord(run_id="fp32-001", order=1, policy="fp32", repetition=1))
    assert listing(tmp_path / "outside") == before

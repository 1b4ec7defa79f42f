"""Runs measured under load are known (issue #24): what else used the machine per run (fake
``/proc`` trees, the fake NVML, real runs), the report's flag and sensitivity check, and
``compare --wait-for-idle``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.fake_pynvml import FakeGpu, make_pynvml, uuid
from greenprec.machine import gpu_compute_pids
from greenprec.machine_load import (
    PROC_ROOT_VARIABLE,
    machine_load,
    read_load,
    wait_for_idle,
)
from greenprec.report import build_report
from greenprec.results import RunRecord
from greenprec.results.models import MachineLoad
from greenprec.testing.synthetic import PolicySpec, write_synthetic_folder

TESTS_DIR = Path(__file__).resolve().parent
ROOT = 100  # the run's process in the fake trees


# -- fake /proc trees, laid out as the kernel lays them out -----------------------------------
def write_cpu(proc: Path, *, busy: int, idle: int, steal: int = 0, cpus: int = 4) -> None:
    """``/proc/stat``: user = busy, idle, steal; one ``cpu<N>`` line per CPU."""
    lines = [f"cpu  {busy} 0 0 {idle} 0 0 0 {steal} 0 0"]
    lines += [f"cpu{n} 0 0 0 0 0 0 0 0 0 0" for n in range(cpus)]
    lines += ["intr 12345 0 0", "ctxt 999", "btime 1700000000"]
    _replace(proc / "stat", "\n".join(lines) + "\n")


def write_process(
    proc: Path, pid: int, parent: int, jiffies: int, *, comm: str = "python3", nspid: str = ""
) -> None:
    """``/proc/<pid>/stat`` (utime carries the jiffies) and ``status``."""
    fields = ["S", str(parent), str(pid), str(pid), "0", "-1", "0", "0", "0", "0", "0"]
    fields += [str(jiffies), "0", "0", "0", "20", "0", "1", "0", "1000"]
    _replace(proc / str(pid) / "stat", f"{pid} ({comm}) {' '.join(fields)}\n")
    status = f"Name:\t{comm}\nPid:\t{pid}\nNSpid:\t{nspid or pid}\n"
    _replace(proc / str(pid) / "status", status)


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    os.replace(staged, path)  # a reader never sees half a file


def fake_machine(proc: Path, *, tree: int, other: int, busy: int, idle: int) -> None:
    """A run (pid 100) with a child and a grandchild, and a process of someone else (pid 200):
    ``tree`` jiffies are the run's (split over its three processes), ``other`` the stranger's."""
    write_cpu(proc, busy=busy, idle=idle)
    write_process(proc, ROOT, 1, tree // 2, comm="green prec) S 1 (x")  # a hostile name
    write_process(proc, 101, ROOT, tree // 4)
    write_process(proc, 102, 101, tree - tree // 2 - tree // 4)
    write_process(proc, 200, 1, other, comm="stress-ng")
    _replace(proc / "loadavg", "3.50 2.00 1.00 3/400 12345\n")


def test_other_processes_cpu_time_is_the_machines_busy_time_less_the_runs_tree(
    tmp_path: Path,
) -> None:
    proc = tmp_path / "proc"
    fake_machine(proc, tree=1000, other=0, busy=1000, idle=10_000)
    start = read_load(ROOT, proc_root=proc, gpu=False)
    # 4 CPUs for 10 s at 100 jiffies a second: 4000 jiffies; the run used 1000, pid 200 1500.
    fake_machine(proc, tree=2000, other=1500, busy=3500, idle=11_500)
    end = read_load(ROOT, proc_root=proc, gpu=False)
    load = machine_load(start, end)
    ticks = os.sysconf("SC_CLK_TCK")
    assert load.other_cpu_s == pytest.approx(1500 / ticks)
    assert load.other_cpu_fraction == pytest.approx(1500 / 4000)
    assert load.cpu_steal_fraction == 0.0
    assert load.logical_cpus == 4
    assert load.loadavg_1m_start == 3.5 and load.loadavg_1m_end == 3.5
    assert load.gpu_other_processes is None
    assert start.tree_pids == {100, 101, 102}
    assert load.under_load() == ["other processes used 38 % of the CPUs, over 10 %"]


def test_a_quiet_machine_is_not_under_load_and_steal_is_counted_apart(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_machine(proc, tree=0, other=0, busy=0, idle=0)
    start = read_load(ROOT, proc_root=proc, gpu=False)
    fake_machine(proc, tree=1000, other=40, busy=1040, idle=2960)
    load = machine_load(start, read_load(ROOT, proc_root=proc, gpu=False))
    assert load.other_cpu_fraction == pytest.approx(40 / 4000)
    assert load.under_load() == []
    write_cpu(proc, busy=1040, idle=2960 + 2000, steal=1000)  # a busy hypervisor host
    again = machine_load(start, read_load(ROOT, proc_root=proc, gpu=False))
    assert again.cpu_steal_fraction == pytest.approx(1000 / 7000)
    assert any("steal" in reason for reason in again.under_load())


@pytest.mark.parametrize("shape", ["missing", "fifo", "device", "garbage"])
def test_a_machine_without_a_readable_proc_gives_not_known_never_a_crash_nor_a_hang(
    tmp_path: Path, shape: str
) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    if shape == "fifo":
        os.mkfifo(proc / "stat")
        os.mkfifo(proc / "loadavg")
    elif shape == "device":
        (proc / "stat").symlink_to("/dev/zero")
        (proc / "loadavg").symlink_to("/dev/zero")
    elif shape == "garbage":
        (proc / "stat").write_text("root:*:20228:0:99999:7:::\n")
        (proc / "loadavg").write_text("\x1b[31mEVIL\n")
    started = time.monotonic()
    reading = read_load(ROOT, proc_root=proc, gpu_pids=lambda: None)
    load = machine_load(reading, read_load(ROOT, proc_root=proc, gpu_pids=lambda: None))
    assert time.monotonic() - started < 5
    assert load.other_cpu_s is None and load.other_cpu_fraction is None
    assert load.loadavg_1m_start is None and load.gpu_other_processes is None
    assert load.under_load() == []  # not known is not loaded
    assert any("stat" in reason and "not known" in reason for reason in load.unknown)
    assert any("NVML not available" in reason for reason in load.unknown)
    assert not any("root:" in reason or "\x1b" in reason for reason in load.unknown)


def test_other_gpu_processes_come_from_nvml_less_the_runs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Process:
        def __init__(self, pid: int) -> None:
            self.pid, self.usedGpuMemory = pid, 1 << 30

    module = make_pynvml([FakeGpu(uuid(0)), FakeGpu(uuid(1))])
    listed = {0: [Process(101)], 1: [Process(4242), Process(4243)]}
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: listed[  # type: ignore[attr-defined]
        module.nvmlDeviceGetIndex(handle)
    ]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_compute_pids() == [101, 4242, 4243]
    proc = tmp_path / "proc"
    fake_machine(proc, tree=0, other=0, busy=0, idle=0)
    assert read_load(ROOT, proc_root=proc).gpu_other_processes == 2  # 101 is the run's child
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert read_load(ROOT, proc_root=proc).gpu_other_processes == 0
    # In a container's pid namespace NVML's pids are the host's: not comparable, not known.
    write_process(proc, ROOT, 1, 0, nspid=f"{ROOT + 5000}\t{ROOT}")
    reading = read_load(ROOT, proc_root=proc)
    assert reading.gpu_other_processes is None
    assert any("pid namespace" in reason for reason in reading.unknown)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert gpu_compute_pids() is None


def test_records_without_a_load_still_load_and_a_load_round_trips() -> None:
    old = {"schema_version": "2.0", "run_id": "fp32-001", "order": 1, "policy": "fp32"}
    record = RunRecord.model_validate({**old, "repetition": 1, "status": "pending"})
    assert record.load is None
    loaded = record.model_copy(update={"load": MachineLoad(other_cpu_s=3.0, unknown=["x"])})
    again = RunRecord.model_validate_json(loaded.model_dump_json())
    assert again.load == loaded.load
    with pytest.raises(ValueError, match="other_cpu_fraction"):
        MachineLoad.model_validate({"other_cpu_fraction": float("nan")})


# -- waiting for an idle machine ---------------------------------------------------------------
class _Clock:
    """time.monotonic and time.sleep for machine_load: each sleep is a second of a machine
    whose other processes use ``other_share`` of its 4 CPUs."""

    def __init__(self, proc: Path, other_share: float) -> None:
        self.proc, self.other_share, self.now, self.busy, self.idle = proc, other_share, 0.0, 0, 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        capacity = int(400 * seconds)
        self.busy += int(capacity * self.other_share)
        self.idle += capacity - int(capacity * self.other_share)
        write_cpu(self.proc, busy=self.busy, idle=self.idle)


@pytest.mark.parametrize(("other_share", "quiet"), [(0.05, True), (0.5, False)])
def test_waiting_for_idle_ends_when_quiet_or_at_its_bound_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_share: float, quiet: bool
) -> None:
    import greenprec.machine_load as machine_load_module

    proc = tmp_path / "proc"
    fake_machine(proc, tree=0, other=0, busy=0, idle=0)
    clock = _Clock(proc, other_share)
    monkeypatch.setattr(machine_load_module, "time", clock)
    waited = wait_for_idle(30, proc_root=proc, root_pid=ROOT, gpu=False)
    assert waited.quiet is quiet
    if quiet:
        assert waited.waited_s == 1.0 and waited.note is None
    else:
        assert waited.waited_s == 30.0  # bounded: the bound, not a second more
        assert waited.note is not None and "still busy after waiting 30 s" in waited.note
        assert "50 % of the CPUs" in waited.note


# -- through compare, report and the CLI, as a user meets it ----------------------------------
def _compare(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "greenprec", "compare", "fp32", "--runs", "2",
        "--workload", "experiment_workloads:sleepy", "--out", str(out), "--no-shuffle",
        "--warmup", "0", "--cooldown", "0", "--meter", "mock", *extra,
    ]  # fmt: skip


def _env(**more: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **more}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="Linux: reads the real /proc")
def test_a_real_compare_records_what_else_used_the_machine_per_run(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    completed = subprocess.run(
        _compare(out, "--quiet"), capture_output=True, text=True, check=False, env=_env()
    )
    assert completed.returncode == 0, completed.stderr
    for path in sorted((out / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        assert run["status"] == "done"
        load = run["load"]
        assert load["other_cpu_fraction"] is not None and 0 <= load["other_cpu_fraction"] <= 1
        assert load["other_cpu_s"] is not None and load["duration_s"] > 0
        assert load["loadavg_1m_start"] is not None and load["waited_for_idle_s"] is None
    stats = json.loads((out / "stats.json").read_text())
    assert [run["run_id"] for run in stats["machine_load"]["runs"]] == ["fp32-001", "fp32-002"]
    assert "## Runs measured under load" in (out / "report.md").read_text()


class _BusyProc:
    """A fake ``/proc`` for a real compare: other processes keep 90 % of 4 CPUs busy, and the
    runner's own processes are mirrored from the real ``/proc`` so its tree can be found."""

    def __init__(self, root: Path) -> None:
        self.root, self.stop, self.runner = root, threading.Event(), 0
        self.busy = self.idle = 0
        _replace(root / "loadavg", "4.00 4.00 4.00 5/500 999\n")
        self.tick()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def tick(self) -> None:
        self.busy += 36
        self.idle += 4
        write_cpu(self.root, busy=self.busy, idle=self.idle)
        for pid in self.tree():
            try:
                _replace(self.root / str(pid) / "stat", Path(f"/proc/{pid}/stat").read_text())
            except OSError:
                continue

    def tree(self) -> set[int]:
        found = {self.runner} if self.runner else set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent in found:
                    found.add(int(entry.name))
        return found

    def loop(self) -> None:
        while not self.stop.wait(0.1):
            self.tick()

    def __enter__(self) -> _BusyProc:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def busy_proc(tmp_path: Path) -> Iterator[_BusyProc]:
    with _BusyProc(tmp_path / "proc") as busy:
        yield busy


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="Linux: mirrors the real /proc")
def test_wait_for_idle_is_bounded_and_a_run_after_the_bound_is_flagged_in_the_report(
    tmp_path: Path, busy_proc: _BusyProc
) -> None:
    out = tmp_path / "exp"
    child = subprocess.Popen(
        _compare(out, "--runs", "1", "--wait-for-idle", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**{PROC_ROOT_VARIABLE: str(busy_proc.root)}),
    )
    busy_proc.runner = child.pid
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert "waiting for an idle machine (at most 2 s)" in stderr
    run = json.loads((out / "runs" / "fp32-001.json").read_text())
    load = run["load"]
    assert 2 <= load["waited_for_idle_s"] < 10
    assert "still busy after waiting 2 s" in load["idle_wait_note"]
    assert load["other_cpu_fraction"] > 0.5  # the fake machine's strangers, not the run
    report = (out / "report.md").read_text()
    assert "⚠ 1 run measured under load (fp32-001" in report


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="Linux: mirrors the real /proc")
def test_sigterm_ends_a_wait_for_idle_at_once_and_no_run_is_marked_failed(
    tmp_path: Path, busy_proc: _BusyProc
) -> None:
    out = tmp_path / "exp"
    child = subprocess.Popen(
        _compare(out, "--runs", "1", "--wait-for-idle", "300"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**{PROC_ROOT_VARIABLE: str(busy_proc.root)}),
    )
    busy_proc.runner = child.pid
    assert child.stderr is not None
    for line in child.stderr:
        if "waiting for an idle machine" in line:
            break
    time.sleep(0.5)
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    stderr = child.stderr.read()
    child.wait(timeout=30)
    assert time.monotonic() - sent < 15  # not the 300 s bound
    assert child.returncode != 0
    assert "marked failed" not in stderr
    assert json.loads((out / "runs" / "fp32-001.json").read_text())["status"] == "pending"


def _loaded(share: float) -> MachineLoad:
    return MachineLoad(duration_s=240.0, logical_cpus=16, other_cpu_fraction=share)


@pytest.mark.slow
def test_the_report_flags_runs_under_load_and_says_whether_the_verdict_holds_without_them(
    tmp_path: Path,
) -> None:
    same = PolicySpec(30_000.0, 150.0, 240.0, 3.0, 0.45, 0.002)
    store = write_synthetic_folder(
        tmp_path / "exp", runs=8, policies={"fp32": same, "bf16": same}, with_samples=False
    )
    records = store.load().runs
    changed = []
    for record in records:
        # Four bf16 runs had company and came out 12 % lower: they alone make the difference.
        if record.policy == "bf16" and record.repetition <= 4:
            scale = 0.88
            record = record.model_copy(
                update={
                    "energy_j": (record.energy_j or 0) * scale,
                    "mean_power_w": (record.mean_power_w or 0) * scale,
                    "domains": {k: v * scale for k, v in record.domains.items()},
                    "load": _loaded(0.45),
                }
            )
        else:
            record = record.model_copy(update={"load": _loaded(0.02)})
        store.write_run(record)
        changed.append(record)
    store.write_index(changed)
    report = build_report(tmp_path / "exp")
    section = report.stats["machine_load"]
    assert sorted(section["under_load"]) == ["bf16-001", "bf16-002", "bf16-003", "bf16-004"]
    sensitivity = section["sensitivity"]
    assert sensitivity["label"] == "sensitivity check, not a second primary test"
    energy = next(q for q in sensitivity["questions"] if q["metric"] == "energy_j")
    assert energy["outcome_all"] == "lower" and energy["outcome_without"] != "lower"
    assert sensitivity["verdict_changes"] is True
    markdown = report.markdown_path.read_text()
    assert "## Runs measured under load" in markdown
    assert "the verdict's conclusion CHANGES without them" in markdown
    assert "other processes used 45 % of the CPUs, over 10 %" in markdown
    assert "Runs measured under load" in report.html_path.read_text()


@pytest.mark.slow
def test_a_folder_without_load_data_has_no_load_section(tmp_path: Path) -> None:
    write_synthetic_folder(tmp_path / "exp", runs=3, with_samples=False)
    report = build_report(tmp_path / "exp")
    assert "machine_load" not in report.stats
    assert "measured under load" not in report.markdown_path.read_text()


def test_compare_and_recommend_take_wait_for_idle_and_refuse_a_bad_bound(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from greenprec.cli import app

    runner = CliRunner()
    for command in ("compare", "recommend"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--wait-for-idle" in shown.output
    out = tmp_path / "x"
    argv = [sys.executable, "-m", "greenprec", "compare", "fp32", "--wait-for-idle", "-5"]
    bad = subprocess.run(
        [*argv, "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    assert bad.returncode == 2
    assert "--wait-for-idle" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not out.exists()

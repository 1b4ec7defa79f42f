"""Nothing hangs for ever: meter reads, runs and signals are bounded; settings are finite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import greenprec
from greenprec.meters.mock import MockMeter

TESTS_DIR = Path(__file__).resolve().parent
FAST = ["--warmup", "0", "--cooldown", "0", "--meter", "mock", "--quiet"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}


def greenprec_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", *args],
        capture_output=True, text=True, env=_env(), timeout=timeout, check=False,
    )  # fmt: skip


class _Hangs(greenprec.Meter):
    """Answers ``answers`` reads, then blocks until released (a stuck driver)."""

    name = "hangs"

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.release = threading.Event()

    def read(self) -> list[greenprec.Reading]:
        if self.answers <= 0:
            self.release.wait(60)
        self.answers -= 1
        return [greenprec.Reading("hangs/x", energy_j=1.0)]


def test_a_meter_whose_read_hangs_fails_the_measurement_instead_of_hanging() -> None:
    meter = _Hangs(answers=2)
    started = time.monotonic()
    try:
        with (
            pytest.raises(
                greenprec.MeterError, match=r"'hangs' did not answer read\(\) within 2 s"
            ),
            greenprec.measure(meter, interval=0.05),
        ):
            time.sleep(0.3)
    finally:
        meter.release.set()
    assert time.monotonic() - started < 10


def test_a_meter_that_hangs_at_the_entry_reading_never_starts_the_block() -> None:
    meter = _Hangs(answers=0)
    ran = False
    try:
        with (
            pytest.raises(greenprec.MeterError, match="did not answer read"),
            greenprec.measure(meter, interval=0.05),
        ):
            ran = True
    finally:
        meter.release.set()
    assert not ran


def test_bounded_reads_keep_the_window_exact() -> None:
    with greenprec.measure(MockMeter(power_w=100.0), interval=0.02) as m:
        time.sleep(0.2)
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, rel=1e-9)


@pytest.mark.slow
def test_a_run_past_its_time_limit_is_stopped_with_its_whole_process_group(
    tmp_path: Path,
) -> None:
    out, pid_file = tmp_path / "exp", tmp_path / "helper.pid"
    started = time.monotonic()
    result = greenprec_cli(
        "compare", "fp32", "--workload", "experiment_workloads:hangs_with_a_helper", "--runs",
        "1", "--run-timeout", "3", "--param", f"pid_file={pid_file}", "--out", str(out), *FAST,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stderr
    run = json.loads((out / "runs" / "fp32-001.json").read_text())
    assert run["status"] == "failed" and run["error"].startswith("timed out after 3 s")
    helper = int(pid_file.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(helper, 0)  # the workload's own child went with it


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "compare", "fp32", "--runs", "2", "--workload",
         "experiment_workloads:slow", "--param", "sleep_s=3", "--out", str(out), *FAST],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            index = out / "runs.csv"
            if index.exists() and ",running," in index.read_text():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr and "--resume --out" in stderr
    assert "Traceback" not in stderr
    runs = [json.loads(path.read_text()) for path in (out / "runs").iterdir()]
    (run,) = [run for run in runs if run["status"] != "pending"]
    assert run["status"] == "failed" and run["error"].startswith("interrupted (SIGTERM)")
    resumed = greenprec_cli("compare", "--resume", "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--warmup", "inf", "warmup_s: Input should be a finite number"),
        ("--cooldown", "1e300", "cooldown_s: Input should be less than or equal to 86400"),
        ("--baseline", "nan", "baseline_s: Input should be a finite number"),
        ("--interval", "inf", "interval_s: Input should be a finite number"),
        ("--runs", "99999999999999999999", "runs: Input should be less than or equal to 10000"),
        ("--run-timeout", "inf", "run_timeout_s: Input should be a finite number"),
    ],
)
def test_settings_have_finite_bounds(tmp_path: Path, flag: str, value: str, message: str) -> None:
    out = tmp_path / "exp"
    result = greenprec_cli(
        "compare", "fp32", "--workload", "experiment_workloads:sleepy", flag, value,
        "--out", str(out), "--meter", "mock", "--quiet",
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_measure_interval_is_bounded() -> None:
    result = greenprec_cli("measure", "--meter", "mock", "--interval", "inf", "--", "true")
    assert result.returncode == 2 and "Traceback" not in result.stderr

"""The CPU-time estimate: its documented formula, its process tree, its labelling."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

import greenprec
from greenprec.meters import estimate


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_estimate_follows_the_documented_formula() -> None:
    process = psutil.Process()
    before = sum(process.cpu_times()[:2])
    with greenprec.measure("estimate", meter_options={"tdp_w": 80, "idle_fraction": 0.25}) as m:
        _busy(0.3)
    cpu_s = sum(process.cpu_times()[:2]) - before
    cpus = psutil.cpu_count() or 1
    expected = cpu_s * 80 / cpus + m.duration_s * 0.25 * 80
    assert m.energy_j == pytest.approx(expected, rel=0.1)
    assert m.estimated is True
    assert m.domains.keys() == {"estimate/cpu"}


def test_idle_block_costs_only_the_idle_share() -> None:
    with greenprec.measure("estimate", meter_options={"tdp_w": 100, "idle_fraction": 0.1}) as m:
        time.sleep(0.5)
    assert m.mean_power_w == pytest.approx(10.0, abs=1.5)


def test_child_processes_are_counted() -> None:
    options = {"tdp_w": 100, "idle_fraction": 0}
    code = "import time\nend=time.process_time()+0.5\nwhile time.process_time()<end: pass"
    with greenprec.measure("estimate", meter_options=options) as m:
        subprocess.run([sys.executable, "-c", code], check=True)
    cpus = psutil.cpu_count() or 1
    # at least the child's 0.5 s of CPU at 100 W / cpus, and not counted twice
    assert 0.5 * 100 / cpus * 0.95 <= m.energy_j <= 1.0 * 100 / cpus * 1.5


def test_default_tdp_comes_from_the_table_or_the_documented_per_cpu_figure() -> None:
    assert estimate.default_tdp_w("AMD EPYC 7B13 64-Core Processor")[0] == 240.0
    tdp_w, source = estimate.default_tdp_w("Unknown CPU 9000", logical_cpus=4)
    assert tdp_w == estimate.DEFAULT_WATTS_PER_CPU * 4
    assert "logical CPUs" in source


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tdp_w": "hot"}, "tdp_w must be a positive number of watts"),
        ({"tdp_w": -5}, "tdp_w must be a positive number"),
        ({"idle_fraction": 2}, "between 0 and 1"),
        ({"pid": 999_999_999}, "no process"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(greenprec.ConfigError, match=message):
        greenprec.measure("estimate", meter_options=options).start()

"""The CPU-time estimate: its documented formula, its process tree, its labelling."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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


def vm_cpuinfo(tmp_path: Path, model_name: str, vendor: str, vcpus: int = 2) -> Path:
    """/proc/cpuinfo of a small cloud VM: its vCPUs are listed, the chip's threads are not."""
    blocks = [
        f"processor\t: {index}\n"
        f"vendor_id\t: {vendor}\n"
        f"model name\t: {model_name}\n"
        "cpu MHz\t\t: 2449.998\n"
        "physical id\t: 0\n"
        f"siblings\t: {vcpus}\n"
        f"core id\t\t: {index // 2}\n"
        f"cpu cores\t: {max(1, vcpus // 2)}\n"
        "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall "
        "nx lm constant_tsc rep_good nopl hypervisor avx avx2\n"
        for index in range(vcpus)
    ]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks) + "\n")
    return path


def test_a_small_vm_is_charged_its_threads_share_of_the_chip(tmp_path: Path) -> None:
    # A 2-vCPU GCE VM (t2d-standard-2) on a 64-core, 128-thread EPYC 7B13 (240 W): each busy
    # vCPU is 240 / 128 = 1.875 W, not 240 / 2 = 120 W.
    cpuinfo = vm_cpuinfo(tmp_path, "AMD EPYC 7B13 64-Core Processor", "AuthenticAMD")
    options = {"cpuinfo": str(cpuinfo), "idle_fraction": 0.1}
    process = psutil.Process()
    before = sum(process.cpu_times()[:2])
    with greenprec.measure("estimate", meter_options=options) as m:
        _busy(0.3)
    cpu_s = sum(process.cpu_times()[:2]) - before
    idle_j = m.duration_s * 0.1 * 1.875 * 2  # the VM's two vCPUs' idle share, not the chip's
    assert m.energy_j == pytest.approx(cpu_s * 1.875 + idle_j, rel=0.1)
    assert (m.energy_j - idle_j) / cpu_s == pytest.approx(1.875, rel=0.1)


@pytest.mark.parametrize(
    ("model_name", "vendor", "watts_per_thread", "source"),
    [
        ("AMD EPYC 7B13 64-Core Processor", "AuthenticAMD", 240 / 128, "240 W / 128 threads"),
        # AWS m6i.large: a 32-core, 64-thread Xeon Platinum 8375C (300 W) behind 2 vCPUs.
        (
            "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            "GenuineIntel",
            300 / 64,
            "300 W / 64 threads",
        ),
        # GCE's N1 names no model: the documented per-thread default, never divided by 2.
        ("Intel(R) Xeon(R) CPU @ 2.20GHz", "GenuineIntel", 10.0, "default 10 W per thread"),
        # 24 cores at 205 W: the "Gold 6248" entry (20 cores, 150 W) must not claim it.
        ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "GenuineIntel", 10.0, "not in the table"),
    ],
)
def test_vm_figures_are_per_thread_of_the_chip_not_per_vcpu(
    tmp_path: Path, model_name: str, vendor: str, watts_per_thread: float, source: str
) -> None:
    cpuinfo = vm_cpuinfo(tmp_path, model_name, vendor)
    meter = greenprec.available_meters()["estimate"](cpuinfo=str(cpuinfo))
    assert isinstance(meter, estimate.EstimateMeter)
    assert meter.logical_cpus == 2
    assert meter.watts_per_thread == pytest.approx(watts_per_thread)
    assert meter.tdp_w == pytest.approx(2 * watts_per_thread)  # the VM's share of the chip
    assert source in meter.tdp_source
    assert estimate.DEFAULT_WATTS_PER_THREAD == 10.0  # the figure docs/meters/estimate.md names


def test_given_tdp_is_shared_by_this_machines_logical_cpus(tmp_path: Path) -> None:
    cpuinfo = vm_cpuinfo(tmp_path, "AMD EPYC 7B13 64-Core Processor", "AuthenticAMD", vcpus=4)
    meter = estimate.EstimateMeter(tdp_w="30", cpuinfo=cpuinfo)
    assert meter.watts_per_thread == pytest.approx(7.5)
    assert meter.tdp_w == pytest.approx(30.0)
    assert meter.tdp_source == "option tdp_w: 30 W / 4 logical CPUs"


def test_every_table_entry_names_a_whole_chip() -> None:
    for entry in estimate.TDP_TABLE:
        assert entry.threads >= 8 and 1.0 <= entry.watts_per_thread <= 10.0, entry
        assert entry.matches(f"Vendor {entry.pattern} CPU @ 3.00GHz")
        assert not entry.matches(f"Vendor {entry.pattern}X CPU")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tdp_w": "hot"}, "tdp_w must be a positive number of watts"),
        ({"tdp_w": -5}, "tdp_w must be a positive number"),
        ({"idle_fraction": 2}, "between 0 and 1"),
        ({"pid": 999_999_999}, "no process"),
        ({"cpuinfo": "/no/such/cpuinfo"}, "cpuinfo must be a readable cpuinfo file"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(greenprec.ConfigError, match=message):
        greenprec.measure("estimate", meter_options=options).start()

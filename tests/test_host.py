"""Machine facts shared by the estimate meter, precision support and experiment.json."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from greenprec.experiment.environment import environment
from greenprec.host import cpu_model, logical_cpus, nvidia_gpus
from greenprec.precision import support


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An nvidia-smi on PATH that lists one H200 the way the real one does."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "assert '--format=csv,noheader' in sys.argv\n"
        "print('0, NVIDIA H200, 143771 MiB, 9.0, 550.54.15')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return script


def test_nvidia_gpus_parses_nvidia_smi(fake_nvidia_smi: Path) -> None:
    assert nvidia_gpus() == [
        {
            "index": "0",
            "name": "NVIDIA H200",
            "memory_total": "143771 MiB",
            "compute_capability": "9.0",
            "driver_version": "550.54.15",
        }
    ]


def test_one_nvidia_smi_listing_serves_support_and_the_environment(
    fake_nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # support() asks TensorFlow instead when it is already imported (other tests import it).
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    report = support(device="gpu")
    assert report.device == "gpu" and report.name == "NVIDIA H200"
    assert report.fp16.native and report.bf16.native
    assert environment()["host"]["gpus"][0]["compute_capability"] == "9.0"


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpus() == []


def test_a_vms_cpuinfo_gives_its_model_and_its_vcpus_not_the_chips_threads(
    tmp_path: Path,
) -> None:
    # A 2-vCPU VM on a 128-thread EPYC 7B13, as GCE shows it: two processor entries.
    cpuinfo = tmp_path / "cpuinfo"
    block = (
        "processor\t: {index}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
        "model name\t: AMD EPYC 7B13 64-Core Processor\nsiblings\t: 2\ncpu cores\t: 1\n"
    )
    cpuinfo.write_text("\n".join(block.format(index=index) for index in range(2)))
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"
    assert logical_cpus(cpuinfo) == 2


def test_old_arm_processor_model_line_is_not_a_cpu(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n\n"
        "processor\t: 1\nBogoMIPS\t: 38.40\n\nHardware\t: BCM2835\n"
    )
    assert logical_cpus(cpuinfo) == 2


def test_without_cpuinfo_the_os_count_is_used(tmp_path: Path) -> None:
    assert logical_cpus(tmp_path / "missing") == (os.cpu_count() or 1)

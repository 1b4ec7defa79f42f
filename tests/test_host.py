"""Machine facts shared by the estimate meter, precision support and experiment.json."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from greenprec.experiment.environment import environment
from greenprec.host import nvidia_gpus
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

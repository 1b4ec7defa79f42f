"""precision.support on AMD GPUs under ROCm: given architectures, and a fake ROCm PyTorch."""

from __future__ import annotations

import sys
import types

import pytest

from greenprec.precision.support import emulation_warnings, support


@pytest.mark.parametrize(
    ("arch", "bf16"),
    [
        ("gfx942", True),  # MI300X/MI300A
        ("gfx90a:sramecc+:xnack-", True),  # MI210/MI250X, as ROCm's PyTorch writes it
        ("gfx950", True),  # MI350
        ("gfx908", True),  # MI100: bf16 matrix cores at half the fp16 rate
        ("gfx1100", True),  # RDNA 3 (Radeon RX 7900): WMMA
        ("gfx906", False),  # MI50/MI60
        ("gfx1030", False),  # RDNA 2
    ],
)
def test_rocm_verdicts_per_architecture(arch: str, bf16: bool) -> None:
    report = support(gcn_arch=arch, framework="torch")
    assert report.platform == "amd" and report.device == "gpu"
    assert report.detected_by == "given GCN architecture"
    assert arch.split(":")[0] in report.name
    assert report.fp16.native and report.fp16.hardware
    assert report.bf16.native is bf16 and report.bf16.hardware is bf16
    assert not report.tf32.native and not report.tf32.hardware
    assert report.compute_capability is None


def test_no_tf32_on_amd_runs_as_fp32() -> None:
    report = support(gcn_arch="gfx942", gpu_name="AMD Instinct MI300X", framework="torch")
    assert report.name == "AMD Instinct MI300X (gfx942)"
    lines = emulation_warnings(["fp32", "mixed", "bf16", "tf32"], report)
    assert len(lines) == 1 and lines[0].startswith("tf32 (tensorfloat32) has no effect")
    assert "NVIDIA tensor-core format" in lines[0]


def test_gcn_arch_is_ignored_for_the_cpu() -> None:
    report = support("cpu", gcn_arch="gfx942", cpu_flags=[], machine="x86_64", system="Linux")
    assert report.device == "cpu"


def fake_torch(hip: str | None, arch: str, capability: tuple[int, int]) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(hip=hip, cuda=None if hip else "12.4")  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: True,
        current_device=lambda: 0,
        get_device_name=lambda index: "AMD Instinct MI300X" if hip else "NVIDIA H100",
        get_device_capability=lambda index: capability,
        get_device_properties=lambda index: types.SimpleNamespace(gcnArchName=arch),
    )
    return torch


def test_a_rocm_pytorch_gpu_is_judged_by_its_architecture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ROCm's PyTorch says 9.4 for gfx942: read as NVIDIA's 9.0+ it would claim TF32.
    monkeypatch.setitem(
        sys.modules, "torch", fake_torch("6.2.41133", "gfx942:sramecc+:xnack-", (9, 4))
    )
    report = support(framework="torch")
    assert report.platform == "amd" and report.detected_by == "PyTorch (ROCm)"
    assert report.name == "AMD Instinct MI300X (gfx942)"
    assert report.bf16.native and not report.tf32.native


def test_a_cuda_pytorch_gpu_is_still_nvidia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(None, "", (9, 0)))
    report = support(framework="torch")
    assert report.platform == "nvidia" and report.detected_by == "PyTorch"
    assert report.compute_capability == "9.0" and report.tf32.native

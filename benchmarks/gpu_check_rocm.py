"""GPU energy of the precision policies on an AMD GPU under ROCm, measured by the amdsmi meter.

    python benchmarks/gpu_check_rocm.py                   # digits-cnn-torch, four policies
    python benchmarks/gpu_check_rocm.py --mode matmul [--seconds 20]

The ROCm sibling of ``gpu_check.py``, whose workloads it reuses: PyTorch's ROCm build answers
``torch.cuda`` for AMD GPUs (``torch.cuda.is_available()`` is True, the device is ``"cuda"``),
so the same training runs there; what changes is the meter (``amdsmi``, ``pip install
'greenprec[amd]'``) and what the script checks first. It prints the GPUs the meter measures,
PyTorch's HIP version and the GPU's architecture (``gcnArchName``), what
``greenprec.precision.support`` says of fp16, bf16 and TF32 there, then per policy energy,
duration and mean power (``--mode workload``, the default: ``digits-cnn-torch`` under fp32,
tf32, mixed and bf16; ``--mode matmul``: a matmul-heavy MLP in fp32 and mixed, calibrated so
fp32 takes about ``--seconds``).

Exit status: 0 when it ran; 3 when this machine lacks what it needs (each missing piece is
printed: no amdsmi, no ROCm build of PyTorch, no AMD GPU), so it can be run anywhere without
hardware and say why it did nothing; 1 on a failure while measuring. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import greenprec
from greenprec.meters.amdsmi import AmdsmiMeter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import PRECISIONS, calibrate, torch_backend, workload_check

NOT_RUNNABLE = 3
METER = "amdsmi"


def missing_pieces() -> list[str]:
    """What this machine lacks to run the check (empty when it can run)."""
    missing: list[str] = []
    probe = AmdsmiMeter.probe()
    if not probe.available:
        missing.append(f"the amdsmi meter is unavailable: {probe.reason}")
    try:
        import torch
    except ImportError:
        return [*missing, "PyTorch is not installed (install a ROCm build: see pytorch.org)"]
    hip = getattr(torch.version, "hip", None)
    if not hip:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
        missing.append(
            f"this PyTorch ({torch.__version__}) is a {build} build, not a ROCm one "
            "(torch.version.hip is None)"
        )
    elif not torch.cuda.is_available():
        missing.append(f"PyTorch's ROCm build (HIP {hip}) sees no AMD GPU")
    return missing


def describe_gpu() -> None:
    import torch

    from greenprec.precision.support import support

    index = torch.cuda.current_device()
    arch = getattr(torch.cuda.get_device_properties(index), "gcnArchName", "?")
    print(f"PyTorch {torch.__version__}, HIP {torch.version.hip}, GPU {index}: "
          f"{torch.cuda.get_device_name(index)} ({arch})")  # fmt: skip
    report = support("gpu", framework="torch")
    for verdict in (report.fp16, report.bf16, report.tf32):
        native = "native" if verdict.native else "not native"
        print(f"  {verdict.policy:>5} ({verdict.dtype}): {native}: {verdict.reason}")


def matmul_check(seconds: float, width: int, batch: int) -> None:
    made = torch_backend(width, batch)
    if isinstance(made, str):
        sys.exit(f"cannot run: {made}")
    make_step, sync = made
    steps = {precision: make_step(precision) for precision in PRECISIONS}
    count = calibrate(steps["fp32"], sync, seconds)
    for precision in PRECISIONS:  # warm both up before either is measured
        for _ in range(3):
            steps[precision]()
    sync()
    results: dict[str, Any] = {}
    for precision in PRECISIONS:
        with greenprec.measure(METER, interval=0.1) as m:
            for _ in range(count):
                steps[precision]()
            sync()  # the block ends when the GPU is done, not when the launches are queued
        results[precision] = m
        print(
            f"{precision:>5}: {count} steps  energy_j={m.energy_j:10.1f}  "
            f"duration_s={m.duration_s:7.2f}  mean_power_w={m.mean_power_w:7.1f}  "
            f"J/step={m.energy_j / count:.3f}"
        )
    fp32, mixed = results["fp32"], results["mixed"]
    print(
        f"mixed / fp32: energy {mixed.energy_j / fp32.energy_j:.3f}, "
        f"time {mixed.duration_s / fp32.duration_s:.3f}, "
        f"power {mixed.mean_power_w / fp32.mean_power_w:.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["workload", "matmul"], default="workload")
    parser.add_argument("--epochs", type=int, default=12, help="workload mode: epochs per run")
    parser.add_argument("--seconds", type=float, default=20.0, help="matmul: fp32 run length")
    parser.add_argument("--width", type=int, default=4096, help="matmul: MLP width")
    parser.add_argument("--batch", type=int, default=4096, help="matmul: batch size")
    args = parser.parse_args()

    missing = missing_pieces()
    if missing:
        print("cannot run the ROCm GPU check on this machine:")
        for piece in missing:
            print(f"  - {piece}")
        return NOT_RUNNABLE
    print(f"amdsmi measures {', '.join(AmdsmiMeter.probe().domains)}")
    describe_gpu()
    if args.mode == "workload":
        workload_check(METER, "cuda", args.epochs)
    else:
        matmul_check(args.seconds, args.width, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())

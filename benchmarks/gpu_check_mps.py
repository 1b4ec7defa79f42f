"""Energy of the precision policies on an Apple silicon GPU, measured by the apple meter.

    python benchmarks/gpu_check_mps.py                      # digits-cnn-torch on "mps"
    python benchmarks/gpu_check_mps.py --mode matmul [--seconds 20] [--backend torch|tensorflow]
    python benchmarks/gpu_check_mps.py --check              # only say what is missing here

The Apple twin of ``gpu_check.py`` (NVIDIA, nvml). First it prints what is missing on this
machine for the check (macOS on Apple silicon, zeus-apple-silicon for the apple meter, a
PyTorch that sees the GPU as ``mps``, tensorflow-metal for ``--backend tensorflow``) and
``greenprec.precision.support``'s verdicts for the Apple GPU, then:

``--mode workload`` (the default) trains ``digits-cnn-torch`` on ``mps`` under fp32, mixed and
bf16, each run inside ``greenprec.measure("apple", sync=torch.mps.synchronize)`` through
greenprec's own ``run_workload`` (the PyTorch adapter with autocast and GradScaler on ``mps``),
and prints energy, duration, mean power, the SoC's parts (CPU, GPU, DRAM) and test accuracy per
policy. ``measure()``'s automatic sync covers CUDA and TensorFlow's GPUs, not ``mps``: the
explicit ``sync`` makes each block end when the GPU is done.

``--mode matmul`` trains a small matmul-heavy MLP for the same number of steps in fp32 and in
float16 (PyTorch autocast on ``mps``, or Keras's ``mixed_float16`` with tensorflow-metal), each
inside ``greenprec.measure("apple")``, and prints energy_j, duration_s and mean_power_w.

``--meter estimate --device cpu`` runs the workload mode on any machine (to check the script,
not the GPU). Not run in CI: it needs an Apple silicon Mac.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import greenprec
from greenprec.meters.apple import AppleMeter

POLICIES = ("fp32", "mixed", "bf16")
"""tf32 is left out: on the Apple GPU it is fp32 (support() says so)."""
Step = Callable[[], None]
Sync = Callable[[], None]


def missing(backend: str) -> list[str]:
    """What this machine lacks for the check on the Apple GPU, one line each (empty: ready)."""
    lines: list[str] = []
    system, machine = platform.system(), platform.machine()
    if system != "Darwin" or machine != "arm64":
        lines.append(f"an Apple silicon Mac with an arm64 Python (this is {system} {machine})")
    probe = AppleMeter.probe()
    if not probe.available:
        lines.append(f"the apple meter: {probe.reason}")
    if backend in ("torch", "auto"):
        try:
            import torch
        except ImportError:
            lines.append("PyTorch: pip install 'greenprec[torch]'")
        else:
            if not torch.backends.mps.is_available():
                lines.append(
                    f"PyTorch {torch.__version__} sees no Apple GPU "
                    "(torch.backends.mps.is_available() is False)"
                )
    if backend == "tensorflow":
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            distribution("tensorflow-metal")
        except PackageNotFoundError:
            lines.append("tensorflow-metal: pip install tensorflow-metal")
    return lines


def print_support(framework: str) -> None:
    from greenprec import ConfigError
    from greenprec.precision import support

    try:
        report = support("gpu", framework=framework)
    except ConfigError as error:
        print(f"precision support ({framework}): {error}")
        return
    print(f"precision support on {report.name} ({report.framework}, by {report.detected_by}):")
    for verdict in (report.fp16, report.bf16, report.tf32):
        state = "native" if verdict.native else "not native"
        print(f"  {verdict.policy:>5} ({verdict.dtype}): {state}: {verdict.reason}")


def mps_sync() -> Sync:
    import torch

    return torch.mps.synchronize if torch.backends.mps.is_available() else (lambda: None)


def soc_parts(m: greenprec.Measurement) -> str:
    parts = ("apple/cpu", "apple/gpu", "apple/dram")
    shown = [f"{name.split('/')[1]}={m.domains[name]:.1f}" for name in parts if name in m.domains]
    return ("  " + " ".join(shown)) if shown else ""


def workload_check(meter: str, device: str, epochs: int) -> None:
    """Train digits-cnn-torch under each policy on ``device``, measured by ``meter``."""
    from greenprec.workloads import run_workload

    sync = mps_sync() if device == "mps" else None
    print(f"digits-cnn-torch, {epochs} epochs, meter {meter}, device {device}")
    first: dict[str, float] = {}
    for name in POLICIES:
        result = run_workload(
            "digits-cnn-torch",
            policy=name,
            seed=42,
            params={"epochs": epochs, "device": device},
            measure_factory=lambda: greenprec.measure(
                meter, interval=0.1, sync=sync if sync is not None else "auto"
            ),
        )
        m = result.measurement
        first.setdefault("energy_j", m.energy_j)
        accuracy = result.metrics["test_accuracy"]
        print(
            f"{name:>5}: energy_j={m.energy_j:9.1f}  duration_s={m.duration_s:7.2f}  "
            f"mean_power_w={m.mean_power_w:7.1f}  test_accuracy={accuracy:.4f}  "
            f"energy vs fp32={m.energy_j / first['energy_j']:.3f}{soc_parts(m)}"
        )


# -- matmul mode: each backend returns (make_step(precision) -> step, synchronise) -----------
def torch_backend(width: int, batch: int) -> tuple[Callable[[str], Step], Sync]:
    import torch

    device = torch.device("mps")

    def make_step(precision: str) -> Step:
        model = torch.nn.Sequential(
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 10),
        ).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        mixed = precision == "mixed"
        scaler = torch.amp.GradScaler("mps", enabled=mixed)
        x = torch.randn(batch, width, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("mps", dtype=torch.float16, enabled=mixed):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        return step

    return make_step, torch.mps.synchronize


def tensorflow_backend(width: int, batch: int) -> tuple[Callable[[str], Step], Sync]:
    import keras
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        sys.exit("cannot run: TensorFlow sees no GPU (is tensorflow-metal installed?)")

    def make_step(precision: str) -> Step:
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if precision == "mixed" else "float32"
        )
        model = keras.Sequential(
            [
                keras.Input((width,)),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(10, dtype="float32"),  # float32 logits, as Keras advises
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        x = tf.random.normal((batch, width))
        y = tf.random.uniform((batch,), maxval=10, dtype=tf.int32)
        keras.mixed_precision.set_global_policy("float32")

        def step() -> None:
            model.train_on_batch(x, y)  # returns host values: synchronised

        return step

    return make_step, lambda: None


def calibrate(step: Step, sync: Sync, seconds: float) -> int:
    """Steps that take about ``seconds`` (after a warm-up that compiles the kernels)."""
    for _ in range(3):
        step()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(2.0, seconds / 5):
        step()
        count += 1
    sync()
    return max(10, int(count / (time.perf_counter() - start) * seconds))


def matmul_check(backend: str, width: int, batch: int, seconds: float) -> None:
    make_step, sync = (tensorflow_backend if backend == "tensorflow" else torch_backend)(
        width, batch
    )
    print(f"backend {backend}, width {width}, batch {batch}")
    steps = {precision: make_step(precision) for precision in ("fp32", "mixed")}
    count = calibrate(steps["fp32"], sync, seconds)
    results: dict[str, Any] = {}
    for precision, step in steps.items():
        with greenprec.measure("apple", interval=0.1, sync=sync) as m:
            for _ in range(count):
                step()
        results[precision] = m
        print(
            f"{precision:>5}: {count} steps  energy_j={m.energy_j:10.1f}  "
            f"duration_s={m.duration_s:7.2f}  mean_power_w={m.mean_power_w:7.1f}{soc_parts(m)}"
        )
    fp32, mixed = results["fp32"], results["mixed"]
    print(
        f"mixed / fp32: energy {mixed.energy_j / fp32.energy_j:.3f}, "
        f"time {mixed.duration_s / fp32.duration_s:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["workload", "matmul"], default="workload")
    parser.add_argument("--check", action="store_true", help="only say what is missing here")
    parser.add_argument("--meter", default="apple", help="workload mode: the meter")
    parser.add_argument("--device", default="mps", help="workload mode: mps, or cpu to try")
    parser.add_argument("--epochs", type=int, default=12, help="workload mode: epochs per run")
    parser.add_argument("--backend", choices=["torch", "tensorflow"], default="torch")
    parser.add_argument("--seconds", type=float, default=20.0, help="matmul: fp32 run length")
    parser.add_argument("--width", type=int, default=2048, help="matmul: MLP width")
    parser.add_argument("--batch", type=int, default=2048)
    args = parser.parse_args()

    on_the_gpu = args.mode == "matmul" or (args.meter == "apple" or args.device == "mps")
    lacking = missing(args.backend) if on_the_gpu else []
    if lacking or args.check:
        print("missing here:" if lacking else "nothing missing: ready to run")
        for line in lacking:
            print(f"  - {line}")
    if platform.system() == "Darwin":  # elsewhere support() judges another machine's GPU
        print_support("tensorflow" if args.backend == "tensorflow" else "torch")
    if args.check:
        return
    if lacking:
        sys.exit("cannot run on the Apple GPU here (see above); --meter estimate --device cpu "
                 "checks the script on any machine")  # fmt: skip
    if args.mode == "workload":
        workload_check(args.meter, args.device, args.epochs)
    else:
        matmul_check(args.backend, args.width, args.batch, args.seconds)


if __name__ == "__main__":
    main()

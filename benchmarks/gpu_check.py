"""GPU energy of the precision policies, measured by the nvml meter on a real NVIDIA GPU.

    python benchmarks/gpu_check.py                      # digits-cnn-torch, four policies
    python benchmarks/gpu_check.py --mode matmul [--seconds 20] [--backend auto|torch|...]

``--mode workload`` (the default) trains ``digits-cnn-torch`` under fp32, tf32, mixed and bf16,
each run inside ``greenprec.measure(meter="nvml")`` through greenprec's own ``run_workload``
(the PyTorch adapter, its GradScaler, and ``measure()``'s CUDA sync), and prints energy,
duration, mean power and test accuracy per policy. Without scikit-learn's digits it trains the
published CIFAR-10 CNN (``cifar10-cnn-torch``'s network) on a CIFAR-sized synthetic batch
instead. ``--meter estimate --device cpu`` runs the same script on a machine without a GPU
(to check the script, not the GPU).

``--mode matmul``:

Trains a small matmul-heavy MLP (TensorFlow/Keras under ``keras.mixed_precision`` policies if
TensorFlow sees a GPU, else PyTorch with autocast, else a CuPy matmul loop in float32 vs
float16) for the same number of steps in each precision, each inside
``greenprec.measure(meter="nvml")``, and prints energy_j, duration_s and mean_power_w. The step
count is calibrated so fp32 takes about ``--seconds``; the whole run stays under 3 minutes.
Not run in CI: it needs an NVIDIA GPU and nvidia-ml-py (``pip install greenprec[nvidia]``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import greenprec
from greenprec.meters.nvml import NvmlMeter

PRECISIONS = ("fp32", "mixed")
Step = Callable[[], None]
Sync = Callable[[], None]


# -- backends: each returns (make_step(precision) -> step, synchronise) -----------------------
def tensorflow_backend(width: int, batch: int) -> tuple[Callable[[str], Step], Sync] | str:
    try:
        import tensorflow as tf
    except ImportError:
        return "TensorFlow is not installed"
    if not tf.config.list_physical_devices("GPU"):
        return "TensorFlow sees no GPU (tensorflow-cpu, or no CUDA build)"
    import keras

    def make_step(precision: str) -> Step:
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if precision == "mixed" else "float32"
        )
        model = keras.Sequential(
            [
                keras.Input((width,)),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(width, activation="relu"),
                # The output stays float32 under mixed_float16, as Keras recommends.
                keras.layers.Dense(10, dtype="float32"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
        x = tf.random.normal((batch, width))
        y = tf.random.uniform((batch,), maxval=10, dtype=tf.int32)
        keras.mixed_precision.set_global_policy("float32")

        def step() -> None:
            model.train_on_batch(x, y)

        return step

    def sync() -> None:
        tf.constant(0.0).numpy()  # train_on_batch returns host values: already synchronised

    return make_step, sync


def torch_backend(width: int, batch: int) -> tuple[Callable[[str], Step], Sync] | str:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA GPU"
    # True fp32: TF32 tensor cores would make "fp32" partly reduced precision.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")

    def make_step(precision: str) -> Step:
        model = torch.nn.Sequential(
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 10),
        ).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cuda", enabled=precision == "mixed")
        x = torch.randn(batch, width, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "mixed"):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        return step

    return make_step, torch.cuda.synchronize


def cupy_backend(width: int, batch: int) -> tuple[Callable[[str], Step], Sync] | str:
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy sees no GPU"
    except cupy.cuda.runtime.CUDARuntimeError as error:
        return f"CuPy cannot use CUDA: {error}"

    def make_step(precision: str) -> Step:
        dtype = cupy.float16 if precision == "mixed" else cupy.float32
        a = cupy.random.standard_normal((batch, width), dtype=cupy.float32).astype(dtype)
        w = (cupy.random.standard_normal((width, width), dtype=cupy.float32) / width**0.5).astype(
            dtype
        )

        def step() -> None:
            h = a
            for _ in range(3):  # forward and a backward-sized pair of products per layer
                h = cupy.maximum(h @ w, 0)
                _ = h.T @ a
            _ = float(h[0, 0])  # keeps the loop honest; syncs once per step

        return step

    def sync() -> None:
        cupy.cuda.Device().synchronize()

    return make_step, sync


BACKENDS: dict[str, Callable[[int, int], tuple[Callable[[str], Step], Sync] | str]] = {
    "tensorflow": tensorflow_backend,
    "torch": torch_backend,
    "cupy": cupy_backend,
}


def pick_backend(name: str, width: int, batch: int) -> tuple[str, Callable[[str], Step], Sync]:
    reasons = []
    for candidate in BACKENDS if name == "auto" else [name]:
        made = BACKENDS[candidate](width, batch)
        if isinstance(made, str):
            reasons.append(f"{candidate}: {made}")
            continue
        return (candidate, *made)
    sys.exit("cannot run: no GPU framework usable here (" + "; ".join(reasons) + ")")


def calibrate(step: Step, sync: Sync, seconds: float) -> int:
    """Steps that take about ``seconds`` (after a warm-up that compiles kernels)."""
    for _ in range(3):
        step()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(2.0, seconds / 5):
        step()
        count += 1
    sync()
    rate = count / (time.perf_counter() - start)
    return max(10, int(rate * seconds))


POLICIES = ("fp32", "tf32", "mixed", "bf16")


def workload_check(meter: str, device: str | None, epochs: int) -> None:
    """Train digits-cnn-torch (or a synthetic CIFAR batch) under each policy, measured."""
    import importlib.util

    from greenprec.workloads import run_workload

    params: dict[str, Any] = {"epochs": epochs}
    if device is not None:
        params["device"] = device
    if importlib.util.find_spec("sklearn") is None:
        print("scikit-learn is missing: training the CIFAR-10 CNN on a synthetic batch")
        synthetic_cifar_check(meter, device or "cuda", epochs)
        return
    print(f"digits-cnn-torch, {epochs} epochs, meter {meter}, device {device or 'auto'}")
    first: dict[str, float] = {}
    for name in POLICIES:
        result = run_workload(
            "digits-cnn-torch",
            policy=name,
            seed=42,
            params=params,
            measure_factory=lambda: greenprec.measure(meter, interval=0.1),
        )
        m = result.measurement
        first.setdefault("energy_j", m.energy_j)
        accuracy = result.metrics["test_accuracy"]
        print(
            f"{name:>5}: energy_j={m.energy_j:9.1f}  duration_s={m.duration_s:7.2f}  "
            f"mean_power_w={m.mean_power_w:7.1f}  test_accuracy={accuracy:.4f}  "
            f"energy vs fp32={m.energy_j / first['energy_j']:.3f}  tf32={result.framework.tf32}"
        )


def synthetic_cifar_check(meter: str, device: str, epochs: int) -> None:
    import torch

    from greenprec.precision import torch_policy
    from greenprec.workloads.torch_models import Cifar10CNN

    x = torch.randn(2048, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (2048,), device=device)
    for name in POLICIES:
        torch.manual_seed(42)
        model = Cifar10CNN().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        with torch_policy(name, device) as precision, greenprec.measure(meter) as m:
            for _ in range(epochs):
                for start in range(0, len(x), 256):
                    with precision.autocast():
                        loss = torch.nn.functional.cross_entropy(
                            model(x[start : start + 256]), y[start : start + 256]
                        )
                    optimizer.zero_grad()
                    precision.backward_step(loss, optimizer)
        print(
            f"{name:>5}: energy_j={m.energy_j:9.1f}  duration_s={m.duration_s:7.2f}  "
            f"mean_power_w={m.mean_power_w:7.1f}  (synthetic data: no accuracy)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["workload", "matmul"], default="workload")
    parser.add_argument("--meter", default="nvml", help="workload mode: the meter to measure with")
    parser.add_argument("--device", default=None, help="workload mode: cuda, cuda:1, cpu")
    parser.add_argument("--epochs", type=int, default=12, help="workload mode: epochs per run")
    parser.add_argument("--seconds", type=float, default=20.0, help="target fp32 run length")
    parser.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
    parser.add_argument("--width", type=int, default=4096, help="MLP width (matrix size)")
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()

    if args.mode == "workload":
        if args.meter == "nvml" and not NvmlMeter.probe().available:
            sys.exit(f"cannot run: the nvml meter is unavailable: {NvmlMeter.probe().reason}")
        workload_check(args.meter, args.device, args.epochs)
        return
    probe = NvmlMeter.probe()
    if not probe.available:
        sys.exit(f"cannot run: the nvml meter is unavailable: {probe.reason}")
    backend, make_step, sync = pick_backend(args.backend, args.width, args.batch)
    print(f"backend {backend}, GPUs {', '.join(probe.domains)}, width {args.width}, "
          f"batch {args.batch}")  # fmt: skip

    steps = {precision: make_step(precision) for precision in PRECISIONS}
    count = calibrate(steps["fp32"], sync, args.seconds)
    for precision in PRECISIONS:  # warm both up before either is measured
        for _ in range(3):
            steps[precision]()
    sync()
    results: dict[str, Any] = {}
    for precision in PRECISIONS:
        step = steps[precision]
        with greenprec.measure("nvml", interval=0.1) as m:
            for _ in range(count):
                step()
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


if __name__ == "__main__":
    main()

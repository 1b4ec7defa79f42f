"""GPU energy of fp32 vs mixed precision, measured by the nvml meter on a real NVIDIA GPU.

    python benchmarks/gpu_check.py [--seconds 20] [--backend auto|tensorflow|torch|cupy]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="target fp32 run length")
    parser.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
    parser.add_argument("--width", type=int, default=4096, help="MLP width (matrix size)")
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()

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

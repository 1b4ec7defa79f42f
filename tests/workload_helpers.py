"""Helpers for the precision and workload tests: child Pythons, tiny CIFAR-10 files, and a
user's PyTorch workload (``workload_helpers:tiny_torch`` with ``tests/`` on the path)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from greenprec.workloads import WorkloadContext, workload

BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
MARK_ROW, MARK_COL, MARK_VALUE = 1, 2, 200
"""One red pixel (row 1, column 2) gets a distinct value to pin down row-major order."""


def load_triton_before_tensorflow() -> None:
    """Import triton now if TensorFlow is not loaded yet, so the two can share a process.

    PyTorch's optimizers import triton (through torch._dynamo), and triton loaded *after*
    TensorFlow crashes the interpreter (a segmentation fault, seen with triton 3.8 and
    TensorFlow 2.21: both bring their own LLVM); loaded before, both work. Test modules are
    imported before any test runs, so a PyTorch test module calling this at import keeps a
    later Keras test from setting up the crash for the PyTorch tests after it.
    """
    if "tensorflow" in sys.modules:
        return
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401


def python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, failing loudly on an error."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def image_rgb(batch: int, index: int) -> tuple[int, int, int]:
    """The plane values of image ``index`` in batch number ``batch`` (0-5)."""
    base = 10 * (batch * 4 + index) % 180
    return base + 1, base + 2, base + 3


def label(batch: int, index: int) -> int:
    return (batch * 3 + index) % 10


def batch_dict(batch: int, images: int) -> dict[bytes, Any]:
    """One batch in the python format: rows of 1024 R, 1024 G, 1024 B values, row-major."""
    rows = np.zeros((images, 3072), dtype=np.uint8)
    for index in range(images):
        red, green, blue = image_rgb(batch, index)
        rows[index, :1024], rows[index, 1024:2048], rows[index, 2048:] = red, green, blue
        rows[index, MARK_ROW * 32 + MARK_COL] = MARK_VALUE
    return {
        b"batch_label": f"batch {batch}".encode(),
        b"labels": [label(batch, index) for index in range(images)],
        b"data": rows,
        b"filenames": [f"img{index}.png".encode() for index in range(images)],
    }


def make_cifar_folder(root: Path, *, images: int = 2, protocol: int = 4) -> Path:
    """``root/cifar-10-batches-py`` with six tiny batches; returns the folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for number, name in enumerate(BATCHES):
        with (folder / name).open("wb") as handle:
            pickle.dump(batch_dict(number, images), handle, protocol=protocol)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}))
    return folder


def make_cifar_archive(path: Path, *, images: int = 2, protocol: int = 4) -> Path:
    """A ``cifar-10-python.tar.gz`` laid out like the real one, at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for number, name in enumerate(BATCHES):
            payload = pickle.dumps(batch_dict(number, images), protocol=protocol)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


@workload(framework="torch", description="A user's PyTorch workload: logistic regression.")
def tiny_torch(ctx: WorkloadContext) -> dict[str, float]:
    """Trains a linear classifier with the adapter greenprec hands it, as a user's loop would.

    Its extra metrics report what it was handed: the autocast dtype, a scaler, the device.
    """
    import torch
    import torch.nn.functional as F

    precision = ctx.precision
    assert precision is not None
    generator = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(256, 8, generator=generator).to(precision.device)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(8, 2).to(precision.device)  # initialised from the seeded torch RNG
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with ctx.measured():
        for _ in range(int(ctx.params.get("steps", 20))):
            optimizer.zero_grad()
            with precision.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            precision.backward_step(loss, optimizer)
    with torch.no_grad(), precision.autocast():
        logits = model(x)
    return {
        "test_accuracy": (logits.argmax(1) == y).float().mean().item(),
        "test_loss": F.cross_entropy(logits.float(), y).item(),
        "computed_in_float16": float(logits.dtype == torch.float16),
        "computed_in_bfloat16": float(logits.dtype == torch.bfloat16),
        "had_scaler": float(precision.scaler is not None),
        "first_weight": float(model.weight[0, 0].item()),
    }

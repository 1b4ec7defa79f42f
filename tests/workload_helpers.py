"""Helpers for the precision and workload tests: child Pythons and tiny CIFAR-10 files."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
MARK_ROW, MARK_COL, MARK_VALUE = 1, 2, 200
"""One red pixel (row 1, column 2) gets a distinct value to pin down row-major order."""


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

"""Facts about this machine that several parts of greenprec read: the CPU and NVIDIA GPUs.

Light on purpose (no TensorFlow, no psutil): meters, precision checks and the experiment's
environment record all read the same files and tools through here.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "CPUINFO",
    "cpu_model",
    "cuda_visible_indices",
    "logical_cpus",
    "nvidia_gpus",
    "nvml_text",
    "read_cpuinfo",
]

CPUINFO = "/proc/cpuinfo"
_GPU_FIELDS = ("index", "name", "memory_total", "compute_capability", "driver_version")


def read_cpuinfo(path: str | os.PathLike[str] = CPUINFO) -> tuple[str, frozenset[str]]:
    """(model name, flags) from a Linux cpuinfo file; empty when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", frozenset()
    name = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags.update(value.split())
    return name, frozenset(flags)


def cpu_model(path: str | os.PathLike[str] = CPUINFO) -> str:
    """The CPU model name, or what the platform says where there is no cpuinfo."""
    return read_cpuinfo(path)[0] or platform.processor()


def logical_cpus(path: str | os.PathLike[str] = CPUINFO) -> int:
    """Logical CPUs of this machine: the ``processor`` entries of a Linux cpuinfo file.

    In a VM these are its vCPUs, not the host's threads: ``siblings`` and ``cpu cores`` there
    describe the VM's virtual topology too, so nothing in the file tells the chip's own thread
    count. Where the file lists none (macOS, Windows, s390x), ``os.cpu_count()``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    count = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        # The value check skips old ARM kernels' "Processor : ARMv7 ..." model line.
        if key.strip().lower() == "processor" and value.strip().isdigit():
            count += 1
    return count or os.cpu_count() or 1


def nvidia_gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi lists them (_GPU_FIELDS); empty without a GPU or a driver."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run(
            [
                executable,
                "--query-gpu=index,name,memory.total,compute_cap,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        dict(zip(_GPU_FIELDS, (field.strip() for field in line.split(",")), strict=False))
        for line in listing.splitlines()
        if line.strip()
    ]


# -- NVIDIA GPUs through NVML (the nvml meter and the machine state share these) ----------


def cuda_visible_indices(
    nvml: Any, visible: str, count: int
) -> tuple[list[int], list[str], list[str]]:
    """Resolve CUDA_VISIBLE_DEVICES the way CUDA does: stop at the first entry naming no GPU.

    ``nvml`` is the imported ``pynvml``; ``count`` its device count. Returns the NVML indices
    made visible, the entries ignored (from the first that names no GPU) and the MIG entries.
    """
    uuids: list[str] | None = None
    indices: list[int] = []
    mig: list[str] = []
    entries = [entry.strip() for entry in visible.split(",")]
    for position, entry in enumerate(entries):
        index: int | None = None
        if entry.lstrip("-").isdigit():
            number = int(entry)
            index = number if 0 <= number < count else None
        elif entry.startswith("MIG-"):
            index = _mig_parent(nvml, entry, count)
            if index is not None:
                mig.append(entry)
        elif entry.startswith("GPU-"):
            if uuids is None:
                uuids = [
                    nvml_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
                    for i in range(count)
                ]
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        if index is None:
            return indices, [e for e in entries[position:] if e] if entry else [], mig
        if index not in indices:
            indices.append(index)
    return indices, [], mig


def _mig_parent(nvml: Any, entry: str, count: int) -> int | None:
    """The NVML index of the GPU a MIG UUID belongs to (``MIG-<uuid>`` or legacy
    ``MIG-GPU-<uuid>/<gi>/<ci>``)."""
    if entry.startswith("MIG-GPU-"):
        parent_uuid = entry.removeprefix("MIG-").split("/", 1)[0]
        for i in range(count):
            uuid = nvml_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
            if uuid == parent_uuid:
                return i
        return None
    try:
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(entry)
        except TypeError:  # nvidia-ml-py before 11.515 wants bytes
            handle = nvml.nvmlDeviceGetHandleByUUID(entry.encode())
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        return int(nvml.nvmlDeviceGetIndex(parent))
    except nvml.NVMLError:
        return None


def nvml_text(value: str | bytes) -> str:
    """A string NVML returned (bytes from nvidia-ml-py before 11.515)."""
    return value.decode() if isinstance(value, bytes) else value

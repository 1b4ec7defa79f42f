"""Facts about this machine and its software, recorded with every experiment."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from greenprec._version import __version__
from greenprec.meters.estimate import cpu_model


def package_version(*names: str) -> str | None:
    """The installed version of the first distribution found, without importing it."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi lists them; empty where there is none or no driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            [
                "nvidia-smi",
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
    keys = ("index", "name", "memory_total", "compute_capability", "driver_version")
    return [
        dict(zip(keys, (field.strip() for field in line.split(",")), strict=False))
        for line in listing.splitlines()
        if line.strip()
    ]


def environment() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "versions": {
            "greenprec": __version__,
            "python": sys.version.split()[0],
            "tensorflow": package_version("tensorflow", "tensorflow-cpu", "tf-nightly"),
            "keras": package_version("keras"),
            "numpy": package_version("numpy"),
        },
        "host": {
            "hostname": platform.node(),
            "os": f"{platform.system()} {platform.release()}",
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "physical_cpus": psutil.cpu_count(logical=False),
            "memory_gib": round(memory.total / 2**30, 2),
            "gpus": gpus(),
        },
    }

"""Facts about this machine and its software, recorded with every experiment."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from greenprec._version import __version__
from greenprec.host import cpu_model, nvidia_gpus


def package_version(*names: str) -> str | None:
    """The installed version of the first distribution found, without importing it."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def environment() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "versions": {
            "greenprec": __version__,
            "python": sys.version.split()[0],
            "tensorflow": package_version("tensorflow", "tensorflow-cpu", "tf-nightly"),
            "keras": package_version("keras"),
            "torch": package_version("torch"),
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
            "gpus": nvidia_gpus(),
        },
    }

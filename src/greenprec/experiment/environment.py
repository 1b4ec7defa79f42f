"""Facts about this machine and its software, recorded with every experiment."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TypedDict

import psutil

from greenprec._version import __version__
from greenprec.host import cpu_model, nvidia_gpus

__all__ = ["Environment", "environment"]


def _package_version(*names: str) -> str | None:
    """The installed version of the first distribution found, without importing it."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


class Environment(TypedDict):
    """The software and the machine an experiment ran on (``experiment.json``)."""

    versions: dict[str, str | None]
    """greenprec, Python and the frameworks: their versions, None where not installed."""
    host: dict[str, object]
    """The machine: name, OS, CPU model and counts, memory, GPUs."""


def environment() -> Environment:
    memory = psutil.virtual_memory()
    return {
        "versions": {
            "greenprec": __version__,
            "python": sys.version.split()[0],
            "tensorflow": _package_version("tensorflow", "tensorflow-cpu", "tf-nightly"),
            "keras": _package_version("keras"),
            "torch": _package_version("torch"),
            "numpy": _package_version("numpy"),
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

"""The parameters of the built-in workloads, as pydantic models.

Kept apart from the workloads' plugin modules, and imported only when params are checked:
loading the plugin manager (which every first ``measure()`` does) must not import pydantic.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Cifar10Params",
    "Cifar10TorchParams",
    "DigitsParams",
    "DigitsTorchParams",
    "read_param_value",
]


def read_param_value(text: str) -> object:
    """A workload parameter's value as written on a command line (``--param``, ``--vary``):
    JSON where it can be read as JSON (numbers, ``true``/``false``), else the text itself.
    One rule, so ``1e-3`` and ``true`` mean the same in every flag."""
    try:
        value: object = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value


class DigitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(32, ge=1)
    train_size: int | None = Field(None, ge=1)
    """Train on the first N training images (all 1347 by default)."""
    learning_rate: float = Field(2e-3, gt=0)
    test_size: float = Field(0.25, gt=0, lt=1)
    """Held-out fraction; the split is fixed (random_state 0) so seeds vary only training."""
    verbose: int = Field(0, ge=0, le=2)


class Cifar10Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(25, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    train_size: int | None = Field(None, ge=1)
    """Train on the first N training images (all 50,000 by default)."""
    test_size: int | None = Field(None, ge=1)
    """Validate and test on the first N test images (all 10,000 by default)."""
    augment: bool = True
    validation: bool = True
    """Validate on the test set after each epoch, as the study did (inside the measured fit)."""
    data: str | None = None
    verbose: int = Field(0, ge=0, le=2)


class DigitsTorchParams(DigitsParams):
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1``...; default ``cuda`` when PyTorch sees a GPU, else ``cpu``."""


class Cifar10TorchParams(Cifar10Params):
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1``...; default ``cuda`` when PyTorch sees a GPU, else ``cpu``."""

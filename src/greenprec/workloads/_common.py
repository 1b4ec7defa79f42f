"""Helpers the built-in workloads share: parameter validation, the float32 output head, and
the PyTorch adapter of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from greenprec.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from pydantic import BaseModel

    from greenprec.frameworks import KerasHistory, KerasModel
    from greenprec.precision.torch import TorchPolicy
    from greenprec.workloads.core import WorkloadContext

P = TypeVar("P", bound="BaseModel")


def parse_params(model: type[P], params: Mapping[str, object], workload: str) -> P:
    """Validate a workload's params; unknown or bad ones are one-line ConfigErrors.

    A None value means "not set" (a CLI flag left out), so the default applies.
    """
    from pydantic import ValidationError

    try:
        return model.model_validate({k: v for k, v in params.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'params'}: {item['msg']}"
            for item in error.errors()
        )
        known = ", ".join(model.model_fields)
        raise ConfigError(
            f"bad params for workload {workload!r}: {problems} (known params: {known})"
        ) from None


def float32_head(x: object, classes: int) -> object:
    """The classifier head: Dense and softmax in float32 so the loss stays float32 under
    mixed policies (a float16 softmax overflows and its cross-entropy loses precision)."""
    import keras

    x = keras.layers.Dense(classes, dtype="float32", name="logits")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)


def final_metrics(
    model: KerasModel,
    history: KerasHistory,
    test: tuple[NDArray[np.generic], NDArray[np.generic]],
    *,
    batch_size: int,
    epochs: int,
    train_size: int,
) -> dict[str, float]:
    """Test loss and accuracy from ``evaluate`` (outside the measured phase), plus the last
    epoch's training accuracy and the size of the run, as the report's extra columns.

    ``epochs`` is the epochs planned; the ``epochs`` metric is those trained (fewer when the
    run stopped at its target), read from the history."""
    x_test, y_test = test
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0)
    return {
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "train_accuracy": float(history.history["accuracy"][-1]),
        "epochs": float(len(history.history["accuracy"]) or epochs),
        "train_size": float(train_size),
    }


def count_samples(ctx: WorkloadContext, epochs_trained: int, train_size: int) -> None:
    """Report the training samples of a built-in workload that trained ``epochs_trained``
    epochs on ``train_size`` samples, unless its epochs already reported them (throughput:
    ``samples_per_s`` and ``energy_per_sample_j`` of the run)."""
    if ctx.samples_trained is None:
        ctx.samples_trained = epochs_trained * train_size


def torch_precision(ctx: WorkloadContext) -> TorchPolicy:
    """The entered PyTorch adapter ``run_workload`` hands a PyTorch workload."""
    from greenprec.workloads.core import WorkloadError

    if ctx.precision is None:
        raise WorkloadError(
            f"workload {ctx.name!r} is a PyTorch workload but its context has no precision "
            "adapter; run it through greenprec.workloads.run_workload"
        )
    return ctx.precision


def check_torch_device(device: str | None) -> None:
    """Before any run: a device given as a param exists (``cuda`` on a machine without one is
    a ConfigError now, not a failed run later). Imports torch only when a device is given."""
    if device is None:
        return
    from greenprec.precision.torch import torch_device

    torch_device(device)

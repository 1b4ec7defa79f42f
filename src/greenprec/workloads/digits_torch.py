"""``digits-cnn-torch``: ``digits-cnn`` in PyTorch, for a quick comparison on any machine.

The same data split, network, optimizer and epochs as the Keras workload (docs/workloads.md).
This module is a plugin the plugin manager loads: it imports torch only when the workload runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from greenprec.hookspecs import hookimpl
from greenprec.workloads._common import (
    check_torch_device,
    count_samples,
    parse_params,
    torch_precision,
)
from greenprec.workloads.core import (
    STANDARD_METRICS,
    TORCH_REQUIREMENTS,
    Requirement,
    WorkloadContext,
    workload,
)
from greenprec.workloads.digits import load_digits_split

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from greenprec.workloads.torch_models import DigitsCNN

__all__ = ["build_digits_cnn_torch", "digits_cnn_torch", "greenprec_workloads"]

_NAME = "digits-cnn-torch"


def build_digits_cnn_torch() -> DigitsCNN:
    """The digits CNN as a PyTorch module (float32, on the CPU; move it to the device)."""
    from greenprec.workloads.torch_models import DigitsCNN

    return DigitsCNN()


@workload(framework="torch")
def digits_cnn_torch(ctx: WorkloadContext) -> dict[str, float]:
    """digits-cnn in PyTorch: the same CNN, split and Adam on scikit-learn's 8x8 digits."""
    import torch

    from greenprec.precision import check_model
    from greenprec.workloads.params import DigitsTorchParams
    from greenprec.workloads.torch_models import evaluate, fit

    params = parse_params(DigitsTorchParams, ctx.params, _NAME)
    precision = torch_precision(ctx)
    (x_train, y_train), (x_test, y_test) = load_digits_split(params.test_size)
    x_train, y_train = x_train[: params.train_size], y_train[: params.train_size]

    def tensors(x: NDArray[np.float32], y: NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        # N×8×8×1 (Keras's channels-last) to PyTorch's N×1×8×8.
        images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        return images.to(precision.device), torch.from_numpy(y).to(precision.device)

    train, test = tensors(x_train, y_train), tensors(x_test, y_test)
    model = build_digits_cnn_torch().to(precision.device)
    # Keras's Adam: epsilon 1e-7 (PyTorch's default is 1e-8).
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate, eps=1e-7)
    check_model(model, policy=precision)
    generator = torch.Generator().manual_seed(ctx.seed)
    with ctx.measured():
        train_accuracy = fit(
            model,
            precision,
            optimizer,
            train,
            epochs=params.epochs,
            batch_size=params.batch_size,
            generator=generator,
            verbose=params.verbose,
            # Energy to a target: the test set evaluated after every epoch, inside the window.
            validation=test if ctx.targets else None,
            # Returns True once the run stops at its target: fit ends after that epoch.
            on_epoch_end=ctx.epoch_end if ctx.targets else None,
        )
    epochs_trained = ctx.epochs_run or params.epochs
    count_samples(ctx, epochs_trained, len(x_train))
    test_loss, test_accuracy = evaluate(model, precision, test, batch_size=params.batch_size)
    return {
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "epochs": float(epochs_trained),
        "train_size": float(len(x_train)),
    }


def _check_digits_torch_params(params: Mapping[str, object]) -> None:
    """Before any run: the params are valid and the device exists."""
    from greenprec.workloads.params import DigitsTorchParams

    check_torch_device(parse_params(DigitsTorchParams, params, _NAME).device)


digits_cnn_torch.check_params = _check_digits_torch_params  # type: ignore[attr-defined]
# Seconds on a laptop, minutes where bfloat16 or float16 is emulated: half an hour is generous.
# What a target may name: test_accuracy (a fraction of 1) and test_loss, after each epoch.
digits_cnn_torch.metrics = STANDARD_METRICS  # type: ignore[attr-defined]
digits_cnn_torch.timeout_s = 1800.0  # type: ignore[attr-defined]
digits_cnn_torch.requires = (  # type: ignore[attr-defined]
    *TORCH_REQUIREMENTS,
    Requirement("sklearn", "torch"),  # the digits data ship with scikit-learn
)


@hookimpl
def greenprec_workloads() -> dict[str, Callable[..., object]]:
    return {_NAME: digits_cnn_torch}

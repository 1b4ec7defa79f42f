"""``cifar10-cnn-torch``: the published CIFAR-10 CNN in PyTorch, on the same offline loader.

Layer for layer the Keras network (10,484,874 parameters), trained with the same protocol:
RMSprop (lr 1e-4, rho 0.9, epsilon 1e-7 as Keras), batch 512, 25 epochs, shift/flip
augmentation, validation on the test set after each epoch inside the measured phase. This
module is a plugin the plugin manager loads: it imports torch only when the workload runs.
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
from greenprec.workloads.cifar10 import cifar10_timeout_s, find_cifar10, load_cifar10
from greenprec.workloads.core import STANDARD_METRICS, WorkloadContext, workload

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from greenprec.workloads.torch_models import Cifar10CNN

__all__ = ["build_cifar10_cnn_torch", "cifar10_cnn_torch", "greenprec_workloads"]

_NAME = "cifar10-cnn-torch"


def build_cifar10_cnn_torch() -> Cifar10CNN:
    """The published CIFAR-10 CNN as a PyTorch module (float32, on the CPU)."""
    from greenprec.workloads.torch_models import Cifar10CNN

    return Cifar10CNN()


@workload(framework="torch")
def cifar10_cnn_torch(ctx: WorkloadContext) -> dict[str, float]:
    """The study's CIFAR-10 CNN in PyTorch (10.48M params, 25 epochs, batch 512); needs the data."""
    import numpy as np
    import torch

    from greenprec.precision import check_model
    from greenprec.workloads.params import Cifar10TorchParams
    from greenprec.workloads.torch_models import evaluate, fit, shift_and_flip

    params = parse_params(Cifar10TorchParams, ctx.params, _NAME)
    precision = torch_precision(ctx)
    (x_train, y_train), (x_test, y_test) = load_cifar10(params.data)
    x_train, y_train = x_train[: params.train_size], y_train[: params.train_size]
    x_test, y_test = x_test[: params.test_size], y_test[: params.test_size]

    def tensors(x: NDArray[np.uint8], y: NDArray[np.uint8]) -> tuple[torch.Tensor, torch.Tensor]:
        # uint8 N×32×32×3 stays uint8 on the device (a quarter of float32's memory), N×3×32×32.
        images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(y.astype(np.int64))
        return images.to(precision.device), labels.to(precision.device)

    train, test = tensors(x_train, y_train), tensors(x_test, y_test)
    generator = torch.Generator().manual_seed(ctx.seed)

    def scale(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0

    def augment(images: torch.Tensor) -> torch.Tensor:
        return shift_and_flip(scale(images), generator)

    model = build_cifar10_cnn_torch().to(precision.device)
    # Keras's RMSprop: rho 0.9 and epsilon 1e-7 (PyTorch's defaults are 0.99 and 1e-8).
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=params.learning_rate, alpha=0.9, eps=1e-7
    )
    check_model(model, policy=precision)
    with ctx.measured():
        train_accuracy = fit(
            model,
            precision,
            optimizer,
            train,
            epochs=params.epochs,
            batch_size=params.batch_size,
            generator=generator,
            prepare=augment if params.augment else scale,
            validation=test if params.validation or ctx.targets else None,
            prepare_validation=scale,
            verbose=params.verbose,
            # Returns True once the run stops at its target: fit ends after that epoch.
            on_epoch_end=ctx.epoch_end if ctx.targets else None,
        )
    epochs_trained = ctx.epochs_run or params.epochs
    count_samples(ctx, epochs_trained, len(x_train))
    test_loss, test_accuracy = evaluate(
        model, precision, test, batch_size=params.batch_size, prepare=scale
    )
    return {
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "epochs": float(epochs_trained),
        "train_size": float(len(x_train)),
    }


def _check_cifar10_torch_params(params: Mapping[str, object]) -> None:
    """Before any run: the params are valid, the device exists, the dataset can be found."""
    from greenprec.workloads.params import Cifar10TorchParams

    checked = parse_params(Cifar10TorchParams, params, _NAME)
    check_torch_device(checked.device)
    find_cifar10(checked.data)


cifar10_cnn_torch.check_params = _check_cifar10_torch_params  # type: ignore[attr-defined]
# What a target may name: test_accuracy (a fraction of 1) and test_loss, after each epoch.
cifar10_cnn_torch.metrics = STANDARD_METRICS  # type: ignore[attr-defined]
cifar10_cnn_torch.timeout_s = cifar10_timeout_s  # type: ignore[attr-defined]


@hookimpl
def greenprec_workloads() -> dict[str, Callable[..., object]]:
    return {_NAME: cifar10_cnn_torch}

"""The built-in networks in PyTorch, layer for layer as the Keras ones, and their training loop.

Imported only when a PyTorch workload runs (it imports torch); the workloads' plugin modules
(``digits_torch``, ``cifar10_torch``) stay light for the plugin manager.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from greenprec.precision.torch import TorchPolicy

__all__ = ["Cifar10CNN", "DigitsCNN", "Float32Head", "evaluate", "fit", "shift_and_flip"]

_Prepare = Callable[[torch.Tensor], torch.Tensor]


def _init_like_keras(model: nn.Module) -> nn.Module:
    """Keras's initialisation: Glorot-uniform kernels and zero biases (PyTorch's defaults
    differ), so the two frameworks start from the same distribution of weights."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


class Float32Head(nn.Module):
    """The classifier: a Linear layer computed in float32 with autocast off, like Keras's
    ``Dense(classes, dtype="float32")``. Its logits go to ``F.cross_entropy``, which is the
    float32 softmax and the categorical cross-entropy in one numerically stable step."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.logits = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.logits(x.float())  # type: ignore[no-any-return]


class DigitsCNN(nn.Module):
    """``digits-cnn`` in PyTorch: Conv(32, same) ReLU, Conv(64, same) ReLU, MaxPool 2,
    Dropout 0.25, Flatten, Linear(128) ReLU, Dropout 0.5, float32 head (151,306 parameters)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding="same"),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
        )
        self.head = Float32Head(128, classes)
        _init_like_keras(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


class Cifar10CNN(nn.Module):
    """The published CIFAR-10 CNN (``cifar10-cnn``) in PyTorch, 10,484,874 parameters.

    Conv(128, same) ReLU, Conv(128, valid) ReLU, MaxPool 2, Dropout 0.25, Conv(256, same)
    ReLU, Conv(256, valid) ReLU, MaxPool 2, Dropout 0.25, Flatten, Linear(1024) ReLU,
    Dropout 0.5, float32 head. Inputs are N×3×32×32.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 128, 3, padding="same")
        self.conv2 = nn.Conv2d(128, 128, 3)
        self.conv3 = nn.Conv2d(128, 256, 3, padding="same")
        self.conv4 = nn.Conv2d(256, 256, 3)
        self.dense = nn.Linear(256 * 6 * 6, 1024)
        self.pool = nn.MaxPool2d(2)
        self.dropout_conv = nn.Dropout(0.25)
        self.dropout_dense = nn.Dropout(0.5)
        self.head = Float32Head(1024, classes)
        _init_like_keras(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout_conv(self.pool(F.relu(self.conv2(F.relu(self.conv1(x))))))
        x = self.dropout_conv(self.pool(F.relu(self.conv4(F.relu(self.conv3(x))))))
        x = self.dropout_dense(F.relu(self.dense(torch.flatten(x, 1))))
        return self.head(x)  # type: ignore[no-any-return]


def shift_and_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keras's ``RandomTranslation(0.1, 0.1, fill_mode="nearest")`` and
    ``RandomFlip("horizontal")`` on a float32 N×C×H×W batch: each image shifted by up to 10%
    of its size in each direction (bilinear, edges repeated) and flipped with probability 1/2.
    The random numbers come from ``generator`` (on the CPU) so a seed fixes them."""
    count = images.shape[0]
    # In affine_grid's coordinates the image spans [-1, 1]: 10% of its size is 0.2.
    shifts = (torch.rand(count, 2, generator=generator) * 2 - 1) * 0.2
    flips = torch.rand(count, generator=generator) < 0.5
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.where(flips, -1.0, 1.0)
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shifts
    theta = theta.to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fit(
    model: nn.Module,
    precision: TorchPolicy,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    prepare: _Prepare | None = None,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    prepare_validation: _Prepare | None = None,
    verbose: int = 0,
    on_epoch_end: Callable[[int, dict[str, float | None], int], bool] | None = None,
) -> float:
    """Train as Keras's ``fit`` does: reshuffle each epoch, the last batch partial; return the
    last epoch's training accuracy (counted on the batches as trained, dropout on).

    ``prepare`` turns a stored batch into the model's input (scaling, augmentation), outside
    autocast: it belongs to the data, not to the policy. ``validation`` is evaluated after
    each epoch (with ``prepare_validation``), as Keras's ``validation_data``. Accuracy is
    summed on the device and read once per epoch, so a GPU does not wait after every batch.
    ``on_epoch_end(epoch, metrics, samples)`` is called after each epoch (from 1) with the
    validation metrics named ``test_loss`` and ``test_accuracy`` (the validation data is the
    test set) and the epoch's training samples; when it returns True (``ctx.epoch_end`` once
    the run stops at its target) training ends after that epoch.
    """
    images, labels = data
    count = len(images)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(count, generator=generator).to(images.device)
        correct = torch.zeros((), dtype=torch.int64, device=images.device)
        for start in range(0, count, batch_size):
            batch = order[start : start + batch_size]
            x, y = images[batch], labels[batch]
            if prepare is not None:
                with torch.no_grad():
                    x = prepare(x)
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            precision.backward_step(loss, optimizer)
            correct += (logits.detach().argmax(1) == y).sum()
        accuracy = correct.item() / count
        line = f"epoch {epoch + 1}/{epochs}: accuracy {accuracy:.4f}"
        metrics: dict[str, float | None] = {}
        if validation is not None:
            val_loss, val_accuracy = evaluate(
                model, precision, validation, batch_size=batch_size, prepare=prepare_validation
            )
            line += f", val_loss {val_loss:.4f}, val_accuracy {val_accuracy:.4f}"
            metrics = {"test_loss": val_loss, "test_accuracy": val_accuracy}
        stop = on_epoch_end is not None and on_epoch_end(epoch + 1, metrics, count)
        if verbose:
            print(line + (" (target reached: training stops)" if stop else ""), flush=True)
        if stop:
            break
    return accuracy


@torch.no_grad()
def evaluate(
    model: nn.Module,
    precision: TorchPolicy,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    batch_size: int,
    prepare: _Prepare | None = None,
) -> tuple[float, float]:
    """(mean loss, accuracy) in evaluation mode, under the policy's autocast as Keras's
    ``evaluate`` computes in the policy's dtype."""
    images, labels = data
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        if prepare is not None:
            x = prepare(x)
        with precision.autocast():
            logits = model(x)
        total += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    return total.item() / len(images), correct.item() / len(images)

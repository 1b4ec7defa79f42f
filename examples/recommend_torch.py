"""A plain PyTorch training script turned into a greenprec workload, for `greenprec recommend`.

    cd examples
    greenprec recommend --workload recommend_torch:train --target test_accuracy=0.95 --quick

A small MLP on scikit-learn's 8x8 digits: a few seconds per run on a CPU. docs/recommend.md
shows the script before and after as a diff. The workload reads its settings from
``ctx.params`` (``--vary batch_size=32,128``; greenprec passes ``--max-epochs`` as
``epochs``), trains under the precision policy greenprec has entered for the run
(``ctx.precision``), reports the test metrics after every epoch with ``ctx.epoch_end`` and
leaves its loop when that says the target is reached.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields

from greenprec import ConfigError
from greenprec.workloads import STANDARD_METRICS, WorkloadContext, workload

NAME = "recommend_torch:train"


@dataclass(frozen=True)
class Settings:
    batch_size: int = 64
    learning_rate: float = 5e-3
    epochs: int = 30
    hidden: int = 128


@workload(framework="torch", metrics=STANDARD_METRICS)
def train(ctx: WorkloadContext) -> dict[str, float]:
    """A small MLP on scikit-learn's 8x8 digits, in PyTorch: ~95 % test accuracy in 10 epochs."""
    # Imported here: greenprec imports this module to check the params and the target before
    # anything runs, and that should not cost a PyTorch import.
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    config = settings(ctx.params)
    precision = ctx.precision  # the policy of this run, entered by greenprec
    if precision is None:
        raise ConfigError(f"{NAME} runs under greenprec (recommend, compare)")
    device = precision.device

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    x_train = torch.tensor(x_train, dtype=torch.float32, device=device)
    x_test = torch.tensor(x_test, dtype=torch.float32, device=device)
    y_train = torch.tensor(y_train, dtype=torch.int64, device=device)
    y_test = torch.tensor(y_test, dtype=torch.int64, device=device)

    model = torch.nn.Sequential(
        torch.nn.Linear(64, config.hidden), torch.nn.ReLU(), torch.nn.Linear(config.hidden, 10)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(ctx.seed)

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad(), precision.autocast():
            logits = model(x_test).float()
        model.train()
        loss = float(F.cross_entropy(logits, y_test))
        return loss, float((logits.argmax(dim=1) == y_test).float().mean())

    with ctx.measured():
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(len(x_train), generator=generator).to(device)
            for start in range(0, len(x_train), config.batch_size):
                batch = order[start : start + config.batch_size]
                optimizer.zero_grad()
                with precision.autocast():
                    loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
                precision.backward_step(loss, optimizer)
            test_loss, test_accuracy = evaluate()
            metrics = {"test_accuracy": test_accuracy, "test_loss": test_loss}
            if ctx.epoch_end(epoch, metrics, samples=len(x_train)):
                break
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "epochs": epoch}


def settings(params: Mapping[str, object]) -> Settings:
    """The script's settings with the workload's params applied, checked first: a ConfigError
    names the bad one. ``device`` (``cpu``, ``cuda:1``) is for greenprec's PyTorch adapter."""
    known = [field.name for field in fields(Settings)]
    unknown = sorted(set(params) - {*known, "device"})
    if unknown:
        listed = ", ".join([*known, "device"])
        raise ConfigError(f"{NAME} has no param {unknown[0]!r} (known: {listed})")

    def whole(key: str, default: int) -> int:
        value = params.get(key)
        if value is None:
            return default
        # A bool is refused although Python counts it as an int: batch_size=true is a typo.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{NAME}: {key} must be a whole number, 1 or more, got {value!r}")
        return value

    def positive(key: str, default: float) -> float:
        value = params.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{NAME}: {key} must be a number above 0, got {value!r}")
        return float(value)

    return Settings(
        batch_size=whole("batch_size", Settings.batch_size),
        learning_rate=positive("learning_rate", Settings.learning_rate),
        epochs=whole("epochs", Settings.epochs),
        hidden=whole("hidden", Settings.hidden),
    )


# Checked before anything runs: a bad --vary or --param value stops the experiment then.
train.check_params = settings  # type: ignore[attr-defined]

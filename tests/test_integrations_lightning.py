"""greenprec.integrations.lightning.EnergyCallback against real Lightning: a tiny module, CPU.

With the mock meter every window's energy is exactly ``power_w * duration``; sleeps in the
validation step show which window holds the epoch's validation and the sanity check.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from greenprec import ConfigError
from greenprec.meters.mock import MockMeter

POWER_W = 50.0
MOCK: dict[str, Any] = {"meter": "mock", "meter_options": {"power_w": "50"}}
SLEEP_S = 0.03
"""Time each validation batch takes."""
OVERHEAD_S = 0.5
"""Most time the fit may spend outside its epochs besides the sanity check's sleeps: Lightning's
own set-up and tear-down, each window's start and stop; holds on a loaded 2-CPU machine."""

PACKAGES = ["lightning.pytorch", "pytorch_lightning"]


@pytest.fixture(params=PACKAGES)
def pl(request: pytest.FixtureRequest) -> Any:
    """Lightning under either name: the callback works with the Trainer of both."""
    pytest.importorskip("torch")
    return pytest.importorskip(request.param)


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("greenprec-sampler-")]


def tiny_module(pl: Any, *, fail_at_epoch: int | None = None) -> Any:
    import torch

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, index: int) -> Any:
            if self.current_epoch == fail_at_epoch:
                raise RuntimeError("the user's training broke")
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            time.sleep(SLEEP_S)
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def loaders() -> tuple[Any, Any]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(0)
    rows = TensorDataset(torch.rand(24, 4, generator=generator), torch.rand(24, 1))
    return DataLoader(rows, batch_size=8), DataLoader(rows, batch_size=8)  # 3 batches each


def memory_logger(pl: Any) -> Any:
    """A Logger keeping every ``log_metrics`` call: what any user's logger would receive."""

    class Memory(pl.loggers.Logger):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[int | None, dict[str, float]]] = []

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.calls.append((step, dict(metrics)))

    return Memory()


def trainer(pl: Any, callbacks: list[Any], logger: Any = False, **kwargs: Any) -> Any:
    return pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=2,
        **kwargs,
    )


def test_epochs_reach_the_logger_and_add_up_to_the_fit(pl: Any) -> None:
    from greenprec.integrations.lightning import EnergyCallback

    energy = EnergyCallback(**MOCK)
    logger = memory_logger(pl)
    fit = trainer(pl, [energy], logger)
    fit.fit(tiny_module(pl), *loaders())

    assert [e.epoch for e in energy.epochs] == [0, 1, 2]
    logged = [(metrics["epoch"], metrics) for _, metrics in logger.calls if "energy_j" in metrics]
    assert [epoch for epoch, _ in logged] == [0, 1, 2]
    for (_, metrics), epoch in zip(logged, energy.epochs, strict=True):
        for key in ("energy_j", "power_w", "duration_s"):
            # Lightning turns logged numbers into float32 tensors.
            assert metrics[key] == pytest.approx(getattr(epoch, key), rel=1e-6)
    assert float(fit.callback_metrics["energy_j"]) == pytest.approx(energy.epochs[-1].energy_j)

    val_batches = 3
    for epoch in energy.epochs:
        assert epoch.energy_j == pytest.approx(POWER_W * epoch.duration_s, rel=1e-9)
        assert epoch.duration_s >= val_batches * SLEEP_S  # the epoch's validation is inside
    whole = energy.measurement
    assert whole is not None and whole.meter == "mock"
    assert whole.energy_j == pytest.approx(POWER_W * whole.duration_s, rel=1e-9)
    outside_s = whole.duration_s - sum(e.duration_s for e in energy.epochs)
    assert energy.outside_epochs_j == pytest.approx(POWER_W * outside_s, rel=1e-6, abs=1e-9)
    # The two sanity-check batches come before the first epoch: in the fit, in no epoch.
    assert 2 * SLEEP_S <= outside_s < 2 * SLEEP_S + OVERHEAD_S
    assert not samplers()


def test_an_exception_stops_every_window(pl: Any) -> None:
    from greenprec.integrations.lightning import EnergyCallback

    energy = EnergyCallback(**MOCK)
    fit = trainer(pl, [energy])
    with pytest.raises(RuntimeError, match="training broke"):
        fit.fit(tiny_module(pl, fail_at_epoch=1), *loaders())
    assert not samplers()  # on_exception stopped the fit's and the epoch's windows
    assert energy.measurement is None
    assert [e.epoch for e in energy.epochs] == [0]


def test_meter_instances_are_refused() -> None:
    pytest.importorskip("torch")
    if not any(_installed(name) for name in PACKAGES):
        pytest.skip("Lightning is not installed")
    from greenprec.integrations.lightning import EnergyCallback

    with pytest.raises(ConfigError, match="by name"):
        EnergyCallback(meter=MockMeter())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="once a fit has ended"):
        _ = EnergyCallback(meter="mock").outside_epochs_j


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_without_lightning_the_import_error_names_the_extra() -> None:
    code = """
        import sys
        sys.modules["lightning"] = None  # as if neither package were installed
        sys.modules["pytorch_lightning"] = None
        try:
            import greenprec.integrations.lightning
        except ImportError as error:
            print(error)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "greenprec.integrations.lightning needs Lightning, which is not installed: "
        "pip install 'greenprec[lightning]'"
    )

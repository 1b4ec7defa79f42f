"""greenprec.integrations.lightning.EnergyCallback against real Lightning: a tiny module, CPU.

With the mock meter every window's energy is exactly ``power_w * duration``; sleeps in the
validation step show which window holds the epoch's validation and the sanity check.

Each training runs in a fresh interpreter (:func:`fresh`): once TensorFlow is loaded in a
process (the Keras tests load it), Lightning's import of torch's compiler stack (triton)
crashes that process with a segmentation fault, whatever the test order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from greenprec import ConfigError
from greenprec.meters.mock import MockMeter

POWER_W = 50.0
MOCK: dict[str, Any] = {"meter": "mock", "meter_options": {"power_w": "50"}}
SLEEP_S = 0.03
"""Time each validation batch takes."""
VAL_BATCHES = 3
SANITY_BATCHES = 2

PACKAGES = ["lightning.pytorch", "pytorch_lightning"]
RESULT = "greenprec-test-result: "


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    tests = str(Path(__file__).parent)
    path = os.pathsep.join([tests, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )


def fresh(scenario: str, package: str) -> dict[str, Any]:
    """``scenario(package)`` of this module, run in a new interpreter; its JSON result."""
    result = run_python(
        f"""
        import json, sys
        import {Path(__file__).stem} as here
        print({RESULT!r} + json.dumps(here.{scenario}(sys.argv[1])))
        """,
        package,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith(RESULT))
    found: dict[str, Any] = json.loads(line.removeprefix(RESULT))
    return found


# -- scenarios: run by fresh() in a new interpreter ------------------------------------------


def samplers() -> int:
    return sum(t.name.startswith("greenprec-sampler-") for t in threading.enumerate())


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
            self.calls: list[dict[str, float]] = []

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.calls.append(dict(metrics))

    return Memory()


def trainer(pl: Any, callbacks: list[Any], logger: Any = False) -> Any:
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
        num_sanity_val_steps=SANITY_BATCHES,
    )


def epochs_scenario(package: str) -> dict[str, Any]:
    import importlib
    from dataclasses import asdict

    from greenprec.integrations.lightning import EnergyCallback

    pl = importlib.import_module(package)
    syncs: list[None] = []
    energy = EnergyCallback(**MOCK, sync=lambda: syncs.append(None))
    logger = memory_logger(pl)
    fit = trainer(pl, [energy], logger)
    fit.fit(tiny_module(pl), *loaders())
    whole = energy.measurement
    assert whole is not None
    return {
        "epochs": [asdict(epoch) for epoch in energy.epochs],
        "logged": [call for call in logger.calls if "energy_j" in call],
        "callback_metric": float(fit.callback_metrics["energy_j"]),
        "whole": {"energy_j": whole.energy_j, "duration_s": whole.duration_s, "meter": whole.meter},
        "outside_epochs_j": energy.outside_epochs_j,
        "syncs": len(syncs),
        "samplers": samplers(),
    }


def exception_scenario(package: str) -> dict[str, Any]:
    import importlib

    from greenprec.integrations.lightning import EnergyCallback

    pl = importlib.import_module(package)
    energy = EnergyCallback(**MOCK)
    raised = ""
    try:
        trainer(pl, [energy]).fit(tiny_module(pl, fail_at_epoch=1), *loaders())
    except RuntimeError as error:
        raised = str(error)
    return {
        "raised": raised,
        "samplers": samplers(),
        "measurement": repr(energy.measurement),
        "epochs": [epoch.epoch for epoch in energy.epochs],
    }


def refusals_scenario(package: str) -> dict[str, str]:
    from greenprec.integrations.lightning import EnergyCallback

    refused = {}
    try:
        EnergyCallback(meter=MockMeter())  # type: ignore[arg-type]
    except ConfigError as error:
        refused["instance"] = str(error)
    try:
        _ = EnergyCallback(meter="mock").outside_epochs_j
    except ConfigError as error:
        refused["outside_epochs_j"] = str(error)
    return refused


def scenarios(package: str) -> dict[str, Any]:
    """Every scenario, in one interpreter: Lightning takes seconds to import."""
    return {
        "epochs": epochs_scenario(package),
        "exception": exception_scenario(package),
        "refusals": refusals_scenario(package),
    }


# -- tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=PACKAGES)
def found(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The scenarios' results with Lightning under either name: the callback works with the
    Trainer of both."""
    name: str = request.param
    if not _installed("torch") or not _installed(name.split(".")[0]):
        pytest.skip(f"{name} is not installed")
    return fresh("scenarios", name)


@pytest.mark.slow
def test_epochs_reach_the_logger_and_add_up_to_the_fit(found: dict[str, Any]) -> None:
    fit = found["epochs"]
    epochs = fit["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert [call["epoch"] for call in fit["logged"]] == [0, 1, 2]
    for call, epoch in zip(fit["logged"], epochs, strict=True):
        for key in ("energy_j", "power_w", "duration_s"):
            # Lightning turns logged numbers into float32 tensors.
            assert call[key] == pytest.approx(epoch[key], rel=1e-6)
    assert fit["callback_metric"] == pytest.approx(epochs[-1]["energy_j"], rel=1e-6)

    for epoch in epochs:
        assert epoch["meter"] == "mock"
        assert epoch["energy_j"] == pytest.approx(POWER_W * epoch["duration_s"], rel=1e-9)
        assert epoch["duration_s"] >= VAL_BATCHES * SLEEP_S  # the epoch's validation is inside
    whole = fit["whole"]
    assert whole["meter"] == "mock"
    assert whole["energy_j"] == pytest.approx(POWER_W * whole["duration_s"], rel=1e-9)
    outside_s = whole["duration_s"] - sum(e["duration_s"] for e in epochs)
    assert fit["outside_epochs_j"] == pytest.approx(POWER_W * outside_s, rel=1e-6, abs=1e-9)
    # The sanity-check batches come before the first epoch: in the fit, in no epoch. (No upper
    # bound: what else lies outside the epochs is Lightning's set-up and each window's edges,
    # machine time that grew past any fixed allowance under a loaded CI; each epoch holding its
    # own validation is checked above, by its duration.)
    assert outside_s >= SANITY_BATCHES * SLEEP_S
    assert fit["syncs"] == 2 * (1 + len(epochs))  # both edges of the fit and of each epoch
    assert fit["samplers"] == 0


@pytest.mark.slow
def test_an_exception_stops_every_window(found: dict[str, Any]) -> None:
    failed = found["exception"]
    assert failed["raised"] == "the user's training broke"
    assert failed["samplers"] == 0  # on_exception stopped the fit's and the epoch's windows
    assert failed["measurement"] == "None"
    assert failed["epochs"] == [0]


@pytest.mark.slow
def test_meter_instances_are_refused(found: dict[str, Any]) -> None:
    assert "pass the meter by name" in found["refusals"]["instance"]
    assert "once a fit has ended" in found["refusals"]["outside_epochs_j"]


@pytest.mark.slow
def test_with_pytorch_lightning_alone_the_callback_is_one_of_its_callbacks() -> None:
    if not _installed("pytorch_lightning"):
        pytest.skip("pytorch_lightning is not installed")
    result = run_python(
        """
        import sys
        sys.modules["lightning"] = None  # as if only pytorch_lightning were installed
        import pytorch_lightning
        from greenprec.integrations.lightning import EnergyCallback
        print(issubclass(EnergyCallback, pytorch_lightning.Callback))
        """
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_without_lightning_the_import_error_names_the_extra() -> None:
    result = run_python(
        """
        import sys
        sys.modules["lightning"] = None  # as if neither package were installed
        sys.modules["pytorch_lightning"] = None
        try:
            import greenprec.integrations.lightning
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == (
        "greenprec.integrations.lightning needs lightning, which is not installed: "
        "pip install 'greenprec[lightning]'"
    )

"""greenprec.integrations.transformers.EnergyCallback against a real Hugging Face Trainer.

The model is a one-layer BERT built from a config in the test (nothing is downloaded); the
mock meter makes every window's energy exactly ``power_w * duration``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from greenprec import ConfigError
from greenprec.meters.mock import MockMeter

POWER_W = 50.0
MOCK: dict[str, Any] = {"meter": "mock", "meter_options": {"power_w": "50"}}
STEPS = 4
OVERHEAD_S = 0.25
"""Most time one log may leave out of the windows between logs (one window's stop and the
next one's start take milliseconds); holds on a loaded 2-CPU machine."""


@pytest.fixture(scope="module")
def transformers() -> Any:
    pytest.importorskip("torch")
    module = pytest.importorskip("transformers")
    # The Trainer refuses to run with PyTorch unless accelerate is installed.
    pytest.importorskip("accelerate")
    return module


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("greenprec-sampler-")]


def tiny_trainer(transformers: Any, out: Path, callbacks: list[Any], **arguments: Any) -> Any:
    import torch

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 16

        def __getitem__(self, index: int) -> dict[str, Any]:
            generator = torch.Generator().manual_seed(index)
            return {
                "input_ids": torch.randint(0, 50, (8,), generator=generator),
                "labels": torch.tensor(index % 2),
            }

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        logging_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        **arguments,
    )
    return transformers.Trainer(
        model=model, args=args, train_dataset=Rows(), eval_dataset=Rows(), callbacks=callbacks
    )


def recorder(transformers: Any) -> Any:
    """A callback keeping the logs it receives, as a logger of ``report_to`` would."""

    class Recorder(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            self.seen.append(dict(logs or {}))

    return Recorder()


def test_every_log_has_the_energy_since_the_previous_one(transformers: Any, tmp_path: Path) -> None:
    from greenprec.integrations.transformers import EnergyCallback, LogEnergy

    energy = EnergyCallback(**MOCK)
    trainer = tiny_trainer(transformers, tmp_path, [energy])
    trainer.train()

    history = trainer.state.log_history
    # One log a step, then the Trainer's closing log (train_runtime, train_loss ...).
    assert len(history) == STEPS + 1 and "train_runtime" in history[-1]
    assert [i.step for i in energy.intervals] == [1, 2, 3, 4, 4]
    assert all(isinstance(i, LogEnergy) for i in energy.intervals)
    for entry, interval in zip(history, energy.intervals, strict=True):
        for key in ("energy_j", "power_w", "duration_s"):
            assert entry[key] == getattr(interval, key)
        assert interval.energy_j == pytest.approx(POWER_W * interval.duration_s, rel=1e-9)

    whole = energy.measurement
    assert whole is not None and whole.meter == "mock"
    assert whole.energy_j == pytest.approx(POWER_W * whole.duration_s, rel=1e-9)
    # The windows run from training's start, log to log: they leave out only their own stops
    # and starts and what follows the last log, and never overlap (their sum stays below).
    missing_s = whole.duration_s - sum(i.duration_s for i in energy.intervals)
    assert 0 <= missing_s < (len(history) + 1) * OVERHEAD_S
    assert not samplers()


def test_attach_puts_the_energy_before_every_logger(transformers: Any, tmp_path: Path) -> None:
    from greenprec.integrations.transformers import EnergyCallback

    late, early = recorder(transformers), recorder(transformers)
    # Given to the Trainer, the recorder comes before the energy callback, as report_to's
    # loggers do: it sees logs without energy.
    trainer = tiny_trainer(transformers, tmp_path / "late", [late, EnergyCallback(**MOCK)])
    trainer.train()
    assert late.seen and not any("energy_j" in logs for logs in late.seen)
    assert "energy_j" in trainer.state.log_history[0]

    energy = EnergyCallback(**MOCK)
    trainer = tiny_trainer(transformers, tmp_path / "early", [early, energy])
    assert energy.attach(trainer) is energy
    assert trainer.callback_handler.callbacks[0] is energy
    assert trainer.callback_handler.callbacks.count(energy) == 1
    trainer.train()
    assert len(early.seen) == STEPS + 1
    assert [logs["energy_j"] for logs in early.seen] == [i.energy_j for i in energy.intervals]


def test_an_evaluation_outside_training_gets_no_energy(transformers: Any, tmp_path: Path) -> None:
    from greenprec.integrations.transformers import EnergyCallback

    energy = EnergyCallback(**MOCK)
    trainer = tiny_trainer(transformers, tmp_path, [energy])
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "energy_j" not in trainer.state.log_history[-1]
    assert energy.intervals == [] and energy.measurement is None
    assert not samplers()


def test_meter_instances_are_refused(transformers: Any) -> None:
    from greenprec.integrations.transformers import EnergyCallback

    with pytest.raises(ConfigError, match="by name"):
        EnergyCallback(meter=MockMeter())  # type: ignore[arg-type]


def test_without_transformers_the_import_error_names_the_extra() -> None:
    code = """
        import sys
        sys.modules["transformers"] = None  # as if Transformers were not installed
        try:
            import greenprec.integrations.transformers
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
        "greenprec.integrations.transformers needs Transformers, which is not installed: "
        "pip install 'greenprec[transformers]'"
    )

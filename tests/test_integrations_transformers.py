"""greenprec.integrations.transformers.EnergyCallback against a real Hugging Face Trainer.

The model is a one-layer BERT built from a config in the test (nothing is downloaded); the
mock meter makes every window's energy exactly ``power_w * duration``.

The trainings run in a fresh interpreter (:func:`fresh`): once TensorFlow is loaded in a
process (the Keras tests load it), importing the Trainer or a PyTorch model of Transformers
(which import torch's compiler stack, triton) crashes that process with a segmentation fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
RESULT = "greenprec-test-result: "


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    tests = str(Path(__file__).parent)
    path = os.pathsep.join([tests, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )


def fresh(scenario: str) -> dict[str, Any]:
    """``scenario()`` of this module, run in a new interpreter; its JSON result."""
    result = run_python(
        f"""
        import json
        import {Path(__file__).stem} as here
        print({RESULT!r} + json.dumps(here.{scenario}()))
        """
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith(RESULT))
    found: dict[str, Any] = json.loads(line.removeprefix(RESULT))
    return found


# -- scenarios: run by fresh() in a new interpreter ------------------------------------------


def samplers() -> int:
    return sum(t.name.startswith("greenprec-sampler-") for t in threading.enumerate())


def tiny_trainer(out: str, callbacks: list[Any]) -> Any:
    import torch
    import transformers

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
    args = transformers.TrainingArguments(
        output_dir=out,
        max_steps=STEPS,
        logging_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=Rows(),
        eval_dataset=Rows(),
        callbacks=callbacks,
    )


def recorder() -> Any:
    """A callback keeping the logs it receives, as a logger of ``report_to`` would."""
    import transformers

    class Recorder(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            self.seen.append(dict(logs or {}))

    return Recorder()


def train_scenario(out: str) -> dict[str, Any]:
    from dataclasses import asdict

    from greenprec.integrations.transformers import EnergyCallback

    syncs: list[None] = []
    energy = EnergyCallback(**MOCK, sync=lambda: syncs.append(None))
    trainer = tiny_trainer(out, [energy])
    trainer.train()
    whole = energy.measurement
    assert whole is not None
    return {
        "history": trainer.state.log_history,
        "intervals": [asdict(interval) for interval in energy.intervals],
        "whole": {"energy_j": whole.energy_j, "duration_s": whole.duration_s, "meter": whole.meter},
        "syncs": len(syncs),
        "samplers": samplers(),
    }


def attach_scenario(out: str) -> dict[str, Any]:
    from greenprec.integrations.transformers import EnergyCallback

    # Given to the Trainer, the recorder comes before the energy callback, as report_to's
    # loggers do.
    late = recorder()
    trainer = tiny_trainer(f"{out}/late", [late, EnergyCallback(**MOCK)])
    trainer.train()
    unattached = {"seen": late.seen, "history": trainer.state.log_history}

    early, energy = recorder(), EnergyCallback(**MOCK)
    trainer = tiny_trainer(f"{out}/early", [early, energy])
    returned = energy.attach(trainer)
    callbacks = trainer.callback_handler.callbacks
    order = {"returned_self": returned is energy, "first": callbacks[0] is energy}
    order["once"] = callbacks.count(energy) == 1
    trainer.train()
    attached = {"seen": early.seen, "intervals": [i.energy_j for i in energy.intervals]}
    return {"unattached": unattached, "order": order, "attached": attached}


def evaluate_scenario(out: str) -> dict[str, Any]:
    from greenprec.integrations.transformers import EnergyCallback

    energy = EnergyCallback(**MOCK)
    trainer = tiny_trainer(out, [energy])
    metrics = trainer.evaluate()
    return {
        "metrics": sorted(metrics),
        "last_log": trainer.state.log_history[-1],
        "intervals": len(energy.intervals),
        "measurement": repr(energy.measurement),
        "samplers": samplers(),
    }


def refusal_scenario() -> str:
    from greenprec.integrations.transformers import EnergyCallback

    try:
        EnergyCallback(meter=MockMeter())  # type: ignore[arg-type]
    except ConfigError as error:
        return str(error)
    return "accepted"


def scenarios() -> dict[str, Any]:
    """Every scenario, in one interpreter: torch and Transformers take seconds to import."""
    with tempfile.TemporaryDirectory() as out:
        return {
            "train": train_scenario(f"{out}/train"),
            "attach": attach_scenario(f"{out}/attach"),
            "evaluate": evaluate_scenario(f"{out}/evaluate"),
            "refusal": refusal_scenario(),
        }


# -- tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    for module in ("torch", "transformers", "accelerate"):  # the Trainer needs accelerate
        if not _installed(module):
            pytest.skip(f"{module} is not installed")
    return fresh("scenarios")


@pytest.mark.slow
def test_every_log_has_the_energy_since_the_previous_one(found: dict[str, Any]) -> None:
    train = found["train"]
    history, intervals = train["history"], train["intervals"]
    # One log a step, then the Trainer's closing log (train_runtime, train_loss ...).
    assert len(history) == STEPS + 1 and "train_runtime" in history[-1]
    assert [i["step"] for i in intervals] == [1, 2, 3, 4, 4]
    for entry, interval in zip(history, intervals, strict=True):
        for key in ("energy_j", "power_w", "duration_s"):
            assert entry[key] == interval[key]
        assert interval["meter"] == "mock"
        assert interval["energy_j"] == pytest.approx(POWER_W * interval["duration_s"], rel=1e-9)

    whole = train["whole"]
    assert whole["meter"] == "mock"
    assert whole["energy_j"] == pytest.approx(POWER_W * whole["duration_s"], rel=1e-9)
    # The windows run from training's start, log to log: they leave out only their own stops
    # and starts and what follows the last log, and never overlap (their sum stays below).
    missing_s = whole["duration_s"] - sum(i["duration_s"] for i in intervals)
    assert 0 <= missing_s < (len(history) + 1) * OVERHEAD_S
    # Both edges of: the whole train, a window per log, and the one after the last log.
    assert train["syncs"] == 2 * (1 + len(intervals) + 1)
    assert train["samplers"] == 0


@pytest.mark.slow
def test_attach_puts_the_energy_before_every_logger(found: dict[str, Any]) -> None:
    unattached, attached = found["attach"]["unattached"], found["attach"]["attached"]
    # Without attach, a callback ahead of the energy one sees logs without energy, though
    # log_history has it.
    assert unattached["seen"] and not any("energy_j" in logs for logs in unattached["seen"])
    assert "energy_j" in unattached["history"][0]
    assert found["attach"]["order"] == {"returned_self": True, "first": True, "once": True}
    assert len(attached["seen"]) == STEPS + 1
    assert [logs["energy_j"] for logs in attached["seen"]] == attached["intervals"]


@pytest.mark.slow
def test_an_evaluation_outside_training_gets_no_energy(found: dict[str, Any]) -> None:
    evaluate = found["evaluate"]
    assert "eval_loss" in evaluate["metrics"] and "energy_j" not in evaluate["last_log"]
    assert evaluate["intervals"] == 0 and evaluate["measurement"] == "None"
    assert evaluate["samplers"] == 0


@pytest.mark.slow
def test_meter_instances_are_refused(found: dict[str, Any]) -> None:
    assert "pass the meter by name" in found["refusal"]


def test_without_transformers_the_import_error_names_the_extra() -> None:
    result = run_python(
        """
        import sys
        sys.modules["transformers"] = None  # as if Transformers were not installed
        try:
            import greenprec.integrations.transformers
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == (
        "greenprec.integrations.transformers needs transformers, which is not installed: "
        "pip install 'greenprec[transformers]'"
    )

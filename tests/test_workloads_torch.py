"""PyTorch workloads: the adapter handed to them, seeding, the built-ins, and compare end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import greenprec
from greenprec.errors import ConfigError
from greenprec.precision import TorchPolicy
from greenprec.workloads import WorkloadContext, run_workload, workload
from workload_helpers import load_triton_before_tensorflow, make_cifar_archive, tiny_torch

torch = pytest.importorskip("torch")
load_triton_before_tensorflow()  # a Keras test earlier in the session must not crash these

TESTS = Path(__file__).resolve().parent
# One OpenMP thread in child Pythons: on a small, busy machine (the 2-core one CI and these
# tests run on) PyTorch's threads spin-wait for a core another process holds, and a tiny
# model trains ten times slower. Results must then match between runs with the same setting.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def mock() -> greenprec.Measurement:
    return greenprec.measure("mock")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """This process trains on one thread too (see SINGLE_THREAD), and is left as it was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def digits() -> None:
    pytest.importorskip("sklearn")


# --- a user's PyTorch workload ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "float16", "bfloat16", "scaler", "tf32"),
    [
        ("fp32", 0.0, 0.0, 0.0, False),
        ("tf32", 0.0, 0.0, 0.0, True),
        ("mixed", 1.0, 0.0, 1.0, False),
        ("bf16", 0.0, 1.0, 0.0, False),
    ],
)
def test_a_user_workload_gets_the_entered_adapter(
    policy: str, float16: float, bfloat16: float, scaler: float, tf32: bool
) -> None:
    result = run_workload(tiny_torch, policy=policy, seed=3, measure_factory=mock)
    metrics = result.metrics
    assert metrics["computed_in_float16"] == float16
    assert metrics["computed_in_bfloat16"] == bfloat16
    assert metrics["had_scaler"] == scaler
    assert metrics["test_accuracy"] > 0.9  # it learned, scaler and all
    info = result.framework
    assert info.name == "torch" and info.version == torch.__version__ and info.device == "cpu"
    assert info.tf32 is tf32
    assert info.switches["torch.get_float32_matmul_precision()"] == ("high" if tf32 else "highest")
    assert result.to_dict()["framework"]["device"] == "cpu"


def test_the_context_holds_the_adapter_while_it_runs() -> None:
    seen: dict[str, Any] = {}

    @workload(framework="torch")
    def inspect(ctx: WorkloadContext) -> dict[str, float]:
        seen["precision"], seen["framework"] = ctx.precision, ctx.framework
        seen["tf32"] = torch.backends.cuda.matmul.allow_tf32
        with ctx.measured():
            pass
        return {"test_accuracy": 1.0, "test_loss": 0.0}

    before = torch.backends.cuda.matmul.allow_tf32
    run_workload(inspect, policy="tf32", seed=0, measure_factory=mock)
    assert isinstance(seen["precision"], TorchPolicy) and seen["framework"] == "torch"
    assert seen["precision"].policy.name == "tf32" and seen["tf32"] is True
    assert torch.backends.cuda.matmul.allow_tf32 is before  # restored after the run


def test_seeded_and_deterministic_only_for_its_run() -> None:
    @workload(framework="torch")
    def draw(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            value = torch.rand(()).item()
        deterministic = torch.are_deterministic_algorithms_enabled()
        return {"test_accuracy": value, "test_loss": 0.0, "deterministic": float(deterministic)}

    first = run_workload(draw, policy="fp32", seed=5, measure_factory=mock).metrics
    again = run_workload(draw, policy="bf16", seed=5, measure_factory=mock).metrics
    other = run_workload(draw, policy="fp32", seed=6, measure_factory=mock).metrics
    assert first["test_accuracy"] == again["test_accuracy"] != other["test_accuracy"]
    assert first["deterministic"] == 0.0
    strict = run_workload(draw, policy="fp32", seed=5, deterministic=True, measure_factory=mock)
    assert strict.metrics["deterministic"] == 1.0
    assert not torch.are_deterministic_algorithms_enabled()  # not left on for the next run


def test_the_device_param() -> None:
    result = run_workload(
        tiny_torch,
        policy="fp32",
        seed=0,
        params={"device": "cpu", "steps": 1},
        measure_factory=mock,
    )
    assert result.framework.device == "cpu" and result.params["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="PyTorch sees 0 CUDA GPU"):
            run_workload(tiny_torch, policy="fp32", seed=0, params={"device": "cuda"})


def test_a_user_workload_by_path_and_by_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_plugin: Any
) -> None:
    by_path = run_workload(
        "workload_helpers:tiny_torch", policy="mixed", seed=1, measure_factory=mock
    )
    assert by_path.workload == "workload_helpers:tiny_torch"
    assert by_path.metrics["had_scaler"] == 1.0 and by_path.framework.name == "torch"
    install_plugin(
        "gp_torch_workload",
        """
        import greenprec
        from workload_helpers import tiny_torch

        @greenprec.hookimpl
        def greenprec_workloads():
            return {"tiny-torch": tiny_torch}
        """,
    )
    by_plugin = run_workload("tiny-torch", policy="mixed", seed=1, measure_factory=mock)
    assert by_plugin.metrics == by_path.metrics  # same seed, same workload, same numbers


# --- the built-in networks -------------------------------------------------------------------


def test_cifar10_network_as_published() -> None:
    from greenprec.workloads.cifar10_torch import build_cifar10_cnn_torch

    model = build_cifar10_cnn_torch()
    assert sum(p.numel() for p in model.parameters()) == 10_484_874  # the Keras model's count
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (128, 3, 3, 3), "conv1.bias": (128,),
        "conv2.weight": (128, 128, 3, 3), "conv2.bias": (128,),
        "conv3.weight": (256, 128, 3, 3), "conv3.bias": (256,),
        "conv4.weight": (256, 256, 3, 3), "conv4.bias": (256,),
        "dense.weight": (1024, 9216), "dense.bias": (1024,),
        "head.logits.weight": (10, 1024), "head.logits.bias": (10,),
    }  # fmt: skip
    assert all(not p.any() for name, p in model.named_parameters() if name.endswith("bias"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and logits.dtype == torch.float32  # the float32 head


def test_digits_network_matches_the_keras_one() -> None:
    from greenprec.workloads.digits_torch import build_digits_cnn_torch

    model = build_digits_cnn_torch()
    # The Keras digits CNN's count: conv 320 + conv 18,496 + dense 131,200 + logits 1,290.
    assert sum(p.numel() for p in model.parameters()) == 151_306
    kinds = [type(m).__name__ for m in model.features] + [type(model.head.logits).__name__]
    assert kinds == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout",
        "Flatten", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.tensorflow
def test_parameter_counts_equal_keras() -> None:
    pytest.importorskip("tensorflow")
    from greenprec.workloads.cifar10 import build_cifar10_cnn
    from greenprec.workloads.digits import build_digits_cnn
    from greenprec.workloads.torch_models import Cifar10CNN, DigitsCNN

    for keras_model, torch_model in (
        (build_cifar10_cnn(), Cifar10CNN()),
        (build_digits_cnn(), DigitsCNN()),
    ):
        assert keras_model.count_params() == sum(p.numel() for p in torch_model.parameters())


def test_shift_and_flip_like_keras() -> None:
    from greenprec.workloads.torch_models import shift_and_flip

    constant = torch.full((64, 3, 32, 32), 0.25)
    assert torch.allclose(shift_and_flip(constant, torch.Generator().manual_seed(0)), constant)
    # Left half dark, right half bright: a flip swaps them; a shift of at most 10% (3.2 px)
    # keeps the outer 12 columns on their side.
    halves = torch.zeros(2000, 1, 32, 32)
    halves[..., 16:] = 1.0
    out = shift_and_flip(halves, torch.Generator().manual_seed(1))
    flipped = out[:, 0, :, :12].mean(dim=(1, 2)) > 0.5
    assert torch.equal(out[~flipped][..., :12], halves[~flipped][..., :12])
    assert 0.45 < flipped.float().mean().item() < 0.55
    assert not torch.equal(out[~flipped], halves[~flipped])  # and they moved
    assert out.min() >= 0 and out.max() <= 1  # edges repeated, nothing invented
    again = shift_and_flip(halves, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


# --- the built-in workloads ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["fp32", "mixed", "bf16"])
def test_digits_torch_runs_under_each_policy(digits: None, policy: str) -> None:
    params = {"epochs": 1, "train_size": 64, "batch_size": 32}
    result = run_workload(
        "digits-cnn-torch", policy=policy, seed=0, params=params, measure_factory=mock
    )
    assert result.metrics["train_size"] == 64 and result.metrics["epochs"] == 1
    assert 0 <= result.metrics["test_accuracy"] <= 1 and result.metrics["test_loss"] > 0
    assert result.measurement.duration_s > 0 and result.framework.name == "torch"


@pytest.mark.slow
def test_digits_torch_learns(digits: None) -> None:
    result = run_workload(
        "digits-cnn-torch", policy="fp32", seed=0, params={"epochs": 3}, measure_factory=mock
    )
    assert result.metrics["test_accuracy"] >= 0.9 and result.metrics["train_size"] == 1347


@pytest.mark.slow
def test_digits_torch_stops_training_at_its_target(digits: None) -> None:
    """fit leaves its epoch loop when ctx.epoch_end says the target is reached."""
    result = run_workload(
        "digits-cnn-torch",
        policy="fp32",
        seed=0,
        params={"epochs": 30},
        measure_factory=mock,
        targets={"test_accuracy": 0.8},
        stop_at_target=True,
    )
    assert result.stopped_at_target and result.epochs_run is not None
    assert result.epochs_run < 30 and result.metrics["epochs"] == result.epochs_run
    accuracies = [point.metrics["test_accuracy"] or 0.0 for point in result.epochs]
    assert accuracies[-1] >= 0.8 and all(a < 0.8 for a in accuracies[:-1])
    assert result.samples_trained == 1347 * result.epochs_run


@pytest.mark.slow
def test_digits_torch_reaches_the_keras_accuracy(digits: None) -> None:
    result = run_workload("digits-cnn-torch", policy="fp32", seed=0, measure_factory=mock)
    assert result.metrics["test_accuracy"] >= 0.97 and result.metrics["test_loss"] < 0.1


def test_bad_params_name_the_device_param(digits: None) -> None:
    with pytest.raises(ConfigError, match=r"bad params for workload 'digits-cnn-torch'.*device"):
        run_workload("digits-cnn-torch", policy="fp32", seed=0, params={"epoch": 2})
    from greenprec.workloads.cifar10_torch import cifar10_cnn_torch

    with pytest.raises(ConfigError, match="CIFAR-10"):
        cifar10_cnn_torch.check_params({"data": "/nonexistent/cifar"})  # type: ignore[attr-defined]
    from greenprec.workloads.digits_torch import digits_cnn_torch

    digits_cnn_torch.check_params({"device": "cpu"})  # type: ignore[attr-defined]
    if not torch.cuda.is_available():  # a missing GPU stops compare before its first run
        with pytest.raises(ConfigError, match="PyTorch sees 0 CUDA GPU"):
            digits_cnn_torch.check_params({"device": "cuda"})  # type: ignore[attr-defined]


@pytest.mark.slow
def test_cifar10_torch_on_a_tiny_archive(tmp_path: Path) -> None:
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", images=4)
    params = {"data": str(archive), "epochs": 1, "batch_size": 8}
    result = run_workload(
        "cifar10-cnn-torch", policy="fp32", seed=0, params=params, measure_factory=mock
    )
    assert result.metrics["train_size"] == 20 and 0 <= result.metrics["test_accuracy"] <= 1
    assert result.measurement.duration_s > 0


REPRODUCE = """
import json, greenprec
from greenprec.workloads import run_workload
result = run_workload(
    "digits-cnn-torch", policy="fp32", seed=11, params={"epochs": 3},
    deterministic=DETERMINISTIC, measure_factory=lambda: greenprec.measure("mock"),
)
print(json.dumps(result.metrics))
"""


@pytest.mark.slow
def test_digits_torch_is_reproducible_across_processes(digits: None) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", REPRODUCE.replace("DETERMINISTIC", str(deterministic))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SINGLE_THREAD},
        )
        for deterministic in (False, False, True)
    ]
    outputs = []
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert outputs[0]["test_accuracy"] > 0.8 and outputs[2]["test_accuracy"] > 0.8


# --- greenprec compare, end to end -----------------------------------------------------------


def compare(out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "greenprec", "compare", "fp32", "bf16",
        "--workload", "digits-cnn-torch", "--quick", "--meter", "mock", "--out", str(out), *args,
    ]  # fmt: skip
    env = {**os.environ, **SINGLE_THREAD, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def check_folder(out: Path, runs: int) -> list[dict[str, Any]]:
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["versions"]["torch"] == torch.__version__.split("+")[0]
    records = [json.loads(path.read_text()) for path in sorted((out / "runs").glob("*.json"))]
    assert len(records) == runs and all(record["status"] == "done" for record in records)
    for record in records:
        framework = record["framework"]
        assert framework["name"] == "torch" and framework["version"] == torch.__version__
        assert framework["device"] == "cpu" and framework["tf32"] is False
        assert framework["switches"]["torch.backends.cudnn.allow_tf32"] is False
        assert 0 <= record["metrics"]["test_accuracy"] <= 1
    assert {record["policy"] for record in records} == {"fp32", "bf16"}
    return records


@pytest.mark.slow
def test_compare_digits_torch_inline(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = compare(
        out, "--isolation", "inline", "--runs", "1", "--epochs", "1",
        "--param", "train_size=128", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    records = check_folder(out, runs=2)
    assert {record["metrics"]["train_size"] for record in records} == {128.0}


@pytest.mark.slow
def test_compare_digits_torch_quick_in_processes(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = compare(out, "--isolation", "process", timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    check_folder(out, runs=6)


@pytest.mark.slow
def test_a_torch_user_workload_through_compare(tmp_path: Path) -> None:
    (tmp_path / "gp_user_torch.py").write_text(
        textwrap.dedent(
            """
            from workload_helpers import tiny_torch as train
            """
        )
    )
    out = tmp_path / "exp"
    command = [
        sys.executable, "-m", "greenprec", "compare", "fp32", "mixed",
        "--workload", "gp_user_torch:train", "--runs", "1", "--meter", "mock",
        "--isolation", "inline", "--warmup", "0", "--cooldown", "0", "--out", str(out), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, **SINGLE_THREAD, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    mixed = json.loads((out / "runs" / "mixed-001.json").read_text())
    assert mixed["metrics"]["had_scaler"] == 1.0 and mixed["metrics"]["computed_in_float16"] == 1
    assert mixed["framework"]["name"] == "torch"

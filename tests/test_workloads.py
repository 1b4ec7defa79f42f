"""The workload contract, the registry, and the built-in workloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import greenprec
from greenprec.errors import ConfigError, GreenprecWarning
from greenprec.workloads import (
    WorkloadContext,
    WorkloadError,
    available_workloads,
    get_workload,
    registry,
    run_workload,
    workload,
)
from workload_helpers import make_cifar_archive


def mock() -> greenprec.Measurement:
    return greenprec.measure("mock")


def run(function: str | Callable[..., Any], **kwargs: Any) -> Any:
    kwargs.setdefault("policy", "fp32")
    kwargs.setdefault("seed", 1)
    return run_workload(function, measure_factory=mock, **kwargs)


@pytest.fixture(autouse=True)
def fresh_workload_errors() -> Iterator[None]:
    registry.workload_errors.clear()
    registry._reported.clear()
    yield
    registry.workload_errors.clear()
    registry._reported.clear()


# Workloads without Keras: the contract is checked in milliseconds, without TensorFlow.


@workload(keras=False, description="records its context")
def recorder(ctx: WorkloadContext) -> dict[str, Any]:
    with ctx.measured() as measurement:
        assert measurement.running and ctx.measurement is measurement
    return {
        "test_accuracy": np.float32(0.5),
        "test_loss": np.array(1.25),
        "seed_seen": ctx.seed,  # not "seed": that column is greenprec's (refused as a metric)
        "policy_is_mixed": int(ctx.policy == "mixed"),
        "param": ctx.params.get("x", 0),
    }


def test_context_and_result() -> None:
    result = run(recorder, policy="FP16", seed=7, params={"x": 3})
    assert result.metrics == {
        "test_accuracy": 0.5,
        "test_loss": 1.25,
        "seed_seen": 7.0,
        "policy_is_mixed": 1.0,
        "param": 3.0,
    }
    assert all(type(value) is float for value in result.metrics.values())
    assert result.policy == "mixed" and result.seed == 7 and result.params == {"x": 3}
    assert result.measurement.meter == "mock" and not result.measurement.running
    assert result.workload.endswith(":recorder")
    json.dumps(result.to_dict())


def test_never_measured() -> None:
    @workload(keras=False)
    def lazy(ctx: WorkloadContext) -> dict[str, float]:
        return {"test_accuracy": 1.0, "test_loss": 0.0}

    with pytest.raises(WorkloadError, match=r"never entered ctx.measured\(\); wrap") as caught:
        run(lazy)
    assert isinstance(caught.value, ConfigError)


def test_measured_twice() -> None:
    @workload(keras=False)
    def greedy(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            pass
        with ctx.measured():
            pass
        return {"test_accuracy": 1.0, "test_loss": 0.0}  # pragma: no cover

    with pytest.raises(WorkloadError, match="twice"):
        run(greedy)


@pytest.mark.parametrize(
    ("metrics", "match"),
    [
        ({"test_accuracy": 1.0}, "returned no test_loss"),
        ({}, "returned no test_accuracy, test_loss"),
        ([1.0, 2.0], "not a dict"),
        ({"test_accuracy": 1.0, "test_loss": "low"}, "must be numbers"),
        ({"test_accuracy": 1.0, "test_loss": 0.1, "ok": True}, "must be numbers"),
        ({"test_accuracy": float("nan"), "test_loss": 0.1}, "nan"),
    ],
)
def test_bad_metrics(metrics: Any, match: str) -> None:
    @workload(keras=False)
    def bad(ctx: WorkloadContext) -> Any:
        with ctx.measured():
            pass
        return metrics

    with pytest.raises(WorkloadError, match=match):
        run(bad)


def test_an_error_in_the_measured_phase_propagates() -> None:
    seen: list[Any] = []

    @workload(keras=False)
    def broken(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured() as measurement:
            seen.append(measurement)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run(broken)
    assert seen[0].duration_s >= 0  # stopped, results readable


def test_a_workload_without_a_framework_records_none() -> None:
    result = run(recorder)
    assert result.framework.name == "none" and result.framework.tf32 is None
    assert result.to_dict()["framework"]["name"] == "none"


def test_frameworks_declared_old_and_new() -> None:
    from greenprec.workloads import Requirement, framework_of, requirements, uses_keras

    def plain(ctx: WorkloadContext) -> dict[str, float]:
        return {}

    assert framework_of(plain) == "keras" and uses_keras(plain)  # greenprec 0.1's default
    assert framework_of(recorder) is None and not uses_keras(recorder)  # keras=False
    for given, canonical in (("torch", "torch"), ("PyTorch", "torch"), ("tensorflow", "keras")):
        marked = workload(framework=given)(lambda ctx: {})
        assert framework_of(marked) == canonical and marked.framework == canonical
        assert marked.uses_keras is (canonical == "keras")
    torch_workload = workload(framework="torch")(lambda ctx: {})
    assert requirements(torch_workload) == [Requirement("torch", "torch")]
    assert workload(framework=None)(lambda ctx: {}).framework is None
    old_style = lambda ctx: {}  # noqa: E731 - a bare function with the 0.1 attribute
    old_style.uses_keras = False  # type: ignore[attr-defined]
    assert framework_of(old_style) is None and requirements(old_style) == []
    with pytest.raises(ConfigError, match="framework must be one of keras, tensorflow, torch"):
        workload(framework="jax")


def test_seed_and_bad_seed() -> None:
    @workload(keras=False)
    def draw(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            value = float(np.random.rand())
        return {"test_accuracy": value, "test_loss": 0.0}

    first, second = run(draw, seed=3), run(draw, seed=3)
    assert first.metrics["test_accuracy"] == second.metrics["test_accuracy"]
    assert run(draw, seed=4).metrics != first.metrics
    with pytest.raises(ConfigError, match="seed must be an int"):
        run(draw, seed="3")
    with pytest.raises(ConfigError, match="unknown precision policy"):
        run(draw, policy="fp64")


# --- finding workloads -----------------------------------------------------------------------


BUILT_INS = ("digits-cnn", "cifar10-cnn", "digits-cnn-torch", "cifar10-cnn-torch")


def test_builtins_are_listed_with_descriptions() -> None:
    found = available_workloads()
    assert set(BUILT_INS) <= set(found)
    for name in BUILT_INS:
        info = found[name]
        assert info.description and "\n" not in info.description
        assert info.source.startswith("greenprec.workloads.")
        assert get_workload(name) is info.function
    assert list(found) == sorted(found)


def test_unknown_name_lists_the_workloads() -> None:
    with pytest.raises(ConfigError, match=r"unknown workload 'nope'; choose one of: .*digits-cnn"):
        get_workload("nope")


@pytest.fixture
def module_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_workloads.py").write_text(
        textwrap.dedent(
            """
            NOT_CALLABLE = 3

            class Suite:
                @staticmethod
                def quick(ctx):
                    with ctx.measured():
                        pass
                    return {"test_accuracy": 0.75, "test_loss": 0.5}

            def quick(ctx):
                "A quick workload."
                return Suite.quick(ctx)

            quick.uses_keras = False
            Suite.quick.uses_keras = False
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_workloads"


def test_module_function_paths(module_on_path: str) -> None:
    result = run_workload(f"{module_on_path}:quick", policy="bf16", seed=1, measure_factory=mock)
    assert result.metrics["test_accuracy"] == 0.75 and result.workload == "my_workloads:quick"
    assert callable(get_workload(f"{module_on_path}:Suite.quick"))


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("no_such_module_xyz:run", "cannot import 'no_such_module_xyz'"),
        ("my_workloads:missing", "has no 'missing'"),
        ("my_workloads:NOT_CALLABLE", "not a callable"),
        ("my_workloads:", "must look like module.path:function"),
        (":quick", "must look like module.path:function"),
    ],
)
def test_bad_module_function_paths(module_on_path: str, path: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        get_workload(path)
    assert "\n" not in str(caught.value)


def test_third_party_plugin_hook(install_plugin: Any) -> None:
    install_plugin(
        "gp_plugin_workloads",
        """
        import greenprec

        def tiny(ctx):
            "Tiny third-party workload."
            with ctx.measured():
                pass
            return {"test_accuracy": 1.0, "test_loss": 0.0}

        tiny.uses_keras = False

        @greenprec.hookimpl
        def greenprec_workloads():
            return {"tiny": tiny, "digits-cnn": tiny}
        """,
    )
    with pytest.warns(GreenprecWarning, match="'digits-cnn' from plugin 'gp_plugin_workloads'"):
        found = available_workloads()
    assert found["tiny"].description == "Tiny third-party workload."
    assert found["tiny"].source == "gp_plugin_workloads"
    assert found["digits-cnn"].source == "greenprec.workloads.digits"  # built-ins keep names
    assert run_workload("tiny", policy="fp32", seed=0, measure_factory=mock).metrics


def test_a_workload_plugin_from_the_greenprec_entry_point_group(install_plugin: Any) -> None:
    install_plugin(
        "gp_entry_workload",
        """
        import greenprec

        def run(ctx):
            with ctx.measured():
                pass
            return {"test_accuracy": 0.25, "test_loss": 2.0}

        run.uses_keras = False
        run.description = "From an entry point."

        @greenprec.hookimpl
        def greenprec_workloads():
            return {"gp_entry_workload": run}
        """,
    )
    info = available_workloads()["gp_entry_workload"]
    assert info.description == "From an entry point." and info.source == "gp_entry_workload"
    result = run_workload("gp_entry_workload", policy="fp32", seed=0, measure_factory=mock)
    assert result.metrics["test_accuracy"] == 0.25


def test_the_0_1_workload_entry_point_group_is_named_not_silently_dropped(
    install_plugin: Any,
) -> None:
    install_plugin(
        "gp_old_workload",
        "def run(ctx):\n    return {}\n",
        group="greenprec.workloads",
        entry_name="run",
    )
    with pytest.warns(GreenprecWarning, match=r"gp_old_workload.*no longer reads.*hook"):
        found = available_workloads()
    assert "gp_old_workload" not in found and "digits-cnn" in found


def test_broken_workload_plugin_is_skipped_with_a_warning(install_plugin: Any) -> None:
    install_plugin("gp_broken_workload", "raise ImportError('missing dependency')\n")
    with pytest.warns(GreenprecWarning, match="gp_broken_workload.*missing dependency"):
        found = available_workloads()
    assert "gp_broken_workload" not in found and "digits-cnn" in found


# --- the built-in workloads (TensorFlow) -----------------------------------------------------


@workload(keras=False)
def climbs(ctx: WorkloadContext) -> dict[str, float]:
    """Test accuracy 0.25 higher each epoch, 8 epochs of 10 samples at most; it leaves its loop
    when ``ctx.epoch_end`` says so."""
    accuracy = 0.0
    with ctx.measured():
        for epoch in range(1, 9):
            accuracy = 0.25 * epoch
            if ctx.epoch_end(epoch, {"test_accuracy": accuracy, "test_loss": 1 - accuracy}, 10):
                break
    return {"test_accuracy": accuracy, "test_loss": 1 - accuracy}


def test_epoch_end_asks_to_stop_once_every_target_is_reached() -> None:
    targets = {"test_accuracy": 0.5, "test_loss": 0.3}  # the loss needs epoch 3
    stopped = run(climbs, targets=targets, stop_at_target=True)
    assert [point.epoch for point in stopped.epochs] == [1, 2, 3]
    assert stopped.stopped_at_target and stopped.epochs_run == 3
    assert stopped.samples_trained == 30 and stopped.metrics["test_accuracy"] == 0.75
    # Without stopping on, the same targets only observe: all 8 epochs are trained.
    observed = run(climbs, targets=targets)
    assert observed.epochs_run == 8 and not observed.stopped_at_target
    assert observed.samples_trained == 80
    # A target never reached never stops the run.
    never = run(climbs, targets={"test_accuracy": 3.0}, stop_at_target=True)
    assert never.epochs_run == 8 and not never.stopped_at_target


def test_a_workload_that_ignores_the_stop_signal_is_not_recorded_as_stopped() -> None:
    @workload(keras=False)
    def trains_on(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            for epoch in (1, 2, 3):
                ctx.epoch_end(epoch, {"test_accuracy": 1.0})
        assert ctx.stop_requested
        return {"test_accuracy": 1.0, "test_loss": 0.0}

    result = run(trains_on, targets={"test_accuracy": 0.5}, stop_at_target=True)
    assert result.epochs_run == 3 and not result.stopped_at_target
    assert result.samples_trained is None  # never reported: no throughput


@pytest.mark.parametrize("samples", [2.5, "10", -1, True])
def test_epoch_end_refuses_a_sample_count_that_is_not_one(samples: object) -> None:
    @workload(keras=False)
    def miscounts(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            ctx.epoch_end(1, {"test_accuracy": 0.5}, samples)  # type: ignore[arg-type]
        return {"test_accuracy": 0.5, "test_loss": 0.5}

    with pytest.raises(WorkloadError, match=r"samples=.*whole number"):
        run(miscounts, targets={"test_accuracy": 0.9})


@pytest.fixture
def keras() -> Any:
    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    import keras

    return keras


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_workloads_get_the_policy_and_the_seed(keras: Any) -> None:
    def inside(ctx: WorkloadContext) -> dict[str, float]:
        with ctx.measured():
            value = float(keras.random.uniform(()))
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        return {"test_accuracy": value, "test_loss": 0.0}

    first = run(inside, policy="mixed_bfloat16", seed=5)
    assert keras.config.dtype_policy().name == "float32"
    assert run(inside, policy="bf16", seed=5).metrics == first.metrics


@pytest.mark.slow
@pytest.mark.tensorflow
def test_digits_reaches_its_accuracy_under_fp32(keras: Any) -> None:
    result = run_workload("digits-cnn", policy="fp32", seed=0, measure_factory=mock)
    assert result.metrics["test_accuracy"] >= 0.95
    assert result.metrics["test_loss"] < 0.2
    assert result.measurement.energy_j > 0 and result.measurement.duration_s > 0


@pytest.mark.slow
@pytest.mark.tensorflow
def test_digits_stops_training_at_its_target(keras: Any) -> None:
    """Keras: the epoch callback sets ``model.stop_training`` once the target is reached."""
    params = {"epochs": 30}
    result = run_workload(
        "digits-cnn",
        policy="fp32",
        seed=0,
        params=params,
        measure_factory=mock,
        targets={"test_accuracy": 0.8},
        stop_at_target=True,
    )
    epochs = [point.epoch for point in result.epochs]
    assert result.stopped_at_target and result.epochs_run is not None
    assert epochs == list(range(1, result.epochs_run + 1)) and result.epochs_run < 30
    accuracies = [point.metrics["test_accuracy"] or 0.0 for point in result.epochs]
    assert accuracies[-1] >= 0.8 and all(a < 0.8 for a in accuracies[:-1])
    assert result.metrics["epochs"] == result.epochs_run
    assert result.samples_trained == result.epochs_run * int(result.metrics["train_size"])


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["mixed", "bf16"])
def test_digits_runs_under_reduced_precision(keras: Any, name: str) -> None:
    # float16 training is very slow on some CPUs (docs/precision.md): a few steps only.
    params = {"epochs": 1, "train_size": 96, "batch_size": 32}
    with greenprec.measure("mock") as outer:
        result = run_workload(
            "digits-cnn", policy=name, seed=0, params=params, measure_factory=mock
        )
    assert outer.energy_j >= result.measurement.energy_j > 0
    assert 0 <= result.metrics["test_accuracy"] <= 1 and result.metrics["train_size"] == 96
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
@pytest.mark.tensorflow
def test_bad_params_are_config_errors(keras: Any) -> None:
    with pytest.raises(ConfigError, match="bad params for workload 'digits-cnn': epoch"):
        run_workload("digits-cnn", policy="fp32", seed=0, params={"epoch": 2})
    with pytest.raises(ConfigError, match="batch_size"):
        run_workload("digits-cnn", policy="fp32", seed=0, params={"batch_size": 0})


REPRODUCE = """
import json, greenprec
from greenprec.workloads import run_workload
result = run_workload(
    "digits-cnn", policy="fp32", seed=11, params={"epochs": 3}, deterministic=DETERMINISTIC,
    measure_factory=lambda: greenprec.measure("mock"),
)
print(json.dumps(result.metrics))
"""


@pytest.mark.slow
@pytest.mark.tensorflow
def test_digits_is_reproducible_across_processes(keras: Any) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", REPRODUCE.replace("DETERMINISTIC", str(deterministic))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        for deterministic in (False, False, True)
    ]
    outputs = []
    for child in children:
        stdout, stderr = child.communicate(timeout=180)
        assert child.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    # Op determinism picks other kernels: equal only to runs with the same setting.
    assert outputs[0]["test_accuracy"] > 0.8 and outputs[2]["test_accuracy"] > 0.8


@pytest.mark.slow
@pytest.mark.tensorflow
def test_cifar10_network_as_published(keras: Any) -> None:
    from greenprec.precision import describe, policy
    from greenprec.workloads.cifar10 import build_cifar10_cnn

    with policy("mixed"):
        model = build_cifar10_cnn()
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    assert model.count_params() == 10_484_874
    assert [layer.__class__.__name__ for layer in model.layers[1:]] == [
        "Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D", "Dropout",
        "Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D", "Dropout",
        "Flatten", "Dense", "Activation", "Dropout", "Dense", "Activation",
    ]  # fmt: skip
    info = describe(model, policy="mixed")
    layers = {layer.name: layer for layer in info.layers}
    for name in ("conv1", "conv2", "conv3", "conv4", "dense"):
        assert layers[name].compute_dtype == "float16"
        assert layers[name].variable_dtype == "float32"
    assert layers["logits"].compute_dtype == layers["softmax"].compute_dtype == "float32"
    assert info.output_dtypes == ["float32"] and info.loss_scaling is True
    assert info.warnings == []


@pytest.mark.slow
@pytest.mark.tensorflow
def test_cifar10_workload_on_a_tiny_archive(keras: Any, tmp_path: Path) -> None:
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", images=4)
    params = {"data": str(archive), "epochs": 1, "batch_size": 8}
    result = run_workload("cifar10-cnn", policy="fp32", seed=0, params=params, measure_factory=mock)
    assert result.metrics["train_size"] == 20 and 0 <= result.metrics["test_accuracy"] <= 1
    assert result.measurement.duration_s > 0


def test_a_module_function_workload_imports_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gp_cwd_work.py").write_text(
        "def mlp(ctx):\n"
        "    with ctx.measured():\n"
        "        pass\n"
        "    return {'test_accuracy': 0.5, 'test_loss': 1.0}\n"
        "mlp.uses_keras = False\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    result = run_workload("gp_cwd_work:mlp", policy="fp32", seed=0, measure_factory=mock)
    assert result.metrics["test_accuracy"] == 0.5


def test_a_missing_framework_names_the_extra_before_the_workload_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from greenprec.workloads import missing_requirements

    monkeypatch.setitem(sys.modules, "keras", None)  # as if TensorFlow were not installed
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(
        WorkloadError,
        match=r"workload 'digits-cnn' needs tensorflow and keras, which are not installed: "
        r"pip install 'greenprec\[tensorflow\]'",
    ):
        run_workload("digits-cnn", policy="fp32", seed=0, measure_factory=mock)
    assert missing_requirements(recorder, "recorder") is None  # keras=False needs nothing


def test_a_missing_torch_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    for name in ("digits-cnn-torch", "cifar10-cnn-torch"):
        with pytest.raises(WorkloadError, match=r"needs torch.*pip install 'greenprec\[torch\]'"):
            run_workload(name, policy="fp32", seed=0, measure_factory=mock)

"""Precision policies, model checks and device support."""

from __future__ import annotations

import json
import os
import stat
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from greenprec.errors import ConfigError, GreenprecWarning
from greenprec.precision import (
    POLICIES,
    PolicyName,
    check_model,
    describe,
    emulation_warnings,
    policy,
    read_cpuinfo,
    resolve_policy,
    support,
)
from workload_helpers import python

# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical", "keras_name"),
    [
        ("fp32", "fp32", "float32"),
        ("FP32", "fp32", "float32"),
        ("float32", "fp32", "float32"),
        ("tf32", "tf32", "float32"),
        ("Float32-TF32", "tf32", "float32"),
        ("mixed", "mixed", "mixed_float16"),
        ("Mixed_Float16", "mixed", "mixed_float16"),
        ("fp16", "mixed", "mixed_float16"),
        ("mixed-float16", "mixed", "mixed_float16"),
        ("bf16", "bf16", "mixed_bfloat16"),
        (" BF16 ", "bf16", "mixed_bfloat16"),
        ("mixed_bfloat16", "bf16", "mixed_bfloat16"),
    ],
)
def test_names_and_aliases(given: str, canonical: str, keras_name: str) -> None:
    chosen = resolve_policy(given)
    assert chosen.name == canonical
    assert chosen.keras_name == keras_name
    assert resolve_policy(chosen) is chosen
    assert chosen.variable_dtype == "float32"


def test_only_float16_is_loss_scaled() -> None:
    assert {name: p.loss_scaling for name, p in POLICIES.items()} == {
        "fp32": False,
        "tf32": False,
        "mixed": True,
        "bf16": False,
    }


def test_only_tf32_allows_tf32_and_fp32_is_strict() -> None:
    assert {name: p.allow_tf32 for name, p in POLICIES.items()} == {
        "fp32": False,
        "tf32": True,
        "mixed": False,
        "bf16": False,
    }
    assert resolve_policy("tf32").compute_dtype == "float32"
    assert "strict" in resolve_policy("fp32").description


@pytest.mark.parametrize("bad", ["fp8", "float16", "", "mixed_float", 16])
def test_unknown_policy_lists_the_valid_names(bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_policy(bad)
    message = str(caught.value)
    assert "fp32" in message and "mixed (alias mixed_float16, fp16)" in message
    assert "bf16 (alias mixed_bfloat16)" in message and "tf32 (alias float32_tf32)" in message


def test_policy_name_type_for_config_models() -> None:
    class Config(BaseModel):
        policies: list[PolicyName]

    assert Config(policies=["FP16", "mixed_bfloat16", "fp32", "TF32"]).policies == [
        "mixed",
        "bf16",
        "fp32",
        "tf32",
    ]
    with pytest.raises(ValueError):
        Config(policies=["fp64"])


def test_importing_never_imports_heavy_libraries() -> None:
    code = (
        "import sys, greenprec, greenprec.precision, greenprec.workloads\n"
        "from greenprec.workloads import available_workloads, run_workload\n"
        "greenprec.precision.support(device='cpu')\n"
        "greenprec.precision.resolve_policy('bf16')\n"
        "assert {'digits-cnn', 'cifar10-cnn', 'digits-cnn-torch', 'cifar10-cnn-torch'}"
        " <= set(available_workloads())\n"
        "def tiny(ctx):\n"
        "    with ctx.measured():\n"
        "        pass\n"
        "    return {'test_accuracy': 1.0, 'test_loss': 0.0}\n"
        "tiny.uses_keras = False\n"
        "run_workload(tiny, policy='mixed', seed=1,"
        " measure_factory=lambda: greenprec.measure('mock'))\n"
        "greenprec.precision.support(device='cpu', framework='torch')\n"
        "heavy = {'tensorflow', 'keras', 'sklearn', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    python(code)


# --- support ---------------------------------------------------------------------------------

AVX2 = ["fpu", "sse2", "avx", "avx2", "fma"]


def x86(*flags: str, env: dict[str, str] | None = None) -> Any:
    return support(
        "cpu", cpu_flags=[*AVX2, *flags], cpu_name="Test CPU", machine="x86_64", env=env or {}
    )


def test_avx2_only_cpu_emulates_both() -> None:
    report = x86()
    assert report.device == "cpu" and report.platform == "x86_64"
    assert report.fp16.emulated and not report.fp16.hardware
    assert report.bf16.emulated and not report.bf16.hardware
    assert report.emulated("mixed") and report.emulated("bf16") and not report.emulated("fp32")
    assert emulation_warnings(["fp32", "mixed", "bf16"], report) == [
        "mixed (float16) is emulated on this CPU (no AVX-512 FP16/AMX-FP16): expect it to be "
        "slower and use more energy than fp32",
        "bf16 (bfloat16) is emulated on this CPU (no AVX-512 BF16/AMX-BF16): expect it to be "
        "slower and use more energy than fp32",
    ]


def test_avx512_fp16_without_amx_is_not_accelerated_by_tensorflow() -> None:
    report = x86("avx512f", "avx512_fp16")
    assert report.fp16.hardware and not report.fp16.native
    assert any("TensorFlow on CPU" in caveat for caveat in report.caveats)
    [line] = emulation_warnings(["mixed"], report)
    assert line.startswith("mixed (float16) is not accelerated on this CPU (it has avx512_fp16")


def test_amx_fp16_is_native() -> None:
    report = x86("avx512_fp16", "amx_fp16", "amx_tile")
    assert report.fp16.native and report.fp16.hardware
    assert report.flags == ("amx_fp16", "avx512_fp16")
    assert emulation_warnings(["mixed"], report) == []


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_bf16_flags_are_native(flag: str) -> None:
    report = x86(flag)
    assert report.bf16.native and flag in report.bf16.reason
    assert emulation_warnings(["bf16", "fp32"], report) == []


def test_onednn_off_emulates_bf16() -> None:
    report = x86("amx_bf16", env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert report.bf16.hardware and report.bf16.emulated
    assert any("TF_ENABLE_ONEDNN_OPTS=0" in caveat for caveat in report.caveats)


def test_cpuinfo_file_is_read(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Fake Xeon\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n"
        "processor\t: 1\nmodel name\t: Fake Xeon\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n"
    )
    assert read_cpuinfo(cpuinfo) == (
        "Fake Xeon",
        frozenset({"fpu", "avx2", "avx512_bf16", "amx_bf16"}),
    )
    report = support("cpu", cpuinfo=cpuinfo, machine="x86_64", env={})
    assert report.name == "Fake Xeon" and report.detected_by == str(cpuinfo)
    assert report.bf16.native and report.fp16.emulated
    assert read_cpuinfo(tmp_path / "missing") == ("", frozenset())


def test_aarch64_features() -> None:
    report = support("cpu", cpu_flags=["fp", "asimd", "asimdhp", "bf16"], machine="aarch64")
    assert report.platform == "aarch64" and report.fp16.native and report.bf16.native
    older = support("cpu", cpu_flags=["fp", "asimd"], machine="aarch64")
    assert older.fp16.emulated and older.bf16.emulated


@pytest.mark.parametrize(
    ("chip", "bf16"), [("Apple M1", False), ("Apple M2 Pro", True), ("Apple M4 Max", True)]
)
def test_apple_silicon(chip: str, bf16: bool) -> None:
    report = support("cpu", system="Darwin", machine="arm64", cpu_name=chip)
    assert report.platform == "apple" and report.fp16.native
    assert report.bf16.native is bf16
    assert "M2" in report.bf16.reason


@pytest.mark.parametrize("framework", ["tensorflow", "torch"])
@pytest.mark.parametrize(
    ("capability", "fp16", "bf16", "tf32"),
    [
        ("6.1", False, False, False),
        ("7.0", True, False, False),
        ("7.5", True, False, False),
        ("8.0", True, True, True),
        ((9, 0), True, True, True),
    ],
)
def test_nvidia_compute_capability(
    capability: Any, fp16: bool, bf16: bool, tf32: bool, framework: str
) -> None:
    report = support(compute_capability=capability, gpu_name="Fake GPU", framework=framework)
    assert report.device == "gpu" and report.platform == "nvidia" and report.name == "Fake GPU"
    assert report.fp16.native is fp16 and report.bf16.native is bf16
    assert report.tf32.native is tf32 and report.tf32.hardware is tf32
    assert report.framework == framework
    expected = [p for p, ok in (("mixed", fp16), ("bf16", bf16)) if not ok]
    lines = emulation_warnings(["fp32", "mixed", "bf16"], report)
    assert [line.split()[0] for line in lines] == expected
    assert all("on this GPU" in line for line in lines)
    tf32_lines = emulation_warnings(["tf32"], report)
    if tf32:
        assert tf32_lines == []
    else:
        assert tf32_lines == [
            f"tf32 (tensorfloat32) has no effect on this GPU (compute capability "
            f"{report.compute_capability} has no TF32 (needs 8.0+)): it runs as fp32"
        ]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="compute capability"):
        support(compute_capability="eight")
    with pytest.raises(ConfigError, match="device must be"):
        support("tpu")


def test_unknown_cpu_is_emulated() -> None:
    report = support("cpu", cpu_flags=[], machine="riscv64")
    assert report.fp16.emulated and report.bf16.emulated


def test_report_is_json_ready() -> None:
    report = support()  # this machine, whatever it is
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) >= {"device", "name", "fp16", "bf16", "caveats", "flags"}
    assert data["fp16"]["policy"] == "mixed" and data["bf16"]["dtype"] == "bfloat16"


def test_emulation_warnings_once_per_policy() -> None:
    assert len(emulation_warnings(["mixed", "fp16", "mixed_float16"], x86())) == 1


def test_tf32_on_a_cpu_is_fp32_not_emulation() -> None:
    report = x86("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16")
    assert not report.tf32.hardware and not report.tf32.native
    assert report.for_policy("tf32") is report.tf32 and report.for_policy("fp32") is None
    assert emulation_warnings(["fp32", "tf32"], report) == [
        "tf32 (tensorfloat32) has no effect on this CPU (TF32 is an NVIDIA tensor-core format "
        "(compute capability 8.0+); a CPU computes float32): it runs as fp32"
    ]
    assert json.loads(json.dumps(report.to_dict()))["tf32"]["policy"] == "tf32"


# --- support per framework -------------------------------------------------------------------


def torch_x86(*flags: str, env: dict[str, str] | None = None) -> Any:
    return support(
        "cpu",
        framework="torch",
        cpu_flags=[*AVX2, *flags],
        cpu_name="Test CPU",
        machine="x86_64",
        env=env or {},
    )


def test_pytorch_on_an_avx2_cpu_emulates_both_with_the_same_wording() -> None:
    report = torch_x86()
    assert report.framework == "torch" and report.caveats == ()
    assert emulation_warnings(["fp32", "mixed", "bf16"], report) == emulation_warnings(
        ["fp32", "mixed", "bf16"], x86()
    )


def test_pytorch_bf16_is_native_with_avx512_bf16_and_names_pytorch() -> None:
    report = torch_x86("avx512_bf16")
    assert report.bf16.native and "PyTorch" in report.bf16.reason
    assert x86("avx512_bf16").bf16.reason == "avx512_bf16 through TensorFlow's oneDNN kernels"
    assert [caveat.split(":")[0] for caveat in report.caveats] == ["PyTorch on CPU"]


def test_tensorflows_onednn_switch_does_not_apply_to_pytorch() -> None:
    off = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert x86("amx_bf16", env=off).bf16.emulated
    report = torch_x86("amx_bf16", env=off)
    assert report.bf16.native
    assert not any("TF_ENABLE_ONEDNN_OPTS" in caveat for caveat in report.caveats)


def test_pytorch_float16_without_amx_is_hardware_but_not_native() -> None:
    report = torch_x86("avx512f", "avx512_fp16")
    assert report.fp16.hardware and not report.fp16.native
    assert "PyTorch" in report.fp16.reason
    assert any(caveat.startswith("PyTorch on CPU") for caveat in report.caveats)
    assert torch_x86("avx512_fp16", "amx_fp16").fp16.native


def test_pytorch_caveats_on_arm_and_apple() -> None:
    arm = support("cpu", framework="pytorch", cpu_flags=["asimdhp", "bf16"], machine="aarch64")
    assert arm.framework == "torch" and arm.caveats[0].startswith("PyTorch on Arm CPUs")
    apple = support("cpu", framework="torch", system="Darwin", machine="arm64", cpu_name="Apple M2")
    assert "'mps'" in apple.caveats[0] and apple.bf16.native


def test_unknown_framework() -> None:
    with pytest.raises(ConfigError, match="framework must be one of tensorflow, keras, torch"):
        support("cpu", framework="jax")


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An nvidia-smi on PATH that lists one compute capability 7.5 GPU (no TF32, no bf16)."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "assert '--format=csv,noheader' in sys.argv\n"
        "print('0, Tesla T4, 15360 MiB, 7.5, 550.54.15')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return script


def test_pytorch_gpu_from_nvidia_smi(
    fake_nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A torch that has not initialised CUDA is not asked (asking would initialise it).
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    report = support(framework="torch")
    assert report.device == "gpu" and report.name == "Tesla T4"
    assert report.detected_by == "nvidia-smi" and report.framework == "torch"
    assert report.fp16.native and report.bf16.emulated and report.tf32.emulated
    assert emulation_warnings(["tf32", "bf16"], report)[0].startswith(
        "tf32 (tensorfloat32) has no effect on this GPU (compute capability 7.5"
    )


def test_a_cpu_only_pytorch_wheel_means_the_cpu(
    fake_nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    support_module = sys.modules["greenprec.precision.support"]  # the attribute is the function
    monkeypatch.setattr(
        support_module, "distribution", lambda name: types.SimpleNamespace(version="2.5.1+cpu")
    )
    assert support(framework="torch").device == "cpu"
    assert support("gpu", framework="torch").name == "Tesla T4"  # asked for: looked for


def test_pytorch_with_cuda_initialised_is_asked(
    fake_nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        current_device=lambda: 0,
        get_device_capability=lambda index: (8, 6),
        get_device_name=lambda index: "Fake RTX A6000",
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    report = support(framework="torch")
    assert report.name == "Fake RTX A6000" and report.detected_by == "PyTorch"
    assert report.compute_capability == "8.6" and report.tf32.native and report.bf16.native


# --- Keras -----------------------------------------------------------------------------------


@pytest.fixture
def keras() -> Iterator[Any]:
    pytest.importorskip("tensorflow")
    import keras

    keras.config.set_dtype_policy("float32")
    yield keras
    keras.config.set_dtype_policy("float32")


def small_model(keras: Any, *, float32_output: bool = True) -> Any:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    dtype = "float32" if float32_output else None
    x = keras.layers.Dense(3, dtype=dtype, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype=dtype, name="softmax")(x)
    return keras.Model(inputs, outputs, name="small")


def compiled(model: Any, keras: Any, **kwargs: Any) -> Any:
    model.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy", **kwargs)
    return model


@pytest.mark.slow
@pytest.mark.tensorflow
def test_policy_sets_and_restores(keras: Any) -> None:
    with policy("mixed") as chosen:
        assert chosen.name == "mixed"
        assert keras.config.dtype_policy().name == "mixed_float16"
        with policy("BF16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert keras.config.dtype_policy().name == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
@pytest.mark.tensorflow
def test_policy_restores_on_exceptions_and_foreign_policies(keras: Any) -> None:
    keras.config.set_dtype_policy("float64")
    with pytest.raises(RuntimeError, match="boom"), policy("fp16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float64"
    with pytest.raises(ConfigError), policy("fp8"):  # a bad name changes nothing
        pass  # pragma: no cover
    assert keras.config.dtype_policy().name == "float64"


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_tf32_switch_is_set_and_restored(keras: Any) -> None:
    import tensorflow as tf

    from greenprec.precision import current_policy, keras_framework_info

    def tf32() -> bool:
        return bool(tf.config.experimental.tensor_float_32_execution_enabled())

    tf.config.experimental.enable_tensor_float_32_execution(True)  # TensorFlow's default
    try:
        assert current_policy() is not None and current_policy().name == "tf32"  # type: ignore[union-attr]
        with policy("fp32"):
            assert not tf32() and keras.config.dtype_policy().name == "float32"
            assert current_policy().name == "fp32"  # type: ignore[union-attr]
            assert keras_framework_info().tf32 is False
            with policy("tf32") as chosen:
                assert chosen.name == "tf32" and tf32()
                assert keras.config.dtype_policy().name == "float32"
                info = keras_framework_info()
                assert info.name == "keras" and info.tf32 is True
                assert info.device == ("gpu" if tf.config.list_physical_devices("GPU") else "cpu")
            assert not tf32()
        assert tf32()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        with pytest.raises(RuntimeError, match="boom"), policy("tf32"):
            assert tf32()
            raise RuntimeError("boom")
        assert not tf32()
        with policy("mixed"):
            assert not tf32()  # only tf32 allows it: mixed's float32 parts stay strict
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_a_float32_model_under_tf32_is_fine(keras: Any) -> None:
    with policy("tf32"):
        model = compiled(small_model(keras), keras)
        assert describe(model).warnings == []
    assert describe(model, policy="tf32").warnings == []


@pytest.mark.slow
@pytest.mark.tensorflow
def test_describe_a_model_built_under_mixed(keras: Any) -> None:
    with policy("mixed"):
        model = compiled(small_model(keras), keras)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert check_model(model) == []
    info = describe(model)
    assert info.policy == "mixed" and info.keras_policy == "mixed_float16"
    assert info.global_policy == "float32"
    assert info.loss_scaling is True and info.optimizer == "LossScaleOptimizer"
    assert info.output_dtypes == ["float32"]
    layers = {layer.name: layer for layer in info.layers}
    assert layers["conv"].compute_dtype == "float16" and layers["conv"].variable_dtype == "float32"
    assert layers["logits"].compute_dtype == "float32"
    assert layers["softmax"].compute_dtype == "float32"
    assert layers["conv"].class_name == "Conv2D" and layers["conv"].policy == "mixed_float16"
    assert info.warnings == []
    json.dumps(info.to_dict())


@pytest.mark.slow
@pytest.mark.tensorflow
def test_model_built_before_the_policy_is_caught(keras: Any) -> None:
    model = small_model(keras)
    with policy("mixed"):
        compiled(model, keras)
        assert type(model.optimizer).__name__ != "LossScaleOptimizer"  # the Keras trap
        with pytest.warns(GreenprecWarning) as records:
            problems = check_model(model)
    assert [str(record.message) for record in records] == problems
    assert "built before the policy was set" in problems[0]
    assert "not loss-scaled" in problems[1]
    assert describe(model, policy="fp32").warnings == []


@pytest.mark.slow
@pytest.mark.tensorflow
def test_float16_layers_without_loss_scaling(keras: Any) -> None:
    with policy("mixed"):
        model = compiled(small_model(keras), keras, auto_scale_loss=False)
    assert describe(model).loss_scaling is False
    with pytest.warns(GreenprecWarning, match="underflow"):
        check_model(model)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_bf16_is_never_loss_scaled(keras: Any) -> None:
    with policy("bf16"):
        model = compiled(small_model(keras), keras)
        info = describe(model)
    assert info.loss_scaling is False and info.warnings == []
    assert {layer.compute_dtype for layer in info.layers if layer.name == "conv"} == {"bfloat16"}


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["mixed", "bf16"])
def test_reduced_precision_output_is_flagged(keras: Any, name: str) -> None:
    with policy(name):
        model = compiled(small_model(keras, float32_output=False), keras)
        problems = describe(model).warnings
    assert len(problems) == 1 and "output 'softmax'" in problems[0]
    assert "dtype='float32'" in problems[0]


@pytest.mark.slow
@pytest.mark.tensorflow
def test_uncompiled_and_nested_models(keras: Any) -> None:
    with policy("mixed"):
        inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="inner")
        outer = keras.Sequential(
            [keras.Input((4,)), inner, keras.layers.Activation("softmax", dtype="float32")],
            name="outer",
        )
    info = describe(outer)
    assert info.loss_scaling is None and info.optimizer is None
    assert "inner/d" in {layer.name for layer in info.layers}
    assert info.output_dtypes == ["float32"] and info.warnings == []

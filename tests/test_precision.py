"""Precision policies, model checks and device support."""

from __future__ import annotations

import json
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
        "mixed": True,
        "bf16": False,
    }


@pytest.mark.parametrize("bad", ["fp8", "float16", "", "mixed_float", 16])
def test_unknown_policy_lists_the_valid_names(bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_policy(bad)
    message = str(caught.value)
    assert "fp32" in message and "mixed (alias mixed_float16, fp16)" in message
    assert "bf16 (alias mixed_bfloat16)" in message


def test_policy_name_type_for_config_models() -> None:
    class Config(BaseModel):
        policies: list[PolicyName]

    assert Config(policies=["FP16", "mixed_bfloat16", "fp32"]).policies == ["mixed", "bf16", "fp32"]
    with pytest.raises(ValueError):
        Config(policies=["fp64"])


def test_importing_never_imports_heavy_libraries() -> None:
    code = (
        "import sys, greenprec, greenprec.precision, greenprec.workloads\n"
        "from greenprec.workloads import available_workloads, run_workload\n"
        "greenprec.precision.support(device='cpu')\n"
        "greenprec.precision.resolve_policy('bf16')\n"
        "assert {'digits-cnn', 'cifar10-cnn'} <= set(available_workloads())\n"
        "def tiny(ctx):\n"
        "    with ctx.measured():\n"
        "        pass\n"
        "    return {'test_accuracy': 1.0, 'test_loss': 0.0}\n"
        "tiny.uses_keras = False\n"
        "run_workload(tiny, policy='mixed', seed=1,"
        " measure_factory=lambda: greenprec.measure('mock'))\n"
        "heavy = {'tensorflow', 'keras', 'sklearn'} & set(sys.modules)\n"
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


@pytest.mark.parametrize(
    ("capability", "fp16", "bf16"),
    [
        ("6.1", False, False),
        ("7.0", True, False),
        ("7.5", True, False),
        ("8.0", True, True),
        ((9, 0), True, True),
    ],
)
def test_nvidia_compute_capability(capability: Any, fp16: bool, bf16: bool) -> None:
    report = support(compute_capability=capability, gpu_name="Fake GPU")
    assert report.device == "gpu" and report.platform == "nvidia" and report.name == "Fake GPU"
    assert report.fp16.native is fp16 and report.bf16.native is bf16
    expected = [p for p, ok in (("mixed", fp16), ("bf16", bf16)) if not ok]
    lines = emulation_warnings(["fp32", "mixed", "bf16"], report)
    assert [line.split()[0] for line in lines] == expected
    assert all("on this GPU" in line for line in lines)


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

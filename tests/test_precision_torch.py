"""The PyTorch adapter: TF32 switches, autocast, the scaler, and the checks (on the CPU)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenprec.errors import ConfigError, GreenprecWarning
from greenprec.precision import TorchPolicy, check_model, describe, torch_policy
from greenprec.precision.torch import (
    CUDNN_SWITCH,
    MATMUL_SWITCH,
    PRECISION_SWITCH,
    active_policy,
    read_tf32_switches,
)
from workload_helpers import load_triton_before_tensorflow

torch = pytest.importorskip("torch")
load_triton_before_tensorflow()  # a Keras test earlier in the session must not crash these
F = torch.nn.functional

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torch_precision_loop.py"
OFF = {MATMUL_SWITCH: False, CUDNN_SWITCH: False, PRECISION_SWITCH: "highest"}
ON = {MATMUL_SWITCH: True, CUDNN_SWITCH: True, PRECISION_SWITCH: "high"}


def fp32_precisions() -> dict[str, str]:
    """PyTorch 2.9+'s fp32_precision strings (empty before 2.9)."""
    found = {}
    for path in (
        "backends",
        "backends.cudnn",
        "backends.mkldnn",
        "backends.cuda.matmul",
        "backends.cudnn.conv",
        "backends.cudnn.rnn",
        "backends.mkldnn.matmul",
        "backends.mkldnn.conv",
        "backends.mkldnn.rnn",
    ):
        holder: Any = torch
        try:
            for part in path.split("."):
                holder = getattr(holder, part)
            found[path] = holder.fp32_precision
        except AttributeError:
            continue
    return found


@pytest.fixture(autouse=True)
def pytorch_defaults() -> Iterator[None]:
    """Each test starts from PyTorch's own defaults and leaves them as they were."""
    before = read_tf32_switches()
    strings = fp32_precisions()
    yield
    assert active_policy() is None
    torch.backends.cuda.matmul.allow_tf32 = before[MATMUL_SWITCH]
    torch.backends.cudnn.allow_tf32 = before[CUDNN_SWITCH]
    torch.set_float32_matmul_precision(before[PRECISION_SWITCH])
    for path, value in strings.items():
        holder: Any = torch
        for part in path.split("."):
            holder = getattr(holder, part)
        holder.fp32_precision = value


def tiny(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def batch() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def train_steps(precision: TorchPolicy, model: Any, optimizer: Any, steps: int = 3) -> Any:
    x, y = batch()
    loss = None
    for _ in range(steps):
        optimizer.zero_grad()
        with precision.autocast():
            loss = F.cross_entropy(model(x), y)
        precision.backward_step(loss, optimizer)
    return loss


# --- TF32 switches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [("fp32", OFF), ("tf32", ON), ("mixed", OFF), ("bf16", OFF)]
)
def test_switches_per_policy_and_restored(name: str, expected: dict[str, Any]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True  # a state unlike both policies'
    torch.backends.cudnn.allow_tf32 = False
    before, strings = read_tf32_switches(), fp32_precisions()
    with torch_policy(name, "cpu") as precision:
        assert read_tf32_switches() == expected == precision.switches
        info = precision.framework_info()
        assert info.tf32 is (name == "tf32") and info.switches == expected
    assert read_tf32_switches() == before and fp32_precisions() == strings


def test_restored_when_the_block_raises() -> None:
    before = read_tf32_switches()
    with pytest.raises(RuntimeError, match="boom"), torch_policy("tf32", "cpu"):
        assert read_tf32_switches() == ON
        raise RuntimeError("boom")
    assert read_tf32_switches() == before and active_policy() is None


def test_nested_policies_restore_in_order() -> None:
    outer, inner = torch_policy("tf32", "cpu"), torch_policy("fp32", "cpu")
    with outer:
        with inner:
            assert read_tf32_switches() == OFF and active_policy() is inner
        assert read_tf32_switches() == ON and active_policy() is outer
        with outer:  # the same adapter again
            assert read_tf32_switches() == ON
        assert read_tf32_switches() == ON and active_policy() is outer


def test_new_api_settings_are_restored_and_legacy_reads_work_inside() -> None:
    if not fp32_precisions():
        pytest.skip("this PyTorch has no fp32_precision settings (before 2.9)")
    torch.backends.fp32_precision = "tf32"  # the new API, which makes legacy reads refuse
    strings = fp32_precisions()
    for name in ("fp32", "tf32"):
        with torch_policy(name, "cpu"):
            # What Lightning does while setting up: must not raise inside the policy.
            assert torch.get_float32_matmul_precision() == ("high" if name == "tf32" else "highest")
            assert torch.backends.cudnn.allow_tf32 is (name == "tf32")
            assert torch.backends.mkldnn.conv.fp32_precision != "tf32" or name == "tf32"
        assert fp32_precisions() == strings


# --- autocast, scaler, backward_step ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("fp32", "float32"), ("tf32", "float32"), ("mixed", "float16"), ("bf16", "bfloat16")],
)
def test_autocast_computes_in_the_policys_dtype(name: str, dtype: str) -> None:
    model, (x, _y) = tiny(), batch()
    with torch_policy(name, "cpu") as precision, precision.autocast():
        assert str(model(x).dtype) == f"torch.{dtype}"
        assert torch.is_autocast_enabled("cpu") is (dtype != "float32")
    assert model(x).dtype == torch.float32


def test_only_mixed_has_a_scaler_and_it_is_for_the_device() -> None:
    mixed = torch_policy("fp16", "cpu")
    assert isinstance(mixed.scaler, torch.amp.GradScaler) and mixed.scaler.is_enabled()
    assert mixed.scaler._device == "cpu"  # what GradScaler(device) was given
    assert mixed.device == torch.device("cpu") and mixed.compute_dtype == torch.float16
    for name in ("fp32", "tf32", "bf16"):
        assert torch_policy(name, "cpu").scaler is None


def test_backward_step_is_the_plain_step_outside_mixed() -> None:
    ours, theirs = tiny(), tiny()
    x, y = batch()
    ours_opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    with torch_policy("fp32", "cpu") as precision:
        train_steps(precision, ours, ours_opt, steps=2)
    for _ in range(2):
        theirs_opt.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        theirs_opt.step()
    for mine, reference in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, reference)


def test_backward_step_scales_under_mixed_and_trains() -> None:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    initial = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a correct loop gets no warning
        with torch_policy("mixed", "cpu") as precision:
            first = train_steps(precision, model, optimizer, steps=1)
            last = train_steps(precision, model, optimizer, steps=20)
    assert precision.scaler is not None and precision.scaler._scale is not None  # it was used
    assert first.dtype == torch.float32  # autocast computes the loss in float32
    assert last.item() < first.item()
    assert any(not torch.equal(a, b) for a, b in zip(initial, model.parameters(), strict=True))
    assert precision.problems == []


def test_no_cuda_no_cuda_policy() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match=r"device 'cuda': PyTorch sees 0 CUDA GPU"):
        torch_policy("mixed", "cuda")
    with pytest.raises(ConfigError, match="not a PyTorch device"):
        torch_policy("mixed", "gpu0")
    assert torch_policy("bf16").device == torch.device("cpu")  # the default here


# --- what silently defeats a policy ----------------------------------------------------------


def test_optimizer_stepped_without_the_scaler_under_mixed() -> None:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()

    def unscaled_step() -> None:
        optimizer.zero_grad()
        with precision.autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    with torch_policy("mixed", "cpu") as precision:
        with pytest.warns(GreenprecWarning, match="SGD stepped without the gradient scaler"):
            unscaled_step()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per adapter, not once per step
            unscaled_step()
    assert len(precision.problems) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer.step()  # outside the policy: nothing watches any more


def test_the_scaler_used_by_hand_is_fine() -> None:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch_policy("mixed", "cpu") as precision:
            scaler = precision.scaler
            assert scaler is not None
            optimizer.zero_grad()
            with precision.autocast():
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    assert precision.problems == []


@pytest.mark.parametrize("name", ["mixed", "bf16"])
def test_a_step_with_no_autocast_forward_is_caught(name: str) -> None:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    match = f"the policy is {name} but SGD stepped before"
    with torch_policy(name, "cpu") as precision, pytest.warns(GreenprecWarning, match=match):
        precision.backward_step(F.cross_entropy(model(x), y), optimizer)
    assert len(precision.problems) == 1


def test_a_float16_loss_is_caught() -> None:
    model = tiny().half()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with torch_policy("bf16", "cpu") as precision:
        loss = F.cross_entropy(model(x.half()), y)  # float16 outside autocast
        assert loss.dtype == torch.float16
        with pytest.warns(GreenprecWarning) as records:
            precision.backward_step(loss, optimizer)
    messages = [str(record.message) for record in records]
    assert any(m.startswith("the loss passed to backward_step is float16") for m in messages)


def test_check_model_catches_a_half_model_under_mixed() -> None:
    model = tiny().half()
    with pytest.warns(GreenprecWarning) as records:
        problems = check_model(model, policy="mixed")
    assert [str(record.message) for record in records] == problems
    assert len(problems) == 1
    assert problems[0].startswith("4 of 4 parameter tensors of 'Sequential' are float16")
    assert "GradScaler refuses to unscale float16 gradients" in problems[0]
    bf16_problems = describe(tiny().bfloat16(), policy="bf16").warnings
    assert "bfloat16" in bf16_problems[0] and "GradScaler" not in bf16_problems[0]


def test_check_model_under_fp32_and_a_clean_model() -> None:
    [problem] = describe(tiny().half(), policy="fp32").warnings
    assert problem.startswith("the policy is fp32 but 4 of 4 parameter tensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("fp32", "tf32", "mixed", "bf16"):
            assert check_model(tiny(), policy=name) == []
    assert describe(tiny().half()).warnings == []  # no policy given or entered: nothing expected


def test_check_model_defaults_to_the_entered_adapter_and_checks_its_device() -> None:
    with torch_policy("mixed", "cpu") as precision:
        info = describe(tiny().half())
        assert info.policy == "mixed" and info.loss_scaling is True
        assert info.framework == "torch" and info.global_policy == "mixed"
        assert [layer.name for layer in info.layers] == ["0", "2"]
        assert {layer.variable_dtype for layer in info.layers} == {"float16"}
        assert len(info.warnings) == 1
        elsewhere = tiny().to("meta")  # a device the policy does not apply to
        [problem] = describe(elsewhere, policy=precision).warnings
    assert "set up for cpu but the parameters of 'Sequential' are on meta" in problem
    assert describe(tiny()).policy is None  # nothing entered any more


# --- the documented example ------------------------------------------------------------------


@pytest.mark.slow
def test_the_example_runs_and_learns() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GreenprecWarning" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["fp32", "tf32", "mixed", "bf16"]
    for line in lines:
        assert float(line.split("accuracy ")[1]) > 0.8, line

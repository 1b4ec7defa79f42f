"""What precision a model really computes in, and the mistakes that silently undo a policy.

Keras models and PyTorch ``nn.Module`` s are both understood; torch is never imported here
unless the caller already imported it (a torch model cannot exist otherwise).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from greenprec.errors import GreenprecWarning
from greenprec.precision.policies import Policy, policy_for_keras_name, resolve_policy

if TYPE_CHECKING:
    from greenprec.precision.torch import TorchPolicy

__all__ = ["LayerPrecision", "ModelPrecision", "check_model", "describe"]

_REDUCED_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class LayerPrecision:
    """One layer's dtypes. Nested models' layers are named ``outer/inner``."""

    name: str
    class_name: str
    compute_dtype: str
    variable_dtype: str
    policy: str
    """The layer's Keras dtype-policy name (``mixed_float16``, ``float32`` ...)."""


@dataclass
class ModelPrecision:
    """What :func:`describe` returns: policy, dtypes per layer, loss scaling, warnings."""

    model: str
    policy: str | None
    """The greenprec policy the model was built under (None: some other Keras policy)."""
    keras_policy: str
    global_policy: str
    """Keras's global policy when described, which is what new layers would get."""
    loss_scaling: bool | None
    """Whether the compiled optimizer is a LossScaleOptimizer; None when not compiled."""
    optimizer: str | None
    output_dtypes: list[str]
    layers: list[LayerPrecision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    framework: str = "keras"
    """``keras`` or ``torch``. For a PyTorch module the Keras fields are empty, ``layers`` lists
    each module with parameters by its parameter dtype (autocast picks the compute dtype per
    operation at run time), and ``loss_scaling`` says whether the adapter has a GradScaler."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _keras_policy_name(obj: Any) -> str:
    dtype_policy = getattr(obj, "dtype_policy", None)
    return str(getattr(dtype_policy, "name", "float32"))


def _layers(model: Any, prefix: str = "") -> list[LayerPrecision]:
    found: list[LayerPrecision] = []
    for layer in getattr(model, "layers", []):
        name = f"{prefix}{layer.name}"
        found.append(
            LayerPrecision(
                name=name,
                class_name=type(layer).__name__,
                compute_dtype=str(layer.compute_dtype),
                variable_dtype=str(layer.variable_dtype),
                policy=_keras_policy_name(layer),
            )
        )
        if getattr(layer, "layers", None):
            found.extend(_layers(layer, prefix=f"{name}/"))
    return found


def _outputs(model: Any, layers: list[LayerPrecision]) -> list[tuple[str, str]]:
    """(producing layer, dtype) per model output; the last layer for subclassed models."""
    try:
        outputs = list(model.outputs or [])
    except (AttributeError, ValueError):  # subclassed models have no symbolic outputs
        outputs = []
    found = []
    for tensor in outputs:
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None) if history is not None else None
        found.append((str(getattr(operation, "name", "output")), str(tensor.dtype)))
    if not found and layers:
        top_level = [layer for layer in layers if "/" not in layer.name]
        last = top_level[-1] if top_level else layers[-1]
        found.append((last.name, last.compute_dtype))
    return found


def _loss_scale_optimizer_type() -> type:
    import keras

    return keras.optimizers.LossScaleOptimizer  # type: ignore[no-any-return]


def _problems(
    model: Any,
    layers: list[LayerPrecision],
    outputs: list[tuple[str, str]],
    expected: Policy | None,
    optimizer: Any,
) -> list[str]:
    problems: list[str] = []
    reduced = [layer for layer in layers if layer.compute_dtype in _REDUCED_DTYPES]
    float16 = [layer for layer in reduced if layer.compute_dtype == "float16"]
    if expected is not None and expected.compute_dtype != "float32" and not reduced:
        problems.append(
            f"the policy is {expected.keras_name} but every layer of {model.name!r} computes in "
            "float32: the model was built before the policy was set; build and compile it "
            f"inside `with greenprec.precision.policy({expected.name!r}):`"
        )
    loss_scaled = optimizer is not None and isinstance(optimizer, _loss_scale_optimizer_type())
    if float16 and optimizer is not None and not loss_scaled:
        problems.append(
            f"{len(float16)} layers of {model.name!r} compute in float16 but its optimizer is "
            "not loss-scaled, so small gradients underflow to zero: Keras adds a "
            "LossScaleOptimizer only for a model built under mixed_float16; compile inside the "
            "policy block or wrap the optimizer in keras.optimizers.LossScaleOptimizer"
        )
    elif (
        expected is not None
        and expected.name == "mixed"
        and optimizer is not None
        and not loss_scaled
    ):
        problems.append(
            f"the policy is mixed_float16 but the optimizer of {model.name!r} is not "
            "loss-scaled: compile the model inside the policy block"
        )
    if reduced:
        for layer_name, dtype in outputs:
            if dtype != "float32":
                problems.append(
                    f"output {layer_name!r} of {model.name!r} computes in {dtype}: give the "
                    "final Dense and softmax Activation dtype='float32' so the softmax and the "
                    "loss are computed in float32"
                )
    return problems


def _is_torch_module(model: object) -> bool:
    torch: Any = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _torch_expectation(
    policy: str | Policy | TorchPolicy | None,
) -> tuple[Policy | None, TorchPolicy | None]:
    from greenprec.precision.torch import TorchPolicy, active_policy

    if isinstance(policy, TorchPolicy):
        return policy.policy, policy
    if policy is None:
        adapter = active_policy()
        return (adapter.policy if adapter is not None else None), adapter
    return resolve_policy(policy), None


def _torch_layers(model: Any) -> list[LayerPrecision]:
    found = []
    for name, module in model.named_modules():
        dtypes = sorted(
            {
                str(parameter.dtype).removeprefix("torch.")
                for parameter in module.parameters(recurse=False)
            }
        )
        if dtypes:
            dtype = "/".join(dtypes)
            found.append(LayerPrecision(name, type(module).__name__, dtype, dtype, ""))
    return found


def _torch_problems(model: Any, expected: Policy | None, adapter: TorchPolicy | None) -> list[str]:
    name = type(model).__name__
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    reduced = [p for p in parameters if str(p.dtype) in ("torch.float16", "torch.bfloat16")]
    problems: list[str] = []
    if expected is not None and reduced:
        dtypes = "/".join(sorted({str(p.dtype).removeprefix("torch.") for p in reduced}))
        counted = f"{len(reduced)} of {len(parameters)} parameter tensors of {name!r}"
        if expected.compute_dtype != "float32":
            scaler = (
                ", and GradScaler refuses to unscale float16 gradients"
                if expected.loss_scaling
                else ""
            )
            problems.append(
                f"{counted} are {dtypes} (moved with .half() or .to({dtypes})?): under "
                f"{expected.name} the weights stay float32 and autocast casts each operation; "
                f"{dtypes} weights lose small updates to rounding{scaler}. Keep the model in "
                "float32 and compute under `with precision.autocast():`"
            )
        else:
            problems.append(
                f"the policy is {expected.name} but {counted} are {dtypes}: the model "
                "computes in reduced precision, not float32"
            )
    if adapter is not None and parameters:
        devices = sorted({p.device.type for p in parameters})
        if adapter.device_type not in devices:
            problems.append(
                f"the policy is set up for {adapter.device} but the parameters of {name!r} "
                f"are on {', '.join(devices)}, where its autocast and TF32 switches do not "
                "apply: move the model with .to(precision.device)"
            )
    return problems


def _describe_torch(model: Any, policy: str | Policy | TorchPolicy | None) -> ModelPrecision:
    expected, adapter = _torch_expectation(policy)
    return ModelPrecision(
        model=type(model).__name__,
        policy=expected.name if expected is not None else None,
        keras_policy="",
        global_policy=adapter.policy.name if adapter is not None else "",
        loss_scaling=None if adapter is None else adapter.scaler is not None,
        optimizer=None,
        output_dtypes=[],
        layers=_torch_layers(model),
        warnings=_torch_problems(model, expected, adapter),
        framework="torch",
    )


def describe(model: Any, *, policy: str | Policy | TorchPolicy | None = None) -> ModelPrecision:
    """Describe a model's precision: per layer dtypes, loss scaling, and problems.

    ``policy`` is the policy the model is meant to run under. For Keras, by default Keras's
    current global policy when that is one of greenprec's. For a PyTorch ``nn.Module`` it may
    be the adapter (:func:`~greenprec.precision.torch_policy`), which also lets the device be
    checked; by default the innermost entered adapter. Problems are listed in ``warnings``
    but not emitted; :func:`check_model` emits them.
    """
    if _is_torch_module(model):
        return _describe_torch(model, policy)
    from greenprec.precision.torch import TorchPolicy

    if isinstance(policy, TorchPolicy):
        policy = policy.policy
    import keras

    global_name = str(keras.config.dtype_policy().name)
    expected = resolve_policy(policy) if policy is not None else policy_for_keras_name(global_name)
    layers = _layers(model)
    outputs = _outputs(model, layers)
    optimizer = getattr(model, "optimizer", None)
    keras_policy = _keras_policy_name(model)
    model_policy = policy_for_keras_name(keras_policy)
    return ModelPrecision(
        model=str(model.name),
        policy=model_policy.name if model_policy is not None else None,
        keras_policy=keras_policy,
        global_policy=global_name,
        loss_scaling=(
            None if optimizer is None else isinstance(optimizer, _loss_scale_optimizer_type())
        ),
        optimizer=None if optimizer is None else type(optimizer).__name__,
        output_dtypes=[dtype for _name, dtype in outputs],
        layers=layers,
        warnings=_problems(model, layers, outputs, expected, optimizer),
    )


def check_model(model: Any, *, policy: str | Policy | TorchPolicy | None = None) -> list[str]:
    """Warn (:class:`~greenprec.GreenprecWarning`) about each precision problem; return them.

    Keras models and PyTorch modules; see :func:`describe` for ``policy``. Mistakes that show
    only while training (a PyTorch optimizer stepped without the scaler, a float16 loss) are
    warned about by the PyTorch adapter as they happen.
    """
    problems = describe(model, policy=policy).warnings
    for problem in problems:
        warnings.warn(problem, GreenprecWarning, stacklevel=2)
    return problems

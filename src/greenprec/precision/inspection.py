"""What precision a Keras model really computes in, and the mistakes that silently undo a policy."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from greenprec.errors import GreenprecWarning
from greenprec.precision.policies import Policy, policy_for_keras_name, resolve_policy

REDUCED_DTYPES = ("float16", "bfloat16")


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
    reduced = [layer for layer in layers if layer.compute_dtype in REDUCED_DTYPES]
    float16 = [layer for layer in reduced if layer.compute_dtype == "float16"]
    if expected is not None and expected.name != "fp32" and not reduced:
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


def describe(model: Any, *, policy: str | Policy | None = None) -> ModelPrecision:
    """Describe a Keras model's precision: per layer dtypes, loss scaling, and problems.

    ``policy`` is the policy the model is meant to run under; by default Keras's current
    global policy when that is one of greenprec's (fp32, mixed, bf16). Problems are listed in
    ``warnings`` but not emitted; :func:`check_model` emits them.
    """
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


def check_model(model: Any, *, policy: str | Policy | None = None) -> list[str]:
    """Warn (:class:`~greenprec.GreenprecWarning`) about each precision problem; return them."""
    problems = describe(model, policy=policy).warnings
    for problem in problems:
        warnings.warn(problem, GreenprecWarning, stacklevel=2)
    return problems

"""The precision policies greenprec compares, and the Keras adapter that applies one.

A :class:`Policy` is framework-neutral: what computes in which dtype, whether the loss is
scaled, and whether float32 matmuls and convolutions may use TF32 tensor cores. Each framework
has an adapter that applies it and restores what was there before: :func:`policy` for Keras
(below) and :func:`greenprec.precision.torch.torch_policy` for PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from greenprec.errors import ConfigError
from greenprec.frameworks import FrameworkInfo

__all__ = [
    "ALIASES",
    "POLICIES",
    "Policy",
    "PolicyName",
    "current_policy",
    "keras_framework_info",
    "policy",
    "policy_for_keras_name",
    "resolve_policy",
    "valid_names",
]

# Other spellings people use for the same policy; keys are compared lower-cased with "-" as "_".
ALIASES: dict[str, str] = {
    "fp32": "fp32",
    "float32": "fp32",
    "tf32": "tf32",
    "float32_tf32": "tf32",
    "mixed": "mixed",
    "mixed_float16": "mixed",
    "fp16": "mixed",
    "bf16": "bf16",
    "mixed_bfloat16": "bf16",
}


def _canonical(value: object) -> object:
    if isinstance(value, Policy):
        return value.name
    if isinstance(value, str):
        return ALIASES.get(value.strip().lower().replace("-", "_"), value)
    return value


PolicyName = Annotated[Literal["fp32", "tf32", "mixed", "bf16"], BeforeValidator(_canonical)]
"""A pydantic type for config models: accepts any alias, any case; holds the canonical name."""

_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(PolicyName)


def _validated_name(value: object) -> str:
    return _NAME_ADAPTER.validate_python(value)


class Policy(BaseModel):
    """One precision policy: greenprec's canonical name and what it means to any framework."""

    model_config = ConfigDict(frozen=True)

    # Typed str (not the Literal) so callers can put names in list[str] without casts.
    name: Annotated[str, BeforeValidator(_validated_name)]
    keras_name: str
    """The Keras dtype policy the Keras adapter sets (``tf32`` and ``fp32`` share float32)."""
    compute_dtype: str
    variable_dtype: str
    loss_scaling: bool
    """Whether the loss is scaled (only for float16): Keras's LossScaleOptimizer, PyTorch's
    GradScaler."""
    allow_tf32: bool
    """Whether float32 matmuls and convolutions may run on TF32 tensor cores (NVIDIA compute
    capability 8.0+). Only ``tf32`` allows it: the float32 parts of the other policies stay
    strict, so that two policies differ in one thing only."""
    description: str

    def __str__(self) -> str:
        return self.name


POLICIES: dict[str, Policy] = {
    "fp32": Policy(
        name="fp32",
        keras_name="float32",
        compute_dtype="float32",
        variable_dtype="float32",
        loss_scaling=False,
        allow_tf32=False,
        description="strict float32 everywhere, TF32 off (the baseline)",
    ),
    "tf32": Policy(
        name="tf32",
        keras_name="float32",
        compute_dtype="float32",
        variable_dtype="float32",
        loss_scaling=False,
        allow_tf32=True,
        description="float32, with TF32 tensor cores allowed for matmuls and convolutions",
    ),
    "mixed": Policy(
        name="mixed",
        keras_name="mixed_float16",
        compute_dtype="float16",
        variable_dtype="float32",
        loss_scaling=True,
        allow_tf32=False,
        description="float16 compute, float32 weights, dynamic loss scaling",
    ),
    "bf16": Policy(
        name="bf16",
        keras_name="mixed_bfloat16",
        compute_dtype="bfloat16",
        variable_dtype="float32",
        loss_scaling=False,
        allow_tf32=False,
        description="bfloat16 compute, float32 weights, no loss scaling needed",
    ),
}

# float32 is fp32's: a model's dtype policy cannot tell strict float32 from TF32.
_BY_KERAS_NAME = {p.keras_name: p for p in reversed(POLICIES.values())}


def valid_names() -> str:
    """The accepted names for error messages: ``fp32, mixed (alias mixed_float16, fp16), ...``."""
    parts = []
    for name in POLICIES:
        aliases = [alias for alias, target in ALIASES.items() if target == name and alias != name]
        parts.append(f"{name} (alias {', '.join(aliases)})" if aliases else name)
    return ", ".join(parts)


def resolve_policy(name: str | Policy) -> Policy:
    """The :class:`Policy` for a name or alias, any case; :class:`ConfigError` if unknown."""
    if isinstance(name, Policy):
        return name
    try:
        canonical = _NAME_ADAPTER.validate_python(name)
    except ValidationError:
        raise ConfigError(
            f"unknown precision policy {name!r}; choose one of: {valid_names()}"
        ) from None
    return POLICIES[canonical]


def policy_for_keras_name(keras_name: str) -> Policy | None:
    """The greenprec policy for a Keras dtype-policy name, or None for any other policy."""
    return _BY_KERAS_NAME.get(keras_name)


def current_policy() -> Policy | None:
    """The greenprec policy Keras is set to now (None when it is some other Keras policy).

    A float32 Keras policy is ``tf32`` when TensorFlow's TF32 execution is on (TensorFlow's
    own default), ``fp32`` when it is off.
    """
    import keras

    found = policy_for_keras_name(keras.config.dtype_policy().name)
    if found is not None and found.name == "fp32" and _tensorflow_tf32() is True:
        return POLICIES["tf32"]
    return found


def _tensorflow_tf32() -> bool | None:
    """TensorFlow's TF32 switch; None when TensorFlow is not installed (another Keras backend)."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return bool(tf.config.experimental.tensor_float_32_execution_enabled())


def _set_tensorflow_tf32(enabled: bool) -> None:
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(enabled)


def keras_framework_info() -> FrameworkInfo:
    """Keras and TensorFlow as they are now: version, device and the TF32 switch."""
    import keras

    tf32 = _tensorflow_tf32()
    if tf32 is None:
        return FrameworkInfo(name="keras", version=str(keras.__version__))
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device_name = str(details.get("device_name") or "GPU")
    else:
        from greenprec.host import cpu_model

        device_name = cpu_model()
    return FrameworkInfo(
        name="keras",
        version=str(keras.__version__),
        device="gpu" if gpus else "cpu",
        device_name=device_name,
        tf32=tf32,
        switches={"tf.config.experimental.tensor_float_32_execution": tf32},
    )


@contextmanager
def policy(name: str | Policy) -> Iterator[Policy]:
    """Apply a policy to Keras for a block and restore what was there before on exit.

    Sets Keras's global dtype policy and TensorFlow's TF32 switch
    (``tf.config.experimental.enable_tensor_float_32_execution``: on for ``tf32`` only; it is
    TensorFlow's default, so ``fp32`` turns it off). Both are restored on exit, also when the
    block raises.

    Build *and* compile the model inside the block: Keras fixes a layer's dtypes when the layer
    is created, and wraps the optimizer in a LossScaleOptimizer only for a model created under
    ``mixed_float16``. Keras keeps the dtype policy per thread; the TF32 switch is process-wide.
    """
    chosen = resolve_policy(name)
    try:
        import keras
    except ImportError as error:
        raise ConfigError("precision policies need Keras; install greenprec[tensorflow]") from error
    previous: Any = keras.config.dtype_policy()
    previous_tf32 = _tensorflow_tf32()
    if previous_tf32 is None and chosen.allow_tf32:
        raise ConfigError(
            "the tf32 policy for Keras needs TensorFlow; install greenprec[tensorflow]"
        )
    keras.config.set_dtype_policy(chosen.keras_name)
    try:
        if previous_tf32 is not None:
            _set_tensorflow_tf32(chosen.allow_tf32)
        yield chosen
    finally:
        keras.config.set_dtype_policy(previous)
        if previous_tf32 is not None:
            _set_tensorflow_tf32(previous_tf32)

"""The three precision policies greenprec compares, and a block that applies one to Keras."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from greenprec.errors import ConfigError

# Other spellings people use for the same policy; keys are compared lower-cased with "-" as "_".
ALIASES: dict[str, str] = {
    "fp32": "fp32",
    "float32": "fp32",
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


PolicyName = Annotated[Literal["fp32", "mixed", "bf16"], BeforeValidator(_canonical)]
"""A pydantic type for config models: accepts any alias, any case; holds the canonical name."""

_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(PolicyName)


def _validated_name(value: object) -> str:
    return _NAME_ADAPTER.validate_python(value)


class Policy(BaseModel):
    """One precision policy: greenprec's canonical name and what it means to Keras."""

    model_config = ConfigDict(frozen=True)

    # Typed str (not the Literal) so callers can put names in list[str] without casts.
    name: Annotated[str, BeforeValidator(_validated_name)]
    keras_name: str
    compute_dtype: str
    variable_dtype: str
    loss_scaling: bool
    """Whether Keras wraps the optimizer in a LossScaleOptimizer (only for float16)."""
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
        description="float32 everywhere (the baseline)",
    ),
    "mixed": Policy(
        name="mixed",
        keras_name="mixed_float16",
        compute_dtype="float16",
        variable_dtype="float32",
        loss_scaling=True,
        description="float16 compute, float32 weights, dynamic loss scaling",
    ),
    "bf16": Policy(
        name="bf16",
        keras_name="mixed_bfloat16",
        compute_dtype="bfloat16",
        variable_dtype="float32",
        loss_scaling=False,
        description="bfloat16 compute, float32 weights, no loss scaling needed",
    ),
}

_BY_KERAS_NAME = {policy.keras_name: policy for policy in POLICIES.values()}


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
    """The greenprec policy Keras is set to now (None when it is some other Keras policy)."""
    import keras

    return policy_for_keras_name(keras.config.dtype_policy().name)


@contextmanager
def policy(name: str | Policy) -> Iterator[Policy]:
    """Set Keras's global dtype policy for a block and restore the previous one on exit.

    Build *and* compile the model inside the block: Keras fixes a layer's dtypes when the layer
    is created, and wraps the optimizer in a LossScaleOptimizer only for a model created under
    ``mixed_float16``. Keras keeps the policy per thread, so the block affects this thread only.
    """
    chosen = resolve_policy(name)
    try:
        import keras
    except ImportError as error:
        raise ConfigError("precision policies need Keras; install greenprec[tensorflow]") from error
    previous: Any = keras.config.dtype_policy()
    keras.config.set_dtype_policy(chosen.keras_name)
    try:
        yield chosen
    finally:
        keras.config.set_dtype_policy(previous)

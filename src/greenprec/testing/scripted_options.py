"""The pydantic models of the scripted test kit: the ``scripted`` meter's options
(:class:`ScriptedOptions`) and the ``training`` workload's params (:class:`TrainingParams`).

A module of its own, as :mod:`greenprec.meters.mock.options` is: the plugin manager imports
the meter (:mod:`greenprec.testing.scripted_meter`) to register it, which every first
``measure()`` does, and that must not import pydantic. The meter names its model by path.

``power_w`` is written ``CONFIGURATION:WATTS`` pairs, comma-separated::

    fp32:100,bf16:60                         precision policies
    fp32-batch_size=64:100,bf16:60           a configuration's label, and a policy

A ``:`` separates the watts because a label holds ``=`` (``bf16-batch_size=256``); labels and
policy names never hold ``:`` or ``,``, so every text reads one way only. The policy part of a
key (before the first ``-``) may be any alias (``float32``, ``mixed_float16``); it is kept as
the canonical name, which is how runs record it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from greenprec.errors import ConfigError
from greenprec.meters.options import (
    MeterOptions,
    option_label,
    positive_value,
    zero_or_positive_number,
)

__all__ = [
    "POWER_W_EXAMPLE",
    "ScriptedOptions",
    "TrainingParams",
    "format_power_w",
    "parse_power_w",
]

POWER_W_EXAMPLE = "fp32:100,bf16-batch_size=256:60"
"""How ``power_w`` is written, for messages and docs."""

# The characters of a configuration label (greenprec.experiment.candidates): filesystem-safe,
# and never ':' or ',', the two separators of the text form.
_KEY = re.compile(r"[A-Za-z0-9_.=-]+")
_MAX_KEY_CHARS = 100
_MAX_ENTRIES = 256
"""More configurations than any experiment compares (64 at most): a longer text is a mistake."""


def _canonical_key(key: object) -> str:
    """A key with its policy part (before the first ``-``) in canonical spelling."""
    if not isinstance(key, str) or not _KEY.fullmatch(key.strip()) or len(key) > _MAX_KEY_CHARS:
        raise ValueError(
            f"{key!r} is not a configuration label or a precision policy (letters, digits, "
            f"'_', '.', '=' and '-', at most {_MAX_KEY_CHARS} characters)"
        )
    from greenprec.precision.policies import resolve_policy

    policy, dash, rest = key.strip().partition("-")
    try:
        canonical = resolve_policy(policy).name
    except ConfigError as error:
        raise ValueError(f"key {key!r}: {error}") from None
    return f"{canonical}{dash}{rest}"


def _watts(key: str, value: object) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{key}: {value!r} is not a number of watts (finite, 0 or more)")
    return number


def parse_power_w(value: str | Mapping[str, object]) -> dict[str, float]:
    """``power_w`` as written (``"fp32:100,bf16:60"``, or a mapping from Python) -> watts by
    key, keys in canonical spelling; any problem is a ValueError naming it. An empty text is
    no entry."""
    pairs: list[tuple[object, object]] = []
    if isinstance(value, str):
        entries = [] if not value.strip() else value.split(",")
        for entry in entries:
            key, colon, watts = entry.partition(":")
            if not entry.strip():
                raise ValueError(
                    f"an empty entry (a comma too many?); write CONFIGURATION:WATTS pairs "
                    f"separated by commas, e.g. {POWER_W_EXAMPLE}"
                )
            if not colon:
                raise ValueError(
                    f"entry {entry.strip()!r} has no ':'; write CONFIGURATION:WATTS (a ':', as "
                    f"labels hold '='), e.g. {POWER_W_EXAMPLE}"
                )
            pairs.append((key, watts.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ValueError(
            f"must be CONFIGURATION:WATTS pairs (e.g. {POWER_W_EXAMPLE}) or a mapping, "
            f"got {value!r}"
        )
    if len(pairs) > _MAX_ENTRIES:
        raise ValueError(f"{len(pairs)} entries; at most {_MAX_ENTRIES}")
    found: dict[str, float] = {}
    for given, given_w in pairs:
        canonical = _canonical_key(given)
        if canonical in found:
            raise ValueError(f"{canonical} is given twice")
        found[canonical] = _watts(canonical, given_w)
    return found


def format_power_w(power_w: Mapping[str, float]) -> str:
    """The text form of ``power_w`` (what :func:`parse_power_w` reads back to the same
    mapping): for ``-o scripted.power_w=...`` and TOML from a test's own mapping."""
    return ",".join(f"{key}:{watts!r}" for key, watts in power_w.items())


def _power_map(value: object, info: ValidationInfo) -> dict[str, float]:
    if not isinstance(value, (str, Mapping)):
        raise ValueError(
            f"{option_label(info)} must be CONFIGURATION:WATTS pairs (e.g. {POWER_W_EXAMPLE}), "
            f"got {value!r}"
        )
    try:
        return parse_power_w(value)
    except ValueError as error:
        raise ValueError(f"{option_label(info)}: {error}") from None


def _optional_watts(value: object, info: ValidationInfo) -> float | None:
    """None (or an empty text, as TOML and ``-o default_w=`` give it): no fallback."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return positive_value(value, info, "watts", allow_zero=True)


def _noise(value: object, info: ValidationInfo) -> float:
    """A relative standard deviation: a fraction from 0 to 1, or a percentage (``5%``)."""
    text = value.strip() if isinstance(value, str) else value
    scale = 1.0
    if isinstance(text, str) and text.endswith("%"):
        text, scale = text[:-1].strip(), 0.01
    number = math.nan
    if isinstance(text, (int, float, str)) and not isinstance(text, bool):
        try:
            number = float(text) * scale
        except ValueError:
            number = math.nan
    if not (math.isfinite(number) and 0 <= number <= 1):
        raise ValueError(
            f"{option_label(info)} must be a relative standard deviation from 0 to 1 (0.05, or "
            f"5%), got {value!r}"
        )
    return number


class ScriptedOptions(MeterOptions):
    """Options of the ``scripted`` meter (:class:`~greenprec.testing.scripted_meter.ScriptedMeter`):
    a known power per configuration of an experiment, for tests and demos."""

    model_config = ConfigDict(title="scripted")

    power_w: Annotated[dict[str, float], BeforeValidator(_power_map)] = Field(
        default_factory=dict,
        description=(
            "watts per configuration label or precision policy (a label wins), written "
            f"CONFIGURATION:WATTS,... e.g. {POWER_W_EXAMPLE}"
        ),
    )
    default_w: Annotated[float | None, BeforeValidator(_optional_watts)] = Field(
        None,
        description="watts of a run whose configuration power_w does not list; none: such a "
        "run fails, naming its configuration",
    )
    idle_w: Annotated[float, zero_or_positive_number("watts")] = Field(
        20.0,
        description="watts outside a run (the idle baseline, the warm-up, a plain measure())",
    )
    noise: Annotated[float, BeforeValidator(_noise)] = Field(
        0.0,
        description="relative standard deviation of a run's power, drawn from the run's seed "
        "(0.05 or 5%; 0: exact)",
    )


class TrainingParams(BaseModel):
    """The params of the scripted ``training`` workload (:mod:`greenprec.testing.scripted`)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1, le=100_000)
    """The most epochs a run trains (it stops earlier at the target with stop_at_target)."""
    epoch_s: float = Field(0.05, ge=0, le=3600, allow_inf_nan=False)
    """Seconds each epoch sleeps: the run's time, and so its energy, per epoch."""
    accuracy_step: float = Field(0.1, gt=0, le=1, allow_inf_nan=False)
    """test_accuracy after epoch k is min(0.99, k * accuracy_step)."""
    batch_size: int = Field(32, ge=1)
    """Samples per step: an epoch trains steps_per_epoch * batch_size samples."""
    steps_per_epoch: int = Field(10, ge=1)
    final_accuracy_sd: float = Field(0.0, ge=0, le=0.1, allow_inf_nan=False)
    """Standard deviation of the returned (final) test accuracy around the last epoch's, drawn
    from the run's seed: 0 keeps every run's accuracy exact; a little gives a non-inferiority
    test of the final accuracy the variance it needs."""

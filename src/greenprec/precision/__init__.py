"""Precision policies (fp32, mixed, bf16) for Keras, model checks, and device support.

``import greenprec.precision`` does not import TensorFlow or Keras; the functions that need
Keras import it when called.
"""

from __future__ import annotations

from greenprec.host import read_cpuinfo
from greenprec.precision.inspection import (
    LayerPrecision,
    ModelPrecision,
    check_model,
    describe,
)
from greenprec.precision.policies import (
    ALIASES,
    POLICIES,
    Policy,
    PolicyName,
    current_policy,
    policy,
    policy_for_keras_name,
    resolve_policy,
    valid_names,
)
from greenprec.precision.support import (
    DtypeSupport,
    SupportReport,
    emulation_warnings,
    support,
)

__all__ = [
    "ALIASES",
    "POLICIES",
    "DtypeSupport",
    "LayerPrecision",
    "ModelPrecision",
    "Policy",
    "PolicyName",
    "SupportReport",
    "check_model",
    "current_policy",
    "describe",
    "emulation_warnings",
    "policy",
    "policy_for_keras_name",
    "read_cpuinfo",
    "resolve_policy",
    "support",
    "valid_names",
]

"""Precision policies (fp32, tf32, mixed, bf16), their Keras and PyTorch adapters, model checks,
and device support.

``import greenprec.precision`` imports neither TensorFlow/Keras nor PyTorch; the functions
that need one import it when called.
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
    keras_framework_info,
    policy,
    policy_for_keras_name,
    resolve_policy,
    valid_names,
)
from greenprec.precision.support import (
    FRAMEWORKS,
    DtypeSupport,
    SupportReport,
    emulation_warnings,
    support,
)
from greenprec.precision.torch import TorchPolicy, torch_policy

__all__ = [
    "ALIASES",
    "FRAMEWORKS",
    "POLICIES",
    "DtypeSupport",
    "LayerPrecision",
    "ModelPrecision",
    "Policy",
    "PolicyName",
    "SupportReport",
    "TorchPolicy",
    "check_model",
    "current_policy",
    "describe",
    "emulation_warnings",
    "keras_framework_info",
    "policy",
    "policy_for_keras_name",
    "read_cpuinfo",
    "resolve_policy",
    "support",
    "torch_policy",
    "valid_names",
]

"""Workloads: what greenprec trains and measures, and how to run one under a policy.

A workload is a callable ``workload(ctx) -> dict`` that trains inside ``with ctx.measured():``
and returns at least ``test_accuracy`` and ``test_loss``. ``import greenprec.workloads`` does
not import TensorFlow, Keras, PyTorch or scikit-learn; the workloads import them when they run.
"""

from __future__ import annotations

from greenprec.frameworks import FrameworkInfo
from greenprec.workloads.core import (
    FRAMEWORKS,
    REQUIRED_METRICS,
    STANDARD_METRICS,
    MeasureFactory,
    RecordedMetric,
    Requirement,
    Workload,
    WorkloadContext,
    WorkloadError,
    WorkloadResult,
    framework_of,
    lower_is_better,
    missing_requirements,
    recorded_metrics,
    requirements,
    run_workload,
    seed_everything,
    target_problems,
    target_reached,
    uses_keras,
    workload,
)
from greenprec.workloads.registry import (
    LEGACY_ENTRY_POINT_GROUP,
    WorkloadInfo,
    available_workloads,
    get_workload,
    workload_errors,
)

__all__ = [
    "FRAMEWORKS",
    "LEGACY_ENTRY_POINT_GROUP",
    "REQUIRED_METRICS",
    "STANDARD_METRICS",
    "FrameworkInfo",
    "MeasureFactory",
    "RecordedMetric",
    "Requirement",
    "Workload",
    "WorkloadContext",
    "WorkloadError",
    "WorkloadInfo",
    "WorkloadResult",
    "available_workloads",
    "framework_of",
    "get_workload",
    "lower_is_better",
    "missing_requirements",
    "recorded_metrics",
    "requirements",
    "run_workload",
    "seed_everything",
    "target_problems",
    "target_reached",
    "uses_keras",
    "workload",
    "workload_errors",
]

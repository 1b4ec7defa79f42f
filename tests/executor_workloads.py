"""Workloads for tests/test_executors.py, imported by the debug executor's job processes."""

from __future__ import annotations

import os
from typing import Any

from greenprec.workloads import workload


@workload(keras=False)
def dies_on_policy(ctx: Any) -> dict[str, float]:
    """End the whole process (an inline run: the job) for the policy named by
    ``$GREENPREC_TEST_DIE_POLICY``, as a node going down would; otherwise a quick run."""
    with ctx.measured():
        if ctx.policy == os.environ.get("GREENPREC_TEST_DIE_POLICY"):
            os._exit(3)
    return {"test_accuracy": 0.9, "test_loss": 0.3}

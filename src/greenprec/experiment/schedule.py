"""The run schedule: every (policy, repetition) pair, shuffled with the experiment's seed, or
in blocks (one run of each policy) for a cluster."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from greenprec.experiment.candidates import Candidate
from greenprec.results.models import ScheduledRun

__all__ = ["make_blocked_schedule", "make_schedule", "run_seed"]


def run_seed(experiment_seed: int, run_id: str) -> int:
    """A run's own seed, derived from the experiment seed and its id, so it can be repeated."""
    digest = hashlib.sha256(f"{experiment_seed}:{run_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


Arm = str | Candidate
"""What a schedule's runs compare: a policy's name, or a configuration (a policy with workload
parameters, :class:`~greenprec.experiment.candidates.Candidate`), named by its label."""


def _planned(arm: Arm, **fields: object) -> ScheduledRun:
    """A scheduled run of ``arm``: its ``policy`` is the arm's label; a configuration also
    records its precision policy and parameters."""
    if isinstance(arm, str) or not arm.overrides:
        name = arm if isinstance(arm, str) else arm.policy
        return ScheduledRun(policy=name, **fields)  # type: ignore[arg-type]
    return ScheduledRun(
        policy=arm.label,
        precision=arm.policy,
        params=arm.params,
        **fields,  # type: ignore[arg-type]
    )


def _label(arm: Arm) -> str:
    return arm if isinstance(arm, str) else arm.label


def make_schedule(
    policies: Sequence[Arm], runs: int, seed: int, *, shuffle: bool = True
) -> list[ScheduledRun]:
    """Runs in execution order. Unshuffled, policies alternate repetition by repetition."""
    pairs = [(policy, repetition) for repetition in range(1, runs + 1) for policy in policies]
    if shuffle:
        # The study shuffled with Python's random and seed 42; so do we, for the same reason:
        # drift in temperature or background load must not line up with one policy.
        random.Random(seed).shuffle(pairs)
    return [
        _planned(
            policy,
            run_id=(run_id := f"{_label(policy)}-{repetition:03d}"),
            order=order,
            repetition=repetition,
            seed=run_seed(seed, run_id),
        )
        for order, (policy, repetition) in enumerate(pairs, start=1)
    ]


def make_blocked_schedule(policies: Sequence[Arm], runs: int, seed: int) -> list[ScheduledRun]:
    """Runs in blocks: block ``k`` holds repetition ``k`` of every policy, in a seeded random
    order of its own, and runs on one host (the cluster executor submits one job per block).

    Hosts differ (silicon, cooling, firmware): with fp32 on one node and mixed on another, the
    comparison would measure the nodes. Within a block every policy meets the same node, so the
    report can compare policies within hosts. Shuffling inside each block keeps drift (a node
    warming up through its job) from lining up with one policy.
    """
    rng = random.Random(seed)
    schedule: list[ScheduledRun] = []
    for block in range(1, runs + 1):
        order = list(policies)
        rng.shuffle(order)
        for policy in order:
            run_id = f"{_label(policy)}-{block:03d}"
            schedule.append(
                _planned(
                    policy,
                    run_id=run_id,
                    order=len(schedule) + 1,
                    repetition=block,
                    seed=run_seed(seed, run_id),
                    block=block,
                )
            )
    return schedule

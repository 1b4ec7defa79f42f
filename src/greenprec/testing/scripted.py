"""The scripted test kit: experiments whose right answer is known before they run.

Two parts, for tests and demos of ``greenprec compare`` and ``greenprec recommend``:

- the ``scripted`` meter (:class:`ScriptedMeter`, in :mod:`greenprec.testing.scripted_meter`):
  a known power per configuration (``-o scripted.power_w=fp32:100,bf16:60``), ``idle_w``
  outside a run, optional seeded noise; energy is that power times the measured time;
- the ``training`` workload (``--workload greenprec.testing.scripted:training``): a training
  loop that sleeps ``epoch_s`` per epoch and whose test accuracy after epoch k is
  ``min(0.99, k * accuracy_step)``, so the epoch that reaches a target is known too
  (:func:`epochs_to_reach`). It reports every epoch through ``ctx.epoch_end`` and stops when
  told to (``--stop-at-target``).

Energy to a target of a run is then ``power x time to the target``, and ``--vary
accuracy_step=0.1,0.2`` makes the time to the target differ per configuration.

The meter is registered with the built-in meters (used only when named). This module imports
the workload layer; the meter's own module does not, so that loading the plugin manager stays
light.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from greenprec.errors import ConfigError
from greenprec.testing.scripted_meter import DOMAIN, ScriptedMeter, run_power_w
from greenprec.testing.scripted_options import TrainingParams
from greenprec.workloads import STANDARD_METRICS, WorkloadContext, workload

__all__ = [
    "DOMAIN",
    "MAX_ACCURACY",
    "WORKLOAD",
    "ScriptedMeter",
    "accuracy_after",
    "epochs_to_reach",
    "final_accuracy",
    "run_power_w",
    "training",
]

WORKLOAD = "greenprec.testing.scripted:training"
"""How ``--workload`` names :func:`training`."""
MAX_ACCURACY = 0.99
"""The test accuracy the workload never passes: a target above it is never reached."""
_DECIMALS = 12
"""Accuracies are rounded so that ``3 * 0.1`` is 0.3 and reaches a 0.3 target at epoch 3."""


def accuracy_after(epoch: int, accuracy_step: float) -> float:
    """The workload's test accuracy after epoch ``epoch`` (from 1)."""
    return round(min(MAX_ACCURACY, epoch * accuracy_step), _DECIMALS)


def epochs_to_reach(target: float, accuracy_step: float, epochs: int) -> int | None:
    """The first epoch whose test accuracy reaches ``target``; None when none of ``epochs``
    does (what a test expects a run to stop at)."""
    if target > MAX_ACCURACY:
        return None
    first = max(1, math.ceil(round(target / accuracy_step, _DECIMALS)))
    while accuracy_after(first, accuracy_step) < target:  # rounding at the edge
        first += 1
    return first if first <= epochs else None


def _params(params: Mapping[str, object]) -> TrainingParams:
    from greenprec.workloads._common import parse_params

    return parse_params(TrainingParams, params, WORKLOAD)


@workload(
    keras=False,
    metrics=STANDARD_METRICS,
    description="scripted training for tests: known accuracy per epoch, sleeps epoch_s each",
)
def training(ctx: WorkloadContext) -> dict[str, float]:
    """Train ``epochs`` epochs (at most) of ``epoch_s`` seconds each on ``steps_per_epoch *
    batch_size`` samples; test accuracy after epoch k is ``min(0.99, k * accuracy_step)``.
    Each epoch is reported through ``ctx.epoch_end``; the loop ends when it answers True (the
    run stops at its target). The returned accuracy is the last epoch's, with
    ``final_accuracy_sd`` of seeded noise (:func:`final_accuracy`). No framework: the
    precision policy changes nothing here, the scripted meter's power per configuration does."""
    params = _params(ctx.params)
    samples = params.batch_size * params.steps_per_epoch
    accuracy = 0.0
    with ctx.measured():
        for epoch in range(1, params.epochs + 1):
            time.sleep(params.epoch_s)
            accuracy = accuracy_after(epoch, params.accuracy_step)
            metrics = {"test_accuracy": accuracy, "test_loss": _loss(accuracy)}
            if ctx.epoch_end(epoch, metrics, samples=samples):
                break
    final = final_accuracy(accuracy, params.final_accuracy_sd, ctx.seed)
    return {"test_accuracy": final, "test_loss": _loss(final)}


def final_accuracy(last_epoch_accuracy: float, sd: float, seed: int) -> float:
    """The test accuracy a run returns: its last epoch's, plus a normal draw of standard
    deviation ``sd`` from ``numpy.random.default_rng(seed)`` (none when ``sd`` is 0), kept
    within 0 and 1."""
    if sd == 0:
        return last_epoch_accuracy
    import numpy as np

    drawn = last_epoch_accuracy + float(np.random.default_rng(seed).normal(0.0, sd))
    return round(min(1.0, max(0.0, drawn)), _DECIMALS)


def _loss(accuracy: float) -> float:
    return round(1.0 - accuracy, _DECIMALS)


def _check_params(params: Mapping[str, object]) -> None:
    """Before any run: the params are valid (one ConfigError line naming the bad one)."""
    _params(params)


def _timeout_s(params: Mapping[str, object]) -> float:
    """A generous time limit per run: ten times the longest training, plus a minute for a
    fresh Python to start."""
    try:
        valid = _params(params)
    except ConfigError:
        return 600.0  # the run itself reports the bad params
    return 60.0 + 10.0 * valid.epochs * valid.epoch_s


training.check_params = _check_params  # type: ignore[attr-defined]
training.timeout_s = _timeout_s  # type: ignore[attr-defined]

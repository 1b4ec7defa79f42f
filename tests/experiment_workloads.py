"""Tiny workloads for experiment tests: no TensorFlow, so a run takes milliseconds.

They are importable as ``experiment_workloads:NAME`` once ``tests/`` is on the path, which the
tests arrange for child processes through PYTHONPATH.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from greenprec.workloads import STANDARD_METRICS, workload

# Module state that a leaky workload mutates; process isolation must hide it from the next run.
LEAKED: list[str] = []


@workload(keras=False)
def sleepy(ctx: Any) -> dict[str, float]:
    """Sleep in the measured phase for ``params['sleep_s']`` (default 0.2 s), after a set-up
    of ``params['setup_s']`` (default 0.05 s) outside it."""
    time.sleep(float(ctx.params.get("setup_s", 0.05)))  # set-up outside the measured phase
    with ctx.measured():
        time.sleep(float(ctx.params.get("sleep_s", 0.2)))
    return {"test_accuracy": 0.9 + (ctx.seed % 100) / 10_000, "test_loss": 0.3, "epochs_run": 1.0}


@workload(keras=False)
def fails_on_repetition_two(ctx: Any) -> dict[str, float]:
    """Raises on its second repetition of the first policy (decided from a marker file)."""
    marker = Path(ctx.params["marker_dir"]) / f"{ctx.policy}-{ctx.seed}"
    with ctx.measured():
        time.sleep(0.05)
    if ctx.policy == "fp32" and len(list(Path(ctx.params["marker_dir"]).glob("fp32-*"))) == 1:
        marker.touch()
        raise RuntimeError("simulated out-of-memory in fit()")
    marker.touch()
    return {"test_accuracy": 0.5, "test_loss": 1.0}


@workload(keras=False)
def leaks_state(ctx: Any) -> dict[str, float]:
    """Fails if an earlier run's state is visible, then leaves state behind for the next."""
    seen = list(LEAKED) + (
        [os.environ["GREENPREC_TEST_LEAK"]] if "GREENPREC_TEST_LEAK" in os.environ else []
    )
    LEAKED.append(ctx.policy)
    os.environ["GREENPREC_TEST_LEAK"] = ctx.policy
    with ctx.measured():
        time.sleep(0.02)
    if seen:
        raise RuntimeError(f"state leaked from an earlier run: {seen}")
    return {"test_accuracy": 1.0, "test_loss": 0.0}


@workload(keras=False)
def slow(ctx: Any) -> dict[str, float]:
    """Long enough in the measured phase for a test to kill the runner mid-run."""
    with ctx.measured():
        time.sleep(float(ctx.params.get("sleep_s", 1.0)))
    return {"test_accuracy": 0.8, "test_loss": 0.5}


@workload(keras=False)
def reserved_metrics(ctx: Any) -> dict[str, float]:
    """Returns metrics named like columns greenprec measures itself (energy_j, order)."""
    with ctx.measured():
        time.sleep(0.05)
    return {"test_accuracy": 0.5, "test_loss": 1.0, "energy_j": 1.0, "order": 7.0}


@workload(keras=False)
def hangs_with_a_helper(ctx: Any) -> dict[str, float]:
    """Starts a helper process (as data loaders do), writes its pid, then never returns."""
    import subprocess

    helper = subprocess.Popen(["sleep", "1000"])
    Path(ctx.params["pid_file"]).write_text(str(helper.pid))
    with ctx.measured():
        time.sleep(1000)
    return {"test_accuracy": 0.5, "test_loss": 1.0}


@workload(keras=False)
def fails_with_brackets(ctx: Any) -> dict[str, float]:
    """Fails in its mixed runs with an error holding square brackets (rich markup's syntax);
    fp32 runs succeed, so a report can be written from the same folder."""
    with ctx.measured():
        time.sleep(0.02)
    if ctx.policy != "fp32":
        raise RuntimeError("missing [/data/cifar-10]")
    return {"test_accuracy": 0.5 + (ctx.seed % 100) / 1000, "test_loss": 1.0}


@workload(keras=False)
def policy_sleeps(ctx: Any) -> dict[str, float]:
    """Sleep ``params['sleep_<policy>_s']`` in the measured phase (default 0.2 s): a workload
    whose policies differ in energy by a known amount, with accuracy nearly the same."""
    with ctx.measured():
        time.sleep(float(ctx.params.get(f"sleep_{ctx.policy}_s", 0.2)))
    return {"test_accuracy": 0.9 + (ctx.seed % 100) / 10_000, "test_loss": 0.3}


@workload(keras=False)
def held(ctx: Any) -> dict[str, float]:
    """Hold the measured phase until the file ``params['release']`` exists (at most
    ``params['max_s']``, default 60 s): a run a test can interrupt mid-way, then let finish at
    once when the experiment is resumed."""
    release = Path(str(ctx.params["release"]))
    deadline = time.monotonic() + float(ctx.params.get("max_s", 60.0))
    with ctx.measured():
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return {"test_accuracy": 0.8, "test_loss": 0.5}


@workload(keras=False)
def fails_once(ctx: Any) -> dict[str, float]:
    """As ``policy_sleeps`` (default 0.05 s), except that the ``params['fail_at']``-th run of
    fp32 raises, once (marker files in ``params['marker_dir']``): a run failing mid-way through
    an adaptive experiment, which succeeds when run again."""
    folder = Path(ctx.params["marker_dir"])
    with ctx.measured():
        time.sleep(float(ctx.params.get(f"sleep_{ctx.policy}_s", 0.05)))
    if ctx.policy == "fp32":
        done = len(list(folder.glob("fp32-*")))
        if done == int(ctx.params["fail_at"]) - 1 and not (folder / "failed").exists():
            (folder / "failed").touch()
            raise RuntimeError("simulated out-of-memory in fit()")
        (folder / f"fp32-{done}").touch()
    return {"test_accuracy": 0.9 + (ctx.seed % 100) / 10_000, "test_loss": 0.3}


@workload(keras=False, metrics=STANDARD_METRICS)
def learns(ctx: Any) -> dict[str, float]:
    """A training loop as a user writes one: ``params['epochs']`` epochs (default 6) of
    ``params['epoch_s']`` (default 0.02 s) on 100 samples each, test accuracy 0.2 higher after
    each (fp32 starts at 0.1, any other policy at 0.2); it reports each epoch through
    ``ctx.epoch_end`` when the experiment has targets and leaves the loop when told to."""
    start = 0.1 if ctx.policy == "fp32" else 0.2
    accuracy = start
    with ctx.measured():
        for epoch in range(1, int(ctx.params.get("epochs", 6)) + 1):
            time.sleep(float(ctx.params.get("epoch_s", 0.02)))
            accuracy = min(1.0, start + 0.2 * epoch)
            if ctx.targets and ctx.epoch_end(
                epoch, {"test_accuracy": accuracy, "test_loss": 1.0 - accuracy}, samples=100
            ):
                break
    return {"test_accuracy": accuracy, "test_loss": 1.0 - accuracy}


@workload(keras=False)
def to_target(ctx: Any) -> dict[str, float]:
    """Trains ``epochs`` epochs of ``epoch_s`` each, accuracy ``step`` per epoch, and stops
    when ``ctx.epoch_end`` says the target is reached (for recommend's tests)."""
    step = float(ctx.params.get("step", 0.2))
    accuracy = 0.0
    with ctx.measured():
        for epoch in range(1, int(ctx.params.get("epochs", 10)) + 1):
            time.sleep(float(ctx.params.get("epoch_s", 0.02)))
            accuracy = min(0.99, epoch * step)
            if ctx.epoch_end(epoch, {"test_accuracy": accuracy}, samples=100):
                break
    return {"test_accuracy": accuracy, "test_loss": 1.0 - accuracy}


@workload(keras=False)
def to_target_held(ctx: Any) -> dict[str, float]:
    """As ``to_target``, except that the ``params['hold_at']``-th run of the experiment (counted
    with marker files in ``params['marker_dir']``; the runs of a cluster experiment's jobs run
    one at a time) touches ``holding`` there and holds until the file ``params['release']``
    exists (at most 120 s): a job a test can leave in flight while it kills the submitter."""
    folder = Path(str(ctx.params["marker_dir"]))
    count = len(list(folder.glob("run-*"))) + 1
    (folder / f"run-{count}").touch()
    if count == int(ctx.params["hold_at"]):
        (folder / "holding").touch()
        release = Path(str(ctx.params["release"]))
        deadline = time.monotonic() + 120.0
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return dict(to_target(ctx))

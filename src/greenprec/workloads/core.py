"""The workload contract and ``run_workload``: seed, set the policy, measure one phase."""

from __future__ import annotations

import importlib.util
import math
import numbers
import random
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from greenprec.errors import ConfigError

if TYPE_CHECKING:
    from greenprec.measurement import Measurement

Workload = Callable[["WorkloadContext"], Mapping[str, Any]]
MeasureFactory = Callable[[], "Measurement"]
REQUIRED_METRICS = ("test_accuracy", "test_loss")


class WorkloadError(ConfigError):
    """A workload broke the contract: never measured, measured twice, or bad metrics."""


class WorkloadContext:
    """What a workload gets: the policy, seed and params, and :meth:`measured`.

    The policy is already applied and the seed already set when the workload runs; a workload
    reads ``params`` for its own options and wraps the phase to measure in ``ctx.measured()``.
    """

    def __init__(
        self,
        *,
        name: str,
        policy: str,
        seed: int,
        params: Mapping[str, Any],
        measure_factory: MeasureFactory,
    ) -> None:
        self.name = name
        self.policy = policy
        self.seed = seed
        self.params: dict[str, Any] = dict(params)
        self._measure_factory = measure_factory
        self._measurement: Measurement | None = None
        self._entered = False

    @contextmanager
    def measured(self) -> Iterator[Measurement]:
        """Measure the block (the study measured ``model.fit`` only). Enter it exactly once."""
        if self._entered:
            raise WorkloadError(
                f"workload {self.name!r} entered ctx.measured() twice; measure one phase per run"
            )
        self._entered = True
        measurement = self._measure_factory()
        self._measurement = measurement
        with measurement:
            yield measurement

    @property
    def measurement(self) -> Measurement | None:
        """The measurement once :meth:`measured` has been entered."""
        return self._measurement


@dataclass
class WorkloadResult:
    """A run's metrics (plain floats) and the measurement of its measured phase."""

    metrics: dict[str, float]
    measurement: Measurement
    workload: str = ""
    policy: str = ""
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "policy": self.policy,
            "seed": self.seed,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "measurement": self.measurement.to_dict(),
        }


def _default_measure() -> Measurement:
    from greenprec.measurement import measure

    return measure("auto")


def uses_keras(workload: Callable[..., Any]) -> bool:
    """Whether ``run_workload`` seeds Keras and applies the policy to it (the default).

    A workload that does not use Keras sets ``workload.uses_keras = False`` (or uses
    :func:`workload`): it then gets the policy name and seed in its context and applies them
    itself, and TensorFlow is not imported for it.
    """
    return bool(getattr(workload, "uses_keras", True))


@dataclass(frozen=True)
class Requirement:
    """A module a workload imports, and the greenprec extra that installs it."""

    module: str
    extra: str

    @property
    def installed(self) -> bool:
        import sys

        if self.module in sys.modules:
            return sys.modules[self.module] is not None  # None: import blocked on purpose
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    @property
    def install(self) -> str:
        return f"pip install 'greenprec[{self.extra}]'"


KERAS_REQUIREMENTS = (Requirement("tensorflow", "tensorflow"), Requirement("keras", "tensorflow"))


def requirements(workload: Callable[..., Any]) -> list[Requirement]:
    """What a workload needs installed: its ``requires`` attribute, else TensorFlow and Keras
    for a Keras workload, else nothing."""
    declared = getattr(workload, "requires", None)
    if declared is not None:
        return [r for r in declared if isinstance(r, Requirement)]
    return list(KERAS_REQUIREMENTS) if uses_keras(workload) else []


def missing_requirements(workload: Callable[..., Any], name: str) -> str | None:
    """One line naming what is missing and the extra that installs it, or None."""
    missing = [r for r in requirements(workload) if not r.installed]
    if not missing:
        return None
    modules = ", ".join(r.module for r in missing)
    extras = sorted({r.extra for r in missing})
    install = " ".join(f"'greenprec[{extra}]'" for extra in extras)
    return f"workload {name!r} needs {modules}, which is not installed: pip install {install}"


def workload(
    *, description: str | None = None, keras: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that sets a workload's ``description`` and ``uses_keras`` attributes."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        if description is not None:
            function.description = description  # type: ignore[attr-defined]
        function.uses_keras = keras  # type: ignore[attr-defined]
        return function

    return mark


def seed_everything(seed: int, *, deterministic: bool = False, keras: bool = True) -> None:
    """Seed Python and NumPy, and Keras and TensorFlow when ``keras``.

    ``deterministic`` calls ``tf.config.experimental.enable_op_determinism()``, which lasts
    for the rest of the process and can make some GPU ops slower or unsupported.
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if keras:
        import keras as keras_module

        keras_module.utils.set_random_seed(seed)
    if deterministic and keras:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _plain_metrics(name: str, metrics: object) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise WorkloadError(
            f"workload {name!r} returned {type(metrics).__name__}, not a dict of metrics"
        )
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise WorkloadError(
            f"workload {name!r} returned no {', '.join(missing)}; a workload returns at least "
            f"{', '.join(REQUIRED_METRICS)}"
        )
    from greenprec.results.index import is_reserved

    # A metric named like a column greenprec measures would overwrite it in runs.csv (a 20 J
    # run recorded as 1 J; ``order: 7`` leaves the folder unreadable): refused, not merged.
    reserved = sorted(
        str(key) for key in metrics if str(key) not in REQUIRED_METRICS and is_reserved(str(key))
    )
    if reserved:
        raise WorkloadError(
            f"workload {name!r} returned metric(s) {', '.join(map(repr, reserved))}, named like "
            "columns greenprec measures itself; rename them (e.g. 'my_energy_j')"
        )
    plain: dict[str, float] = {}
    for key, value in metrics.items():
        # numpy scalars and 0-d arrays qualify through numbers.Real or .item().
        item = value.item() if hasattr(value, "item") else value
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise WorkloadError(
                f"workload {name!r} returned metric {key!r} = {value!r}; metrics must be numbers"
            )
        plain[str(key)] = float(item)
    for key in REQUIRED_METRICS:
        if math.isnan(plain[key]):
            raise WorkloadError(f"workload {name!r} returned {key} = nan")
    return plain


def _name_of(workload: object) -> str:
    if isinstance(workload, str):
        return workload
    if isinstance(workload, (types.FunctionType, types.MethodType)):
        return f"{workload.__module__}:{workload.__qualname__}"
    return str(getattr(workload, "__name__", type(workload).__name__))


def run_workload(
    workload: str | Workload,
    *,
    policy: str,
    seed: int,
    params: Mapping[str, Any] | None = None,
    deterministic: bool = False,
    measure_factory: MeasureFactory | None = None,
) -> WorkloadResult:
    """Run one workload once under ``policy`` with ``seed``; measure its ``ctx.measured()`` phase.

    ``workload`` is a registered name (``digits-cnn``), a ``module.path:function`` string or a
    callable. ``measure_factory`` makes the measurement, e.g. ``lambda: greenprec.measure(
    "mock")``; by default ``greenprec.measure("auto")``.
    """
    from greenprec.precision import policy as precision_policy
    from greenprec.precision import resolve_policy
    from greenprec.workloads.registry import get_workload

    chosen = resolve_policy(policy)
    function = get_workload(workload)
    name = _name_of(workload)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    context = WorkloadContext(
        name=name,
        policy=chosen.name,
        seed=seed,
        params=params or {},
        measure_factory=measure_factory or _default_measure,
    )
    keras = uses_keras(function)
    # Before anything runs: "No module named 'keras'" from inside a run names no fix.
    problem = missing_requirements(function, name)
    if problem is not None:
        raise WorkloadError(problem)
    seed_everything(seed, deterministic=deterministic, keras=keras)
    with precision_policy(chosen) if keras else nullcontext(chosen):
        metrics = function(context)
    measurement = context.measurement
    if measurement is None:
        raise WorkloadError(
            f"workload {name!r} never entered ctx.measured(); wrap its training call in "
            "`with ctx.measured():`"
        )
    return WorkloadResult(
        metrics=_plain_metrics(name, metrics),
        measurement=measurement,
        workload=name,
        policy=chosen.name,
        seed=seed,
        params=dict(context.params),
    )

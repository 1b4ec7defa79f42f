"""The workload contract and ``run_workload``: seed, apply the policy, measure one phase.

A workload declares its framework (``keras``, ``torch``, or none); ``run_workload`` seeds that
framework and applies the policy through its adapter before the workload runs.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import random
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, SupportsFloat, SupportsIndex, TypeVar

from greenprec._install import installed, missing_line
from greenprec.errors import ConfigError
from greenprec.frameworks import FrameworkInfo

if TYPE_CHECKING:
    from greenprec.measurement import Measurement
    from greenprec.precision.torch import TorchPolicy

__all__ = [
    "FRAMEWORKS",
    "KERAS_REQUIREMENTS",
    "REQUIRED_METRICS",
    "STANDARD_METRICS",
    "TORCH_REQUIREMENTS",
    "EpochPoint",
    "MeasureFactory",
    "RecordedMetric",
    "Requirement",
    "Workload",
    "WorkloadContext",
    "WorkloadError",
    "WorkloadResult",
    "framework_of",
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
]

Workload = Callable[["WorkloadContext"], Mapping[str, object]]
MeasureFactory = Callable[[], "Measurement"]
REQUIRED_METRICS = ("test_accuracy", "test_loss")
"""The metrics every workload returns: its final test accuracy and test loss."""


@dataclass(frozen=True)
class RecordedMetric:
    """A metric a workload records after each epoch (what a target may name), and its range.

    ``low``/``high`` bound its values (None: unbounded); ``scale`` says in words what a value
    is ("a fraction of 1"). A workload declares them in its ``metrics`` attribute (or
    ``@workload(metrics=...)``); targets are checked against them before anything runs.
    """

    name: str
    low: float | None = None
    high: float | None = None
    scale: str = ""

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def range_text(self) -> str:
        """ "a fraction of 1, from 0 to 1", "0 or more", "any value"."""
        if self.low is not None and self.high is not None:
            bounds = f"from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            bounds = f"{self.low:g} or more"
        elif self.high is not None:
            bounds = f"{self.high:g} or less"
        else:
            bounds = "any value"
        return f"{self.scale}, {bounds}" if self.scale else bounds

    def describe(self) -> str:
        """ "test_accuracy (a fraction of 1, from 0 to 1)"."""
        return f"{self.name} ({self.range_text})"


STANDARD_METRICS = (
    RecordedMetric("test_accuracy", 0.0, 1.0, "a fraction of 1"),
    RecordedMetric("test_loss", 0.0, None),
)
"""What the built-in workloads record after each epoch: test accuracy as a fraction of 1 and
the test loss."""


def recorded_metrics(workload: Callable[..., object]) -> tuple[RecordedMetric, ...] | None:
    """The metrics a workload declares it records (its ``metrics`` attribute), None when it
    declares none."""
    declared = getattr(workload, "metrics", None)
    if declared is None or isinstance(declared, (str, bytes)):
        return None
    try:
        found = tuple(m for m in declared if isinstance(m, RecordedMetric))
    except TypeError:
        return None
    return found or None


def target_problems(
    targets: Mapping[str, float], workload: Callable[..., object], name: str
) -> tuple[list[str], list[str]]:
    """Targets checked against what ``workload`` records, before anything runs: the problems
    (one line each: a metric it does not record, a value outside its range) and notes (targets
    that could not be checked: the workload declares nothing)."""
    from greenprec.stats import accuracy_like

    declared = recorded_metrics(workload)
    problems: list[str] = []
    notes: list[str] = []
    for metric, value in targets.items():
        given = f"{metric}={value:g}"
        if declared is None:
            if accuracy_like(metric) and not 0 <= value <= 100:
                problems.append(
                    f"target {given}: an accuracy lies between 0 and 1 (a fraction) or 0 and 100 "
                    f"(a percentage); {value:g} is neither"
                )
            else:
                notes.append(
                    f"target {given} could not be checked: workload {name!r} does not declare the "
                    "metrics it records (a metrics attribute, see docs/workloads.md); a metric "
                    "it does not report after each epoch is never reached"
                )
            continue
        spec = next((m for m in declared if m.name == metric), None)
        if spec is None:
            records = " and ".join(m.describe() for m in declared)
            similar = next(
                (m for m in declared if accuracy_like(m.name) == accuracy_like(metric)), None
            )
            fix = ""
            if similar is not None and similar.contains(value):
                fix = f"; did you mean {similar.name}={value:g}?"
            problems.append(
                f"target {given}: workload {name!r} does not record {metric}; it records "
                f"{records}{fix}"
            )
        elif not spec.contains(value):
            fix = ""
            if accuracy_like(metric) and spec.high == 1 and 1 < value <= 100:
                fix = f"; for {value:g} % write {metric}={value / 100:g}"
            problems.append(
                f"target {given} is outside what workload {name!r} records: {metric} is "
                f"{spec.range_text}{fix}"
            )
    return problems, notes


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one (losses, errors, energy, time)."""
    name = metric.lower()
    return any(word in name for word in ("loss", "error", "energy", "duration", "time", "_j"))


def target_reached(metric: str, target: float, value: float | None) -> bool:
    """Whether ``value`` of ``metric`` reaches ``target``: at or above it, or at or below it
    for a metric where lower is better (a loss). A missing or non-finite value never does."""
    if value is None or not math.isfinite(value):
        return False
    return value <= target if lower_is_better(metric) else value >= target


class WorkloadError(ConfigError):
    """A workload broke the contract: never measured, measured twice, or bad metrics."""


FRAMEWORKS = {"keras": "keras", "tensorflow": "keras", "torch": "torch", "pytorch": "torch"}
"""The frameworks a workload may declare (any case) and their canonical names."""


class WorkloadContext:
    """What a workload gets: the policy, seed and params, and :meth:`measured`.

    The policy is already applied and the seed already set when the workload runs; a workload
    reads ``params`` for its own options and wraps the phase to measure in ``ctx.measured()``.
    A PyTorch workload also gets ``precision``, the entered
    :class:`~greenprec.precision.TorchPolicy` (``.device``, ``.autocast()``, ``.scaler``,
    ``.backward_step``).

    With targets (``ctx.targets``) a workload reports each epoch with :meth:`epoch_end`; when
    the run stops at the target (``ctx.stop_at_target``), :meth:`epoch_end` returns True once
    every target is reached and the workload leaves its training loop.
    """

    def __init__(
        self,
        *,
        name: str,
        policy: str,
        seed: int,
        params: Mapping[str, object],
        measure_factory: MeasureFactory,
    ) -> None:
        self.name = name
        self.policy = policy
        self.seed = seed
        # Any: params come from TOML, JSON and the CLI, and each workload reads its own.
        self.params: dict[str, Any] = dict(params)
        self.framework: str | None = None
        """``keras``, ``torch``, or None for a workload that applies the policy itself."""
        self.precision: TorchPolicy | None = None
        """The PyTorch adapter, entered, for a PyTorch workload; None otherwise."""
        self._measure_factory = measure_factory
        self._measurement: Measurement | None = None
        self._entered = False
        self.targets: dict[str, float] = {}
        """Metric targets the experiment asks about (``test_accuracy: 0.45``): when set, a
        workload that can evaluates its test metrics after each epoch and calls
        :meth:`epoch_end` (the evaluation is then part of the measured energy)."""
        self.epochs: list[EpochPoint] = []
        """What :meth:`epoch_end` recorded, in order."""
        self.stop_at_target = False
        """Whether the run ends once every target is reached (``--stop-at-target``): then
        :meth:`epoch_end` returns True and :attr:`stop_requested` turns True, and the
        workload leaves its epoch loop, so no energy is spent after the target."""
        self.samples_trained: int | None = None
        """Training samples seen in the measured window (each epoch's count, summed): what
        :meth:`epoch_end`'s ``samples`` adds up, or what a workload that reports no epochs
        sets itself. None: not reported (the run then has no throughput)."""
        self._stop_epoch: int | None = None

    def epoch_end(
        self, epoch: int, metrics: Mapping[str, float | None], samples: int | None = None
    ) -> bool:
        """Mark the end of epoch ``epoch`` (from 1) inside the measured window: the time and
        energy so far are read now and kept with the epoch's metrics; ``samples`` is how many
        training samples this epoch trained on (added to :attr:`samples_trained`).

        Returns :attr:`stop_requested`: True once every target is reached and the run stops at
        the target; the workload then ends its training loop (``break``).
        """
        measurement = self._measurement
        if measurement is None or not measurement.running:
            raise WorkloadError(
                f"workload {self.name!r} called ctx.epoch_end() outside ctx.measured()"
            )
        duration_s, energy_j = measurement.energy_so_far()
        clean = {
            str(name): (float(value) if value is not None else None)
            for name, value in metrics.items()
        }
        count = None if samples is None else self._sample_count(samples)
        self.epochs.append(EpochPoint(int(epoch), duration_s, energy_j, clean))
        if count is not None:
            self.samples_trained = (self.samples_trained or 0) + count
        if self._stop_epoch is None and self.stop_at_target and self.targets_reached:
            self._stop_epoch = int(epoch)
        return self.stop_requested

    def _sample_count(self, samples: object) -> int:
        """``samples`` as a count: a whole number, 0 or more (a numpy integer too)."""
        # SupportsIndex: ints and numpy integers, not 2.5 or "10"; a bool is no count.
        count = -1
        if isinstance(samples, SupportsIndex) and not isinstance(samples, bool):
            count = operator.index(samples)
        if count < 0:
            raise WorkloadError(
                f"workload {self.name!r} called ctx.epoch_end() with samples={samples!r}; "
                "give the number of training samples of the epoch (a whole number)"
            )
        return count

    @property
    def targets_reached(self) -> bool:
        """Whether every target has been reached at some epoch so far (False without targets)."""
        return bool(self.targets) and all(
            any(target_reached(metric, value, point.metrics.get(metric)) for point in self.epochs)
            for metric, value in self.targets.items()
        )

    @property
    def stop_requested(self) -> bool:
        """True once the run should stop: stopping at the target is on and every target has
        been reached. A workload's epoch loop reads it (or :meth:`epoch_end`'s answer)."""
        return self._stop_epoch is not None

    @property
    def stopped_at_target(self) -> bool:
        """Whether training ended at the epoch that reached the targets: a stop was requested
        and no epoch was reported after it (a workload that ignores the signal trains on)."""
        return (
            self._stop_epoch is not None
            and bool(self.epochs)
            and self.epochs[-1].epoch == self._stop_epoch
        )

    @property
    def epochs_run(self) -> int | None:
        """The last epoch reported (None when the workload reports no epochs)."""
        return self.epochs[-1].epoch if self.epochs else None

    def keras_epoch_callback(self, samples_per_epoch: int | None = None) -> object:
        """A Keras callback calling :meth:`epoch_end` with the validation metrics of each epoch,
        named as the test metrics they are (``val_accuracy`` is ``test_accuracy`` when the
        validation data is the test set), and ``samples_per_epoch`` as the epoch's samples.
        When the run stops at the target it sets ``model.stop_training``: Keras ends ``fit``
        after that epoch."""
        import keras

        context = self

        class EpochEnd(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(
                self, epoch: int, logs: Mapping[str, SupportsFloat] | None = None
            ) -> None:
                logs = logs or {}
                metrics = {
                    f"test_{key.removeprefix('val_')}": float(value)
                    for key, value in logs.items()
                    if key.startswith("val_")
                }
                if context.epoch_end(epoch + 1, metrics, samples_per_epoch):
                    self.model.stop_training = True

        return EpochEnd()

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


@dataclass(frozen=True)
class EpochPoint:
    """The end of one epoch inside the measured window."""

    epoch: int
    duration_s: float
    energy_j: float
    metrics: dict[str, float | None]


@dataclass
class WorkloadResult:
    """A run's metrics (plain floats) and the measurement of its measured phase."""

    metrics: dict[str, float]
    measurement: Measurement
    workload: str = ""
    policy: str = ""
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    framework: FrameworkInfo = field(default_factory=lambda: FrameworkInfo(name="none"))
    """The framework, its version, the device and the TF32 state as the adapter set them."""
    epochs: list[EpochPoint] = field(default_factory=list)
    """Per-epoch time, energy and metrics, when the workload reported its epochs."""
    samples_trained: int | None = None
    """Training samples seen in the measured window, when the workload reported them."""
    stopped_at_target: bool = False
    """Training ended at the epoch that reached every target (``stop_at_target``)."""

    @property
    def epochs_run(self) -> int | None:
        """The last epoch the workload reported (None when it reported none)."""
        return self.epochs[-1].epoch if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "policy": self.policy,
            "seed": self.seed,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "measurement": self.measurement.to_dict(),
            "framework": self.framework.to_dict(),
        }


def _default_measure() -> Measurement:
    from greenprec.measurement import measure

    return measure("auto")


def _canonical_framework(framework: object) -> str | None:
    if framework is None:
        return None
    if isinstance(framework, str) and framework.strip().lower() in FRAMEWORKS:
        return FRAMEWORKS[framework.strip().lower()]
    raise ConfigError(
        f"framework must be one of {', '.join(FRAMEWORKS)} or None, got {framework!r}"
    )


def framework_of(workload: Callable[..., object]) -> str | None:
    """The framework ``run_workload`` seeds and applies the policy to for a workload:
    ``keras`` (the default), ``torch``, or None.

    Read from the workload's ``framework`` attribute (see :func:`workload`), else from
    greenprec 0.1's ``uses_keras`` attribute: False means None.
    """
    if hasattr(workload, "framework"):
        return _canonical_framework(workload.framework)
    return "keras" if getattr(workload, "uses_keras", True) else None


def uses_keras(workload: Callable[..., object]) -> bool:
    """Whether ``run_workload`` seeds Keras and applies the policy to it (the default).

    A workload for another framework declares it (:func:`workload`); one that sets
    ``uses_keras = False`` and no framework applies ``ctx.policy`` itself, and TensorFlow is
    not imported for it.
    """
    return framework_of(workload) == "keras"


@dataclass(frozen=True)
class Requirement:
    """A module a workload imports, and the greenprec extra that installs it."""

    module: str
    extra: str

    @property
    def installed(self) -> bool:
        return installed(self.module)

    @property
    def install(self) -> str:
        return f"pip install 'greenprec[{self.extra}]'"


KERAS_REQUIREMENTS = (Requirement("tensorflow", "tensorflow"), Requirement("keras", "tensorflow"))
TORCH_REQUIREMENTS = (Requirement("torch", "torch"),)


def requirements(workload: Callable[..., object]) -> list[Requirement]:
    """What a workload needs installed: its ``requires`` attribute, else its framework's
    (TensorFlow and Keras, or torch), else nothing."""
    declared = getattr(workload, "requires", None)
    if declared is not None:
        return [r for r in declared if isinstance(r, Requirement)]
    framework = framework_of(workload)
    if framework == "keras":
        return list(KERAS_REQUIREMENTS)
    if framework == "torch":
        return list(TORCH_REQUIREMENTS)
    return []


def missing_requirements(workload: Callable[..., object], name: str) -> str | None:
    """One line naming what is missing and the extra that installs it, or None."""
    missing = [r for r in requirements(workload) if not r.installed]
    if not missing:
        return None
    return missing_line(
        f"workload {name!r}", [r.module for r in missing], [r.extra for r in missing]
    )


_UNSET: Any = object()
"""``workload(framework=...)`` not given (None is a framework choice: the workload's own)."""

_W = TypeVar("_W", bound=Callable[..., object])


def workload(
    *,
    description: str | None = None,
    keras: bool = True,
    framework: str | None = _UNSET,
    metrics: Sequence[RecordedMetric] | None = None,
) -> Callable[[_W], _W]:
    """Decorator that sets a workload's ``description``, ``framework`` and the ``metrics`` it
    records after each epoch (:class:`RecordedMetric`; targets are checked against them).

    ``framework="torch"`` (or ``"keras"``, or None for a workload that applies the policy
    itself); without it, greenprec 0.1's ``keras=True/False`` means ``"keras"``/None. The
    ``uses_keras`` attribute is set too, for code that reads it.
    """
    chosen = (
        _canonical_framework(framework) if framework is not _UNSET else ("keras" if keras else None)
    )

    def mark(function: _W) -> _W:
        if description is not None:
            function.description = description  # type: ignore[attr-defined]
        function.framework = chosen  # type: ignore[attr-defined]
        function.uses_keras = chosen == "keras"  # type: ignore[attr-defined]
        if metrics is not None:
            function.metrics = tuple(metrics)  # type: ignore[attr-defined]
        return function

    return mark


# cuBLAS is deterministic only with a fixed workspace; read when cuBLAS starts, so set early.
_CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(
    seed: int, *, deterministic: bool = False, keras: bool = True, torch: bool = False
) -> None:
    """Seed Python and NumPy, Keras and TensorFlow when ``keras``, PyTorch when ``torch``.

    ``deterministic`` calls ``tf.config.experimental.enable_op_determinism()`` for Keras, which
    lasts for the rest of the process, and ``torch.use_deterministic_algorithms(True)`` for
    PyTorch (:func:`run_workload` restores PyTorch's setting after the run). Both can make some
    GPU ops slower or unsupported.
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
    if torch:
        import torch as torch_module

        torch_module.manual_seed(seed)  # every device's generator, CUDA included
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
            torch_module.use_deterministic_algorithms(True)


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
    params: Mapping[str, object] | None = None,
    deterministic: bool = False,
    measure_factory: MeasureFactory | None = None,
    targets: Mapping[str, float] | None = None,
    stop_at_target: bool = False,
) -> WorkloadResult:
    """Run one workload once under ``policy`` with ``seed``; measure its ``ctx.measured()`` phase.

    ``workload`` is a registered name (``digits-cnn``), a ``module.path:function`` string or a
    callable. ``measure_factory`` makes the measurement, e.g.
    ``lambda: greenprec.measure("mock")``; by default ``greenprec.measure("auto")``.

    The workload's framework gets the policy through its adapter: Keras's dtype policy and
    TensorFlow's TF32 switch, or for PyTorch a :class:`~greenprec.precision.TorchPolicy` on
    the ``device`` param (default ``cuda`` when available, else ``cpu``), entered around the
    workload and handed to it as ``ctx.precision``. With ``targets``, workloads that can
    report each epoch's test metrics and the energy so far (``result.epochs``); with
    ``stop_at_target`` too, they end training once every target is reached
    (``ctx.epoch_end`` returns True).
    """
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
    context.targets = dict(targets or {})
    context.stop_at_target = stop_at_target
    framework = framework_of(function)
    context.framework = framework
    # Before anything runs: "No module named 'keras'" from inside a run names no fix.
    problem = missing_requirements(function, name)
    if problem is not None:
        raise WorkloadError(problem)
    with ExitStack() as stack:
        if framework == "torch":
            info = _enter_torch(stack, context, deterministic)
        else:
            seed_everything(seed, deterministic=deterministic, keras=framework == "keras")
            info = _enter_keras(stack, context) if framework == "keras" else FrameworkInfo("none")
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
        framework=info,
        epochs=list(context.epochs),
        samples_trained=context.samples_trained,
        stopped_at_target=context.stopped_at_target,
    )


def _enter_keras(stack: ExitStack, context: WorkloadContext) -> FrameworkInfo:
    from greenprec.precision import keras_framework_info
    from greenprec.precision import policy as keras_policy

    stack.enter_context(keras_policy(context.policy))
    return keras_framework_info()  # read inside: the TF32 switch as the policy set it


def _enter_torch(stack: ExitStack, context: WorkloadContext, deterministic: bool) -> FrameworkInfo:
    import torch

    from greenprec.precision import torch_policy

    adapter = torch_policy(context.policy, context.params.get("device"))
    # Deterministic algorithms are a process-wide switch: restored after this run, so an
    # inline experiment's next run is not silently deterministic too.
    stack.callback(
        torch.use_deterministic_algorithms,
        torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    seed_everything(context.seed, deterministic=deterministic, keras=False, torch=True)
    stack.enter_context(adapter)
    context.precision = adapter
    return adapter.framework_info()

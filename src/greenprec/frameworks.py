"""What a run trained with: :class:`FrameworkInfo`, set up by a precision adapter; and the
shapes of the framework objects greenprec calls (:class:`KerasModel`, :class:`KerasHistory`).

Below both :mod:`greenprec.precision` (whose adapters fill it in) and :mod:`greenprec.workloads`
(whose ``run_workload`` returns it), so neither imports the other for it. Nothing here imports
a framework: the protocols name only the methods greenprec calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["FrameworkInfo", "KerasHistory", "KerasModel"]


@dataclass(frozen=True)
class FrameworkInfo:
    """What a run trained with, as the policy's adapter set it up; recorded with every run."""

    name: str
    """``torch``, ``keras``, or ``none`` for a workload that applies the policy itself."""
    version: str | None = None
    device: str | None = None
    """Where it trained: ``cpu``, ``cuda:0``, ``gpu`` (TensorFlow's first GPU)..."""
    device_name: str | None = None
    tf32: bool | None = None
    """Whether float32 matmuls or convolutions may use TF32, read back from the framework's
    switches inside the policy (None: unknown). A switch that is on does nothing on a device
    without TF32 (a CPU, an NVIDIA GPU before compute capability 8.0)."""
    switches: dict[str, Any] = field(default_factory=dict)
    """Each TF32 switch as read back, by its name in the framework."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KerasHistory(Protocol):
    """What ``keras.Model.fit`` returns, as far as greenprec reads it."""

    history: dict[str, list[float]]
    """Each metric's value per epoch, e.g. ``history["accuracy"][-1]``."""


class KerasModel(Protocol):
    """A ``keras.Model``, as far as the built-in workloads call it (Keras has no types, so any
    model passes; the protocol documents what is called)."""

    def compile(self, *args: object, **kwargs: object) -> None: ...

    def fit(self, *args: object, **kwargs: object) -> KerasHistory: ...

    def evaluate(self, *args: object, **kwargs: object) -> list[float]: ...

"""Hugging Face ``EnergyCallback``: the energy since the previous log, in every Trainer log.

::

    from greenprec.integrations.transformers import EnergyCallback

    energy = EnergyCallback(meter="auto")
    trainer = Trainer(model=model, args=args, train_dataset=data)
    energy.attach(trainer)  # first in line, so report_to loggers see the energy too
    trainer.train()
    trainer.state.log_history  # each entry has energy_j, power_w, duration_s
    energy.measurement         # the whole train: a greenprec Measurement

Needs Transformers (``pip install 'greenprec[transformers]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from greenprec.integrations._imports import framework_import_error, llvm_clash_error
from greenprec.integrations._windows import LogEnergy, MeterSpec, Windows, figures
from greenprec.measurement import Measurement, Sync

# The callback itself loads without triton, but the Trainer it is made for does not: say it
# here, before the user's `from transformers import Trainer` aborts the process.
if (clash := llvm_clash_error("transformers", "the Transformers Trainer")) is not None:
    raise clash
try:
    from transformers import TrainerCallback
except ImportError as error:
    raise framework_import_error("transformers", ("transformers",), "transformers", error) from None

if TYPE_CHECKING:
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

__all__ = ["EnergyCallback", "LogEnergy"]


class EnergyCallback(TrainerCallback):
    """Measures a ``trainer.train()``: the whole of it, and the stretch before every log.

    At every log (each ``logging_steps``, each evaluation, the final ``train_runtime`` line)
    the callback adds ``energy_j``, ``power_w`` (mean power) and ``duration_s`` of the training
    **since the previous log** (the first: since training began) — the same stretch as the
    ``loss`` the Trainer logs, which is averaged since the previous log too. They go into the
    ``logs`` that callbacks after this one receive, into ``trainer.state.log_history``, and
    into :attr:`intervals`.

    The Trainer hands logs to the loggers of ``report_to`` (TensorBoard, W&B, MLflow ...)
    before the callbacks given to it; :meth:`attach` puts this callback first so they receive
    the energy as well.

    Windows: the whole train is one measurement (:attr:`measurement`, from ``on_train_begin``
    to ``on_train_end``); inside it, one window runs from training's start to the first log,
    and each log closes its window and opens the next. The stretch after the last log (saving,
    clean-up before ``on_train_end``) is in the whole train's energy and no log's.

    Under ``torch.distributed`` (``torchrun`` or ``accelerate launch``: the Trainer's process
    group, set up through Accelerate's ``PartialState``) the windows are distributed
    (:mod:`greenprec.distributed`): the Trainer calls ``on_train_begin``, every ``on_log`` and
    ``on_train_end`` on every process at the same step, so each is an edge all ranks reach
    together; the lowest rank of each host measures that host (CPU and all its GPUs), and
    every process's logs carry the job's energy, each host once. :attr:`measurement` has
    each host's figures in ``hosts``.

    ``meter``, ``meter_options``, ``interval`` and ``sync`` are :func:`greenprec.measure`'s
    (``sync="auto"`` waits for the GPU at every window's edges, so an epoch holds its own GPU
    work). One :class:`greenprec.Monitor` per run serves the run and every window inside it
    (one set of meters, one sampling thread); meters are given by name, not as instances.
    """

    def __init__(
        self,
        meter: MeterSpec = "auto",
        interval: float = 0.2,
        meter_options: Mapping[str, object] | None = None,
        *,
        sync: Sync = "auto",
    ) -> None:
        super().__init__()
        self._windows = Windows(
            meter,
            interval=interval,
            meter_options=meter_options,
            sync=sync,
            spans="log",
        )
        self.measurement: Measurement | None = None
        """The whole latest train; None until it has ended."""
        self.intervals: list[LogEnergy] = []
        """The latest train's stretches between logs, in order."""

    def attach(self, trainer: Trainer) -> EnergyCallback:
        """Add this callback to ``trainer`` ahead of all others (moving it if already there).

        The Trainer calls its callbacks in order, and those of ``report_to`` come before any
        given to it: first in line, this one adds the energy before any logger sees the logs.
        """
        callbacks: list[object] = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    # -- Trainer hooks ---------------------------------------------------------------------
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: object,
    ) -> None:
        self.measurement = None
        self.intervals = []
        self._windows.start_run()
        self._windows.start("log")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        window = self._windows.stop("log")
        if window is None:
            return  # a log outside train(): trainer.evaluate() on its own
        record = LogEnergy(step=state.global_step, **figures(window))
        self.intervals.append(record)
        if logs is not None:
            entry = state.log_history[-1] if state.log_history else None
            # Trainer.log appends a copy of the logs to log_history before calling on_log:
            # that copy gets the energy too, when it is this log's (same step, same values).
            if (
                entry is not None
                and entry.get("step") == state.global_step
                and all(logs.get(key) is value for key, value in entry.items() if key != "step")
            ):
                entry.update(record.logs())
            logs.update(record.logs())
        self._windows.start("log")

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: object,
    ) -> None:
        self.measurement = self._windows.stop_run()

"""Keras ``EnergyCallback``: energy, power and duration per epoch into the logs and ``History``.

::

    from greenprec.integrations.keras import EnergyCallback

    energy = EnergyCallback(meter="auto")
    history = model.fit(x, y, epochs=5, callbacks=[energy])
    history.history["energy_j"]  # one value per epoch
    energy.measurement           # the whole fit: a greenprec Measurement

Needs Keras (``pip install 'greenprec[tensorflow]'``), the ``keras`` package of Keras 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from greenprec.errors import ConfigError
from greenprec.integrations._imports import framework_import_error
from greenprec.integrations._windows import (
    BatchEnergy,
    EpochEnergy,
    MeterSpec,
    Windows,
    figures,
)
from greenprec.measurement import Measurement, Sync

try:
    import keras
except ImportError as error:
    raise framework_import_error("keras", ("keras",), "tensorflow", error) from None

__all__ = ["BatchEnergy", "EnergyCallback", "EpochEnergy"]

_Logs: TypeAlias = "dict[str, object] | None"
"""The logs Keras hands its callbacks: metric name -> value (a float, a tensor ...)."""


class EnergyCallback(keras.callbacks.Callback):  # type: ignore[misc]  # keras has no types
    """Measures a ``fit``: the whole of it, each epoch, and optionally every N batches.

    Each epoch's ``energy_j``, ``power_w`` (its mean power) and ``duration_s`` go into the
    epoch's ``logs``, so they reach ``History.history``, the progress bar, and callbacks listed
    after this one (``EarlyStopping(monitor="energy_j")``, ``CSVLogger``). With
    ``every_n_batches=N`` each group of N training batches is measured too: its figures go into
    the logs of the group's last batch and into :attr:`batches`.

    Windows: the whole fit is one measurement (:attr:`measurement`, from ``on_train_begin`` to
    ``on_train_end``), and each epoch another inside it, from ``on_epoch_begin`` to
    ``on_epoch_end`` (validation runs there, so it is in its epoch); batch groups are windows
    inside their epoch. The fit's energy is its own window's, never a sum of epochs; what no
    epoch holds (set-up before the first, callbacks between two) is :attr:`outside_epochs_j`.

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
        every_n_batches: int | None = None,
        *,
        sync: Sync = "auto",
    ) -> None:
        super().__init__()
        if every_n_batches is not None and (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ConfigError(
                f"every_n_batches must be a whole number of batches (1 or more) or None, "
                f"got {every_n_batches!r}"
            )
        self.every_n_batches = every_n_batches
        self._windows = Windows(
            meter,
            interval=interval,
            meter_options=meter_options,
            sync=sync,
            spans="epoch",
        )
        self.measurement: Measurement | None = None
        """The whole latest fit; None until it has ended."""
        self.epochs: list[EpochEnergy] = []
        """The latest fit's epochs, in order."""
        self.batches: list[BatchEnergy] = []
        """The latest fit's batch groups, in order (empty without ``every_n_batches``)."""
        self._epoch = 0
        self._first_batch = 0
        self._last_batch = -1

    @property
    def outside_epochs_j(self) -> float:
        """Energy of the fit that is in no epoch: set-up, callbacks between epochs, windows'
        own start and stop. The fit's ``energy_j`` minus the sum of the epochs'."""
        if self.measurement is None:
            raise ConfigError("outside_epochs_j is known once a fit has ended")
        return self.measurement.energy_j - sum(epoch.energy_j for epoch in self.epochs)

    # -- Keras hooks -----------------------------------------------------------------------
    def on_train_begin(self, logs: _Logs = None) -> None:
        self.measurement = None
        self.epochs = []
        self.batches = []
        self._windows.start_run()

    def on_epoch_begin(self, epoch: int, logs: _Logs = None) -> None:
        self._epoch = epoch
        self._windows.start("epoch")

    def on_train_batch_begin(self, batch: int, logs: _Logs = None) -> None:
        if self.every_n_batches is not None and not self._windows.is_open("batch"):
            self._first_batch = batch
            self._windows.start("batch")

    def on_train_batch_end(self, batch: int, logs: _Logs = None) -> None:
        self._last_batch = batch
        # Counted from the group's first batch, not batch % N: with steps_per_execution > 1
        # Keras calls these hooks once per execution, and batch indices jump.
        if (
            self.every_n_batches is not None
            and batch - self._first_batch + 1 >= self.every_n_batches
        ):
            self._close_batches(logs)

    def on_epoch_end(self, epoch: int, logs: _Logs = None) -> None:
        self._close_batches(None)  # the epoch's last group, when it is short
        window = self._windows.stop("epoch")
        if window is None:
            return
        record = EpochEnergy(epoch=epoch, **figures(window))
        self.epochs.append(record)
        if logs is not None:
            logs.update(record.logs())

    def on_train_end(self, logs: _Logs = None) -> None:
        self.measurement = self._windows.stop_run()

    def _close_batches(self, logs: _Logs) -> None:
        window = self._windows.stop("batch")
        if window is None:
            return
        record = BatchEnergy(
            epoch=self._epoch,
            first_batch=self._first_batch,
            last_batch=self._last_batch,
            **figures(window),
        )
        self.batches.append(record)
        if logs is not None:
            logs.update(record.logs())

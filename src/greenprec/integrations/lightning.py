"""Lightning ``EnergyCallback``: energy, power and duration per epoch through ``self.log``.

::

    from greenprec.integrations.lightning import EnergyCallback

    energy = EnergyCallback(meter="auto")
    trainer = lightning.Trainer(max_epochs=5, callbacks=[energy])
    trainer.fit(model, data)
    energy.measurement  # the whole fit: a greenprec Measurement

Needs Lightning (``pip install 'greenprec[lightning]'``): the ``lightning`` package, or
``pytorch_lightning`` where only that one is installed. Lightning calls its callbacks by hook
name, so the class works with the Trainer of either package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from greenprec.errors import ConfigError
from greenprec.integrations._imports import framework_import_error, llvm_clash_error
from greenprec.integrations._windows import EpochEnergy, MeterSpec, Windows, figures
from greenprec.measurement import Measurement, Sync

if TYPE_CHECKING:
    # Checked against `lightning`; `pytorch_lightning` has the same Callback.
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
else:
    if (clash := llvm_clash_error("lightning", "Lightning")) is not None:
        raise clash
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError as first:
        try:
            from pytorch_lightning.callbacks import Callback
        except ImportError:
            error = framework_import_error(
                "lightning", ("lightning", "pytorch_lightning"), "lightning", first
            )
            raise error from None

__all__ = ["EnergyCallback", "EpochEnergy"]


class EnergyCallback(Callback):
    """Measures a ``trainer.fit``: the whole of it, and each training epoch.

    Each epoch's ``energy_j``, ``power_w`` (its mean power) and ``duration_s`` are logged with
    ``pl_module.log(..., on_epoch=True)`` at the epoch's end, so they reach every logger the
    Trainer has (TensorBoard, CSV, W&B ...), ``trainer.callback_metrics``, and checkpoint or
    early-stopping callbacks that monitor them. They are also kept in :attr:`epochs`.

    Windows: the whole fit is one measurement (:attr:`measurement`, from ``on_fit_start`` to
    ``on_fit_end``, so it holds the sanity-check validation too), and each training epoch
    another inside it, from ``on_train_epoch_start`` to ``on_train_epoch_end``; Lightning runs
    the epoch's validation before ``on_train_epoch_end``, so it is in its epoch. The fit's
    energy is its own window's, never a sum of epochs; what no epoch holds is
    :attr:`outside_epochs_j`.

    Under DDP (``strategy="ddp"``, one or many nodes) the windows are distributed
    (:mod:`greenprec.distributed`): the lowest rank of each host measures that host, CPU and
    every GPU, the others open no meter; each window's edges are a barrier of all ranks; and
    every rank receives the job's figures, the sum over hosts with each host once. So each
    rank logs the same numbers, the whole job's, and they are logged without gathering
    (``sync_dist=False``: a mean over ranks would be the same number, a sum would count every
    host once per rank). :attr:`measurement` has each host's figures in ``hosts``.

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
            spans="epoch",
        )
        self.measurement: Measurement | None = None
        """The whole latest fit; None until it has ended."""
        self.epochs: list[EpochEnergy] = []
        """The latest fit's training epochs, in order."""

    @property
    def outside_epochs_j(self) -> float:
        """Energy of the fit that is in no epoch: set-up, the sanity check, work between
        epochs. The fit's ``energy_j`` minus the sum of the epochs'."""
        if self.measurement is None:
            raise ConfigError("outside_epochs_j is known once a fit has ended")
        return self.measurement.energy_j - sum(epoch.energy_j for epoch in self.epochs)

    # -- Lightning hooks -------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.measurement = None
        self.epochs = []
        self._windows.start_run()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._windows.start("epoch")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        window = self._windows.stop("epoch")
        if window is None:
            return
        record = EpochEnergy(epoch=trainer.current_epoch, **figures(window))
        self.epochs.append(record)
        pl_module.log_dict(record.logs(), on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.measurement = self._windows.stop_run()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning calls no end hook after an exception (Ctrl-C included): stop the meters.
        self._windows.abort()

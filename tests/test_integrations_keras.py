"""greenprec.integrations.keras.EnergyCallback against real Keras: tiny models, the mock meter.

The mock meter gives exactly ``power_w * duration`` for every window (its energy is computed
on the window's own clock readings), so every energy figure here is checked exactly, and what
the windows hold is checked with sleeps placed inside and outside the epochs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from greenprec import ConfigError, MeterError
from greenprec.meters.mock import MockMeter

POWER_W = 50.0
MOCK: dict[str, Any] = {"meter": "mock", "meter_options": {"power_w": "50"}}
SLEEP_S = 0.05
"""Work placed inside or between epochs by the test callbacks below."""
OVERHEAD_S = 0.25
"""Most time one epoch boundary may leave out of the epochs besides the test's own sleeps: a
window's stop and the next one's start take milliseconds, and this bound holds on a loaded
2-CPU machine."""


@pytest.fixture(scope="module")
def keras() -> Any:
    pytest.importorskip("tensorflow")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((40, 4), dtype="float32"), rng.random((40, 1), dtype="float32")


def tiny_model(keras: Any) -> Any:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, dtype="float32")])
    model.compile(optimizer="sgd", loss="mse")
    return model


def sleeper(keras: Any, hook: str) -> Any:
    """A callback that sleeps SLEEP_S in ``hook``: known work at a known place of the fit."""

    class Sleeper(keras.callbacks.Callback):  # type: ignore[misc]
        pass

    setattr(Sleeper, hook, lambda self, *args, **kwargs: time.sleep(SLEEP_S))
    return Sleeper()


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("greenprec-sampler-")]


@pytest.mark.slow
@pytest.mark.tensorflow
def test_epochs_go_to_history_and_add_up_to_the_fit(keras: Any, data: tuple[Any, Any]) -> None:
    from greenprec.integrations.keras import EnergyCallback, EpochEnergy

    x, y = data
    energy = EnergyCallback(**MOCK)
    epochs = 3
    history = tiny_model(keras).fit(
        x,
        y,
        epochs=epochs,
        batch_size=8,
        validation_split=0.2,
        verbose=0,
        # Listed after the energy callback: a batch's sleep falls inside the epoch window,
        # an epoch end's sleep after it (outside every epoch, inside the fit).
        callbacks=[energy, sleeper(keras, "on_train_batch_end"), sleeper(keras, "on_epoch_end")],
    )

    assert [e.epoch for e in energy.epochs] == [0, 1, 2]
    assert all(isinstance(e, EpochEnergy) for e in energy.epochs)
    for key in ("energy_j", "power_w", "duration_s"):
        assert history.history[key] == [getattr(e, key) for e in energy.epochs]
    batches_per_epoch = 4  # 32 training rows of 40, 8 a batch
    for epoch in energy.epochs:
        assert epoch.energy_j == pytest.approx(POWER_W * epoch.duration_s, rel=1e-9)
        assert epoch.power_w == pytest.approx(POWER_W)
        assert epoch.duration_s >= batches_per_epoch * SLEEP_S
        assert epoch.meter == "mock" and not epoch.estimated
        assert epoch.domains == {"mock/cpu": epoch.energy_j}

    fit = energy.measurement
    assert fit is not None and fit.meter == "mock"
    assert fit.energy_j == pytest.approx(POWER_W * fit.duration_s, rel=1e-9)
    outside_s = fit.duration_s - sum(e.duration_s for e in energy.epochs)
    # Nothing counted twice: the epochs are disjoint windows inside the fit's. Nothing lost:
    # what no epoch holds is the fit's time outside them, the epoch-end sleeps included.
    assert energy.outside_epochs_j == pytest.approx(POWER_W * outside_s, rel=1e-6, abs=1e-9)
    assert epochs * SLEEP_S <= outside_s < epochs * SLEEP_S + (epochs + 1) * OVERHEAD_S
    assert not samplers()


@pytest.mark.tensorflow
def test_every_n_batches_groups_batches_into_logs(keras: Any, data: tuple[Any, Any]) -> None:
    from greenprec.integrations.keras import BatchEnergy, EnergyCallback

    x, y = data
    batch_logs: list[tuple[int, dict[str, Any]]] = []

    class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            batch_logs.append((batch, dict(logs or {})))

    energy = EnergyCallback(**MOCK, every_n_batches=2)
    tiny_model(keras).fit(
        x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy, Recorder()]
    )  # 5 batches an epoch: groups 0-1, 2-3 and a short 4

    groups = [(b.epoch, b.first_batch, b.last_batch) for b in energy.batches]
    assert groups == [(0, 0, 1), (0, 2, 3), (0, 4, 4), (1, 0, 1), (1, 2, 3), (1, 4, 4)]
    assert all(isinstance(b, BatchEnergy) for b in energy.batches)
    # The logs of a group's last batch carry its figures; a short last group ends with the
    # epoch, after its batch's logs were handed out, so it is in `batches` only.
    closing = [(batch, logs["energy_j"]) for batch, logs in batch_logs if "energy_j" in logs]
    full_groups = [b for b in energy.batches if b.last_batch - b.first_batch == 1]
    assert closing == [(b.last_batch, b.energy_j) for b in full_groups]
    for epoch in energy.epochs:
        inside = [b for b in energy.batches if b.epoch == epoch.epoch]
        assert sum(b.energy_j for b in inside) <= epoch.energy_j
        for group in inside:
            assert group.energy_j == pytest.approx(POWER_W * group.duration_s, rel=1e-9)
    assert not samplers()


@pytest.mark.tensorflow
def test_a_second_fit_starts_afresh_and_cleans_up_a_fit_that_raised(
    keras: Any, data: tuple[Any, Any]
) -> None:
    from greenprec.integrations.keras import EnergyCallback

    x, y = data
    energy = EnergyCallback(**MOCK)

    class Boom(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            raise RuntimeError("the user's training broke")

    model = tiny_model(keras)
    with pytest.raises(RuntimeError, match="training broke"):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy, Boom()])
    # Keras calls no end hook after an exception: the fit's monitor still runs (one sampler
    # for the fit and all its epoch windows; 0.2 ran one per window: two here).
    assert len(samplers()) == 1
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy])
    assert not samplers()
    assert len(energy.epochs) == 2 and len(history.history["energy_j"]) == 2
    assert energy.measurement is not None


@pytest.mark.tensorflow
# The mock integrates its power function with scipy's quad, which warns at the NaN on purpose.
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_a_failing_meter_ends_the_fit_and_leaves_no_window(
    keras: Any, data: tuple[Any, Any]
) -> None:
    from greenprec.integrations.keras import EnergyCallback

    x, y = data
    broken = threading.Event()

    def power(t_s: float) -> float:
        return float("nan") if broken.is_set() else 50.0

    class BreakTheSensor(keras.callbacks.Callback):  # type: ignore[misc]
        # Why an event and not a time: the sensor used to break 0.3 s after the start, and on a
        # fast machine the whole fit ended before that, so nothing raised (a flaky test).
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            broken.set()  # after the callback before it closed epoch 0's window

    energy = EnergyCallback(meter="mock", meter_options={"power_w": power}, interval=0.05)
    with pytest.raises(MeterError, match="mock"):
        tiny_model(keras).fit(
            x, y, epochs=3, batch_size=8, verbose=0, callbacks=[energy, BreakTheSensor()]
        )
    assert not samplers()
    assert len(energy.epochs) == 1  # epoch 0 closed before the sensor broke; epoch 1 did not


@pytest.mark.tensorflow
def test_sync_runs_at_both_edges_of_every_window(keras: Any, data: tuple[Any, Any]) -> None:
    from greenprec.integrations.keras import EnergyCallback

    x, y = data
    calls: list[float] = []
    energy = EnergyCallback(**MOCK, every_n_batches=2, sync=lambda: calls.append(time.monotonic()))
    tiny_model(keras).fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy])
    windows = 1 + len(energy.epochs) + len(energy.batches)  # the fit, 2 epochs, 6 groups
    assert windows == 9 and len(calls) == 2 * windows


AUTO_PLUGIN = """
from greenprec.hookspecs import hookimpl
from greenprec.meters.mock import MockMeter


class AutoMock(MockMeter):
    name = "automock"
    auto = True
    auto_order = 0  # first in auto, and covering all that rapl, nvml and energibridge cover
    covers = frozenset({"cpu", "dram", "system", "gpu"})


@hookimpl
def greenprec_meters():
    return [AutoMock]
"""


@pytest.mark.slow
@pytest.mark.tensorflow
def test_auto_is_chosen_once_and_every_window_gets_its_options(
    keras: Any,
    data: tuple[Any, Any],
    install_plugin: Any,
) -> None:
    from greenprec.integrations.keras import EnergyCallback

    install_plugin("greenprec_automock", AUTO_PLUGIN)
    x, y = data
    # tdp_w is the estimate meter's: auto gives each meter only the plain keys it takes, so a
    # window measuring with "automock" alone must not receive (and refuse) it.
    energy = EnergyCallback(
        meter="auto", meter_options={"power_w": "50", "tdp_w": "30"}, every_n_batches=2
    )
    tiny_model(keras).fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy])
    assert energy.measurement is not None and energy.measurement.meter == "automock"
    windows = [*energy.epochs, *energy.batches]
    assert windows and {w.meter for w in windows} == {"automock"}
    for window in windows:
        assert window.energy_j == pytest.approx(POWER_W * window.duration_s, rel=1e-9)


@pytest.mark.tensorflow
def test_the_fallback_warning_shows_once_per_fit(
    keras: Any, data: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from greenprec import GreenprecWarning, available_meters
    from greenprec.integrations.keras import EnergyCallback

    for cls in available_meters().values():  # no hardware meter, on any machine
        monkeypatch.setattr(cls, "auto", False)
    x, y = data
    energy = EnergyCallback(meter="auto", every_n_batches=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count every warning, not once per line
        tiny_model(keras).fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[energy])
    fallbacks = [w for w in caught if issubclass(w.category, GreenprecWarning)]
    assert len(fallbacks) == 1 and "CPU-time estimate" in str(fallbacks[0].message)
    assert energy.measurement is not None and energy.measurement.estimated
    assert {e.meter for e in energy.epochs} == {"estimate"}


def test_meter_instances_and_bad_arguments_are_refused_at_once() -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    from greenprec.integrations.keras import EnergyCallback

    with pytest.raises(ConfigError, match="by name"):
        EnergyCallback(meter=MockMeter())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="by name"):
        EnergyCallback(meter=["mock", MockMeter()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="interval"):
        EnergyCallback(meter="mock", interval=0)
    with pytest.raises(ConfigError, match="sync"):
        EnergyCallback(meter="mock", sync="cuda")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="every_n_batches"):
            EnergyCallback(meter="mock", every_n_batches=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="once a fit has ended"):
        _ = EnergyCallback(meter="mock").outside_epochs_j


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_integrations_package_imports_no_framework() -> None:
    result = run_python(
        """
        import sys
        import greenprec.integrations
        from greenprec.integrations import BatchEnergy, EpochEnergy, LogEnergy
        frameworks = {"keras", "tensorflow", "torch", "lightning", "pytorch_lightning",
                      "transformers"}
        print(sorted(frameworks & set(sys.modules)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_keras_the_import_error_names_the_extra() -> None:
    result = run_python(
        """
        import sys
        sys.modules["keras"] = None  # as if Keras were not installed
        try:
            import greenprec.integrations.keras
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "greenprec.integrations.keras needs keras, which is not installed: "
        "pip install 'greenprec[tensorflow]'"
    )

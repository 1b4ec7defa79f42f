"""``digits-cnn``: a small CNN on scikit-learn's 8x8 digits; seconds on a laptop CPU."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from greenprec.hookspecs import hookimpl
from greenprec.workloads._common import count_samples, final_metrics, float32_head, parse_params
from greenprec.workloads.core import (
    KERAS_REQUIREMENTS,
    STANDARD_METRICS,
    Requirement,
    WorkloadContext,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from greenprec.frameworks import KerasModel

__all__ = ["build_digits_cnn", "digits_cnn", "greenprec_workloads", "load_digits_split"]

_NAME = "digits-cnn"


def load_digits_split(
    test_size: float = 0.25,
) -> tuple[
    tuple[NDArray[np.float32], NDArray[np.int64]], tuple[NDArray[np.float32], NDArray[np.int64]]
]:
    """(x_train, y_train), (x_test, y_test): float32 N×8×8×1 in [0, 1], int labels."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=0, stratify=y
    )
    return (x_train, y_train), (x_test, y_test)


def build_digits_cnn() -> KerasModel:
    """The digits CNN, uncompiled; its dtypes follow Keras's policy at the time of the call."""
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    model: KerasModel = keras.Model(inputs, float32_head(x, 10), name="digits_cnn")
    return model


def digits_cnn(ctx: WorkloadContext) -> dict[str, float]:
    """Small CNN on scikit-learn's 8x8 digits (1797 images); ~98% in seconds, for demos and CI."""
    import keras

    from greenprec.workloads.params import DigitsParams

    params = parse_params(DigitsParams, ctx.params, _NAME)
    (x_train, y_train), (x_test, y_test) = load_digits_split(params.test_size)
    x_train, y_train = x_train[: params.train_size], y_train[: params.train_size]
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)
    model = build_digits_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    from greenprec.precision import check_model

    check_model(model, policy=ctx.policy)
    # Energy to a target needs each epoch's test metrics: the test set is then evaluated after
    # every epoch, inside the measured window (what a real training run with validation pays).
    per_epoch = bool(ctx.targets)
    with ctx.measured():
        history = model.fit(
            x_train,
            y_train,
            batch_size=params.batch_size,
            epochs=params.epochs,
            verbose=params.verbose,
            validation_data=(x_test, y_test) if per_epoch else None,
            # Stopping at the target: the callback ends fit once every target is reached.
            callbacks=[ctx.keras_epoch_callback(len(x_train))] if per_epoch else None,
        )
    count_samples(ctx, len(history.history["accuracy"]), len(x_train))
    return final_metrics(
        model,
        history,
        (x_test, y_test),
        batch_size=params.batch_size,
        epochs=params.epochs,
        train_size=len(x_train),
    )


def _check_digits_params(params: Mapping[str, object]) -> None:
    """Before any run: the params are valid."""
    from greenprec.workloads.params import DigitsParams

    parse_params(DigitsParams, params, _NAME)


digits_cnn.check_params = _check_digits_params  # type: ignore[attr-defined]
# Seconds on a laptop, a minute or two with emulated float16: half an hour is generous.
# What a target may name: test_accuracy (a fraction of 1) and test_loss, after each epoch.
digits_cnn.metrics = STANDARD_METRICS  # type: ignore[attr-defined]
digits_cnn.timeout_s = 1800.0  # type: ignore[attr-defined]
digits_cnn.requires = (  # type: ignore[attr-defined]
    *KERAS_REQUIREMENTS,
    Requirement("sklearn", "tensorflow"),  # the digits data ship with scikit-learn
)


@hookimpl
def greenprec_workloads() -> dict[str, Callable[..., object]]:
    return {_NAME: digits_cnn}

"""A plain Keras training script turned into a greenprec workload, for `greenprec recommend`.

    cd examples
    greenprec recommend --workload recommend_keras:train --target test_accuracy=0.95 --quick

The same MLP on scikit-learn's 8x8 digits as ``recommend_torch.py``, in Keras: a few seconds
per run on a CPU. docs/recommend.md shows the script before and after as a diff. greenprec
sets Keras's dtype policy for the run before the workload starts, so the model is built and
compiled inside the workload, where its layers get the policy. ``ctx.keras_epoch_callback``
reports each epoch's validation metrics as the test metrics they are (the validation data is
the test set) and ends ``fit`` once the target is reached.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields

from greenprec import ConfigError
from greenprec.workloads import STANDARD_METRICS, WorkloadContext, workload

NAME = "recommend_keras:train"


@dataclass(frozen=True)
class Settings:
    batch_size: int = 64
    learning_rate: float = 5e-3
    epochs: int = 30
    hidden: int = 128


@workload(framework="keras", metrics=STANDARD_METRICS)
def train(ctx: WorkloadContext) -> dict[str, float]:
    """A small MLP on scikit-learn's 8x8 digits, in Keras: ~95 % test accuracy in 10 epochs."""
    # Imported here: greenprec imports this module to check the params and the target before
    # anything runs, and that should not cost a TensorFlow import.
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    config = settings(ctx.params)

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )

    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(config.hidden, activation="relu"),
            # The output in float32: a float16 softmax loses the loss's precision.
            keras.layers.Dense(10, dtype="float32"),
            keras.layers.Activation("softmax", dtype="float32"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    with ctx.measured():
        history = model.fit(
            x_train,
            y_train,
            batch_size=config.batch_size,
            epochs=config.epochs,
            validation_data=(x_test, y_test),
            callbacks=[ctx.keras_epoch_callback(samples_per_epoch=len(x_train))],
            verbose=0,
        )
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    epochs = len(history.history["loss"])
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "epochs": epochs}


def settings(params: Mapping[str, object]) -> Settings:
    """The script's settings with the workload's params applied, checked first: a ConfigError
    names the bad one."""
    known = [field.name for field in fields(Settings)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"{NAME} has no param {unknown[0]!r} (known: {', '.join(known)})")

    def whole(key: str, default: int) -> int:
        value = params.get(key)
        if value is None:
            return default
        # A bool is refused although Python counts it as an int: batch_size=true is a typo.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{NAME}: {key} must be a whole number, 1 or more, got {value!r}")
        return value

    def positive(key: str, default: float) -> float:
        value = params.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{NAME}: {key} must be a number above 0, got {value!r}")
        return float(value)

    return Settings(
        batch_size=whole("batch_size", Settings.batch_size),
        learning_rate=positive("learning_rate", Settings.learning_rate),
        epochs=whole("epochs", Settings.epochs),
        hidden=whole("hidden", Settings.hidden),
    )


# Checked before anything runs: a bad --vary or --param value stops the experiment then.
train.check_params = settings  # type: ignore[attr-defined]

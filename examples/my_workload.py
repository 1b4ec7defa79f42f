"""A user workload for `greenprec compare`: any function taking a context.

    PYTHONPATH=examples greenprec compare fp32 bf16 --workload my_workload:mlp_on_digits \\
        --runs 3 --warmup 0 --cooldown 1

The function builds its model under the policy greenprec has already set, marks the phase to
measure with ``ctx.measured()`` and returns at least test_accuracy and test_loss.
"""

from __future__ import annotations

from typing import Any


def mlp_on_digits(ctx: Any) -> dict[str, float]:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32") / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0
    )
    hidden = int(ctx.params.get("hidden", 128))
    inputs = keras.Input((64,))
    h = keras.layers.Dense(hidden, activation="relu")(inputs)
    logits = keras.layers.Dense(10, dtype="float32")(h)  # the output computes in float32
    outputs = keras.layers.Activation("softmax", dtype="float32")(logits)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with ctx.measured():
        model.fit(x_train, y_train, epochs=int(ctx.params.get("epochs", 10)), verbose=0)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss)}

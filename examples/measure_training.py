"""Measure the energy of one Keras training run under two precision policies.

    python examples/measure_training.py

Uses the built-in digits CNN's model and data; swap in your own model and data.
"""

from __future__ import annotations

import greenprec
from greenprec.precision import describe, policy
from greenprec.workloads.digits import build_digits_cnn, load_digits_split


def train_once(policy_name: str) -> greenprec.Measurement:
    import keras

    (x_train, y_train), _ = load_digits_split()
    with policy(policy_name):
        model = build_digits_cnn()  # build under the policy so Keras adds loss scaling
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        print(describe(model).to_dict()["loss_scaling"], "loss scaling for", policy_name)
        keras.utils.set_random_seed(0)
        with greenprec.measure() as m:  # the estimate here; RAPL/NVML where readable
            model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    return m


if __name__ == "__main__":
    for name in ("fp32", "bf16"):
        m = train_once(name)
        label = " (estimated)" if m.estimated else ""
        print(f"{name}: {m.energy_j:.1f} J{label} in {m.duration_s:.1f} s via {m.meter}")

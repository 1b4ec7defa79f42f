"""``cifar10-cnn``: the published CIFAR-10 network, and a loader that never downloads.

The network is the Keras ``cifar10_cnn`` example the study trained: four 3x3 convolutions
(128, 128, 256, 256), two max-pools, dropout, Dense(1024) and a 10-way softmax, ~10.48M
parameters; RMSprop (lr 1e-4), batch 512, 25 epochs, shift/flip augmentation.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeAlias

from greenprec.errors import ConfigError
from greenprec.hookspecs import hookimpl
from greenprec.workloads._common import count_samples, final_metrics, float32_head, parse_params
from greenprec.workloads.core import STANDARD_METRICS, WorkloadContext

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from greenprec.frameworks import KerasModel
    from greenprec.workloads.params import Cifar10Params

__all__ = [
    "build_cifar10_cnn",
    "cifar10_cnn",
    "cifar10_timeout_s",
    "find_cifar10",
    "greenprec_workloads",
    "load_cifar10",
]

_Batch: TypeAlias = "tuple[NDArray[np.uint8], NDArray[np.uint8]]"
"""Images (uint8 N×32×32×3, RGB) and their labels (uint8, N)."""

_NAME = "cifar10-cnn"
_ENV_VAR = "GREENPREC_DATA"
_ARCHIVE = "cifar-10-python.tar.gz"
_FOLDER = "cifar-10-batches-py"
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
# Where keras.datasets.cifar10.load_data() leaves the files: Keras 3 names, then Keras 2's.
_KERAS_CACHE_NAMES = (
    "cifar-10-batches-py-target",
    "cifar-10-batches-py-target_archive",
    _FOLDER,
    "cifar-10-batches-py.tar.gz",
)

# The batches are pickles, and unpickling runs code: allow only what a numpy array needs.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _keras_datasets_dirs() -> list[Path]:
    home = os.environ.get("KERAS_HOME")
    if home:
        return [Path(home).expanduser() / "datasets"]
    # Keras falls back to /tmp/.keras when the home directory is not writable.
    return [Path("~/.keras").expanduser() / "datasets", Path("/tmp/.keras/datasets")]


def _resolve(path: Path) -> Path | None:
    """The archive or batch folder at or directly under ``path``; None if there is none."""
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    if (path / _TRAIN_BATCHES[0]).is_file() or (path / _TEST_BATCH).is_file():
        return path
    for child in (path / _FOLDER, path / _ARCHIVE):
        if child.exists():
            return child
    return None


def find_cifar10(data: str | os.PathLike[str] | None = None) -> Path:
    """Where CIFAR-10 is: ``data``, else ``$GREENPREC_DATA``, else the Keras cache.

    Each may be the ``cifar-10-python.tar.gz`` archive, its extracted ``cifar-10-batches-py``
    folder, or a folder holding either.
    """
    for given, label in ((data, "data"), (os.environ.get(_ENV_VAR) or None, _ENV_VAR)):
        if given is None:
            continue
        found = _resolve(Path(given).expanduser())
        if found is None:
            raise ConfigError(
                f"{label} path {str(given)!r} holds no CIFAR-10: give {_ARCHIVE} or its "
                f"extracted {_FOLDER} folder"
            )
        return found
    for datasets in _keras_datasets_dirs():
        for name in _KERAS_CACHE_NAMES:
            found = _resolve(datasets / name)
            if found is not None:
                return found
    cache = _keras_datasets_dirs()[0] / "cifar-10-batches-py-target_archive"
    raise ConfigError(
        f"CIFAR-10 not found: download {_URL} and set {_ENV_VAR} to it (or to its extracted "
        f"{_FOLDER} folder), pass data=PATH, or save it as {cache}"
    )


def _decode(source: IO[bytes], where: str) -> _Batch:
    import numpy as np

    try:
        batch = _BatchUnpickler(source, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.uint8)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise ConfigError(f"{where} is not a CIFAR-10 python batch ({error})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ConfigError(
            f"{where} holds data of shape {data.shape} and {len(labels)} labels; "
            "CIFAR-10 batches are N x 3072 with N labels"
        )
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_batches(location: Path) -> dict[str, _Batch]:
    names = (*_TRAIN_BATCHES, _TEST_BATCH)
    batches: dict[str, _Batch] = {}
    if location.is_dir():
        for name in names:
            path = location / name
            if not path.is_file():
                raise ConfigError(f"CIFAR-10 folder {location} has no {name}")
            with path.open("rb") as handle:
                batches[name] = _decode(handle, str(path))
        return batches
    try:
        with tarfile.open(location, "r:*") as archive:
            members = {
                Path(member.name).name: member
                for member in archive.getmembers()
                if member.isfile() and Path(member.name).name in names
            }
            for name in names:
                if name not in members:
                    raise ConfigError(f"CIFAR-10 archive {location} has no {name}")
                contents = archive.extractfile(members[name])
                assert contents is not None  # isfile() members always have contents
                batches[name] = _decode(io.BytesIO(contents.read()), f"{location}:{name}")
    except (tarfile.TarError, OSError) as error:
        raise ConfigError(f"cannot read CIFAR-10 archive {location} ({error})") from None
    return batches


def load_cifar10(
    data: str | os.PathLike[str] | None = None,
) -> tuple[_Batch, _Batch]:
    """``(x_train, y_train), (x_test, y_test)`` from the CIFAR-10 python files; never downloads.

    Images are uint8 N×32×32×3 (RGB), labels uint8 of shape (N,). See :func:`find_cifar10`
    for where the files are looked for.
    """
    import numpy as np

    batches = _read_batches(find_cifar10(data))
    x_train = np.concatenate([batches[name][0] for name in _TRAIN_BATCHES])
    y_train = np.concatenate([batches[name][1] for name in _TRAIN_BATCHES])
    x_test, y_test = batches[_TEST_BATCH]
    return (x_train, y_train), (x_test, y_test)


def build_cifar10_cnn() -> KerasModel:
    """The published CIFAR-10 CNN, uncompiled; dtypes follow Keras's policy at the call."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(128, (3, 3), padding="same", name="conv1")(inputs)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(128, (3, 3), name="conv2")(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(256, (3, 3), padding="same", name="conv3")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(256, (3, 3), name="conv4")(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, name="dense")(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(0.5)(x)
    model: KerasModel = keras.Model(inputs, float32_head(x, 10), name="cifar10_cnn")
    return model


def _train_dataset(
    x: NDArray[np.uint8], y: NDArray[np.float32], params: Cifar10Params, seed: int
) -> object:
    """Shuffled batches scaled to [0, 1], shifted and flipped on the fly when ``augment``."""
    import keras
    import tensorflow as tf

    # Explicit float32: the augmentation belongs to the data, not to the policy under test.
    augmentation = [
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed, dtype="float32"),
        keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
    ]

    # tf.data hands prepare() symbolic tensors, which only TensorFlow's own ops look into.
    def prepare(images: object, labels: object) -> tuple[object, object]:
        images = tf.cast(images, tf.float32) / 255.0
        if params.augment:
            for layer in augmentation:
                images = layer(images, training=True)
        return images, labels

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(params.batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def cifar10_cnn(ctx: WorkloadContext) -> dict[str, float]:
    """The study's CIFAR-10 CNN (10.48M params, 25 epochs, batch 512); needs the dataset file."""
    import keras
    import numpy as np

    from greenprec.workloads.params import Cifar10Params

    params = parse_params(Cifar10Params, ctx.params, _NAME)
    (x_train, train_labels), (test_images, test_labels) = load_cifar10(params.data)
    x_train = x_train[: params.train_size]
    y_train = keras.utils.to_categorical(train_labels[: params.train_size], 10)
    y_test = keras.utils.to_categorical(test_labels[: params.test_size], 10)
    x_test = test_images[: params.test_size].astype(np.float32) / 255.0
    model = build_cifar10_cnn()
    model.compile(
        optimizer=keras.optimizers.RMSprop(params.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    from greenprec.precision import check_model

    check_model(model, policy=ctx.policy)
    train = _train_dataset(x_train, y_train, params, ctx.seed)
    # Energy to a target needs each epoch's test metrics: validation on the test set then runs
    # after every epoch whatever the validation param says (it is inside the measured window).
    per_epoch = bool(ctx.targets)
    validation = (x_test, y_test) if params.validation or per_epoch else None
    with ctx.measured():
        history = model.fit(
            train,
            epochs=params.epochs,
            shuffle=False,  # the dataset reshuffles itself each epoch
            validation_data=validation,
            validation_batch_size=params.batch_size,
            verbose=params.verbose,
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


def _check_cifar10_params(params: Mapping[str, object]) -> None:
    """Before any run: the params are valid and the dataset can be found."""
    from greenprec.workloads.params import Cifar10Params

    find_cifar10(parse_params(Cifar10Params, params, _NAME).data)


cifar10_cnn.check_params = _check_cifar10_params  # type: ignore[attr-defined]


def cifar10_timeout_s(params: Mapping[str, object]) -> float:
    """A generous time limit for one run: an hour per epoch (a CPU epoch of the full set takes
    minutes to tens of minutes; the study's GPU epochs took seconds), plus an hour."""
    epochs = params.get("epochs") if isinstance(params, Mapping) else None
    count = (
        epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else 25
    )
    return 3600.0 * (count + 1)


# What a target may name: test_accuracy (a fraction of 1) and test_loss, after each epoch.
cifar10_cnn.metrics = STANDARD_METRICS  # type: ignore[attr-defined]
cifar10_cnn.timeout_s = cifar10_timeout_s  # type: ignore[attr-defined]


@hookimpl
def greenprec_workloads() -> dict[str, Callable[..., object]]:
    return {_NAME: cifar10_cnn}

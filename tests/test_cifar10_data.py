"""The CIFAR-10 loader on generated files in the real python format; no TensorFlow needed."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from greenprec.errors import ConfigError
from greenprec.workloads.cifar10 import find_cifar10, load_cifar10
from workload_helpers import (
    MARK_COL,
    MARK_ROW,
    MARK_VALUE,
    image_rgb,
    label,
    make_cifar_archive,
    make_cifar_folder,
)


@pytest.fixture(autouse=True)
def no_real_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide any CIFAR-10 on this machine: an empty Keras home, no GREENPREC_DATA."""
    keras_home = tmp_path / "keras-home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("GREENPREC_DATA", raising=False)
    return keras_home


def check(loaded: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
    (x_train, y_train), (x_test, y_test) = loaded
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.shape == (10,) and y_test.shape == (2,)
    for batch in range(5):
        for index in range(2):
            image = x_train[batch * 2 + index]
            red, green, blue = image_rgb(batch, index)
            # Channels last in R, G, B order; every pixel but the marked one is the plane value.
            assert image[0, 0].tolist() == [red, green, blue]
            assert image[31, 31].tolist() == [red, green, blue]
            assert image[MARK_ROW, MARK_COL, 0] == MARK_VALUE
            assert image[MARK_COL, MARK_ROW, 0] == red  # row-major, not transposed
            assert y_train[batch * 2 + index] == label(batch, index)
    assert x_test[1, 5, 5].tolist() == list(image_rgb(5, 1))
    assert y_test.tolist() == [label(5, 0), label(5, 1)]


@pytest.mark.parametrize("protocol", [3, 4])
def test_extracted_folder(tmp_path: Path, protocol: int) -> None:
    folder = make_cifar_folder(tmp_path / "data", protocol=protocol)
    check(load_cifar10(folder))
    check(load_cifar10(str(folder.parent)))  # the folder that holds cifar-10-batches-py


@pytest.mark.parametrize("protocol", [3, 4])
def test_archive(tmp_path: Path, protocol: int) -> None:
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", protocol=protocol)
    check(load_cifar10(archive))
    check(load_cifar10(tmp_path))  # the folder that holds the archive


def test_greenprec_data_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_cifar_archive(tmp_path / "downloads" / "cifar-10-python.tar.gz")
    monkeypatch.setenv("GREENPREC_DATA", str(archive))
    check(load_cifar10())
    monkeypatch.setenv("GREENPREC_DATA", str(archive.parent))
    assert find_cifar10() == archive


def test_explicit_path_comes_before_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_cifar_folder(tmp_path / "explicit")
    monkeypatch.setenv("GREENPREC_DATA", str(tmp_path / "does-not-exist"))
    assert find_cifar10(folder) == folder


@pytest.mark.parametrize(
    "name", ["cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz"]
)
def test_keras_cache_archive(no_real_cifar: Path, name: str) -> None:
    archive = make_cifar_archive(no_real_cifar / "datasets" / name)
    assert find_cifar10() == archive
    check(load_cifar10())


def test_keras_cache_extracted_folder(no_real_cifar: Path) -> None:
    # Keras 3 extracts into datasets/cifar-10-batches-py-target/cifar-10-batches-py.
    folder = make_cifar_folder(no_real_cifar / "datasets" / "cifar-10-batches-py-target")
    assert find_cifar10() == folder
    check(load_cifar10())


def test_default_keras_home_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = make_cifar_folder(tmp_path / ".keras" / "datasets")
    assert find_cifar10() == folder


def test_missing_data_is_one_line_saying_where_to_put_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_cifar10()
    message = str(caught.value)
    assert "\n" not in message
    assert "GREENPREC_DATA" in message and "cifar-10-python.tar.gz" in message
    assert "cifar-10-batches-py-target_archive" in message


@pytest.mark.parametrize("variable", [False, True])
def test_a_given_path_without_data_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: bool
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    if variable:
        monkeypatch.setenv("GREENPREC_DATA", str(empty))
    with pytest.raises(ConfigError, match="holds no CIFAR-10"):
        load_cifar10(None if variable else empty)


def test_archive_missing_a_batch(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(make_cifar_folder(tmp_path / "x") / "data_batch_1", "data_batch_1")
    with pytest.raises(ConfigError, match="has no data_batch_2"):
        load_cifar10(archive)


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "cifar-10-python.tar.gz"
    bogus.write_bytes(b"not a tar file")
    with pytest.raises(ConfigError, match="cannot read"):
        load_cifar10(bogus)


def test_wrong_shape(tmp_path: Path) -> None:
    folder = make_cifar_folder(tmp_path)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(ConfigError, match="N x 3072"):
        load_cifar10(folder)


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch PWNED",))


def test_pickles_may_not_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = make_cifar_folder(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(ConfigError, match="not allowed"):
        load_cifar10(folder)
    assert not (tmp_path / "PWNED").exists()

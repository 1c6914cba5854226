"""Datasets: the embedded digits, and the torchvision path on IDX files the test writes itself."""

import pytest
import torch

from vgtui.engine.data import DataError, load_dataset, load_mnist5k_arrays, write_idx


def test_embedded_digits_are_real_and_split(digits):
    a = load_mnist5k_arrays()
    assert a["x_train"].shape == (4000, 28, 28) and a["x_test"].shape == (1000, 28, 28)
    assert list(torch.bincount(digits.y_train)) == [400] * 10 and list(torch.bincount(digits.y_test)) == [100] * 10
    assert digits.x_train.shape == (4000, 784) and digits.x_train.dtype == torch.float32
    # normalised as in the seed: (x/255 - 0.5)/0.5, so background pixels are exactly -1 and ink reaches 1
    assert digits.x_train.min() == -1.0 and digits.x_train.max() == 1.0
    assert 0.08 < (digits.x_train > 0).float().mean() < 0.2  # MNIST: roughly 1 pixel in 8 is ink


def _write_mnist(root, folder="MNIST"):
    a = load_mnist5k_arrays()
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", a["x_train"])
    write_idx(raw / "train-labels-idx1-ubyte", a["y_train"])
    write_idx(raw / "t10k-images-idx3-ubyte", a["x_test"])
    write_idx(raw / "t10k-labels-idx1-ubyte", a["y_test"])


def test_torchvision_mnist_from_idx_files(tmp_path, digits):
    _write_mnist(tmp_path)
    data = load_dataset("mnist", str(tmp_path), offline=True)
    assert data.name == "mnist" and data.notice is None
    assert torch.equal(data.x_train, digits.x_train) and torch.equal(data.y_test, digits.y_test)


def test_torchvision_fashion_mnist_from_idx_files(tmp_path):
    _write_mnist(tmp_path, "FashionMNIST")
    data = load_dataset("fashion-mnist", str(tmp_path), offline=True)
    assert data.name == "fashion-mnist" and len(data.x_train) == 4000


def test_missing_mnist_falls_back_with_one_line_notice(tmp_path):
    data = load_dataset("mnist", str(tmp_path), offline=True)
    assert data.name == "mnist-5k" and "\n" not in data.notice
    assert "mnist-5k" in data.notice and "--data-dir" in data.notice


def test_missing_fashion_mnist_is_an_error_that_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("fashion-mnist", str(tmp_path), offline=True)

"""Fashion-MNIST IDX parsing and lookup, identity folders, splits and subsampling."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from det_forget.classification.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    BatchSampler,
    find_fashion_mnist,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    stratified_split,
    subsample_per_class,
)
from det_forget.forgetting import resolve_classes


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion_mnist(folder, n_train=6, n_test=4, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 28, 28)),
            compress,
        )
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compress)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    _write_idx(path, arr, compress)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_read_idx_rejects_garbage(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x03\x04abcd")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_torchvision_layout_and_env_override(tmp_path, monkeypatch):
    _fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "tv"))
    assert find_fashion_mnist() == tmp_path / "tv" / "FashionMNIST" / "raw"
    data = load_fashion_mnist("test")
    assert data.images.shape == (4, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 1, 2, 3]
    assert data.classes == FASHION_MNIST_CLASSES


def test_explicit_root_with_plain_files(tmp_path):
    _fake_fashion_mnist(tmp_path / "plain", compress=False)
    assert len(load_fashion_mnist("train", tmp_path / "plain")) == 6


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        find_fashion_mnist(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="split must be one of"):
        load_fashion_mnist("val", tmp_path)


def test_real_fashion_mnist_test_split():
    data = load_fashion_mnist("test")
    assert data.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [1000] * 10


def test_stratified_split_is_disjoint_and_balanced():
    labels = torch.arange(100) % 4
    rest, held = stratified_split(labels, per_class=5, seed=3)
    assert len(set(rest.tolist()) & set(held.tolist())) == 0
    assert len(rest) + len(held) == 100
    assert torch.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    again = stratified_split(labels, per_class=5, seed=3)[1]
    assert torch.equal(held, again)


def test_subsample_ratio_shots_and_consistency():
    labels = torch.arange(200) % 4
    idx = subsample_per_class(labels, [0, 1], ratio=0.1, seed=1)
    assert torch.bincount(labels[idx], minlength=4).tolist() == [5, 5, 0, 0]
    shots = subsample_per_class(labels, [0, 1, 2, 3], shots=3, seed=1)
    assert torch.bincount(labels[shots]).tolist() == [3, 3, 3, 3]
    # A class's draw does not depend on which other classes are requested.
    only0 = subsample_per_class(labels, [0], ratio=0.1, seed=1)
    assert set(only0.tolist()) <= set(idx.tolist())
    with pytest.raises(ValueError, match="data ratio"):
        subsample_per_class(labels, [0], ratio=0.0)


def test_resolve_classes():
    names = ("T-shirt/top", "Trouser", "Bag")
    assert resolve_classes(["trouser", 2, "0"], names) == [1, 2, 0]
    with pytest.raises(ValueError, match="unknown class 'Shoe'"):
        resolve_classes(["Shoe"], names)
    with pytest.raises(ValueError, match="out of range"):
        resolve_classes([7], names)


def test_batch_sampler_covers_every_sample_each_pass():
    sampler = BatchSampler(10, 4, seed=0)
    seen = torch.cat([next(sampler) for _ in range(5)])  # 20 = two full passes
    assert torch.bincount(seen, minlength=10).tolist() == [2] * 10


def test_load_image_folder(identity_dirs):
    train = load_image_folder(identity_dirs[0], image_size=16, channels=1)
    assert train.images.shape == (200, 1, 16, 16)
    assert train.classes == tuple(f"id_{k}" for k in range(5))
    rgb = load_image_folder(identity_dirs[1], image_size=8, channels=3, classes=train.classes)
    assert rgb.images.shape == (150, 3, 8, 8)
    with pytest.raises(ValueError, match="not found"):
        load_image_folder(identity_dirs[1], image_size=8, classes=["id_0", "nobody"])

"""Tiny synthetic identity datasets (ImageFolder layout) and tiny ViTs for fast tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch_threads import one_torch_thread

from det_forget.classification import (
    FaceRecognizer,
    PretrainRecipe,
    ViTClassifier,
    get_classification_cfg,
    load_image_folder,
    save_classifier,
    train_classifier,
)

TINY_ARCH = dict(img_size=16, in_chans=1, patch_size=4, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(autouse=True, scope="module")
def _single_thread_module():
    with one_torch_thread():
        yield


def make_identity_folder(
    root: Path, num_ids: int = 5, per_id: int = 24, size: int = 16, seed: int = 0
) -> Path:
    """Write ``root/id_<k>/<n>.png``: each identity is a fixed coarse pattern plus noise.

    The patterns depend only on ``num_ids`` (seed 1234), so train and test folders made
    with different ``seed`` values hold the same identities.
    """
    pattern_rng = np.random.default_rng(1234)
    bits: list[np.ndarray] = []
    while len(bits) < num_ids:  # binary 4x4 codes at Hamming distance >= 6 from each other
        code = pattern_rng.integers(0, 2, (4, 4))
        if all(np.sum(code != b) >= 6 for b in bits):
            bits.append(code)
    patterns = np.stack(bits).astype(np.float64) * 0.8 + 0.1
    rng = np.random.default_rng(seed)
    for k in range(num_ids):
        folder = root / f"id_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        big = np.kron(patterns[k], np.ones((size // 4, size // 4)))
        for n in range(per_id):
            img = big * rng.uniform(0.8, 1.0) + rng.normal(0, 0.1, big.shape)
            img = np.roll(img, rng.integers(-1, 2), axis=1)
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(folder / f"{n:03d}.png")
    return root


@pytest.fixture(scope="session")
def identity_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """``(train_root, test_root)`` of a 5-identity synthetic dataset."""
    base = tmp_path_factory.mktemp("identities")
    train = make_identity_folder(base / "train", per_id=40, seed=0)
    test = make_identity_folder(base / "test", per_id=30, seed=1)
    return train, test


def tiny_cfg(train_root: Path, test_root: Path, weights: str = "", **model) -> object:
    """A classification config for the tiny synthetic data and a tiny ViT."""
    cfg = get_classification_cfg()
    cfg.CLS.DATASET = "image_folder"
    cfg.CLS.DATA_ROOT = str(train_root)
    cfg.CLS.TEST_ROOT = str(test_root)
    cfg.CLS.VAL_PER_CLASS = 8
    cfg.CLS.VAL_EVAL_PER_CLASS = 8
    cfg.CLS.WEIGHTS = weights
    cfg.CLS.LOG_PERIOD = 1000
    m = cfg.CLS.MODEL
    m.NAME = model.get("name", "ViTClassifier")
    m.NUM_CLASSES = 5
    m.IMG_SIZE, m.IN_CHANS, m.PATCH_SIZE = 16, 1, 4
    m.EMBED_DIM, m.DEPTH, m.NUM_HEADS = 32, 2, 2
    m.PIXEL_MEAN, m.PIXEL_STD = [0.5], [0.25]
    cfg.CLS.FACE.SCALE, cfg.CLS.FACE.MARGIN = 16.0, 0.35
    cfg.FORGET.CLASSES = ["id_1"]
    cfg.FORGET.DATA_RATIO = 1.0
    cfg.FORGET.MAX_ITER = 60
    cfg.FORGET.EARLY_STOP.PERIOD = 10
    cfg.FORGET.EARLY_STOP.PATIENCE = 3
    cfg.FORGET.LOSS.BOUND = 10.0
    cfg.FORGET.LOSS.FORGET_WEIGHT = 0.5
    cfg.CLS.SOLVER.BATCH_SIZE = 32
    cfg.CLS.SOLVER.BASE_LR = 1e-2
    return cfg


def _train_tiny(model_cls, train_root: Path, out: Path, **kwargs):
    with one_torch_thread():
        return _train_tiny_unthreaded(model_cls, train_root, out, **kwargs)


def _train_tiny_unthreaded(model_cls, train_root: Path, out: Path, **kwargs):
    torch.manual_seed(0)
    train = load_image_folder(train_root, image_size=16, channels=1)
    model = model_cls(num_classes=5, pixel_mean=(0.5,), pixel_std=(0.25,), **TINY_ARCH, **kwargs)
    recipe = PretrainRecipe(epochs=30, batch_size=32, base_lr=3e-3, warmup_epochs=1, augment=False)
    info = train_classifier(model, train, None, recipe)
    save_classifier(model, out, {"note": "tiny test model"})
    return model, info


@pytest.fixture(scope="session")
def make_tiny_cfg():
    """The :func:`tiny_cfg` factory (tests cannot import conftest under importlib mode)."""
    return tiny_cfg


@pytest.fixture(scope="session")
def tiny_arch() -> dict:
    """Architecture keyword arguments of the tiny test ViT."""
    return dict(TINY_ARCH)


@pytest.fixture(scope="session")
def tiny_classifier(identity_dirs, tmp_path_factory):
    """``(checkpoint path, model, train info)`` of a ViTClassifier trained on the identities."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_vit.safetensors"
    model, info = _train_tiny(ViTClassifier, identity_dirs[0], path)
    return path, model, info


@pytest.fixture(scope="session")
def tiny_face(identity_dirs, tmp_path_factory):
    """``(checkpoint path, model, train info)`` of a CosFace FaceRecognizer (s=16, m=0.35)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_face.safetensors"
    model, info = _train_tiny(FaceRecognizer, identity_dirs[0], path, scale=16.0, margin=0.35)
    return path, model, info

"""The membership testbed on synthetic images: a tiny ViT that memorises its training half.

Four classes of 16x16 images (a coarse class pattern at half contrast plus pixel noise);
a quarter of each class's images show another class's pattern but keep their label.
Those atypical images can only be fitted by memorising them, as a real model memorises
its ambiguous training images, so membership leaves a measurable trace (a calibrated
attack AUC near 0.7 on the base model), in about 8 s for the base, four references and
a retrained model on one thread.

``trained_tiny_detector``: the tiny shapes R-CNN of ``tests/detection_fixtures.py``
trained 150 steps (seconds), so that it detects the classes whose relearning is measured.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from torch_threads import one_torch_thread

from det_forget.audit.reference import train_reference_classifiers
from det_forget.audit.testbed import split_testbed
from det_forget.classification import (
    ImageClassData,
    PretrainRecipe,
    ViTClassifier,
    train_classifier,
)

NUM_CLASSES = 4
FORGET = [1, 2]
TESTBED_ARCH = dict(
    num_classes=NUM_CLASSES,
    img_size=16,
    in_chans=1,
    patch_size=4,
    embed_dim=32,
    depth=2,
    num_heads=2,
    pixel_mean=(0.5,),
    pixel_std=(0.25,),
)
TESTBED_RECIPE = PretrainRecipe(
    epochs=60,
    batch_size=64,
    base_lr=5e-3,
    weight_decay=0.0,
    warmup_epochs=1,
    augment=False,
    log_period=10**6,
)


def synthetic_pool(per_class: int = 60, seed: int = 0, atypical: float = 0.25) -> ImageClassData:
    """``per_class`` noisy pattern images per class, ``atypical`` of them another class's."""
    patterns = np.random.default_rng(1234).integers(0, 2, (NUM_CLASSES, 4, 4)).astype(float)
    big = np.kron(patterns, np.ones((1, 4, 4)))
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(NUM_CLASSES):
        for _ in range(per_class):
            shown = k if rng.random() > atypical else (k + 1 + rng.integers(NUM_CLASSES - 1))
            img = 0.5 + 0.5 * (big[shown % NUM_CLASSES] - 0.5) + rng.normal(0, 0.2, (16, 16))
            images.append((np.clip(img, 0, 1) * 255).astype(np.uint8)[None])
            labels.append(k)
    return ImageClassData(
        torch.from_numpy(np.stack(images)),
        torch.tensor(labels),
        tuple(f"c{k}" for k in range(NUM_CLASSES)),
    )


def train_testbed_model(data: ImageClassData, seed: int = 0) -> ViTClassifier:
    """A tiny ViT trained on ``data`` with the testbed recipe."""
    torch.manual_seed(seed)
    model = ViTClassifier(**TESTBED_ARCH)
    train_classifier(model, data, None, TESTBED_RECIPE)
    return model.eval()


@pytest.fixture(scope="session")
def membership_testbed():
    """The testbed's halves, its base model, 4 references and a model retrained without
    ``FORGET`` (trained on the base's half minus those classes)."""
    with one_torch_thread():
        testbed = split_testbed(synthetic_pool(), seed=1)
        base = train_testbed_model(testbed.train)
        references = train_reference_classifiers(
            lambda: ViTClassifier(**TESTBED_ARCH),
            testbed.train,
            testbed.heldout,
            TESTBED_RECIPE,
            num_models=4,
        )
        retain = [c for c in range(NUM_CLASSES) if c not in FORGET]
        retrained = train_testbed_model(testbed.train.of_classes(retain), seed=1)
    return {
        "testbed": testbed,
        "base": base,
        "references": references,
        "retrained": retrained,
        "forget": FORGET,
    }


def _train_tiny_detector(model, cfg, dicts, steps: int, lr: float, seed: int = 0):
    """``steps`` AdamW steps of detectron2's training losses on ``dicts`` (4 images a step)."""
    from detectron2.utils.events import EventStorage

    from det_forget.audit.detector import _test_mapper

    mapper = _test_mapper(cfg)
    inputs = [mapper(dict(d)) for d in dicts]
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = [inputs[(step * 4 + j) % len(inputs)] for j in range(4)]
        with EventStorage(step):
            loss = sum(model(batch).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_tiny_detector(tiny_shapes, tmp_path_factory):
    """The tiny shapes R-CNN trained 150 steps on the 24 tiny training images (it finds the
    two most frequent val classes, the ``forget`` pair, with some AP), saved as a checkpoint,
    with its config (file too) and a random-weight checkpoint (never learned anything)."""
    from detection_fixtures import TINY_TRAIN, TINY_VAL, save_base_checkpoint, tiny_cfg
    from detectron2.data import DatasetCatalog

    from det_forget.engine.inference import load_detector

    root = tmp_path_factory.mktemp("relearn_det")
    cfg = tiny_cfg(root / "out")
    config_file = root / "tiny.yaml"
    config_file.write_text(cfg.dump())
    random_weights = save_base_checkpoint(cfg, root / "random.pth", seed=0)
    with one_torch_thread():
        loaded = load_detector(cfg, random_weights)
        model = _train_tiny_detector(
            loaded.model, loaded.cfg, DatasetCatalog.get(TINY_TRAIN), steps=150, lr=1e-3
        )
    weights = root / "trained.pth"
    torch.save({"model": model.state_dict()}, weights)
    counts = collections.Counter(
        a["category_id"] for d in DatasetCatalog.get(TINY_VAL) for a in d["annotations"]
    )
    forget = sorted(c for c, _ in counts.most_common(2))
    return {
        "cfg": loaded.cfg,
        "config_file": config_file,
        "model": model,
        "weights": str(weights),
        "random_weights": random_weights,
        "class_names": loaded.class_names,
        "forget": forget,
        "root": root,
    }

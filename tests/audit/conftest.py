"""The membership testbed on synthetic images: a tiny ViT that memorises its training half.

Four classes of 16x16 images (a coarse class pattern at half contrast plus pixel noise);
a quarter of each class's images show another class's pattern but keep their label.
Those atypical images can only be fitted by memorising them, as a real model memorises
its ambiguous training images, so membership leaves a measurable trace (a calibrated
attack AUC near 0.7 on the base model), in about 8 s for the base, four references and
a retrained model on one thread.
"""

from __future__ import annotations

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

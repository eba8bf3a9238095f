"""Membership testbed: a model trained on few images, so that membership is measurable.

A model trained on 55,000 Fashion-MNIST images barely overfits (train loss 0.24, test
accuracy 89%): no attack can tell its training images from unseen ones, so an audit on it
cannot show that forgetting removed anything. The testbed makes the signal measurable: a
pool of ``per_class`` images per class is split into two halves, stratified by class; a
model trained (long, without augmentation) on one half memorises it. The other half is
its held-out set, and reference models train on random halves of the whole pool
(:mod:`.reference`).

:func:`write_testbed` writes both halves as image folders (``train/<class>/*.png`` and
``test/<class>/*.png``), so the usual tools run on them with ``CLS.DATASET image_folder``;
:func:`train_testbed_base` trains the base model on the whole training half and keeps its
*last* epoch (``tools/pretrain_classifier.py`` keeps the best validation epoch, which
stops memorisation half-way), recording its recipe as the pre-training tool does, so that
``tools/audit.py --references`` trains its references the same way::

    python -m det_forget.audit.testbed --output output/testbed --per-class 100 \
        CLS.MODEL.EMBED_DIM 32 CLS.MODEL.DEPTH 2 CLS.PRETRAIN.EPOCHS 80

(see ``docs/audit.md`` for the full pipeline: base, GS-LoRA, retrain, audit).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..classification.data import ImageClassData, load_fashion_mnist, subsample_per_class

__all__ = [
    "MembershipTestbed",
    "split_testbed",
    "fashion_mnist_testbed",
    "write_testbed",
    "train_testbed_base",
]

logger = logging.getLogger(__name__)


@dataclass
class MembershipTestbed:
    """The two halves of a testbed pool.

    Attributes:
        train: the half the audited model trains on (its members).
        heldout: the other half (non-members of the same classes).
    """

    train: ImageClassData
    heldout: ImageClassData


def split_testbed(pool: ImageClassData, seed: int = 0) -> MembershipTestbed:
    """Split ``pool`` into two halves, half of each class in each (rounded down for train).

    Args:
        pool: the images.
        seed: RNG seed of the split.

    Returns:
        The :class:`MembershipTestbed`.
    """
    classes = sorted(set(pool.labels.tolist()))
    counts = torch.bincount(pool.labels, minlength=pool.num_classes)
    if any(int(counts[c]) < 2 for c in classes):
        raise ValueError(
            f"every class needs at least 2 images to split, got counts {counts.tolist()}"
        )
    gen = torch.Generator().manual_seed(seed)
    train_idx = []
    for c in classes:
        idx = torch.nonzero(pool.labels == c).flatten()
        train_idx.append(idx[torch.randperm(len(idx), generator=gen)[: len(idx) // 2]])
    mask = torch.zeros(len(pool), dtype=torch.bool)
    mask[torch.cat(train_idx)] = True
    return MembershipTestbed(
        train=pool.subset(torch.nonzero(mask).flatten()),
        heldout=pool.subset(torch.nonzero(~mask).flatten()),
    )


def fashion_mnist_testbed(
    per_class: int = 100, seed: int = 0, root: str | os.PathLike | None = None
) -> MembershipTestbed:
    """``per_class`` Fashion-MNIST training images of each class, split in two halves.

    Args:
        per_class: images per class in the pool (half of them in each half).
        seed: seed of the draw and the split.
        root: Fashion-MNIST folder (default: :func:`find_fashion_mnist`'s search).

    Returns:
        The :class:`MembershipTestbed`.
    """
    full = load_fashion_mnist("train", root)
    pool = full.subset(
        subsample_per_class(full.labels, range(full.num_classes), shots=per_class, seed=seed)
    )
    return split_testbed(pool, seed=seed + 1)


def _folder_name(name: str) -> str:
    """A class name usable as a folder name ("T-shirt/top" -> "T-shirt_top")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_testbed(testbed: MembershipTestbed, root: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``root/train/<class>/<n>.png`` and ``root/test/<class>/<n>.png``.

    Class folder names are the class names with characters other than letters, digits,
    ``_``, ``.`` and ``-`` replaced by ``_``; ``load_image_folder`` orders classes by
    folder name, so ids may differ from the source's, names do not.

    Returns:
        ``(train folder, test folder)``.

    Raises:
        FileExistsError: ``root`` already holds a testbed (nothing is overwritten).
    """
    from PIL import Image

    root = Path(root)
    folders = root / "train", root / "test"
    for folder in folders:
        if folder.exists():
            raise FileExistsError(f"{folder} exists; choose another --output or remove it")
    for folder, part in zip(folders, (testbed.train, testbed.heldout)):
        for n, (image, label) in enumerate(zip(part.images, part.labels.tolist())):
            target = folder / _folder_name(part.classes[label])
            target.mkdir(parents=True, exist_ok=True)
            array = image.numpy()
            mode = "L" if array.shape[0] == 1 else "RGB"
            pixels = array[0] if mode == "L" else np.transpose(array, (1, 2, 0))
            Image.fromarray(pixels, mode=mode).save(target / f"{n:05d}.png")
    logger.info(
        "wrote %d training and %d held-out images under %s",
        len(testbed.train),
        len(testbed.heldout),
        root,
    )
    return folders


def train_testbed_base(train: ImageClassData, cfg) -> tuple[nn.Module, dict[str, Any]]:
    """The testbed's base model: ``CLS.MODEL`` trained on all of ``train`` with
    ``CLS.PRETRAIN`` (seed ``SEED``), last epoch kept.

    Args:
        train: the training half.
        cfg: a classification config.

    Returns:
        ``(model in eval mode, metadata with the recipe, as tools/pretrain_classifier.py
        records it)``.

    Raises:
        ValueError: ``CLS.PRETRAIN.INIT_WEIGHTS`` is set (a testbed base trains from
            scratch, as its references will).
    """
    from ..classification.model import build_classifier
    from ..classification.pretrain import PretrainRecipe, train_classifier

    if cfg.CLS.PRETRAIN.INIT_WEIGHTS:
        raise ValueError("a testbed base trains from scratch; unset CLS.PRETRAIN.INIT_WEIGHTS")
    if cfg.CLS.MODEL.NUM_CLASSES != train.num_classes:
        raise ValueError(
            f"CLS.MODEL.NUM_CLASSES is {cfg.CLS.MODEL.NUM_CLASSES}, the testbed has "
            f"{train.num_classes} classes"
        )
    torch.manual_seed(cfg.SEED)
    model = build_classifier(cfg)
    result = train_classifier(model, train, None, PretrainRecipe.from_config(cfg))
    metadata = {
        "note": "membership testbed base (det_forget.audit.testbed): last epoch kept",
        "classes": list(train.classes),
        "train_images": len(train),
        "train_seconds": round(result["seconds"], 1),
        "history": result["history"],
        "recipe": json.loads(json.dumps(cfg.CLS.PRETRAIN)),
        "model_config": json.loads(json.dumps(cfg.CLS.MODEL)),
    }
    return model.eval(), metadata


def main(argv: list[str] | None = None) -> int:
    """``python -m det_forget.audit.testbed``: write a Fashion-MNIST testbed and its base."""
    from ..classification.cli import setup_cfg
    from ..classification.data import load_image_folder
    from ..classification.model import save_classifier

    parser = argparse.ArgumentParser(description="Write a Fashion-MNIST membership testbed.")
    parser.add_argument("--output", required=True, help="folder for data/ and base.safetensors")
    parser.add_argument("--per-class", type=int, default=100, help="pool images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="CLS.MODEL.* / CLS.PRETRAIN.* overrides"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    output = Path(args.output)
    train_dir, test_dir = write_testbed(
        fashion_mnist_testbed(args.per_class, args.seed, args.data_root), output / "data"
    )
    cfg = setup_cfg("", args.opts)
    train = load_image_folder(
        train_dir, image_size=cfg.CLS.MODEL.IMG_SIZE, channels=cfg.CLS.MODEL.IN_CHANS
    )
    model, metadata = train_testbed_base(train, cfg)
    weights = save_classifier(model, output / "base.safetensors", metadata)
    logger.info(
        "wrote %s; run the tools with CLS.DATASET image_folder CLS.DATA_ROOT %s "
        "CLS.TEST_ROOT %s CLS.WEIGHTS %s",
        weights,
        train_dir,
        test_dir,
        weights,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

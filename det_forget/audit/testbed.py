"""Membership testbed: a model trained on few images, so that membership is measurable.

A model trained on 55,000 Fashion-MNIST images barely overfits (train loss 0.24, test
accuracy 89%): no attack can tell its training images from unseen ones, so an audit on it
cannot show that forgetting removed anything. The testbed makes the signal measurable: a
pool of ``per_class`` images per class is split into two halves, stratified by class; a
model trained (long, without augmentation) on one half memorises it. The other half is
its held-out set, and reference models train on random halves of the whole pool
(:mod:`.reference`).

:func:`write_testbed` writes both halves as image folders (``train/<class>/*.png`` and
``test/<class>/*.png``), so the usual tools run on them with ``CLS.DATASET image_folder``::

    python -m det_forget.audit.testbed --output output/testbed/data --per-class 100

(see ``docs/audit.md`` for the full pipeline: base, GS-LoRA, retrain, audit).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..classification.data import ImageClassData, load_fashion_mnist, subsample_per_class

__all__ = ["MembershipTestbed", "split_testbed", "fashion_mnist_testbed", "write_testbed"]

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


def main(argv: list[str] | None = None) -> int:
    """``python -m det_forget.audit.testbed``: write a Fashion-MNIST testbed's folders."""
    parser = argparse.ArgumentParser(description="Write a Fashion-MNIST membership testbed.")
    parser.add_argument("--output", required=True, help="folder for train/ and test/")
    parser.add_argument("--per-class", type=int, default=100, help="pool images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    train, test = write_testbed(
        fashion_mnist_testbed(args.per_class, args.seed, args.data_root), args.output
    )
    logger.info("CLS.DATASET image_folder CLS.DATA_ROOT %s CLS.TEST_ROOT %s", train, test)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

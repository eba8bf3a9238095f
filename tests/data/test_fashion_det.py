"""Tests of the fashion_det dataset (Fashion-MNIST items on photographs): determinism, split
separation, tight boxes, caching and detectron2 registration."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from det_forget.data import (
    FASHION_DET_CATEGORIES,
    FASHION_DET_CLASS_NAMES,
    ensure_fashion_det_dataset,
    generate_fashion_det_dataset,
    register_fashion_det_dataset,
)
from det_forget.data.fashion_det import _fmnist, _render_image, item_mask

SMALL = {"num_train": 30, "num_val": 15, "image_size": 96, "min_size": 16, "max_size": 48}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return generate_fashion_det_dataset(tmp_path_factory.mktemp("fashion"), **SMALL)


def test_classes_are_fashion_mnist() -> None:
    from det_forget.classification.data import FASHION_MNIST_CLASSES

    assert FASHION_DET_CLASS_NAMES == list(FASHION_MNIST_CLASSES)
    assert [c["id"] for c in FASHION_DET_CATEGORIES] == list(range(1, 11))


def test_generation_is_deterministic(tmp_path: Path) -> None:
    args = {"num_train": 8, "num_val": 4, "image_size": 64, "min_size": 12, "max_size": 32}
    generate_fashion_det_dataset(tmp_path / "a", **args)
    generate_fashion_det_dataset(tmp_path / "b", **args)
    generate_fashion_det_dataset(tmp_path / "c", **args, seed=1)
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) == 8 + 4 + 2 + 1
    assert a["annotations/train.json"] != c["annotations/train.json"]
    assert a["train/000000.png"] != c["train/000000.png"]


def test_no_item_is_shared_between_splits(small_dataset: dict[str, str]) -> None:
    train = json.loads(Path(small_dataset["train_json"]).read_text())
    val = json.loads(Path(small_dataset["val_json"]).read_text())
    assert {a["fmnist_split"] for a in train["annotations"]} == {"train"}
    assert {a["fmnist_split"] for a in val["annotations"]} == {"test"}
    for coco in (train, val):
        indices = [a["fmnist_index"] for a in coco["annotations"]]
        assert len(indices) == len(set(indices)), "an item is pasted twice in one split"
    # The pasted items really are those items: the label of the recorded source item is the
    # annotation's class.
    for coco, split in ((train, "train"), (val, "test")):
        _, labels = _fmnist(split, None)
        for a in coco["annotations"]:
            assert labels[a["fmnist_index"]] + 1 == a["category_id"]
    # And no pixel-identical item crosses the split (Fashion-MNIST has no exact duplicates
    # between the two among these).
    images_tr, _ = _fmnist("train", None)
    images_te, _ = _fmnist("test", None)
    tr = {images_tr[a["fmnist_index"]].tobytes() for a in train["annotations"]}
    te = {images_te[a["fmnist_index"]].tobytes() for a in val["annotations"]}
    assert not tr & te


def test_images_have_several_items_and_classes_are_balanced(
    small_dataset: dict[str, str],
) -> None:
    coco = json.loads(Path(small_dataset["train_json"]).read_text())
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert max(per_image.values()) >= 3
    assert sum(per_image.values()) / len(coco["images"]) >= 2.0
    per_class = Counter(a["category_id"] for a in coco["annotations"])
    assert set(per_class) == set(range(1, 11))
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
        assert 0 < a["area"] <= w * h


def test_boxes_are_tight_on_the_pasted_mask() -> None:
    images, _ = _fmnist("test", None)
    rng = np.random.default_rng(5)
    items = [images[i] for i in (0, 1, 2, 3)]
    pixels, objects, masks = _render_image(rng, items, 128, 24, 64, occluder_prob=0.0)
    assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
    for obj, mask in zip(objects, masks):
        x, y, w, h = (int(v) for v in obj["bbox"])
        inside = mask[y : y + h, x : x + w]
        # Every mask pixel is inside the box and every edge of the box touches the mask.
        assert inside.sum() == mask.sum() == obj["area"]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    # The last item drawn is not occluded: its visible pixels differ from a render without it.
    rng = np.random.default_rng(5)
    *_, masks_again = _render_image(rng, items, 128, 24, 64, occluder_prob=0.0)
    assert all((m == n).all() for m, n in zip(masks, masks_again))
    assert objects[-1]["visible"] == 1.0 and objects[-1]["annotated"]


def test_item_mask_fills_holes() -> None:
    item = np.zeros((28, 28), dtype=np.uint8)
    item[4:24, 4:24] = 200
    item[10:14, 10:14] = 0  # a dark pattern inside the garment is part of it
    mask = item_mask(item)
    assert mask[4:24, 4:24].all() and mask.sum() == 400


def test_images_are_photographs_not_flat(small_dataset: dict[str, str]) -> None:
    img = np.asarray(Image.open(Path(small_dataset["val_images"]) / "000000.png"))
    assert img.shape == (96, 96, 3)
    assert img.std() > 10


def test_ensure_caches_and_is_atomic(tmp_path: Path) -> None:
    root = tmp_path / "fd"
    args = {"num_train": 3, "num_val": 2, "image_size": 48, "min_size": 8, "max_size": 24}
    paths = ensure_fashion_det_dataset(root, **args)
    stamp = (root / "READY").stat().st_mtime_ns
    assert ensure_fashion_det_dataset(root, **args) == paths
    assert (root / "READY").stat().st_mtime_ns == stamp
    ensure_fashion_det_dataset(root, **{**args, "seed": 3})
    assert (root / "READY").stat().st_mtime_ns != stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fd.tmp")]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        ensure_fashion_det_dataset(user, **args)
    assert (user / "notes.txt").read_text() == "keep"
    with pytest.raises(TypeError):
        ensure_fashion_det_dataset(root, num_trian=3)


def test_registration_is_lazy(tmp_path: Path) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = (f"fd_train_{uuid.uuid4().hex[:6]}", f"fd_val_{uuid.uuid4().hex[:6]}")
    root = tmp_path / "reg"
    register_fashion_det_dataset(
        root, names, num_train=3, num_val=2, image_size=48, min_size=8, max_size=24
    )
    assert not root.exists()
    assert MetadataCatalog.get(names[1]).thing_classes == FASHION_DET_CLASS_NAMES
    dicts = DatasetCatalog.get(names[1])
    assert len(dicts) == 2 and (root / "READY").exists()
    assert all(0 <= a["category_id"] < 10 for d in dicts for a in d["annotations"])


def test_default_datasets_are_registered() -> None:
    from detectron2.data import DatasetCatalog

    import det_forget  # noqa: F401

    assert {"fashion_det_train", "fashion_det_val"} <= set(DatasetCatalog.list())

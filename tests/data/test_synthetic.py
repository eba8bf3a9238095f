"""Tests of the synthetic shapes dataset (generation, caching, detectron2 registration)."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from det_forget.data import (
    SHAPES_CATEGORIES,
    SHAPES_CLASS_NAMES,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    register_shapes_dataset,
)

SMALL = {"num_train": 40, "num_val": 20, "image_size": 96}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), **SMALL)


def _overlap(a: list[float], b: list[float]) -> bool:
    overlap_x = min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])
    overlap_y = min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])
    return overlap_x and overlap_y


def test_categories_are_distinct() -> None:
    assert [c["id"] for c in SHAPES_CATEGORIES] == list(range(1, 11))
    assert len(set(SHAPES_CLASS_NAMES)) == 10


def test_generation_is_deterministic(tmp_path: Path) -> None:
    generate_shapes_dataset(tmp_path / "a", num_train=12, num_val=6, image_size=64)
    generate_shapes_dataset(tmp_path / "b", num_train=12, num_val=6, image_size=64)
    generate_shapes_dataset(tmp_path / "c", num_train=12, num_val=6, image_size=64, seed=1)
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) == 12 + 6 + 2 + 1
    assert a["annotations/train.json"] != c["annotations/train.json"]


def test_coco_json_is_valid(small_dataset: dict[str, str]) -> None:
    from pycocotools.coco import COCO

    for split, num in (("train", SMALL["num_train"]), ("val", SMALL["num_val"])):
        coco = COCO(small_dataset[f"{split}_json"])
        assert len(coco.getImgIds()) == num
        assert sorted(coco.getCatIds()) == list(range(1, 11))
        for img in coco.loadImgs(coco.getImgIds()):
            assert (Path(small_dataset[f"{split}_images"]) / img["file_name"]).is_file()
            assert img["width"] == img["height"] == SMALL["image_size"]
            # The top-most object can never be occluded, so no image is empty.
            assert coco.getAnnIds(imgIds=[img["id"]])
        for ann in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = ann["bbox"]
            assert all(isinstance(v, float) for v in ann["bbox"])
            assert w >= 2 and h >= 2
            assert x >= 0 and y >= 0
            assert x + w <= SMALL["image_size"] and y + h <= SMALL["image_size"]
            assert 0 < ann["area"] <= w * h
            assert ann["iscrowd"] == 0


def test_classes_balanced_occlusion_and_sizes(small_dataset: dict[str, str]) -> None:
    size = SMALL["image_size"]
    for split in ("train", "val"):
        data = json.loads(Path(small_dataset[f"{split}_json"]).read_text())
        images_per_cat: dict[int, set[int]] = {c["id"]: set() for c in SHAPES_CATEGORIES}
        by_image: dict[int, list[list[float]]] = {}
        for ann in data["annotations"]:
            images_per_cat[ann["category_id"]].add(ann["image_id"])
            by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
        assert min(len(v) for v in images_per_cat.values()) >= 5, images_per_cat
        counts = Counter(ann["category_id"] for ann in data["annotations"])
        assert max(counts.values()) <= 2 * min(counts.values())

        overlapping = sum(
            any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
            for boxes in by_image.values()
        )
        assert overlapping >= 2

        sides = [max(a["bbox"][2], a["bbox"][3]) / size for a in data["annotations"]]
        assert min(sides) < 0.2 and max(sides) > 0.3


def test_ensure_caches_and_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    paths = ensure_shapes_dataset(root, num_train=12, num_val=6, image_size=64)
    marker = root / "READY"
    first = marker.stat().st_mtime_ns
    train_json = Path(paths["train_json"]).read_bytes()

    assert ensure_shapes_dataset(root, num_train=12, num_val=6, image_size=64) == paths
    assert marker.stat().st_mtime_ns == first

    ensure_shapes_dataset(root, num_train=12, num_val=6, image_size=64, seed=3)
    assert marker.stat().st_mtime_ns != first
    assert Path(paths["train_json"]).read_bytes() != train_json
    # No temporary or trash directories are left next to the dataset.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cache"]


def test_ensure_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        ensure_shapes_dataset(tmp_path, num_train=2, num_val=2, image_size=32)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_ensure_rejects_unknown_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        ensure_shapes_dataset(tmp_path, num_trian=3)


def test_register_is_lazy_and_loads_detectron2_dicts(tmp_path: Path) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    suffix = uuid.uuid4().hex[:8]
    names = (f"shapes_test_train_{suffix}", f"shapes_test_val_{suffix}")
    root = tmp_path / "lazy"
    try:
        mapping = register_shapes_dataset(root, names, num_train=12, num_val=6, image_size=64)
        assert mapping == {names[0]: "train", names[1]: "val"}
        assert not root.exists()

        meta = MetadataCatalog.get(names[1])
        assert meta.thing_classes == SHAPES_CLASS_NAMES
        assert meta.evaluator_type == "coco"
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(10)}

        dicts = DatasetCatalog.get(names[1])
        assert (root / "READY").is_file()
        assert Path(meta.json_file).is_file()
        assert len(dicts) == 6
        record = dicts[0]
        assert Path(record["file_name"]).is_file()
        assert record["height"] == record["width"] == 64
        assert record["annotations"]
        for obj in record["annotations"]:
            assert 0 <= obj["category_id"] < 10
            assert len(obj["bbox"]) == 4
            assert int(obj["bbox_mode"]) == 1  # BoxMode.XYWH_ABS
        # Re-registering keeps the existing entry instead of raising.
        register_shapes_dataset(root, names, num_train=12, num_val=6, image_size=64)
        assert len(DatasetCatalog.get(names[0])) == 12
    finally:
        for name in names:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

"""Tests of the forget/retain views, per-class subsampling and the split builder."""

from __future__ import annotations

import copy
import random
import uuid
from collections import Counter

import pytest

from det_forget.data import (
    SHAPES_CLASS_NAMES,
    ForgetRetainSplit,
    build_forget_retain_split,
    class_statistics,
    forget_view,
    generate_shapes_dataset,
    register_view,
    resolve_classes,
    retain_view,
    subsample_per_class,
)

CLASSES = ["cat", "dog", "bird", "fish"]


def _ann(cid: int, crowd: int = 0) -> dict:
    return {"category_id": cid, "bbox": [0.0, 0.0, 4.0, 4.0], "bbox_mode": 1, "iscrowd": crowd}


def _image(image_id: int, *cids: int, crowd: tuple[int, ...] = ()) -> dict:
    anns = [_ann(c) for c in cids] + [_ann(c, crowd=1) for c in crowd]
    return {
        "file_name": f"img{image_id:03d}.png",
        "image_id": image_id,
        "height": 8,
        "width": 8,
        "annotations": anns,
    }


@pytest.fixture
def dicts() -> list[dict]:
    return [
        _image(1, 0, 1),  # cat, dog
        _image(2, 1, 1),  # dog only
        _image(3, 2),  # bird
        _image(4, 0, 2, 3),  # cat, bird, fish
        _image(5, 3, crowd=(1,)),  # fish + crowd dog
        _image(6),  # no objects
    ]


def _cats(d: dict) -> list[int]:
    return sorted(a["category_id"] for a in d["annotations"])


# ------------------------------------------------------------------------- resolve_classes


def test_resolve_names_ids_and_digit_strings():
    assert resolve_classes(["dog", 2, "3"], CLASSES) == [1, 2, 3]
    assert resolve_classes("dog, bird", CLASSES) == [1, 2]
    assert resolve_classes(0, CLASSES) == [0]


def test_resolve_name_wins_over_digit_string():
    assert resolve_classes(["1"], ["0", "1", "x"]) == [1]
    assert resolve_classes(["2"], ["2", "x", "y"]) == [0]


def test_resolve_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError) as err:
        resolve_classes(["dgo"], CLASSES, "pets_val")
    msg = str(err.value)
    assert "'dgo'" in msg and "did you mean ['dog']" in msg and "pets_val" in msg
    assert "'fish'" in msg  # lists the valid names


@pytest.mark.parametrize("spec", [[], "", " , "])
def test_resolve_empty(spec):
    with pytest.raises(ValueError, match="empty forget set"):
        resolve_classes(spec, CLASSES)
    assert resolve_classes(spec, CLASSES, allow_empty=True) == []


@pytest.mark.parametrize("spec", [["dog", "dog"], ["dog", 1], [1, "1"]])
def test_resolve_duplicates(spec):
    with pytest.raises(ValueError, match="given twice"):
        resolve_classes(spec, CLASSES)


@pytest.mark.parametrize("spec", [[4], [-1], [True]])
def test_resolve_bad_ids(spec):
    with pytest.raises(ValueError):
        resolve_classes(spec, CLASSES)


# ------------------------------------------------------------------------- views


def test_forget_view(dicts):
    original = copy.deepcopy(dicts)
    view = forget_view(dicts, [1])
    # Image 5 has only a crowd dog: it does not count as containing a dog.
    assert [d["image_id"] for d in view] == [1, 2]
    assert [_cats(d) for d in view] == [[1], [1, 1]]
    assert dicts == original
    view[0]["annotations"][0]["bbox"][0] = 99.0
    view[0]["height"] = 1
    assert dicts == original


def test_retain_view_removes_forget_and_drop_classes(dicts):
    original = copy.deepcopy(dicts)
    view = retain_view(dicts, [1], drop_ids=[3])
    # 2: only dogs; 5: fish (dropped) + crowd dog; 6: empty -> all left out.
    assert [d["image_id"] for d in view] == [1, 3, 4]
    assert [_cats(d) for d in view] == [[0], [2], [0, 2]]
    assert dicts == original


def test_retain_view_exclude_ids(dicts):
    view = retain_view(dicts, [1], exclude_ids=[3])
    assert [d["image_id"] for d in view] == [1, 3]


def test_retain_view_keeps_crowd_of_retained_classes():
    d = [_image(1, 0, crowd=(0, 1))]
    assert _cats(retain_view(d, [1])[0]) == [0, 0]


# ------------------------------------------------------------------------- subsampling


def _many(n: int = 60) -> list[dict]:
    rng = random.Random(0)
    return [_image(i, *rng.sample(range(4), rng.randint(1, 2))) for i in range(1, n + 1)]


def test_subsample_shots_covers_every_class_and_is_order_independent():
    data = _many()
    picked = subsample_per_class(data, [0, 1, 2, 3], shots=3, seed=5)
    ids = [d["image_id"] for d in picked]
    assert ids == sorted(ids)  # input order kept
    per_class = class_statistics(picked)["per_class"]
    assert all(per_class[str(c)]["images"] >= 3 for c in range(4))
    assert len(picked) <= 12
    shuffled = list(data)
    random.Random(1).shuffle(shuffled)
    again = subsample_per_class(shuffled, [0, 1, 2, 3], shots=3, seed=5)
    assert sorted(d["image_id"] for d in again) == ids
    other = subsample_per_class(data, [0, 1, 2, 3], shots=3, seed=6)
    assert [d["image_id"] for d in other] != ids


def test_subsample_one_class_does_not_depend_on_the_others():
    data = _many()
    alone = {d["image_id"] for d in subsample_per_class(data, [2], shots=4, seed=0)}
    together = {d["image_id"] for d in subsample_per_class(data, [0, 2], shots=4, seed=0)}
    assert alone <= together


def test_subsample_ratio():
    data = _many()
    n_per_class = Counter(c for d in data for c in set(_cats(d)))
    picked = subsample_per_class(data, [0], ratio=0.25, seed=0)
    assert len(picked) == round(0.25 * n_per_class[0])
    assert all(0 in _cats(d) for d in picked)
    assert len(subsample_per_class(data, [0], ratio=1e-6)) == 1
    assert len(subsample_per_class(data, [0, 1, 2, 3], ratio=1.0)) == len(data)


def test_subsample_does_not_mutate(dicts):
    original = copy.deepcopy(dicts)
    picked = subsample_per_class(dicts, [0, 1, 2, 3], shots=1)
    picked[0]["annotations"].clear()
    assert dicts == original


@pytest.mark.parametrize(
    "kwargs", [{"ratio": 0.0}, {"ratio": 1.5}, {"shots": -1}, {"ratio": 0.5, "shots": 2}]
)
def test_subsample_bad_arguments(dicts, kwargs):
    with pytest.raises(ValueError):
        subsample_per_class(dicts, [0], **kwargs)


# ------------------------------------------------------------------------- detectron2 catalog


@pytest.fixture
def registered(dicts):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = f"test_fr_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASSES), json_file="/nonexistent.json", evaluator_type="coco"
    )
    created = [name]
    yield name, created
    for n in created:
        DatasetCatalog.pop(n, None)
        MetadataCatalog.pop(n, None)


def test_build_split_and_stats(registered):
    name, _ = registered
    split = build_forget_retain_split(name, ["dog"], missing_ids=["fish"])
    assert isinstance(split, ForgetRetainSplit)
    assert [d["image_id"] for d in split.forget_dicts] == [1, 2]
    # fish (missing) objects become background; image 5 keeps nothing and is dropped.
    assert [d["image_id"] for d in split.retain_dicts] == [1, 3, 4]
    assert split.retain_ids == (0, 2)
    stats = split.stats()
    assert stats["classes"] == {
        "forget": ["dog"],
        "retain": ["cat", "bird"],
        "old": [],
        "missing": ["fish"],
    }
    assert stats["forget"]["per_class"] == {"dog": {"id": 1, "images": 2, "objects": 3}}
    assert stats["retain"]["objects"] == 4
    assert stats["sampling"] == {
        "ratio": 1.0,
        "shots": None,
        "seed": 0,
        "missing_policy": "background",
    }


def test_build_split_missing_policy_drop_images(registered):
    name, _ = registered
    split = build_forget_retain_split(name, [1], missing_ids=[3], missing_policy="drop_images")
    assert [d["image_id"] for d in split.retain_dicts] == [1, 3]


def test_build_split_errors(registered):
    name, created = registered
    with pytest.raises(ValueError, match="empty forget set"):
        build_forget_retain_split(name, [])
    with pytest.raises(ValueError, match="both forget and old"):
        build_forget_retain_split(name, ["dog"], old_ids=["dog"])
    with pytest.raises(ValueError, match="no class left to retain"):
        build_forget_retain_split(name, [0, 1], old_ids=[2], missing_ids=[3])
    from detectron2.data import DatasetCatalog, MetadataCatalog

    no_fish = f"{name}_nofish"
    created.append(no_fish)
    DatasetCatalog.register(no_fish, lambda: [_image(1, 0)])
    MetadataCatalog.get(no_fish).set(thing_classes=list(CLASSES))
    with pytest.raises(ValueError, match=r"forget set has no images for classes \['fish'\]"):
        build_forget_retain_split(no_fish, ["fish"])
    only_fish = f"{name}_onlyfish"
    created.append(only_fish)
    DatasetCatalog.register(only_fish, lambda: [_image(1, 3)])
    MetadataCatalog.get(only_fish).set(thing_classes=list(CLASSES))
    with pytest.raises(ValueError, match="retain set has no images"):
        build_forget_retain_split(only_fish, ["fish"])


def test_register_view_copies_metadata_but_not_json_file(registered):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name, created = registered
    split = build_forget_retain_split(name, ["dog"])
    forget_name, retain_name = split.register(f"{name}_task0")
    created += [forget_name, retain_name]
    assert DatasetCatalog.get(forget_name) == split.forget_dicts
    meta = MetadataCatalog.get(retain_name)
    assert meta.thing_classes == CLASSES and meta.evaluator_type == "coco"
    assert meta.get("json_file") is None and meta.derived_from == name
    with pytest.raises(ValueError, match="already registered"):
        register_view(forget_name, list, name)


# ------------------------------------------------------------------------- shapes dataset


def test_views_on_generated_shapes(tmp_path):
    from detectron2.data.datasets import load_coco_json

    paths = generate_shapes_dataset(tmp_path, num_train=20, num_val=10, image_size=64)
    name = f"test_fr_shapes_{uuid.uuid4().hex[:8]}"
    try:
        data = load_coco_json(paths["train_json"], paths["train_images"], name)
    finally:
        from detectron2.data import MetadataCatalog

        MetadataCatalog.pop(name, None)
    original = copy.deepcopy(data)
    forget = resolve_classes(["red_circle", "cyan_ring"], SHAPES_CLASS_NAMES)
    fv = forget_view(data, forget)
    rv = retain_view(data, forget)
    assert fv and rv and data == original
    totals = Counter(a["category_id"] for d in data for a in d["annotations"])
    f_counts = Counter(a["category_id"] for d in fv for a in d["annotations"])
    r_counts = Counter(a["category_id"] for d in rv for a in d["annotations"])
    assert f_counts == {c: n for c, n in totals.items() if c in forget}
    assert r_counts == {c: n for c, n in totals.items() if c not in forget}
    assert len(fv) == sum(
        1 for d in data if {a["category_id"] for a in d["annotations"]} & set(forget)
    )
    few = subsample_per_class(rv, sorted(set(range(10)) - set(forget)), shots=1, seed=0)
    per_class = class_statistics(few, SHAPES_CLASS_NAMES)["per_class"]
    assert set(per_class) >= {SHAPES_CLASS_NAMES[c] for c in range(10) if c not in forget}
    assert all(d["file_name"].endswith(".png") for d in few)

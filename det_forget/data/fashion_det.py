"""Deterministic COCO-format detection dataset of Fashion-MNIST items on real photographs.

The second embedded dataset of det_forget. Where the shapes set gives each class its own colour
*and* shape, this one has natural look-alikes: the 10 Fashion-MNIST classes (T-shirt/top,
Shirt, Pullover, Coat; Sandal, Sneaker, Ankle boot; ...) as real product photographs. Forgetting
"Shirt" while keeping "T-shirt/top", "Pullover" and "Coat" is a request a detector can fail in
the way users fear: forgotten objects come back labelled as a similar kept class.

Each image is a random crop (flipped, brightness-jittered) of one of scikit-image's sample
photographs, with several Fashion-MNIST items pasted on it: each scaled to 24-96 px (for the
default 192 px images), brightness/contrast-jittered, optionally mirrored, and pasted through a
mask taken from its own pixels (non-black, holes filled). Later items and, now and then, a
patch of another photograph occlude earlier ones; an item hidden for more than 60% of its mask
gets no annotation. Boxes are the tight box of the whole pasted mask. Train images use only
Fashion-MNIST *training* items, val images only *test* items, and no item appears twice in a
split, so no object is in both splits. Every annotation records its source item
(``fmnist_split``, ``fmnist_index``).

Generated on first use (seconds to a minute), cached, atomically, like
:mod:`det_forget.data.synthetic`; byte-identical for identical arguments. Layout under
``root``: ``train/*.png``, ``val/*.png``, ``annotations/{train,val}.json``, ``READY``.

Needs the Fashion-MNIST IDX files (Debian ``dataset-fashion-mnist``, see
:func:`det_forget.classification.data.find_fashion_mnist`) and scikit-image (for its sample
photographs only; read as files, scikit-image code is not used).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance
from scipy import ndimage

from ..errors import UserError
from .synthetic import _is_writable, _lock

__all__ = [
    "FASHION_DET_BACKGROUNDS",
    "FASHION_DET_CATEGORIES",
    "FASHION_DET_CLASS_NAMES",
    "FASHION_DET_DEFAULT_FORGET",
    "FASHION_DET_RETRAIN_NAME",
    "FASHION_DET_SPLITS",
    "default_fashion_det_root",
    "ensure_fashion_det_dataset",
    "generate_fashion_det_dataset",
    "register_fashion_det_dataset",
]

logger = logging.getLogger(__name__)

# Bump whenever the rendering changes the output, so older READY markers stop matching.
_FORMAT_VERSION = 1

FASHION_DET_CLASS_NAMES: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
"""Class names in contiguous-id order: Fashion-MNIST's label order."""

FASHION_DET_CATEGORIES: list[dict[str, Any]] = [
    {"id": i + 1, "name": name} for i, name in enumerate(FASHION_DET_CLASS_NAMES)
]
"""COCO ``categories``; ids are 1-based (Fashion-MNIST label + 1)."""

FASHION_DET_SPLITS: dict[str, str] = {"fashion_det_train": "train", "fashion_det_val": "val"}
"""Default detectron2 dataset name -> split."""

FASHION_DET_DEFAULT_FORGET: tuple[str, ...] = ("Shirt", "Sneaker")
"""The look-alike pair configs/fashion_det_forget.yaml forgets (Shirt vs T-shirt/top, Pullover,
Coat; Sneaker vs Sandal, Ankle boot)."""

FASHION_DET_RETRAIN_NAME = "fashion_det_train_no_shirt_sneaker"
"""The train split with the :data:`FASHION_DET_DEFAULT_FORGET` annotations removed (their
objects stay in the images, as background): the data of the retrained reference."""

FASHION_DET_BACKGROUNDS: tuple[str, ...] = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "rocket.jpg",
)
"""scikit-image sample photographs used as backgrounds (files in ``skimage/data``)."""

_SPLITS: tuple[str, ...] = ("train", "val")
_FMNIST_SPLIT = {"train": "train", "val": "test"}
_MARKER = "READY"
_MAX_OCCLUDED_FRACTION = 0.6
# A pixel of a 28x28 item belongs to it when brighter than this (items sit on pure black).
_ITEM_THRESHOLD = 12


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _skimage_data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the fashion_det dataset needs scikit-image's sample photographs: "
            "pip install scikit-image"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def _backgrounds() -> tuple[np.ndarray, ...]:
    """The background photographs as uint8 RGB arrays, in :data:`FASHION_DET_BACKGROUNDS` order."""
    folder = _skimage_data_dir()
    out = []
    for name in FASHION_DET_BACKGROUNDS:
        path = folder / name
        if not path.is_file():
            raise UserError(f"scikit-image sample photograph missing: {path}")
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return tuple(out)


@lru_cache(maxsize=2)
def _fmnist(split: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train"/"test") as uint8 (N, 28, 28) images and int labels."""
    from ..classification.data import _SPLIT_PREFIX, _idx_file, find_fashion_mnist, read_idx

    try:
        folder = find_fashion_mnist(root)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc
    prefix = _SPLIT_PREFIX[split]
    images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))  # type: ignore[arg-type]
    labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))  # type: ignore[arg-type]
    return images, labels.astype(np.int64)


def item_mask(item: np.ndarray) -> np.ndarray:
    """Mask of a 28x28 Fashion-MNIST item from its own pixels: non-black, holes filled."""
    return ndimage.binary_fill_holes(item > _ITEM_THRESHOLD)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, image_size: int) -> Image.Image:
    photos = _backgrounds()
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.integers(max(16, int(0.3 * min(h, w))), min(h, w) + 1))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side])
    crop = crop.resize((image_size, image_size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.6, 1.3)))


def _render_image(
    rng: np.random.Generator,
    items: Sequence[np.ndarray],
    image_size: int,
    min_size: int,
    max_size: int,
    occluder_prob: float,
) -> tuple[np.ndarray, list[dict[str, Any]], list[np.ndarray]]:
    """Render one image from ``items`` (28x28 uint8) in drawing order.

    Returns the uint8 pixels, one entry per item (``bbox`` XYWH tight on the pasted mask,
    ``area``, ``visible`` fraction, ``annotated``) and the full (amodal) masks.
    """
    canvas = _background(rng, image_size)
    masks: list[np.ndarray] = []
    for item in items:
        size = int(rng.integers(min_size, max_size + 1))
        aspect = float(np.exp(rng.uniform(-0.12, 0.12)))
        w = max(4, min(image_size, round(size * aspect)))
        h = max(4, min(image_size, round(size / aspect)))
        pixels = Image.fromarray(item).resize((w, h), Image.Resampling.BILINEAR)
        mask = Image.fromarray(item_mask(item).astype(np.uint8) * 255).resize(
            (w, h), Image.Resampling.NEAREST
        )
        if rng.random() < 0.5:
            pixels = pixels.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(pixels).astype(np.float32)
        contrast = rng.uniform(0.7, 1.2)
        offset = rng.uniform(-30.0, 40.0)
        tint = rng.uniform(0.85, 1.15, size=3)
        rgb = np.clip((arr[..., None] * contrast + offset) * tint[None, None, :], 0, 255)
        x0 = int(rng.integers(0, image_size - w + 1))
        y0 = int(rng.integers(0, image_size - h + 1))
        canvas.paste(Image.fromarray(rgb.astype(np.uint8)), (x0, y0), mask)
        full = np.zeros((image_size, image_size), dtype=bool)
        full[y0 : y0 + h, x0 : x0 + w] = np.asarray(mask) > 0
        masks.append(full)

    covered_extra = np.zeros((image_size, image_size), dtype=bool)
    if occluder_prob > 0 and rng.random() < occluder_prob:
        # A patch of another photograph, e.g. something standing in front of the items.
        photo = _backgrounds()[int(rng.integers(len(_backgrounds())))]
        ow = int(rng.integers(image_size // 8, image_size // 3 + 1))
        oh = int(rng.integers(image_size // 8, image_size // 3 + 1))
        py = int(rng.integers(0, photo.shape[0] - oh + 1))
        px = int(rng.integers(0, photo.shape[1] - ow + 1))
        x0 = int(rng.integers(0, image_size - ow + 1))
        y0 = int(rng.integers(0, image_size - oh + 1))
        canvas.paste(Image.fromarray(photo[py : py + oh, px : px + ow]), (x0, y0))
        covered_extra[y0 : y0 + oh, x0 : x0 + ow] = True

    out = np.asarray(canvas).astype(np.int16)
    out += rng.integers(-3, 4, size=out.shape, dtype=np.int16)
    out = np.clip(out, 0, 255).astype(np.uint8)

    objects: list[dict[str, Any]] = []
    covered = covered_extra.copy()
    for mask in reversed(masks):
        area = int(mask.sum())
        visible = int(np.count_nonzero(mask & ~covered)) if area else 0
        covered |= mask
        entry: dict[str, Any] = {"area": float(area), "visible": visible / area if area else 0.0}
        if area:
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            x, y = int(cols[0]), int(rows[0])
            entry["bbox"] = [float(x), float(y), float(cols[-1] + 1 - x), float(rows[-1] + 1 - y)]
        entry["annotated"] = bool(area) and visible >= (1.0 - _MAX_OCCLUDED_FRACTION) * area
        objects.append(entry)
    objects.reverse()
    return out, objects, masks


def _plan_items(rng: np.random.Generator, labels: np.ndarray, total: int) -> list[int]:
    """``total`` distinct item indices, classes balanced (+-1), in shuffled order."""
    num_classes = len(FASHION_DET_CLASS_NAMES)
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    cats = np.tile(np.arange(num_classes), total // num_classes + 1)[:total]
    rng.shuffle(cats)
    need = np.bincount(cats, minlength=num_classes)
    picks = {}
    for c in range(num_classes):
        if need[c] > len(per_class[c]):
            raise ValueError(
                f"{total} items need {need[c]} of class {c} but only {len(per_class[c])} exist"
            )
        picks[c] = list(rng.choice(per_class[c], size=int(need[c]), replace=False))
    return [int(picks[int(c)].pop()) for c in cats]


def _generate_split(
    root: Path,
    split: str,
    num_images: int,
    *,
    image_size: int,
    seed: int,
    min_objects: int,
    max_objects: int,
    min_size: int,
    max_size: int,
    occluder_prob: float,
    fmnist_root: str | None,
) -> Path:
    split_code = _SPLITS.index(split)
    images_src, labels = _fmnist(_FMNIST_SPLIT[split], fmnist_root)
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    plan_rng = np.random.default_rng([seed, split_code, 0xFA5])
    counts = plan_rng.integers(min_objects, max_objects + 1, size=num_images)
    pool = _plan_items(plan_rng, labels, int(counts.sum()))

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    start = 0
    for index, count in enumerate(counts):
        idx = pool[start : start + int(count)]
        start += int(count)
        rng = np.random.default_rng([seed, split_code, 1, index])
        pixels, objects, _ = _render_image(
            rng, [images_src[i] for i in idx], image_size, min_size, max_size, occluder_prob
        )
        file_name = f"{index:06d}.png"
        Image.fromarray(pixels).save(image_dir / file_name, compress_level=1)
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
        )
        for item_index, obj in zip(idx, objects):
            if not obj["annotated"]:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(labels[item_index]) + 1,
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "iscrowd": 0,
                    "fmnist_split": _FMNIST_SPLIT[split],
                    "fmnist_index": int(item_index),
                }
            )
    coco = {
        "info": {
            "description": f"det_forget fashion_det: Fashion-MNIST items on photographs ({split})",
            "version": str(_FORMAT_VERSION),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in FASHION_DET_CATEGORIES],
    }
    json_path = root / "annotations" / f"{split}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
    return json_path


def _paths(root: Path) -> dict[str, str]:
    return {
        "root": str(root),
        "train_images": str(root / "train"),
        "val_images": str(root / "val"),
        "train_json": str(root / "annotations" / "train.json"),
        "val_json": str(root / "annotations" / "val.json"),
    }


def _normalised_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(generate_fashion_det_dataset).parameters
    unknown = sorted(set(kwargs) - (set(params) - {"root"}))
    if unknown:
        raise TypeError(f"unknown fashion_det dataset argument(s): {', '.join(unknown)}")
    args = {n: p.default for n, p in params.items() if n != "root"}
    args.update(kwargs)
    return args


def _args_hash(args: dict[str, Any]) -> str:
    payload = json.dumps({"format": _FORMAT_VERSION, **args}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def generate_fashion_det_dataset(
    root: str | os.PathLike[str],
    *,
    num_train: int = 2000,
    num_val: int = 300,
    image_size: int = 192,
    seed: int = 0,
    min_objects: int = 2,
    max_objects: int = 5,
    min_size: int = 24,
    max_size: int = 96,
    occluder_prob: float = 0.3,
    fmnist_root: str | None = None,
) -> dict[str, str]:
    """Write the dataset into ``root`` (unconditionally, non-atomically).

    Prefer :func:`ensure_fashion_det_dataset` (cached, atomic).

    Args:
        root: output directory.
        num_train: training images (items from Fashion-MNIST's training split).
        num_val: validation images (items from Fashion-MNIST's test split).
        image_size: side of the square images in pixels.
        seed: generation seed; train and val use different streams derived from it.
        min_objects: fewest items pasted per image.
        max_objects: most items pasted per image.
        min_size: smallest item side in pixels before a +-12% aspect jitter.
        max_size: largest item side in pixels.
        occluder_prob: probability that an image gets a photograph patch over its items.
        fmnist_root: folder with Fashion-MNIST's IDX files (default: see
            :func:`det_forget.classification.data.find_fashion_mnist`).

    Returns:
        Paths: ``root``, ``train_images``, ``val_images``, ``train_json``, ``val_json``.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    if image_size < 32:
        raise ValueError("image_size must be >= 32")
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    if not 4 <= min_size <= max_size <= image_size:
        raise ValueError("need 4 <= min_size <= max_size <= image_size")
    if not 0.0 <= occluder_prob <= 1.0:
        raise ValueError("occluder_prob must be in [0, 1]")
    args = _normalised_args(
        {
            "num_train": num_train,
            "num_val": num_val,
            "image_size": image_size,
            "seed": seed,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "min_size": min_size,
            "max_size": max_size,
            "occluder_prob": occluder_prob,
            "fmnist_root": fmnist_root,
        }
    )
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _MARKER
    marker.unlink(missing_ok=True)
    common = {k: v for k, v in args.items() if k not in ("num_train", "num_val")}
    for split, count in zip(_SPLITS, (num_train, num_val)):
        _generate_split(out, split, count, **common)
    marker.write_text(
        _args_hash(args) + "\n" + json.dumps(args, sort_keys=True) + "\n", encoding="utf-8"
    )
    return _paths(out)


# --------------------------------------------------------------------------------------------
# Caching / location
# --------------------------------------------------------------------------------------------


def default_fashion_det_root() -> Path:
    """``$DET_FORGET_DATASETS/fashion_det``, else ``<repo>/datasets/fashion_det``, else
    ``~/.cache/det_forget/fashion_det`` (when the repository is not writable)."""
    env = os.environ.get("DET_FORGET_DATASETS")
    if env:
        return Path(env).expanduser() / "fashion_det"
    repo_root = Path(__file__).resolve().parents[2] / "datasets" / "fashion_det"
    if _is_writable(repo_root):
        return repo_root
    return Path.home() / ".cache" / "det_forget" / "fashion_det"


def _marker_matches(root: Path, digest: str) -> bool:
    try:
        first = (root / _MARKER).read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError):
        return False
    return first == digest and all(Path(p).exists() for k, p in _paths(root).items() if k != "root")


def _looks_generated(root: Path) -> bool:
    expected = {"train", "val", "annotations", _MARKER}
    return all(child.name in expected for child in root.iterdir())


def ensure_fashion_det_dataset(
    root: str | os.PathLike[str] | None = None, **kwargs: Any
) -> dict[str, str]:
    """Generate the dataset unless ``root`` already holds it for the same arguments.

    Generation happens in a temporary sibling directory renamed into place when complete;
    concurrent callers are serialised by a lock file next to ``root``.

    Raises:
        FileExistsError: ``root`` exists, is stale and holds files this module did not write.
    """
    target = Path(root).expanduser() if root is not None else default_fashion_det_root()
    target = target.absolute()
    args = _normalised_args(kwargs)
    digest = _args_hash(args)
    if _marker_matches(target, digest):
        return _paths(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{target.name}.lock"):
        if _marker_matches(target, digest):
            return _paths(target)
        for stale in target.parent.glob(f".{target.name}.*-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists() and not _looks_generated(target):
            raise FileExistsError(
                f"{target} exists and does not look like a det_forget fashion_det dataset; "
                "refusing to overwrite it"
            )
        logger.info("generating fashion_det dataset in %s (%s)", target, args)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            generate_fashion_det_dataset(tmp, **args)
            if target.exists():
                trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
                target.rename(trash)
                tmp.rename(target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return _paths(target)


# --------------------------------------------------------------------------------------------
# detectron2 registration
# --------------------------------------------------------------------------------------------


def _make_loader(
    name: str, split: str, root: Path, gen_kwargs: dict[str, Any]
) -> Callable[[], list[dict[str, Any]]]:
    def load() -> list[dict[str, Any]]:
        from detectron2.data.datasets import load_coco_json

        paths = ensure_fashion_det_dataset(root, **gen_kwargs)
        return load_coco_json(paths[f"{split}_json"], paths[f"{split}_images"], name)

    return load


def register_fashion_det_dataset(
    root: str | os.PathLike[str] | None = None,
    names: Sequence[str] = ("fashion_det_train", "fashion_det_val"),
    *,
    generate_now: bool = False,
    **gen_kwargs: Any,
) -> dict[str, str]:
    """Register the train and val splits in detectron2's catalogs, lazily.

    Like :func:`det_forget.data.synthetic.register_shapes_dataset`: files are generated the
    first time ``DatasetCatalog.get(name)`` is called (or now with ``generate_now``); names
    already registered are left untouched. With the default names it also registers
    :data:`FASHION_DET_RETRAIN_NAME` (the train split without Shirt and Sneaker boxes).

    Returns:
        Mapping of dataset name -> split.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if len(names) != len(_SPLITS):
        raise ValueError(f"names must hold {len(_SPLITS)} names (train, val), got {names!r}")
    _normalised_args(gen_kwargs)
    target = Path(root).expanduser() if root is not None else default_fashion_det_root()
    target = target.absolute()
    paths = _paths(target)
    if generate_now:
        ensure_fashion_det_dataset(target, **gen_kwargs)
    registered = set(DatasetCatalog.list())
    mapping: dict[str, str] = {}
    for name, split in zip(names, _SPLITS):
        mapping[name] = split
        if name in registered:
            continue
        DatasetCatalog.register(name, _make_loader(name, split, target, dict(gen_kwargs)))
        MetadataCatalog.get(name).set(
            json_file=paths[f"{split}_json"],
            image_root=paths[f"{split}_images"],
            evaluator_type="coco",
            thing_classes=list(FASHION_DET_CLASS_NAMES),
            thing_dataset_id_to_contiguous_id={
                c["id"]: i for i, c in enumerate(FASHION_DET_CATEGORIES)
            },
        )
    if tuple(names) == ("fashion_det_train", "fashion_det_val") and (
        FASHION_DET_RETRAIN_NAME not in registered
    ):
        from .forget_retain import register_view, retain_view

        forget_ids = [FASHION_DET_CLASS_NAMES.index(c) for c in FASHION_DET_DEFAULT_FORGET]
        register_view(
            FASHION_DET_RETRAIN_NAME,
            lambda: retain_view(DatasetCatalog.get(names[0]), forget_ids),
            metadata_from=names[0],
        )
        mapping[FASHION_DET_RETRAIN_NAME] = "train"
    return mapping

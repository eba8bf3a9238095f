"""Deterministic synthetic COCO-format detection dataset of coloured shapes.

The dataset is the embedded default of det_forget: it needs no download, is generated in a few
seconds on one CPU core and is byte-identical for identical arguments, so trained models and
forgetting results can be reproduced anywhere. Each of the 10 classes has its own shape *and*
its own colour, which lets even tiny detectors learn every class quickly; forgetting one class
is then clearly measurable.

Layout written under ``root``::

    train/000000.png ...
    val/000000.png ...
    annotations/train.json, annotations/val.json   (COCO instances, bbox only)
    READY                                          (written last; holds a hash of the args)
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SHAPES_CATEGORIES",
    "SHAPES_CLASS_NAMES",
    "SHAPES_SPLITS",
    "default_shapes_root",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "register_shapes_dataset",
]

logger = logging.getLogger(__name__)

# Bump whenever the drawing code changes the output, so READY markers of older datasets stop
# matching and ensure_shapes_dataset regenerates them.
_FORMAT_VERSION = 1

# (name, RGB). Colours are kept far apart in RGB space (and from the grey backgrounds) so that
# colour alone almost separates the classes; shape alone does too.
_CLASS_SPECS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red_circle", (220, 30, 30)),
    ("green_square", (30, 190, 50)),
    ("blue_triangle", (40, 60, 235)),
    ("yellow_star", (245, 225, 20)),
    ("magenta_cross", (235, 40, 225)),
    ("cyan_ring", (20, 225, 235)),
    ("orange_diamond", (255, 140, 0)),
    ("purple_hexagon", (115, 20, 160)),
    ("white_bar", (250, 250, 250)),
    ("brown_arrow", (120, 65, 15)),
)

SHAPES_CATEGORIES: list[dict[str, Any]] = [
    {"id": i + 1, "name": name} for i, (name, _) in enumerate(_CLASS_SPECS)
]
"""COCO ``categories`` entries; ids are 1-based and contiguous."""

SHAPES_CLASS_NAMES: list[str] = [c["name"] for c in SHAPES_CATEGORIES]
"""Class names in contiguous-id order (what detectron2 calls ``thing_classes``)."""

SHAPES_SPLITS: dict[str, str] = {"shapes_train": "train", "shapes_val": "val"}
"""Default detectron2 dataset name -> split."""

_SPLITS: tuple[str, ...] = ("train", "val")
_MARKER = "READY"
# An object hidden by more than this fraction of its pixels is not annotated: a detector
# cannot be expected to find it and should not be penalised for missing it.
_MAX_OCCLUDED_FRACTION = 0.6


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _regular_polygon(
    cx: float, cy: float, rx: float, ry: float, n: int, phase: float
) -> list[tuple[float, float]]:
    return [
        (
            cx + rx * math.cos(phase + 2 * math.pi * k / n),
            cy + ry * math.sin(phase + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _draw_shape(
    draw: ImageDraw.ImageDraw, cat_index: int, x0: int, y0: int, w: int, h: int
) -> None:
    """Draw class ``cat_index`` filling the box [x0, x0 + w) x [y0, y0 + h) with value 255."""
    x1, y1 = x0 + w - 1, y0 + h - 1
    cx, cy = x0 + (w - 1) / 2, y0 + (h - 1) / 2
    rx, ry = (w - 1) / 2, (h - 1) / 2
    name = _CLASS_SPECS[cat_index][0]
    if name == "red_circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif name == "green_square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif name == "blue_triangle":
        draw.polygon([(x0, y1), (x1, y1), (cx, y0)], fill=255)
    elif name == "yellow_star":
        outer = _regular_polygon(cx, cy, rx, ry, 5, -math.pi / 2)
        inner = _regular_polygon(cx, cy, rx * 0.42, ry * 0.42, 5, -math.pi / 2 + math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner) for p in pair], fill=255)
    elif name == "magenta_cross":
        tx, ty = max(1.0, w * 0.17), max(1.0, h * 0.17)
        draw.rectangle((x0, cy - ty, x1, cy + ty), fill=255)
        draw.rectangle((cx - tx, y0, cx + tx, y1), fill=255)
    elif name == "cyan_ring":
        draw.ellipse((x0, y0, x1, y1), fill=255)
        # Punch the hole in the mask itself so the background (and earlier objects) show
        # through and occlusion bookkeeping stays exact.
        bx, by = w * 0.24, h * 0.24
        draw.ellipse((x0 + bx, y0 + by, x1 - bx, y1 - by), fill=0)
    elif name == "orange_diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=255)
    elif name == "purple_hexagon":
        draw.polygon(_regular_polygon(cx, cy, rx, ry, 6, 0.0), fill=255)
    elif name == "white_bar":
        draw.rounded_rectangle((x0, y0, x1, y1), radius=min(w, h) // 4, fill=255)
    elif name == "brown_arrow":
        head = x0 + w * 0.55
        sy = h * 0.2
        draw.polygon(
            [
                (x0, cy - sy),
                (head, cy - sy),
                (head, y0),
                (x1, cy),
                (head, y1),
                (head, cy + sy),
                (x0, cy + sy),
            ],
            fill=255,
        )
    else:  # pragma: no cover - guarded by _CLASS_SPECS
        raise AssertionError(name)


def _shape_extent(cat_index: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Width and height of an object whose nominal size is ``size`` pixels."""
    name = _CLASS_SPECS[cat_index][0]
    if name == "white_bar":
        # A bar is defined by being long and thin; keep it clearly elongated.
        return size, max(3, round(size * rng.uniform(0.25, 0.38)))
    if name == "brown_arrow":
        return size, max(3, round(size * rng.uniform(0.55, 0.75)))
    # Mild aspect jitter so the detector cannot rely on exact proportions.
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    return max(3, round(size * aspect)), max(3, round(size / aspect))


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Low-saturation grey background with a gradient and smooth blotches (float32, HxWx3)."""
    base = rng.uniform(70.0, 165.0)
    tint = rng.uniform(-12.0, 12.0, size=3)
    angle = rng.uniform(0.0, 2 * math.pi)
    amplitude = rng.uniform(5.0, 30.0)
    coords = np.linspace(-1.0, 1.0, image_size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    gradient = amplitude * (math.cos(angle) * xx + math.sin(angle) * yy)
    # Coarse noise upsampled bilinearly gives blotchy clutter that is not trivially flat but
    # compresses well in PNG (pixel-level noise would triple the dataset size).
    coarse = rng.normal(0.0, 10.0, size=(7, 7)).astype(np.float32)
    blotches = np.asarray(
        Image.fromarray(coarse).resize((image_size, image_size), Image.Resampling.BILINEAR)
    )
    grey = (base + gradient + blotches)[..., None]
    return grey + tint[None, None, :].astype(np.float32)


def _render_image(
    rng: np.random.Generator,
    categories: Sequence[int],
    image_size: int,
    min_scale: float,
    max_scale: float,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render one image; returns uint8 pixels and the visible objects (without ids)."""
    canvas = Image.fromarray(np.clip(_background(rng, image_size), 0, 255).astype(np.uint8))
    masks: list[np.ndarray] = []
    lo = max(3, round(min_scale * image_size))
    hi = max(lo, min(image_size, round(max_scale * image_size)))
    for cat_index in categories:
        size = int(rng.integers(lo, hi + 1))
        w, h = _shape_extent(cat_index, size, rng)
        w, h = min(w, image_size), min(h, image_size)
        x0 = int(rng.integers(0, image_size - w + 1))
        y0 = int(rng.integers(0, image_size - h + 1))
        mask_img = Image.new("L", (image_size, image_size), 0)
        _draw_shape(ImageDraw.Draw(mask_img), cat_index, x0, y0, w, h)
        jitter = rng.integers(-12, 13, size=3)
        colour = tuple(
            int(np.clip(c + j, 0, 255)) for c, j in zip(_CLASS_SPECS[cat_index][1], jitter)
        )
        canvas.paste(colour, (0, 0), mask_img)
        masks.append(np.asarray(mask_img) > 0)

    pixels = np.asarray(canvas).astype(np.int16)
    # Faint sensor noise so flat colour regions are not perfectly uniform.
    pixels += rng.integers(-3, 4, size=pixels.shape, dtype=np.int16)
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)

    objects: list[dict[str, Any]] = []
    covered = np.zeros((image_size, image_size), dtype=bool)
    # Walk from the top-most object down so ``covered`` holds exactly the later objects.
    for cat_index, mask in zip(reversed(categories), reversed(masks)):
        area = int(mask.sum())
        if area == 0:
            continue
        visible = int(np.count_nonzero(mask & ~covered))
        covered |= mask
        if visible < (1.0 - _MAX_OCCLUDED_FRACTION) * area:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        x, y = int(cols[0]), int(rows[0])
        bw, bh = int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y
        objects.append(
            {
                "category_id": SHAPES_CATEGORIES[cat_index]["id"],
                "bbox": [float(x), float(y), float(bw), float(bh)],
                "area": float(area),
                "iscrowd": 0,
            }
        )
    objects.reverse()  # back to drawing order, for readability of the JSON
    return pixels, objects


def _balanced_categories(rng: np.random.Generator, total: int) -> list[int]:
    """``total`` class indices with every class appearing equally often (+-1), shuffled."""
    num_classes = len(_CLASS_SPECS)
    cats = np.tile(np.arange(num_classes), total // num_classes + 1)[:total]
    rng.shuffle(cats)
    return [int(c) for c in cats]


def _generate_split(
    root: Path,
    split: str,
    num_images: int,
    *,
    image_size: int,
    seed: int,
    min_objects: int,
    max_objects: int,
    min_scale: float,
    max_scale: float,
) -> Path:
    split_code = _SPLITS.index(split)
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    # One generator for the split-level plan, one per image for its content: images are then
    # independent of each other's random draws (and of the global RNG).
    plan_rng = np.random.default_rng([seed, split_code, 0xC0C0])
    counts = plan_rng.integers(min_objects, max_objects + 1, size=num_images)
    cat_pool = _balanced_categories(plan_rng, int(counts.sum()))

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    start = 0
    for index, count in enumerate(counts):
        cats = cat_pool[start : start + int(count)]
        start += int(count)
        rng = np.random.default_rng([seed, split_code, 1, index])
        pixels, objects = _render_image(rng, cats, image_size, min_scale, max_scale)
        file_name = f"{index:06d}.png"
        # No metadata chunks and a fixed compression level keep the files byte-identical; level 1
        # halves generation time for ~25% larger files.
        Image.fromarray(pixels).save(image_dir / file_name, compress_level=1)
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
        )
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **obj})

    coco = {
        "info": {
            "description": f"det_forget synthetic shapes ({split})",
            "version": str(_FORMAT_VERSION),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in SHAPES_CATEGORIES],
    }
    json_path = root / "annotations" / f"{split}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
    logger.debug("wrote %d images, %d boxes to %s", len(images), len(annotations), json_path)
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
    """Complete ``kwargs`` with generate_shapes_dataset's defaults (rejects unknown names)."""
    params = inspect.signature(generate_shapes_dataset).parameters
    unknown = sorted(set(kwargs) - (set(params) - {"root"}))
    if unknown:
        raise TypeError(f"unknown shapes dataset argument(s): {', '.join(unknown)}")
    args = {n: p.default for n, p in params.items() if n != "root"}
    args.update(kwargs)
    return args


def _args_hash(args: dict[str, Any]) -> str:
    payload = json.dumps({"format": _FORMAT_VERSION, **args}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def generate_shapes_dataset(
    root: str | os.PathLike[str],
    *,
    num_train: int = 1000,
    num_val: int = 200,
    image_size: int = 192,
    seed: int = 0,
    min_objects: int = 2,
    max_objects: int = 6,
    min_scale: float = 0.12,
    max_scale: float = 0.4,
) -> dict[str, str]:
    """Write the synthetic shapes dataset into ``root`` (unconditionally, non-atomically).

    Prefer :func:`ensure_shapes_dataset`, which caches and replaces the directory atomically.
    Objects are drawn in order, so later ones may occlude earlier ones; an object hidden for
    more than 60% of its pixels gets no annotation. Boxes are the tight box of the whole shape.
    Classes are balanced over each split.

    Args:
        root: Output directory; created if missing. Existing files of the same names are
            overwritten.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side of the square images in pixels.
        seed: Seed of the generation; train and val use different streams derived from it.
        min_objects: Minimum number of objects drawn per image.
        max_objects: Maximum number of objects drawn per image.
        min_scale: Smallest object size as a fraction of ``image_size``.
        max_scale: Largest object size as a fraction of ``image_size``.

    Returns:
        Paths as strings: ``root``, ``train_images``, ``val_images``, ``train_json``,
        ``val_json``.

    Raises:
        ValueError: If an argument is out of range.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    if image_size < 16:
        raise ValueError("image_size must be >= 16")
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    if not 0.0 < min_scale <= max_scale <= 1.0:
        raise ValueError("need 0 < min_scale <= max_scale <= 1")
    args = _normalised_args(
        {
            "num_train": num_train,
            "num_val": num_val,
            "image_size": image_size,
            "seed": seed,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "min_scale": min_scale,
            "max_scale": max_scale,
        }
    )
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _MARKER
    # The marker must never outlive a partial rewrite of the files it vouches for.
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


def _is_writable(path: Path) -> bool:
    """Whether ``path`` exists writable or could be created (nearest existing ancestor)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def default_shapes_root() -> Path:
    """Directory used when no ``root`` is given.

    ``$DET_FORGET_DATASETS/shapes`` if that variable is set, else ``<repo>/datasets/shapes``,
    else (when that is not writable, e.g. an installed read-only package)
    ``~/.cache/det_forget/shapes``.

    Returns:
        The directory (it may not exist yet).
    """
    env = os.environ.get("DET_FORGET_DATASETS")
    if env:
        return Path(env).expanduser() / "shapes"
    repo_root = Path(__file__).resolve().parents[2] / "datasets" / "shapes"
    if _is_writable(repo_root):
        return repo_root
    return Path.home() / ".cache" / "det_forget" / "shapes"


def _marker_matches(root: Path, digest: str) -> bool:
    marker = root / _MARKER
    try:
        first = marker.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError):
        return False
    if first != digest:
        return False
    return all(Path(p).exists() for k, p in _paths(root).items() if k != "root")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Inter-process lock so concurrent ranks/workers generate the dataset only once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: best effort without a lock
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _looks_generated(root: Path) -> bool:
    """Guard against deleting a user directory that merely shares the target's name."""
    expected = {"train", "val", "annotations", _MARKER}
    return all(child.name in expected for child in root.iterdir())


def ensure_shapes_dataset(
    root: str | os.PathLike[str] | None = None, **kwargs: Any
) -> dict[str, str]:
    """Generate the shapes dataset unless ``root`` already holds it for the same arguments.

    Generation happens in a temporary sibling directory that is renamed into place only when
    complete, so an interrupted run never leaves a half-written dataset behind. Concurrent
    callers are serialised with a lock file next to ``root``.

    Args:
        root: Dataset directory; :func:`default_shapes_root` when ``None``.
        **kwargs: Keyword arguments of :func:`generate_shapes_dataset` (defaults fill the rest).

    Returns:
        The paths returned by :func:`generate_shapes_dataset`.

    Raises:
        FileExistsError: If ``root`` exists, is stale and holds files this module did not write.
    """
    target = Path(root).expanduser() if root is not None else default_shapes_root()
    target = target.absolute()
    args = _normalised_args(kwargs)
    digest = _args_hash(args)
    if _marker_matches(target, digest):
        return _paths(target)

    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{target.name}.lock"):
        # Another process may have finished the job while we waited for the lock.
        if _marker_matches(target, digest):
            return _paths(target)
        for stale in target.parent.glob(f".{target.name}.*-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists() and not _looks_generated(target):
            raise FileExistsError(
                f"{target} exists and does not look like a det_forget shapes dataset; "
                "refusing to overwrite it"
            )
        logger.info("generating synthetic shapes dataset in %s (%s)", target, args)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            generate_shapes_dataset(tmp, **args)
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

        paths = ensure_shapes_dataset(root, **gen_kwargs)
        return load_coco_json(paths[f"{split}_json"], paths[f"{split}_images"], name)

    return load


def register_shapes_dataset(
    root: str | os.PathLike[str] | None = None,
    names: Sequence[str] = ("shapes_train", "shapes_val"),
    *,
    generate_now: bool = False,
    **gen_kwargs: Any,
) -> dict[str, str]:
    """Register the train and val splits in detectron2's catalogs, lazily.

    Equivalent to ``register_coco_instances`` per split, except that the files are generated
    (via :func:`ensure_shapes_dataset`) the first time ``DatasetCatalog.get(name)`` is called,
    so registering at import time costs nothing. The metadata is set up front to exactly what
    ``load_coco_json`` would set, so it is usable before the data is loaded. Names already in
    ``DatasetCatalog`` are left untouched.

    Args:
        root: Dataset directory; :func:`default_shapes_root` when ``None``.
        names: Dataset names for the train and the val split, in that order.
        generate_now: Generate the files immediately instead of on first use (e.g. before a
            ``COCOEvaluator`` reads ``json_file`` without having loaded the dataset).
        **gen_kwargs: Keyword arguments of :func:`generate_shapes_dataset`.

    Returns:
        Mapping of dataset name -> split (``"train"`` or ``"val"``).

    Raises:
        ValueError: If ``names`` does not hold exactly two names.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if len(names) != len(_SPLITS):
        raise ValueError(f"names must hold {len(_SPLITS)} names (train, val), got {names!r}")
    _normalised_args(gen_kwargs)  # fail now on a typo, not at first use
    target = Path(root).expanduser() if root is not None else default_shapes_root()
    target = target.absolute()
    paths = _paths(target)
    if generate_now:
        ensure_shapes_dataset(target, **gen_kwargs)

    registered = set(DatasetCatalog.list())
    mapping: dict[str, str] = {}
    for name, split in zip(names, _SPLITS):
        mapping[name] = split
        if name in registered:
            logger.debug("dataset %s already registered; leaving it as is", name)
            continue
        DatasetCatalog.register(name, _make_loader(name, split, target, dict(gen_kwargs)))
        MetadataCatalog.get(name).set(
            json_file=paths[f"{split}_json"],
            image_root=paths[f"{split}_images"],
            evaluator_type="coco",
            thing_classes=list(SHAPES_CLASS_NAMES),
            thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)},
        )
    return mapping

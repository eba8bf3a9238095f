"""Forget and retain views of detectron2 datasets, and per-class subsampling.

A forgetting task trains on two views of the same training images (GS-LoRA, detection):

* the **forget view**: images that contain at least one object of a class to forget, with
  only those objects kept as targets;
* the **retain view**: images that contain at least one object of a class to keep, with the
  objects of forgotten classes (this task's, earlier tasks', and missing classes') removed,
  so that the detector learns to see them as background.

Both views may then be cut to a fraction of the images (or ``k`` images) per class. All
functions take and return detectron2 dataset dicts (``list[dict]`` whose ``"annotations"``
have a contiguous ``"category_id"``) and never modify their input.

Crowd annotations (``iscrowd == 1``) follow their class (kept or removed) but never make an
image count as containing that class: detectron2's mappers drop them from the targets.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..forgetting.tasks import resolve_classes
from .checks import load_dataset

__all__ = [
    "MISSING_POLICIES",
    "ForgetRetainSplit",
    "build_forget_retain_split",
    "class_statistics",
    "forget_view",
    "register_view",
    "resolve_classes",
    "retain_view",
    "select_per_class",
    "subsample_per_class",
]

logger = logging.getLogger(__name__)

DatasetDicts = list[dict[str, Any]]

#: What the retain view does with missing classes (see :func:`build_forget_retain_split`).
MISSING_POLICIES = ("background", "drop_images")


# --------------------------------------------------------------------------------------------
# Class names -> contiguous ids
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def _annotations(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(record.get("annotations", ()))


def _classes_present(record: Mapping[str, Any]) -> set[int]:
    """Classes with at least one non-crowd object in the image."""
    return {int(a["category_id"]) for a in _annotations(record) if not a.get("iscrowd", 0)}


def _with_annotations(
    record: Mapping[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """A copy of ``record`` with the annotations for which ``keep`` is true (deep-copied)."""
    out = {k: v for k, v in record.items() if k != "annotations"}
    out = copy.deepcopy(out)
    out["annotations"] = [copy.deepcopy(a) for a in _annotations(record) if keep(a)]
    return out


def forget_view(dicts: Iterable[Mapping[str, Any]], forget_ids: Iterable[int]) -> DatasetDicts:
    """Images with at least one object of a forget class, keeping only those objects.

    Args:
        dicts: detectron2 dataset dicts (contiguous ``category_id``).
        forget_ids: contiguous ids of the classes to forget.

    Returns:
        New dataset dicts, in input order.
    """
    forget = {int(c) for c in forget_ids}
    return [
        _with_annotations(d, lambda a: int(a["category_id"]) in forget)
        for d in dicts
        if _classes_present(d) & forget
    ]


def retain_view(
    dicts: Iterable[Mapping[str, Any]],
    forget_ids: Iterable[int],
    drop_ids: Iterable[int] = (),
    *,
    exclude_ids: Iterable[int] = (),
) -> DatasetDicts:
    """Images with at least one object of a retained class; forgotten objects removed.

    Objects of ``forget_ids`` and ``drop_ids`` lose their annotations, so they become
    background in the retain loss. Images left without a retained (non-crowd) object are
    dropped.

    Args:
        dicts: detectron2 dataset dicts (contiguous ``category_id``).
        forget_ids: classes forgotten by the current task.
        drop_ids: other classes without data in the retain view: classes forgotten by earlier
            tasks, missing classes.
        exclude_ids: images containing an object of one of these classes are left out
            entirely (so those objects are neither targets nor background).

    Returns:
        New dataset dicts, in input order.
    """
    removed = {int(c) for c in forget_ids} | {int(c) for c in drop_ids}
    excluded = {int(c) for c in exclude_ids}
    out: DatasetDicts = []
    for d in dicts:
        present = _classes_present(d)
        if present & excluded or not present - removed:
            continue
        out.append(_with_annotations(d, lambda a: int(a["category_id"]) not in removed))
    return out


def _image_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """A key that orders images independently of their position in the list."""
    return (str(record.get("file_name", "")), str(record.get("image_id", "")))


def select_per_class(
    class_sets: Sequence[Iterable[int]],
    class_ids: Iterable[int],
    ratio: float | None = None,
    shots: int | None = None,
    seed: int = 0,
    keys: Sequence[Any] | None = None,
) -> list[int]:
    """Indices of a per-class sample: a fraction, or ``shots`` samples, of every class.

    The one per-class sampler of det_forget: detection samples images (a sample belongs to
    every class it shows), classification samples labelled images (one class each). For
    each class, the samples of that class are ordered by ``keys`` (default: position) and
    shuffled with a generator seeded by ``(seed, class id)``; the first
    ``max(1, round(ratio * n))`` (or ``min(shots, n)``) are taken. The result is the union
    over classes, so it depends neither on the order of the input (given keys), nor on the
    other classes asked for, nor on global RNG state.

    Args:
        class_sets: the classes of each sample.
        class_ids: classes to sample for.
        ratio: fraction in (0, 1] of each class's samples.
        shots: samples per class (> 0). Exclusive with ``ratio``; with neither, every
            sample of one of ``class_ids`` is kept.
        seed: seed of the selection.
        keys: sort keys of the samples (a stable identity such as the file name).

    Returns:
        Sorted indices of the selected samples.

    Raises:
        ValueError: both or invalid ``ratio`` / ``shots``.
    """
    if ratio is not None and shots:
        raise ValueError(f"give ratio or shots, not both (got ratio={ratio}, shots={shots})")
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if shots is not None and shots < 0:
        raise ValueError(f"shots must be > 0 (or 0/None for all images), got {shots}")
    present = [set(c) for c in class_sets]
    order_key = (lambda i: keys[i]) if keys is not None else (lambda i: i)
    selected: set[int] = set()
    for c in sorted({int(c) for c in class_ids}):
        candidates = sorted((i for i, p in enumerate(present) if c in p), key=order_key)
        n = len(candidates)
        if n == 0:
            continue
        if shots:
            k = min(int(shots), n)
        elif ratio is not None:
            k = max(1, round(ratio * n))
        else:
            k = n
        order = np.random.default_rng([int(seed), c]).permutation(n)
        selected.update(candidates[j] for j in order[:k])
    return sorted(selected)


def subsample_per_class(
    dicts: Sequence[Mapping[str, Any]],
    class_ids: Iterable[int],
    ratio: float | None = None,
    shots: int | None = None,
    seed: int = 0,
) -> DatasetDicts:
    """Keep a fraction of the images, or ``shots`` images, of every class.

    For each class, the images containing it (non-crowd) are ordered by
    ``(file_name, image_id)`` and shuffled with a generator seeded by ``(seed, class id)``;
    the first ``max(1, round(ratio * n))`` (or ``min(shots, n)``) are selected. The result is
    the union over classes, so an image counts for every class it contains and a class may
    end up with more images than asked when other classes' picks contain it. The selection
    depends neither on the input order, nor on the other classes, nor on global RNG state.
    Images containing none of ``class_ids`` are dropped.

    Args:
        dicts: detectron2 dataset dicts (contiguous ``category_id``).
        class_ids: classes to sample for.
        ratio: fraction in (0, 1] of each class's images.
        shots: number of images per class (> 0). Exclusive with ``ratio``; with neither,
            every image containing one of ``class_ids`` is kept.
        seed: seed of the selection.

    Returns:
        Copies of the selected dicts, in input order.

    Raises:
        ValueError: both or invalid ``ratio`` / ``shots``.
    """
    present = [_classes_present(d) for d in dicts]
    keys = [_image_key(d) for d in dicts]
    selected = select_per_class(present, class_ids, ratio=ratio, shots=shots, seed=seed, keys=keys)
    return [copy.deepcopy(dict(dicts[i])) for i in selected]


def class_statistics(
    dicts: Iterable[Mapping[str, Any]], thing_classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Images and objects per class in ``dicts`` (what a training run actually used).

    Args:
        dicts: detectron2 dataset dicts.
        thing_classes: names for the per-class keys; contiguous ids (as strings) otherwise.

    Returns:
        ``{"images": n, "objects": n, "per_class": {name: {"id", "images", "objects"}}}``
        (non-crowd objects only), classes sorted by id.
    """
    images = objects = 0
    per_image: dict[int, int] = {}
    per_object: dict[int, int] = {}
    for d in dicts:
        images += 1
        for c in _classes_present(d):
            per_image[c] = per_image.get(c, 0) + 1
        for a in _annotations(d):
            if not a.get("iscrowd", 0):
                c = int(a["category_id"])
                per_object[c] = per_object.get(c, 0) + 1
                objects += 1
    per_class = {}
    for c in sorted(per_image):
        name = thing_classes[c] if thing_classes is not None else str(c)
        per_class[name] = {"id": c, "images": per_image[c], "objects": per_object.get(c, 0)}
    return {"images": images, "objects": objects, "per_class": per_class}


# --------------------------------------------------------------------------------------------
# detectron2 datasets
# --------------------------------------------------------------------------------------------

# Metadata keys not carried over to a derived view: "name" is fixed per entry, and
# "json_file" would make COCOEvaluator score the view against the full source annotations.
_NOT_COPIED_METADATA = ("name", "json_file")


def register_view(
    name: str,
    dicts_fn: Callable[[], DatasetDicts],
    metadata_from: str,
    *,
    overwrite: bool = False,
) -> None:
    """Register a derived dataset in detectron2's ``DatasetCatalog``.

    The metadata (``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``image_root``,
    ``evaluator_type`` ...) is copied from ``metadata_from``, except ``json_file``: the view
    is not the source's annotation file, so an evaluator must convert the view itself.

    Args:
        name: new dataset name.
        dicts_fn: returns the view's dataset dicts (called lazily by ``DatasetCatalog.get``).
        metadata_from: registered dataset whose metadata to copy.
        overwrite: replace an existing registration of ``name``.

    Raises:
        ValueError: ``name`` is already registered and ``overwrite`` is false.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        if not overwrite:
            raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True)")
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, dicts_fn)
    meta = MetadataCatalog.get(metadata_from).as_dict()
    for key in _NOT_COPIED_METADATA:
        meta.pop(key, None)
    MetadataCatalog.get(name).set(**meta, derived_from=metadata_from)


@dataclass
class ForgetRetainSplit:
    """The data of one forgetting task.

    Attributes:
        forget_dicts: forget view (after subsampling).
        retain_dicts: retain view (after subsampling).
        dataset_names: source datasets.
        thing_classes: class names in contiguous-id order.
        forget_ids: classes forgotten by this task.
        retain_ids: classes kept with data in the retain view.
        old_ids: classes forgotten by earlier tasks (no data).
        missing_ids: kept classes without data.
        ratio: fraction of images per class used (when ``shots`` is 0).
        shots: images per class used (0: use ``ratio``).
        seed: subsampling seed.
        missing_policy: see :func:`build_forget_retain_split`.
    """

    forget_dicts: DatasetDicts
    retain_dicts: DatasetDicts
    dataset_names: tuple[str, ...]
    thing_classes: tuple[str, ...]
    forget_ids: tuple[int, ...]
    retain_ids: tuple[int, ...]
    old_ids: tuple[int, ...] = ()
    missing_ids: tuple[int, ...] = ()
    ratio: float = 1.0
    shots: int = 0
    seed: int = 0
    missing_policy: str = "background"

    def _names(self, ids: Iterable[int]) -> list[str]:
        return [self.thing_classes[i] for i in ids]

    def stats(self) -> dict[str, Any]:
        """JSON-friendly description of the data used (for the adapter manifest).

        Returns:
            ``{"datasets", "classes": {group: [names]}, "sampling": {...},
            "forget": class_statistics, "retain": class_statistics}``.
        """
        return {
            "datasets": list(self.dataset_names),
            "classes": {
                "forget": self._names(self.forget_ids),
                "retain": self._names(self.retain_ids),
                "old": self._names(self.old_ids),
                "missing": self._names(self.missing_ids),
            },
            "sampling": {
                "ratio": self.ratio if not self.shots else None,
                "shots": self.shots or None,
                "seed": self.seed,
                "missing_policy": self.missing_policy,
            },
            "forget": class_statistics(self.forget_dicts, self.thing_classes),
            "retain": class_statistics(self.retain_dicts, self.thing_classes),
        }

    def register(self, prefix: str, *, overwrite: bool = True) -> tuple[str, str]:
        """Register both views as ``<prefix>_forget`` and ``<prefix>_retain``.

        Args:
            prefix: name prefix of the two datasets.
            overwrite: replace existing registrations of those names.

        Returns:
            ``(forget dataset name, retain dataset name)``.
        """
        names = (f"{prefix}_forget", f"{prefix}_retain")
        source = self.dataset_names[0]
        for name, view in zip(names, (self.forget_dicts, self.retain_dicts)):
            register_view(name, lambda v=view: copy.deepcopy(v), source, overwrite=overwrite)
        return names


def build_forget_retain_split(
    dataset_names: str | Sequence[str],
    forget_ids: Iterable[int | str],
    *,
    old_ids: Iterable[int | str] = (),
    missing_ids: Iterable[int | str] = (),
    ratio: float = 1.0,
    shots: int = 0,
    seed: int = 0,
    missing_policy: str = "background",
) -> ForgetRetainSplit:
    """Load registered datasets and build the forget and retain views of one task.

    Classes may be given by contiguous id or name (see :func:`resolve_classes`). The forget
    view is subsampled over the forget classes, the retain view over the retained classes
    (``shots`` > 0 overrides ``ratio``, as ``FORGET.SHOTS`` does ``FORGET.DATA_RATIO``).

    Args:
        dataset_names: registered detectron2 datasets (same ``thing_classes``).
        forget_ids: classes this task forgets.
        old_ids: classes forgotten by earlier tasks: removed from the retain view.
        missing_ids: kept classes with no training data.
        ratio: fraction of each class's images.
        shots: images per class (0: use ``ratio``).
        seed: subsampling seed.
        missing_policy: ``"background"``: missing classes' objects are un-annotated in the
            retain view (they become background, as forgotten classes do); ``"drop_images"``:
            retain images containing a missing class are left out, so the model gets no
            signal at all about those classes.

    Returns:
        The split.

    Raises:
        ValueError: bad or overlapping classes, datasets with different classes, or an empty
            forget or retain view.
    """
    from detectron2.data import MetadataCatalog

    names = (dataset_names,) if isinstance(dataset_names, str) else tuple(dataset_names)
    if not names:
        raise ValueError("no dataset names given")
    if missing_policy not in MISSING_POLICIES:
        raise ValueError(
            f"missing_policy must be one of {MISSING_POLICIES}, got {missing_policy!r}"
        )
    thing_classes = None
    dicts: DatasetDicts = []
    for name in names:
        loaded = load_dataset(name)  # also fills the metadata of COCO-json datasets
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None:
            raise ValueError(f"dataset {name!r} has no thing_classes metadata")
        if thing_classes is None:
            thing_classes = tuple(classes)
        elif tuple(classes) != thing_classes:
            raise ValueError(
                f"dataset {name!r} has classes {list(classes)}, but {names[0]!r} has "
                f"{list(thing_classes)}; all datasets of a split need the same classes"
            )
        dicts.extend(loaded)
    assert thing_classes is not None

    label = ", ".join(names)
    forget = resolve_classes(forget_ids, thing_classes, label)
    old = resolve_classes(old_ids, thing_classes, label, what="old classes", allow_empty=True)
    missing = resolve_classes(
        missing_ids, thing_classes, label, what="missing classes", allow_empty=True
    )
    for a_name, a, b_name, b in (
        ("forget", forget, "old", old),
        ("forget", forget, "missing", missing),
        ("old", old, "missing", missing),
    ):
        both = sorted(set(a) & set(b))
        if both:
            raise ValueError(
                f"classes {[thing_classes[c] for c in both]} are both {a_name} and {b_name}"
            )
    gone = set(forget) | set(old) | set(missing)
    retain = tuple(c for c in range(len(thing_classes)) if c not in gone)
    if not retain:
        raise ValueError(
            f"no class left to retain in datasets {list(names)}: every class is forgotten, "
            "old or missing"
        )

    sample = {"shots": shots, "seed": seed} if shots else {"ratio": ratio, "seed": seed}
    forget_dicts = subsample_per_class(forget_view(dicts, forget), forget, **sample)
    if not forget_dicts:
        raise ValueError(
            f"forget set has no images for classes {[thing_classes[c] for c in forget]} "
            f"in datasets {list(names)}"
        )
    if missing_policy == "background":
        kept = retain_view(dicts, forget, drop_ids=set(old) | set(missing))
    else:
        kept = retain_view(dicts, forget, drop_ids=old, exclude_ids=missing)
    retain_dicts = subsample_per_class(kept, retain, **sample)
    if not retain_dicts:
        raise ValueError(
            f"retain set has no images for classes {[thing_classes[c] for c in retain]} "
            f"in datasets {list(names)}"
        )
    split = ForgetRetainSplit(
        forget_dicts=forget_dicts,
        retain_dicts=retain_dicts,
        dataset_names=names,
        thing_classes=thing_classes,
        forget_ids=tuple(forget),
        retain_ids=retain,
        old_ids=tuple(old),
        missing_ids=tuple(missing),
        ratio=float(ratio),
        shots=int(shots),
        seed=int(seed),
        missing_policy=missing_policy,
    )
    logger.info(
        "forget/retain split of %s: %d forget images (%s), %d retain images",
        label,
        len(forget_dicts),
        [thing_classes[c] for c in forget],
        len(retain_dicts),
    )
    return split

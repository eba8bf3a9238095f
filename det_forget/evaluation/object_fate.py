"""Where forgotten objects go: the fate of every ground-truth object of a forgotten class.

AP says how well a class is detected; a reviewer asks a different question about each
object of a forgotten class: after forgetting, is it still found as its class, found as
*another* class (forget "person" and people come back labelled "dog"), or not found at all?

Counting rule, for one image, at a score threshold ``s`` and an IoU threshold ``t``:

* the *candidates* of a ground-truth object are the detections with score >= ``s`` and
  IoU >= ``t`` with it;
* **detected**: a candidate has the object's own class (the highest-scoring one is recorded);
* **relabelled**: no candidate has its class, and a candidate of another class is not better
  explained by a ground-truth object of that class (its IoU with the forgotten object is
  larger than with every ground-truth object of its own class); the highest-scoring such
  candidate names the class it became;
* **gone**: neither.

A detection of another class that overlaps the forgotten object only because it is the
correct detection of a neighbouring object (occlusion) is therefore not a relabel.

The same function serves the evaluator's report, the benchmarks and the app (which, on images
without annotations, passes the *before* model's forgotten-class detections as the objects).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "FATES",
    "FateSummary",
    "ObjectFate",
    "box_iou",
    "object_fates",
    "summarize_fates",
]

FATES: tuple[str, ...] = ("detected", "relabelled", "gone")
"""The three fates, in report order."""

DEFAULT_SCORE_THRESH = 0.5
DEFAULT_IOU_THRESH = 0.5


@dataclass(frozen=True)
class ObjectFate:
    """The fate of one ground-truth object of a forgotten class.

    Attributes:
        image_id: image the object is in.
        gt_class: its class.
        box: its box, XYXY absolute.
        fate: one of :data:`FATES`.
        label: class of the detection that decided the fate (its own class when detected,
            the other class when relabelled, ``None`` when gone).
        score: that detection's score (``None`` when gone).
        iou: that detection's IoU with the object (``None`` when gone).
    """

    image_id: Hashable
    gt_class: Hashable
    box: tuple[float, float, float, float]
    fate: str
    label: Hashable | None = None
    score: float | None = None
    iou: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of XYXY boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def object_fates(
    gt_boxes: np.ndarray | Sequence[Sequence[float]],
    gt_classes: Sequence[Hashable],
    pred_boxes: np.ndarray | Sequence[Sequence[float]],
    pred_classes: Sequence[Hashable],
    pred_scores: Sequence[float],
    forget_classes: Iterable[Hashable],
    *,
    image_id: Hashable = None,
    score_thresh: float = DEFAULT_SCORE_THRESH,
    iou_thresh: float = DEFAULT_IOU_THRESH,
) -> list[ObjectFate]:
    """Fate of every ground-truth object of a forgotten class in one image.

    Args:
        gt_boxes: ground-truth boxes (N, 4), XYXY absolute.
        gt_classes: their classes (ids or names; the same kind as ``pred_classes``).
        pred_boxes: detections (M, 4), XYXY absolute.
        pred_classes: their classes.
        pred_scores: their scores.
        forget_classes: the forgotten classes; objects of other classes get no fate.
        image_id: recorded in every :class:`ObjectFate`.
        score_thresh: detections below it are ignored.
        iou_thresh: a detection overlaps an object when their IoU is at least this.

    Returns:
        One :class:`ObjectFate` per forgotten-class object, in ground-truth order.
    """
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be in [0, 1], got {score_thresh}")
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"iou_thresh must be in (0, 1], got {iou_thresh}")
    forget = set(forget_classes)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_classes = list(gt_classes)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    pred_classes = list(pred_classes)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if len(gt_classes) != len(gt_boxes):
        raise ValueError(f"{len(gt_boxes)} ground-truth boxes but {len(gt_classes)} classes")
    if not len(pred_classes) == len(pred_boxes) == len(pred_scores):
        raise ValueError(
            f"{len(pred_boxes)} detection boxes, {len(pred_classes)} classes and "
            f"{len(pred_scores)} scores"
        )

    keep = np.flatnonzero(pred_scores >= score_thresh)
    pred_boxes, pred_scores = pred_boxes[keep], pred_scores[keep]
    pred_classes = [pred_classes[i] for i in keep]
    iou = box_iou(gt_boxes, pred_boxes)  # (N, M)

    # For each detection: its best IoU with a ground-truth object of its own class.
    own_best = np.zeros(len(pred_boxes))
    for j, cls in enumerate(pred_classes):
        same = [i for i, c in enumerate(gt_classes) if c == cls]
        if same:
            own_best[j] = iou[same, j].max()

    fates: list[ObjectFate] = []
    for i, cls in enumerate(gt_classes):
        if cls not in forget:
            continue
        box = tuple(float(v) for v in gt_boxes[i])
        cand = [j for j in np.argsort(-pred_scores, kind="stable") if iou[i, j] >= iou_thresh]
        own = [j for j in cand if pred_classes[j] == cls]
        other = [j for j in cand if pred_classes[j] != cls and iou[i, j] > own_best[j]]
        if own:
            j, fate = own[0], "detected"
        elif other:
            j, fate = other[0], "relabelled"
        else:
            fates.append(ObjectFate(image_id, cls, box, "gone"))
            continue
        fates.append(
            ObjectFate(
                image_id,
                cls,
                box,
                fate,
                label=pred_classes[j],
                score=float(pred_scores[j]),
                iou=float(iou[i, j]),
            )
        )
    return fates


@dataclass
class FateSummary:
    """Counts of :data:`FATES` per forgotten class and in total (see :meth:`as_dict`)."""

    score_thresh: float
    iou_thresh: float
    per_class: dict[Hashable, dict]
    total: dict

    def as_dict(self) -> dict:
        """JSON-ready: thresholds, ``per_class`` (by class) and ``total``.

        Each entry has ``objects``, the count of each fate, their shares in percent
        (``detected_pct`` ...) and ``relabelled_as`` (other class -> count).
        """
        return {
            "score_thresh": self.score_thresh,
            "iou_thresh": self.iou_thresh,
            "per_class": {str(k): v for k, v in self.per_class.items()},
            "total": self.total,
        }


def _counts(fates: Sequence[ObjectFate]) -> dict:
    out: dict = {"objects": len(fates)}
    for name in FATES:
        n = sum(f.fate == name for f in fates)
        out[name] = n
        out[f"{name}_pct"] = 100.0 * n / len(fates) if fates else None
    relabelled_as: dict[str, int] = {}
    for f in fates:
        if f.fate == "relabelled":
            relabelled_as[str(f.label)] = relabelled_as.get(str(f.label), 0) + 1
    out["relabelled_as"] = dict(sorted(relabelled_as.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def summarize_fates(
    fates: Iterable[ObjectFate],
    classes: Sequence[Hashable] | None = None,
    *,
    score_thresh: float = DEFAULT_SCORE_THRESH,
    iou_thresh: float = DEFAULT_IOU_THRESH,
    names: Mapping[Hashable, str] | None = None,
) -> FateSummary:
    """Count fates per class and in total.

    Args:
        fates: from :func:`object_fates`, over any number of images.
        classes: the forgotten classes, so a class without objects still gets a row;
            ``None``: the classes that occur in ``fates``.
        score_thresh: the score threshold the fates were computed with (recorded).
        iou_thresh: the IoU threshold the fates were computed with (recorded).
        names: optional class -> display name (keys of ``per_class`` and ``relabelled_as``).
    """
    fates = list(fates)
    rename = (lambda c: names.get(c, c)) if names else (lambda c: c)
    if names:
        fates = [
            ObjectFate(
                f.image_id,
                rename(f.gt_class),
                f.box,
                f.fate,
                None if f.label is None else rename(f.label),
                f.score,
                f.iou,
            )
            for f in fates
        ]
    order = [rename(c) for c in classes] if classes is not None else []
    for f in fates:
        if f.gt_class not in order:
            order.append(f.gt_class)
    per_class = {c: _counts([f for f in fates if f.gt_class == c]) for c in order}
    return FateSummary(score_thresh, iou_thresh, per_class, _counts(fates))

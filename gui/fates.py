"""What became of the forgotten objects of one image, for the compare view (no Qt).

The rule is :func:`det_forget.evaluation.object_fate.object_fates`, the one the evaluator
and the benchmarks use; this module only chooses its inputs:

* the objects are the image's ground-truth boxes of the forgotten classes when the image
  has annotations; without annotations (a folder of photos) they are the *before* model's
  detections of the forgotten classes above the score threshold;
* the detections are the *after* model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from detectron2.structures import BoxMode

from det_forget.engine.inference import Detections
from det_forget.evaluation.object_fate import ObjectFate, object_fates

__all__ = ["SURVIVING", "fate_text", "gt_boxes", "image_fates"]

#: Fates of a forgotten object that the "surviving objects" filter steps through.
SURVIVING = ("detected", "relabelled")


def gt_boxes(annotations: Sequence[dict[str, Any]]) -> tuple[np.ndarray, list[int]]:
    """XYXY absolute boxes and contiguous class ids of detectron2 annotation dicts."""
    boxes, classes = [], []
    for a in annotations:
        if a.get("iscrowd", 0):
            continue
        mode = a.get("bbox_mode", BoxMode.XYWH_ABS)
        boxes.append(BoxMode.convert(list(a["bbox"]), mode, BoxMode.XYXY_ABS))
        classes.append(int(a["category_id"]))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), classes


def image_fates(
    annotations: Sequence[dict[str, Any]],
    before: Detections | None,
    after: Detections,
    forget_ids: Sequence[int],
    *,
    image_id: Any = None,
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> tuple[list[ObjectFate], str]:
    """Fates of the forgotten objects of one image.

    Args:
        annotations: the image's ground truth (detectron2 dicts; empty: none).
        before: the before model's detections (the objects when there is no ground truth).
        after: the after model's detections.
        forget_ids: contiguous ids of the forgotten classes.
        image_id: recorded in the fates.
        score_thresh: detections below it are ignored (and, without ground truth, before
            detections below it are not objects).
        iou_thresh: overlap needed (the evaluator's 0.5 by default).

    Returns:
        The fates, and where the objects came from: ``"ground truth"`` or
        ``"before detections"`` (``""`` when there are no objects to judge).
    """
    forget = [int(c) for c in forget_ids]
    if annotations:
        boxes, classes = gt_boxes(annotations)
        source = "ground truth"
    elif before is not None:
        objects = before.filter(score_thresh, forget)
        boxes = np.asarray(objects.boxes, dtype=np.float64).reshape(-1, 4)
        classes = [int(c) for c in objects.classes]
        source = "before detections"
    else:
        return [], ""
    fates = object_fates(
        boxes,
        classes,
        np.asarray(after.boxes, dtype=np.float64).reshape(-1, 4),
        [int(c) for c in after.classes],
        np.asarray(after.scores, dtype=np.float64).reshape(-1),
        forget,
        image_id=image_id,
        score_thresh=score_thresh,
        iou_thresh=iou_thresh,
    )
    return fates, source if fates else ""


def fate_text(fate: ObjectFate, names: Sequence[str]) -> str:
    """``"purple_hexagon -> magenta_cross 0.77"``, ``"purple_hexagon: gone"``, ..."""

    def name(c: Any) -> str:
        return names[c] if isinstance(c, int | np.integer) and 0 <= c < len(names) else str(c)

    if fate.fate == "relabelled":
        return f"{name(fate.gt_class)} -> {name(fate.label)} {fate.score:.2f}"
    if fate.fate == "detected":
        return f"{name(fate.gt_class)}: still detected {fate.score:.2f}"
    return f"{name(fate.gt_class)}: gone"

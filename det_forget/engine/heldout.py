"""The held-out forget split of detection's stopping rule, and its check.

:mod:`det_forget.forgetting.stopping` decides; this module measures, for a detector:

* :func:`heldout_forget_dicts`: forget-class images of the *training* datasets that the
  task does not train on (never the evaluation split), keeping only the forget objects;
* :class:`HeldoutCheck`: on those images, the COCO AP of each forget class (pycocotools'
  ``COCOeval`` on an in-memory ground truth, read by
  :func:`~det_forget.evaluation.coco_forget.per_category_ap`) and the mean forget loss of
  each forget class (the same per-object NLL the bounded loss pushes up, on the true
  labels, via the detector's registered forget outputs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.structures import BoxMode
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.forget_retain import ForgetRetainSplit, forget_view
from ..evaluation.coco_forget import per_category_ap
from ..forgetting.losses import object_nll, per_class_mean

__all__ = ["heldout_forget_dicts", "HeldoutCheck"]

logger = logging.getLogger(__name__)


def _key(record: Mapping[str, Any]) -> tuple[str, str]:
    return (str(record.get("file_name", "")), str(record.get("image_id", "")))


def heldout_forget_dicts(
    all_dicts: Sequence[Mapping[str, Any]],
    split: ForgetRetainSplit,
    num_images: int,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], ForgetRetainSplit, str]:
    """Up to ``num_images`` forget-class training images the task does not train on.

    Taken first from images in neither training view, then from images only in the
    retain view (where the forget objects are background), and if still too few, from
    the forget view itself while at least as many forget images remain to train on (the
    returned split has those images removed).

    Args:
        all_dicts: every record of the training datasets.
        split: the task's forget/retain split.
        num_images: how many held-out images to aim for.
        seed: order of the draw.

    Returns:
        ``(held-out records with only forget objects, the split to train on, where the
        images came from in words)``.
    """
    candidates = forget_view(all_dicts, split.forget_ids)
    in_forget = {_key(r) for r in split.forget_dicts}
    in_retain = {_key(r) for r in split.retain_dicts}
    rng = random.Random(seed)
    unused = [r for r in candidates if _key(r) not in in_forget and _key(r) not in in_retain]
    retain_only = [r for r in candidates if _key(r) not in in_forget and _key(r) in in_retain]
    rng.shuffle(unused)
    rng.shuffle(retain_only)
    picked = (unused + retain_only)[:num_images]
    source = "training images the task does not train on"
    missing = num_images - len(picked)
    if missing > 0:
        take = min(missing, len(split.forget_dicts) // 2)
        if take > 0:
            order = sorted(
                range(len(split.forget_dicts)), key=lambda i: _key(split.forget_dicts[i])
            )
            rng.shuffle(order)
            moved = set(order[:take])
            picked += [forget_view([split.forget_dicts[i]], split.forget_ids)[0] for i in moved]
            split = dataclasses.replace(
                split,
                forget_dicts=[r for i, r in enumerate(split.forget_dicts) if i not in moved],
            )
            source += f" ({take} taken out of the forget training images)"
    return picked, split, source


class HeldoutCheck:
    """Measures a :class:`~det_forget.modeling.meta_arch.ForgettingDetector` on held-out
    forget images (see the module docstring).

    Args:
        cfg: the config (input format and test-time resizing).
        records: held-out records (forget objects only).
        forget_ids: the task's forget classes (contiguous ids).
        class_names: every class name, in contiguous-id order.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        cfg,
        records: Sequence[Mapping[str, Any]],
        forget_ids: Sequence[int],
        class_names: Sequence[str],
        batch_size: int = 8,
    ) -> None:
        self.forget_ids = [int(c) for c in forget_ids]
        self.names = [class_names[c] for c in self.forget_ids]
        self.batch_size = max(1, int(batch_size))
        # Test-time resizing, but keep the annotations (the forget loss needs the boxes).
        kwargs = DatasetMapper.from_config(cfg, is_train=True)
        kwargs["augmentations"] = utils.build_augmentation(cfg, is_train=False)
        kwargs["recompute_boxes"] = False
        mapper = DatasetMapper(**kwargs)
        self.records = [dict(r) for r in records]
        self.inputs = [mapper(dict(r)) for r in self.records]
        self.gt = self._ground_truth()

    def __len__(self) -> int:
        return len(self.inputs)

    def _ground_truth(self) -> COCO:
        images, annotations = [], []
        for i, r in enumerate(self.records):
            images.append({"id": i, "height": int(r["height"]), "width": int(r["width"])})
            for a in r.get("annotations", ()):
                box = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "category_id": int(a["category_id"]),
                        "bbox": [float(v) for v in box],
                        "area": float(box[2] * box[3]),
                        "iscrowd": int(a.get("iscrowd", 0)),
                    }
                )
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in self.forget_ids],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    @torch.no_grad()
    def __call__(self, model) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """``({class: held-out AP}, {class: held-out mean forget NLL})`` by name."""
        was_training = model.training
        model.eval()
        try:
            detections: list[dict[str, Any]] = []
            nll, labels = [], []
            for start in range(0, len(self.inputs), self.batch_size):
                batch = self.inputs[start : start + self.batch_size]
                outputs = model.detector(batch)
                for i, out in enumerate(outputs, start):
                    inst = out["instances"].to("cpu")
                    boxes = inst.pred_boxes.tensor.clone()
                    boxes[:, 2:] -= boxes[:, :2]
                    for b, s, c in zip(
                        boxes.tolist(), inst.scores.tolist(), inst.pred_classes.tolist()
                    ):
                        if c in self.forget_ids:
                            detections.append(
                                {"image_id": i, "category_id": c, "bbox": b, "score": s}
                            )
                forget = model._forget_outputs(model.detector, batch, 0)
                nll.append(object_nll(forget.logits, forget.labels, forget.sigmoid).float().cpu())
                labels.append(forget.labels.cpu())
            ap = self._ap(detections)
            losses = dict.fromkeys(self.names)
            if nll:
                classes, means = per_class_mean(torch.cat(nll), torch.cat(labels))
                by_id = {int(c): float(m) for c, m in zip(classes, means, strict=True)}
                losses = {n: by_id.get(c) for n, c in zip(self.names, self.forget_ids, strict=True)}
            return ap, losses
        finally:
            model.train(was_training)

    def _ap(self, detections: list[dict[str, Any]]) -> dict[str, float | None]:
        if not detections:
            # No detection of a forget class at all: AP 0 where there is ground truth.
            present = {a["category_id"] for a in self.gt.dataset["annotations"]}
            return {n: (0.0 if c in present else None) for n, c in zip(self.names, self.forget_ids)}
        with contextlib.redirect_stdout(io.StringIO()):
            dt = self.gt.loadRes(detections)
            ev = COCOeval(self.gt, dt, "bbox")
            ev.params.catIds = list(self.forget_ids)
            ev.params.imgIds = list(range(len(self.records)))
            ev.evaluate()
            ev.accumulate()
        per_class = per_category_ap(ev, self.names)
        return {n: per_class[n]["AP"] for n in self.names}

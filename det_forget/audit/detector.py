"""Audit a detector's forgetting on its ground-truth boxes.

Boxes are classified exactly as the forgetting loss sees them: the
:data:`~det_forget.modeling.meta_arch.forgetting.FORGET_OUTPUTS` function of the
detector's family pools each ground-truth box and returns the box classifier's logits
(background column included) and the box head's features. So:

* membership inference compares forget-class boxes of training images (members) with
  forget-class boxes of held-out images (non-members), per box;
* the probe separates forget-class from retained-class boxes of held-out images on the
  box features (what the box classifier reads).

Given the registered held-out dataset (``nonmember_dataset``), every model is also run as a
detector on held-out images holding the forgotten classes and scored by the project's
COCO evaluator (:class:`~.detector_relearn.HeldoutForgetAP`): AP_f, AP_r and the object
fate of the forgotten objects; with relearn settings, each model is fine-tuned until AP_f
is back at half the base model's (:func:`~.detector_relearn.detector_relearn_time`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..evaluation.metrics import accuracy_per_class, group_mean
from ..modeling.meta_arch.forgetting import FORGET_OUTPUTS
from .membership import membership_inference
from .probe import linear_probe
from .report import AuditReport, ModelAudit

__all__ = ["BoxOutputs", "audit_detector", "box_outputs", "select_images"]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    """The detector inside a ``ForgettingDetector`` (or the model itself)."""
    inner = getattr(model, "detector", None)
    return inner if isinstance(inner, nn.Module) else model


def _forget_outputs_fn(detector: nn.Module):
    fn = next((f for cls, f in FORGET_OUTPUTS.items() if isinstance(detector, cls)), None)
    if fn is None:
        raise ValueError(
            f"cannot classify ground-truth boxes of a {type(detector).__name__}: no function in "
            f"FORGET_OUTPUTS for it (registered: {[c.__name__ for c in FORGET_OUTPUTS]})"
        )
    return fn


def _test_mapper(cfg: Any):
    """Test-time resizing that keeps the annotations (detectron2's test mapper drops them)."""
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    return DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)],
        image_format=cfg.INPUT.FORMAT,
    )


class BoxOutputs(NamedTuple):
    """Class logits, labels and features of ground-truth objects, on the CPU.

    Attributes:
        logits: ``(N, K)``: ``K = C + 1`` (background last) for softmax detectors.
        labels: ``(N,)`` contiguous class ids.
        features: ``(N, D)`` what the class head reads (R-CNN: the box head's output).
        sigmoid: the detector scores classes with independent sigmoids.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor
    sigmoid: bool


def _as_box_outputs(out: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """The parts of a ``FORGET_OUTPUTS`` result (a ``ForgetOutputs``) the audit uses."""
    return out.logits, out.labels, out.features, out.sigmoid


@torch.no_grad()
def box_outputs(
    model: nn.Module,
    dataset_dicts: Sequence[dict],
    cfg: Any,
    *,
    batch_size: int = 4,
) -> BoxOutputs:
    """Class logits, labels and features of every ground-truth box, as forgetting sees them.

    Args:
        model: a detector (or ``ForgettingDetector``) of a family in ``FORGET_OUTPUTS``.
        dataset_dicts: detectron2 dataset dicts with ``annotations``.
        cfg: the detector's config (``INPUT.MIN_SIZE_TEST``, ``MAX_SIZE_TEST``, ``FORMAT``).
        batch_size: images per forward pass.

    Returns:
        A :class:`BoxOutputs`, boxes in image order.
    """
    detector = _unwrap(model)
    fn = _forget_outputs_fn(detector)
    mapper = _test_mapper(cfg)
    was_training = detector.training
    detector.eval()
    logits, labels, feats = [], [], []
    sigmoid = False
    try:
        dicts = [d for d in dataset_dicts if d.get("annotations")]
        for i in range(0, len(dicts), batch_size):
            batch = [mapper(dict(d)) for d in dicts[i : i + batch_size]]
            batch = [b for b in batch if len(b["instances"]) > 0]
            if not batch:
                continue
            out_logits, out_labels, out_feats, sigmoid = _as_box_outputs(fn(detector, batch, 0))
            logits.append(out_logits.float().cpu())
            labels.append(out_labels.long().cpu())
            feats.append(out_feats.flatten(1).float().cpu())
    finally:
        detector.train(was_training)
    if not logits:
        raise ValueError("none of the given images has a ground-truth box to classify")
    return BoxOutputs(torch.cat(logits), torch.cat(labels), torch.cat(feats), sigmoid)


def select_images(
    dataset_dicts: Sequence[dict], classes: Sequence[int], max_boxes: int, seed: int = 0
) -> list[dict]:
    """Images (shuffled with ``seed``) holding ``classes`` boxes, until ``max_boxes`` of them.

    Args:
        dataset_dicts: detectron2 dataset dicts (contiguous ``category_id``).
        classes: the classes whose boxes count.
        max_boxes: stop once this many boxes of ``classes`` are collected (0: every image
            with such a box).
        seed: shuffling seed.

    Returns:
        The chosen dataset dicts.
    """
    wanted = set(int(c) for c in classes)
    order = list(range(len(dataset_dicts)))
    random.Random(seed).shuffle(order)
    chosen, count = [], 0
    for i in order:
        d = dataset_dicts[i]
        n = sum(
            1
            for a in d.get("annotations", ())
            if int(a["category_id"]) in wanted and not a.get("iscrowd", 0)
        )
        if n == 0:
            continue
        chosen.append(d)
        count += n
        if 0 < max_boxes <= count:
            break
    return chosen


def audit_detector(
    base: nn.Module,
    forgotten: nn.Module,
    *,
    cfg: Any,
    member_dicts: Sequence[dict],
    nonmember_dicts: Sequence[dict],
    forget_classes: Sequence[int],
    class_names: Sequence[str],
    retrained: nn.Module | None = None,
    max_samples: int = 1000,
    tolerance: float = 0.05,
    seed: int = 0,
    batch_size: int = 4,
    sources: Mapping[str, str] | None = None,
    nonmember_dataset: str | None = None,
    eval_images: int = 100,
    relearn: Mapping[str, Any] | None = None,
) -> AuditReport:
    """Audit forgetting of ``forget_classes`` by a detector, per ground-truth box.

    Args:
        base: the detector before forgetting (trained on ``member_dicts``).
        forgotten: the detector after forgetting (adapters live or merged).
        cfg: the detectors' config (test-time input size and format).
        member_dicts: dataset dicts the base model was trained on (e.g. ``shapes_train``).
        nonmember_dicts: held-out dataset dicts (e.g. ``shapes_val``).
        forget_classes: contiguous ids of the forgotten classes.
        class_names: class names in contiguous-id order.
        retrained: optional detector trained without the forgotten classes.
        max_samples: forget-class boxes per side (members, non-members), at most (0: all);
            the probe uses every box of the chosen held-out images.
        tolerance: allowed MIA AUC difference to the reference.
        seed: seed of the image choice and of the probe's split.
        batch_size: images per forward pass.
        sources: ``{role: where the model came from}`` for the report.
        nonmember_dataset: the registered dataset ``nonmember_dicts`` are (its COCO json is
            the ground truth): adds AP_f, AP_r and object fate per model on held-out
            images holding the forgotten classes. None: not measured.
        eval_images: how many of those held-out images, at most (0: all).
        relearn: keywords of :func:`~.detector_relearn.detector_relearn_time` (``shots``,
            ``steps``, ``lr``, ``batch_size``, ``eval_period``, ...): adds relearn time,
            fine-tuning on ``member_dicts`` until AP_f on those images is back at half the
            base model's. Needs ``nonmember_dataset``. None: not measured.

    Returns:
        The :class:`AuditReport`.

    Raises:
        ValueError: no forget class, no forget-class box on one side, relearn without
            ``nonmember_dataset``, or a base model with AP_f 0 to relearn towards.
    """
    start = time.perf_counter()
    forget = sorted({int(c) for c in forget_classes})
    if not forget:
        raise ValueError("audit_detector needs at least one forget class")
    members = select_images(member_dicts, forget, max_samples, seed)
    heldout = select_images(nonmember_dicts, forget, max_samples, seed + 1)
    for name, part in (("training", members), ("held-out", heldout)):
        if not part:
            raise ValueError(f"no {name} image holds a box of the forget classes {forget}")
    forget_t = torch.tensor(forget)
    sources = dict(sources or {})
    models = {"base": base, "forgotten": forgotten}
    if retrained is not None:
        models["retrained"] = retrained
    if relearn is not None and nonmember_dataset is None:
        raise ValueError("relearn time needs nonmember_dataset (AP_f is scored on its json)")
    meter = scores = None
    if nonmember_dataset is not None:
        from .detector_relearn import HeldoutForgetAP

        ap_dicts = select_images(nonmember_dicts, forget, 0, seed + 2)
        ap_dicts = ap_dicts[:eval_images] if eval_images > 0 else ap_dicts
        meter = HeldoutForgetAP(cfg, nonmember_dataset, ap_dicts, forget, batch_size=batch_size)
        scores = {role: meter(model) for role, model in models.items()}
    audits: dict[str, ModelAudit] = {}
    counts: dict[str, int] = {}
    for role, model in models.items():
        m_logits, m_labels, _, sigmoid = box_outputs(model, members, cfg, batch_size=batch_size)
        h_logits, h_labels, h_feats, _ = box_outputs(model, heldout, cfg, batch_size=batch_size)
        m_keep = torch.isin(m_labels, forget_t)
        h_keep = torch.isin(h_labels, forget_t)
        membership = membership_inference(
            m_logits[m_keep], m_labels[m_keep], h_logits[h_keep], h_labels[h_keep], sigmoid
        )
        probe = linear_probe(h_feats, h_keep, seed=seed)
        per_class = accuracy_per_class(
            h_logits[h_keep].argmax(dim=1), h_labels[h_keep], h_logits.shape[1]
        )
        relearned = None
        if relearn is not None:
            from .detector_relearn import detector_relearn_time

            relearned = detector_relearn_time(
                model,
                member_dicts,
                meter,
                cfg=cfg,
                original_ap=scores["base"].forget,
                seed=seed,
                **relearn,
            )
        audits[role] = ModelAudit(
            role=role,
            source=sources.get(role, "in memory"),
            membership=membership,
            probe=probe,
            forget_accuracy=group_mean(per_class, forget),
            relearn=relearned,
            forget_ap=None if scores is None else scores[role].forget,
            retain_ap=None if scores is None else scores[role].retain,
            object_fate=None if scores is None else scores[role].object_fate,
        )
        counts = {
            "member_boxes": int(m_keep.sum()),
            "nonmember_boxes": int(h_keep.sum()),
            "probe_boxes": len(h_labels),
        }
        logger.info(
            "%s: MIA AUC loss %.3f confidence %.3f, box-feature probe balanced accuracy %.3f%s%s",
            role,
            membership["loss"].auc,
            membership["confidence"].auc,
            probe.balanced_accuracy,
            "" if scores is None else f", held-out AP_f {scores[role].forget:.1f}",
            "" if relearned is None else f", relearn {relearned.describe()}",
        )
    data = {
        "members": (
            f"forget-class ground-truth boxes of training images ({counts['member_boxes']} "
            f"boxes in {len(members)} images)"
        ),
        "nonmembers": (
            f"forget-class ground-truth boxes of held-out images ({counts['nonmember_boxes']} "
            f"boxes in {len(heldout)} images)"
        ),
        "probe": (
            f"every ground-truth box of those held-out images ({counts['probe_boxes']}), "
            "features = box head output (FORGET_OUTPUTS)"
        ),
        "members_count": counts["member_boxes"],
        "nonmembers_count": counts["nonmember_boxes"],
        "probe_count": counts["probe_boxes"],
        "member_images": len(members),
        "nonmember_images": len(heldout),
        "max_samples": max_samples,
        "seed": seed,
        "forget_class_ids": forget,
    }
    if meter is not None:
        data["heldout_ap"] = (
            f"COCO box AP of each model run as a detector on {len(meter)} held-out images "
            f"holding a forgotten-class box ({meter.num_objects} forgotten objects) of "
            f"{nonmember_dataset}, scored by ForgetCOCOEvaluator (one COCOeval over every "
            "class); object fate of those objects at the evaluator's thresholds"
        )
        data["heldout_ap_images"] = len(meter)
    if relearn is not None:
        data["relearn"] = {
            "train": (
                "training images (members) holding each forgotten class, then each retained "
                "class, whole images with all their boxes, test-time size, no augmentation"
            ),
            "eval": f"AP_f on the {len(meter)} held-out images above",
            "loss": "the detector's own training losses (RPN + box head), every weight trains",
            "original_forget_ap": scores["base"].forget,
            **dict(relearn),
        }
    return AuditReport(
        task="detection",
        forget_classes=[class_names[c] for c in forget],
        models=audits,
        data=data,
        tolerance=tolerance,
        seconds=time.perf_counter() - start,
    )

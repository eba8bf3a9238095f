"""How the DETR family reports forget-class objects to ``ForgettingDetector``.

Two forget losses, chosen by ``FORGET.LOSS.DETR_FORGET`` (the detector's
``forget_loss_mode``):

* ``"matched"`` (det_forget's, the default): the decoder's predictions on forget images
  are Hungarian-matched to the forget-class boxes on every decoder layer (as the auxiliary
  losses do); each matched query's ``-log p(class)`` (``-log sigmoid`` for Deformable
  DETR) goes to the objective, which bounds it per class by default, ``ReLU(BND - w * L)``;
  the box terms (L1 + GIoU) of those matches, averaged over the layers, are kept
  (weighted by beta), so the queries still localise what they no longer name.
* ``"reference"`` (GS-LoRA's released detector code): the last decoder layer only, no
  auxiliary layers; the criterion's weighted classification loss over *all* queries of
  the forget images (focal loss for Deformable DETR: matched queries against their class,
  the others against background; times ``CLASS_WEIGHT``, 2 in GS-LoRA) is the one value
  the objective bounds, ``ReLU(BND - L_cls)`` on the batch (``PER_CLASS`` False); the
  matched queries' weighted L1 + GIoU (5 and 2 in GS-LoRA) are added with beta.
"""

from __future__ import annotations

import torch

from ..meta_arch.forgetting import ForgetOutputs, register_forget_outputs
from .criterion import matched_predictions, matched_targets
from .detr import DETR, DeformableDETR, _SetPredictionDetector

__all__ = ["set_prediction_forget_outputs"]


def set_prediction_forget_outputs(
    detector: _SetPredictionDetector, batched_inputs, jitter: int
) -> ForgetOutputs:
    """Matched queries' logits, labels and embeddings over all decoder layers, and the
    box losses of those matches. ``jitter`` is unused: every decoder layer already gives
    one more prediction per object."""
    del jitter
    outputs, _ = detector.forward_outputs(batched_inputs)
    targets = detector.prepare_targets(batched_inputs)
    crit = detector.criterion
    if getattr(detector, "forget_loss_mode", "matched") == "reference":
        return _reference_forget_outputs(detector, outputs, targets)
    layers = [(outputs["pred_logits"], outputs["pred_boxes"])]
    layers += [(a["pred_logits"], a["pred_boxes"]) for a in outputs["aux_outputs"]]
    # hs is ordered first..last layer; the layer list above is last, then first..
    hs = outputs["hs"]
    layer_hs = [hs[-1]] + [hs[i] for i in range(len(layers) - 1)]
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    logits, labels, feats = [], [], []
    loss_bbox = loss_giou = hs.new_zeros(())
    for (lg, bx), h in zip(layers, layer_hs):
        indices = crit.matcher(lg, bx, targets)
        idx = matched_predictions(indices)
        logits.append(lg[idx])
        feats.append(h[idx])
        labels.append(matched_targets(targets, indices, "labels"))
        box = crit.box_losses(bx, targets, indices, num_boxes)
        loss_bbox = loss_bbox + box["loss_bbox"] * crit.weight_dict["loss_bbox"]
        loss_giou = loss_giou + box["loss_giou"] * crit.weight_dict["loss_giou"]
    return ForgetOutputs(
        logits=torch.cat(logits),
        labels=torch.cat(labels),
        features=torch.cat(feats),
        sigmoid=detector.sigmoid,
        extra_losses={
            "loss_forget_bbox": loss_bbox / len(layers),
            "loss_forget_giou": loss_giou / len(layers),
        },
    )


def _reference_forget_outputs(detector: _SetPredictionDetector, outputs, targets) -> ForgetOutputs:
    """GS-LoRA's detector forget loss: last layer, classification over all queries."""
    crit = detector.criterion
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    indices = crit.matcher(logits, boxes, targets)
    idx = matched_predictions(indices)
    loss_cls = crit.classification_loss(logits, targets, indices, num_boxes)
    box = crit.box_losses(boxes, targets, indices, num_boxes)
    return ForgetOutputs(
        logits=logits[idx],
        labels=matched_targets(targets, indices, "labels"),
        features=outputs["hs"][-1][idx],
        sigmoid=detector.sigmoid,
        extra_losses={
            "loss_forget_bbox": box["loss_bbox"] * crit.weight_dict["loss_bbox"],
            "loss_forget_giou": box["loss_giou"] * crit.weight_dict["loss_giou"],
        },
        forget_loss=(loss_cls * crit.weight_dict["loss_ce"]).reshape(1),
    )


register_forget_outputs(DETR)(set_prediction_forget_outputs)
register_forget_outputs(DeformableDETR)(set_prediction_forget_outputs)

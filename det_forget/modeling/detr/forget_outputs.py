"""How the DETR family reports forget-class objects to ``ForgettingDetector``.

The reference forgetting loss for set prediction: the decoder's predictions on forget
images are Hungarian-matched to the forget-class boxes (every decoder layer, as the
auxiliary losses do); the matched queries' class logits get the bounded forgetting loss
(``ReLU(BND - w * L_cls)``, per class by default) and their box terms (L1 + GIoU) are
kept, so the queries still localise what they no longer name.
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


register_forget_outputs(DETR)(set_prediction_forget_outputs)
register_forget_outputs(DeformableDETR)(set_prediction_forget_outputs)

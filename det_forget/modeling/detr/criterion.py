"""DETR's set criterion: classification (softmax with a no-object weight, or sigmoid
focal) + L1 + GIoU on Hungarian-matched pairs, with auxiliary decoder-layer losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.utils import comm
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from .matcher import HungarianMatcher

__all__ = ["SetCriterion", "matched_predictions", "matched_targets"]


class SetCriterion(nn.Module):
    """Args:
    num_classes: foreground classes (softmax adds a no-object class ``num_classes``).
    matcher: the Hungarian matcher.
    weight_dict: loss name -> weight (``loss_ce``, ``loss_bbox``, ``loss_giou``; auxiliary
        losses reuse them).
    eos_coef: weight of the no-object class in softmax cross-entropy.
    focal: sigmoid focal classification (Deformable DETR).
    focal_alpha / focal_gamma: focal loss parameters.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        eos_coef: float = 0.1,
        focal: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.focal = focal
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def classification_loss(self, logits, targets, indices, num_boxes) -> torch.Tensor:
        idx = matched_predictions(indices)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        if len(idx[0]):
            target_classes[idx] = matched_targets(targets, indices, "labels")
        if not self.focal:
            return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)
        onehot = F.one_hot(target_classes, self.num_classes + 1)[..., :-1].to(logits.dtype)
        loss = sigmoid_focal_loss(
            logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
        )
        # The official ``loss.mean(1).sum() / num_boxes * num_queries``, simplified.
        return loss.sum() / num_boxes

    def box_losses(self, boxes, targets, indices, num_boxes) -> dict[str, torch.Tensor]:
        idx = matched_predictions(indices)
        src = boxes[idx]
        tgt = matched_targets(targets, indices, "boxes")
        l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = generalized_box_iou(
            box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")
        )
        loss_giou = (1 - torch.diag(giou)).sum() / num_boxes
        return {"loss_bbox": l1, "loss_giou": loss_giou}

    def layer_losses(self, logits, boxes, targets, num_boxes) -> dict[str, torch.Tensor]:
        indices = self.matcher(logits, boxes, targets)
        losses = {"loss_ce": self.classification_loss(logits, targets, indices, num_boxes)}
        losses.update(self.box_losses(boxes, targets, indices, num_boxes))
        return losses

    def forward(
        self, outputs: dict, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Weighted losses of the last layer and, if ``outputs["aux_outputs"]``, of every
        earlier decoder layer (suffix ``_0``, ``_1``, ...)."""
        num_boxes = sum(len(t["labels"]) for t in targets)
        num_boxes_t = torch.as_tensor(
            [num_boxes], dtype=torch.float, device=outputs["pred_logits"].device
        )
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(num_boxes_t)
        num_boxes_t = (num_boxes_t / comm.get_world_size()).clamp(min=1).item()
        layers = [(outputs["pred_logits"], outputs["pred_boxes"], "")]
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            layers.append((aux["pred_logits"], aux["pred_boxes"], f"_{i}"))
        losses = {}
        for logits, boxes, suffix in layers:
            for k, v in self.layer_losses(logits, boxes, targets, num_boxes_t).items():
                losses[k + suffix] = v * self.weight_dict[k]
        return losses


def matched_predictions(indices) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, query)`` index tensors of the matched predictions of a batch."""
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src = torch.cat([src for src, _ in indices])
    return batch, src


def matched_targets(targets, indices, key: str) -> torch.Tensor:
    """``targets[*][key]`` of the matched objects, in the order of
    :func:`matched_predictions`."""
    return torch.cat([t[key][j] for t, (_, j) in zip(targets, indices)])

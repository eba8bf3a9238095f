"""Hungarian matching of predictions to ground-truth objects (DETR's set prediction)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising class + L1 + GIoU costs, image by image.

    Args:
        cost_class / cost_bbox / cost_giou: weights of the three costs.
        focal: class cost of sigmoid focal loss (Deformable DETR) instead of ``-p(class)``.
        focal_alpha / focal_gamma: focal loss parameters.
    """

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal = focal
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def forward(
        self,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Args:
            pred_logits: ``(N, Q, K)``.
            pred_boxes: ``(N, Q, 4)`` normalised ``(cx, cy, w, h)``.
            targets: per image ``{"labels": (T,), "boxes": (T, 4) normalised cxcywh}``.

        Returns:
            per image ``(query indices, target indices)``, each of length ``min(Q, T)``.
        """
        n, q = pred_logits.shape[:2]
        sizes = [len(t["labels"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.empty(0, dtype=torch.int64)
            return [(empty, empty) for _ in range(n)]
        logits = pred_logits.flatten(0, 1).float()
        boxes = pred_boxes.flatten(0, 1).float()
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).float()
        if self.focal:
            prob = logits.sigmoid()
            a, g = self.focal_alpha, self.focal_gamma
            neg = (1 - a) * prob**g * -(1 - prob + 1e-8).log()
            pos = a * (1 - prob) ** g * -(prob + 1e-8).log()
            cost_class = pos[:, tgt_ids] - neg[:, tgt_ids]
        else:
            cost_class = -logits.softmax(-1)[:, tgt_ids]
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(
            box_convert(boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy")
        )
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class
        cost = (cost + self.cost_giou * cost_giou).view(n, q, -1).cpu()
        out = []
        for i, c in enumerate(cost.split(sizes, -1)):
            rows, cols = linear_sum_assignment(c[i].numpy())
            out.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return out

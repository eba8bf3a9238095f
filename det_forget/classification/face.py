"""Face recognition: a ViT embedding model with a CosFace margin head.

CosFace (Wang et al., 2018) classifies by scaled cosine similarity between the
L2-normalised embedding and L2-normalised class weights, subtracting a margin ``m`` from
the true class's cosine during training: ``logits = s * (cos(theta_j) - m * [j == y])``.
Identification predicts ``argmax_j cos(theta_j)``; verification compares embeddings by
cosine similarity (:func:`det_forget.classification.evaluate.verification_report`).

GS-LoRA's face setting (CASIA-Face100, s = 64, m = 0.35) forgets identities with the same
losses as classification: the forget CE is the CosFace CE of forget samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .model import CLASSIFIER_REGISTRY, ViTClassifier

__all__ = ["CosFaceHead", "FaceRecognizer"]


class CosFaceHead(nn.Module):
    """Large-margin cosine head: ``s * (cos(theta) - m * onehot(y))``.

    Args:
        embed_dim: embedding width.
        num_classes: identities.
        scale: ``s``.
        margin: ``m`` (subtracted from the true class's cosine when labels are given).
    """

    def __init__(
        self, *, embed_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35
    ):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"CosFace scale must be > 0, got {scale}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"CosFace margin must be in [0, 1), got {margin}")
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``cos(theta)`` between embeddings ``(N, D)`` and class weights: ``(N, C)``."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits; with ``labels`` the margin is applied to each sample's true class."""
        cos = self.cosine(embeddings)
        if labels is not None:
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * cos

    def extra_repr(self) -> str:
        c, d = self.weight.shape
        return f"classes={c}, dim={d}, s={self.scale}, m={self.margin}"


@CLASSIFIER_REGISTRY.register()
class FaceRecognizer(ViTClassifier):
    """ViT embedding (the class token after the final norm) + :class:`CosFaceHead`.

    Args:
        num_classes: identities.
        scale: CosFace ``s``.
        margin: CosFace ``m``.
        **vit_kwargs: architecture arguments of :class:`ViTClassifier`.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.35,
        img_size: int = 112,
        in_chans: int = 3,
        patch_size: int = 8,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pixel_mean: Sequence[float] = (0.5, 0.5, 0.5),
        pixel_std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            img_size=img_size,
            in_chans=in_chans,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
        self.vit.reset_classifier(0)
        self.head = CosFaceHead(
            embed_dim=embed_dim, num_classes=num_classes, scale=scale, margin=margin
        )
        self.arch.update(name=type(self).__name__, scale=float(scale), margin=float(margin))

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        args = ViTClassifier.from_config(cfg)
        args.update(scale=cfg.CLS.FACE.SCALE, margin=cfg.CLS.FACE.MARGIN)
        return args

    def forward(
        self, images: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Identification logits ``s * cos`` (no margin), optionally with the embeddings."""
        feats = self.features(images)
        logits = self.head(feats)
        return (logits, feats) if return_features else logits

    def train_logits(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(margin logits, embeddings)``: CosFace logits with the margin on true classes."""
        feats = self.features(images)
        return self.head(feats, labels), feats

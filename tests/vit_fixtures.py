"""Tiny ViTs of each family the LoRA core must work on (imported by name by tests).

A module of its own, not ``conftest``: under ``--import-mode=importlib`` the name
``conftest`` is whichever conftest.py pytest loaded last (tests/gui/conftest.py in a full
run), so ``from conftest import ...`` breaks depending on which tests are collected.
"""

from __future__ import annotations

import torch
from torch import nn


def tiny_timm_vit(num_classes: int = 5) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=num_classes
    ).eval()


def tiny_d2_vit() -> nn.Module:
    from detectron2.modeling.backbone.vit import ViT

    torch.manual_seed(0)
    return ViT(
        img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, pretrain_img_size=32
    ).eval()


def d2_vit_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)["last_feat"]


MODEL_FACTORIES = {
    "timm_vit": (tiny_timm_vit, lambda m, x: m(x)),
    "detectron2_vit": (tiny_d2_vit, d2_vit_output),
}

"""Shared fixtures: tiny models of each family the LoRA core must work on."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

# Test helper modules (detection_fixtures) import by name under --import-mode=importlib.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def vit_family(request):
    """``(name, build_fn, forward_fn)`` for each ViT implementation we support."""
    build, forward = MODEL_FACTORIES[request.param]
    return request.param, build, forward


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Register the tiny shapes dataset (generated lazily on first use)."""
    from detection_fixtures import register_tiny_shapes

    register_tiny_shapes(tmp_path_factory.mktemp("tiny_shapes"))

"""Backbones registered in detectron2's ``BACKBONE_REGISTRY``."""

from .vit_sfp import build_vit_sfp_backbone

__all__ = ["build_vit_sfp_backbone"]

"""detectron2's plain ViT + simple feature pyramid (ViTDet), built from yacs keys.

detectron2 ships ViTDet only as a LazyConfig; this registers the same modules in
``BACKBONE_REGISTRY`` so a yacs config (``MODEL.BACKBONE.NAME: build_vit_sfp_backbone``)
can use them, from a CPU-tiny size up to ViTDet-B. LoRA adapters are not added here:
the forgetting meta-architecture injects them by module name into whatever detector it
wraps (``backbone.net.blocks.N.mlp.fc1`` ...), so the backbone stays a stock module that
loads ViTDet model-zoo weights by key name.
"""

from __future__ import annotations

import math
from functools import partial

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid, ViT
from torch import nn

__all__ = ["build_vit_sfp_backbone"]


@BACKBONE_REGISTRY.register()
def build_vit_sfp_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """ViT (``backbone.net``) + :class:`SimpleFeaturePyramid` from ``cfg.MODEL.VIT``.

    The keys are documented in :mod:`det_forget.config.vit`.

    Output features are named ``p<log2 stride>`` (``p3..p6`` for the tiny default), as
    detectron2's FPN names them, so RPN/ROI configs read like FPN ones.
    """
    v = cfg.MODEL.VIT
    if input_shape.channels != 3:
        raise ValueError(f"ViT backbone expects 3 input channels, got {input_shape.channels}")
    net = ViT(
        img_size=v.IMG_SIZE,
        patch_size=v.PATCH_SIZE,
        in_chans=input_shape.channels,
        embed_dim=v.EMBED_DIM,
        depth=v.DEPTH,
        num_heads=v.NUM_HEADS,
        mlp_ratio=v.MLP_RATIO,
        qkv_bias=True,
        drop_path_rate=v.DROP_PATH_RATE,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        window_size=v.WINDOW_SIZE,
        window_block_indexes=list(v.WINDOW_BLOCK_INDEXES),
        use_rel_pos=v.USE_REL_POS,
        pretrain_img_size=v.PRETRAIN_IMG_SIZE,
        out_feature="last_feat",
    )
    for f in v.SCALE_FACTORS:
        stride = v.PATCH_SIZE / f
        if stride != int(stride) or not math.log2(stride).is_integer():
            raise ValueError(
                f"MODEL.VIT.SCALE_FACTORS {list(v.SCALE_FACTORS)}: factor {f} gives stride "
                f"{stride}, strides must be powers of two"
            )
    return SimpleFeaturePyramid(
        net=net,
        in_feature="last_feat",
        out_channels=v.OUT_CHANNELS,
        scale_factors=tuple(v.SCALE_FACTORS),
        top_block=LastLevelMaxPool() if v.TOP_BLOCK else None,
        norm=v.NORM,
        square_pad=v.SQUARE_PAD,
    )

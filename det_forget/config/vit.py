"""``MODEL.VIT``: the plain ViT + simple feature pyramid backbone (ViTDet).

Read by ``build_vit_sfp_backbone`` (``MODEL.BACKBONE.NAME``,
:mod:`det_forget.modeling.backbone.vit_sfp`), whichever detector uses it: the demo's
Faster R-CNN (``rcnn``) and the tiny DETR models (``detr``). The defaults are the CPU-tiny
model of the embedded demo; ``configs/vitdet_b_coco_forget.yaml`` has ViTDet-B's values.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

__all__ = ["add_vit_config"]


def add_vit_config(cfg: CN) -> None:
    """Add ``cfg.MODEL.VIT`` with its defaults (in place; ``cfg`` has a ``MODEL`` node)."""
    cfg.MODEL.VIT = type(cfg)()
    # Input size in pixels the position embeddings are laid out for (square).
    cfg.MODEL.VIT.IMG_SIZE = 192
    # Patch size in pixels: the ViT's stride (16 in ViTDet).
    cfg.MODEL.VIT.PATCH_SIZE = 16
    # Token width.
    cfg.MODEL.VIT.EMBED_DIM = 192
    # Number of transformer blocks (each one GS-LoRA sparsity group with "block" groups).
    cfg.MODEL.VIT.DEPTH = 6
    # Attention heads per block; EMBED_DIM must be divisible by it.
    cfg.MODEL.VIT.NUM_HEADS = 3
    # FFN hidden width as a multiple of EMBED_DIM.
    cfg.MODEL.VIT.MLP_RATIO = 4.0
    # Stochastic depth rate of the last block (linearly increasing from 0 over the blocks).
    cfg.MODEL.VIT.DROP_PATH_RATE = 0.0
    # Window size in patches of windowed attention (0: every block attends globally).
    cfg.MODEL.VIT.WINDOW_SIZE = 0
    # Indexes of the blocks that use windowed attention (ViTDet-B: all but 2, 5, 8, 11).
    cfg.MODEL.VIT.WINDOW_BLOCK_INDEXES = []
    # Relative position biases in attention (ViTDet).
    cfg.MODEL.VIT.USE_REL_POS = False
    # Input size in pixels of the checkpoint's absolute position embeddings (224 for
    # ImageNet-pretrained ViTs); they are interpolated to IMG_SIZE / PATCH_SIZE.
    cfg.MODEL.VIT.PRETRAIN_IMG_SIZE = 192
    # Channels of every pyramid output.
    cfg.MODEL.VIT.OUT_CHANNELS = 128
    # One pyramid output per factor, at stride PATCH_SIZE / factor (strides must be powers
    # of two), named p<log2 stride>: [2.0, 1.0, 0.5] gives p3, p4, p5.
    cfg.MODEL.VIT.SCALE_FACTORS = [2.0, 1.0, 0.5]
    # Add one more level by max-pooling the coarsest output (p6 for the default).
    cfg.MODEL.VIT.TOP_BLOCK = True
    # Normalisation of the pyramid convs: "LN" (ViTDet), "" (none) or any detectron2
    # get_norm name.
    cfg.MODEL.VIT.NORM = "LN"
    # Pad inputs to a square of this many pixels (ViTDet: 1024); 0 pads only to a
    # multiple of the coarsest output stride.
    cfg.MODEL.VIT.SQUARE_PAD = 0

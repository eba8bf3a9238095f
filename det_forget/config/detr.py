"""``MODEL.DETR`` and ``SOLVER.BACKBONE_MULTIPLIER``: the DETR family of detectors.

``MODEL.DETR`` is read by the ``DETR`` and ``DeformableDETR`` meta-architectures
(:mod:`det_forget.modeling.detr`; task type ``detr``). The defaults are the official COCO
models' (DETR R50; ``configs/detr/deformable_detr_r50_coco.yaml`` sets Deformable DETR's).
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

__all__ = ["add_detr_config"]


def add_detr_config(cfg: CN) -> None:
    """Add ``cfg.MODEL.DETR`` (and ``cfg.SOLVER.BACKBONE_MULTIPLIER``) with their defaults."""
    cfg.MODEL.DETR = type(cfg)()
    # Foreground classes (COCO: 80); the class head has one more output ("no object") in
    # DETR, none more in Deformable DETR (sigmoid per class).
    cfg.MODEL.DETR.NUM_CLASSES = 80
    # Object queries: the most objects one image can yield (Deformable DETR: 300).
    cfg.MODEL.DETR.NUM_OBJECT_QUERIES = 100
    # Backbone outputs fed to the transformer, finest first. DETR takes exactly one;
    # Deformable DETR one per level (e.g. ["res3", "res4", "res5"]).
    cfg.MODEL.DETR.IN_FEATURES = ["res5"]
    # Transformer width d_model.
    cfg.MODEL.DETR.HIDDEN_DIM = 256
    # Attention heads; HIDDEN_DIM must be divisible by it.
    cfg.MODEL.DETR.NHEADS = 8
    # Encoder layers (each one GS-LoRA sparsity group with "block" groups).
    cfg.MODEL.DETR.ENC_LAYERS = 6
    # Decoder layers (each one sparsity group too).
    cfg.MODEL.DETR.DEC_LAYERS = 6
    # FFN hidden width (linear1 -> linear2, where the FFN adapters go; Deformable DETR:
    # 1024).
    cfg.MODEL.DETR.DIM_FEEDFORWARD = 2048
    # Dropout in attention and FFNs during training, in [0, 1).
    cfg.MODEL.DETR.DROPOUT = 0.1
    # Deformable DETR: feature levels; levels beyond len(IN_FEATURES) are made by
    # stride-2 3x3 convs on the last one.
    cfg.MODEL.DETR.NUM_FEATURE_LEVELS = 4
    # Deformable DETR: sampling points per head and level in the encoder.
    cfg.MODEL.DETR.ENC_N_POINTS = 4
    # Deformable DETR: sampling points per head and level in the decoder.
    cfg.MODEL.DETR.DEC_N_POINTS = 4
    # Auxiliary losses on every decoder layer's predictions (official recipe).
    cfg.MODEL.DETR.DEEP_SUPERVISION = True
    # Hungarian matching cost of the class term (Deformable DETR: 2).
    cfg.MODEL.DETR.COST_CLASS = 1.0
    # Matching cost of the L1 box distance (normalised cxcywh).
    cfg.MODEL.DETR.COST_BBOX = 5.0
    # Matching cost of the generalised IoU.
    cfg.MODEL.DETR.COST_GIOU = 2.0
    # Loss weight of the classification term (Deformable DETR: 2).
    cfg.MODEL.DETR.CLASS_WEIGHT = 1.0
    # Loss weight of the L1 box term.
    cfg.MODEL.DETR.L1_WEIGHT = 5.0
    # Loss weight of the generalised IoU term.
    cfg.MODEL.DETR.GIOU_WEIGHT = 2.0
    # DETR (softmax): relative weight of the "no object" class in the cross-entropy.
    cfg.MODEL.DETR.NO_OBJECT_WEIGHT = 0.1
    # Deformable DETR (sigmoid): alpha of the focal loss and of the focal matching cost.
    cfg.MODEL.DETR.FOCAL_ALPHA = 0.25
    # Freeze every backbone parameter (the tiny models keep the demo ViT's weights).
    cfg.MODEL.DETR.FREEZE_BACKBONE = False
    if "SOLVER" in cfg:
        # Learning-rate factor of the parameters under a "backbone." module (DETR trains
        # its backbone at 0.1x); read by det_forget's detection optimizer for any
        # detector (rcnn and detr), 1.0 leaves every parameter at SOLVER.BASE_LR.
        cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0

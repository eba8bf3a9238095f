"""Tiny detectron2 configs and data for detection tests (seconds, not minutes)."""

from __future__ import annotations

import os

import torch
from detectron2.modeling import build_model

import det_forget  # noqa: F401  (registrations)
from det_forget.data import register_shapes_dataset
from det_forget.engine.inference import build_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAIN, TINY_VAL = "tiny_shapes_train", "tiny_shapes_val"


def register_tiny_shapes(root) -> None:
    """24 train / 8 val images of 64 px, registered once per test session."""
    register_shapes_dataset(
        root=str(root), names=(TINY_TRAIN, TINY_VAL), num_train=24, num_val=8, image_size=64
    )


def tiny_cfg(output_dir, config_file: str = "coco_forget.yaml", **overrides):
    """A forgetting config (default ``configs/coco_forget.yaml``) shrunk: 64 px, ViT dim 48
    x 2 blocks, 32-ch pyramid, and for the DETR family a 32-d transformer of 2 + 2 layers."""
    cfg = build_config(
        os.path.join(REPO, "configs", config_file),
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            "",
            "MODEL.VIT.IMG_SIZE",
            64,
            "MODEL.VIT.PRETRAIN_IMG_SIZE",
            64,
            "MODEL.VIT.EMBED_DIM",
            48,
            "MODEL.VIT.DEPTH",
            2,
            "MODEL.VIT.NUM_HEADS",
            2,
            "MODEL.VIT.OUT_CHANNELS",
            32,
            "MODEL.ROI_BOX_HEAD.FC_DIM",
            64,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            32,
            "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
            32,
            "INPUT.MIN_SIZE_TRAIN",
            (64,),
            "INPUT.MAX_SIZE_TRAIN",
            64,
            "INPUT.MIN_SIZE_TEST",
            64,
            "INPUT.MAX_SIZE_TEST",
            64,
            "DATASETS.TRAIN",
            (TINY_TRAIN,),
            "DATASETS.TEST",
            (TINY_VAL,),
            "DATALOADER.NUM_WORKERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            2,
            "SOLVER.CHECKPOINT_PERIOD",
            1000,
            "SOLVER.WARMUP_ITERS",
            1,
            "FORGET.MAX_ITER",
            3,
            "FORGET.DATA_RATIO",
            1.0,
            "FORGET.SPARSITY.WARMUP_ITERS",
            0,
            "OUTPUT_DIR",
            str(output_dir),
            "MODEL.DETR.HIDDEN_DIM",
            32,
            "MODEL.DETR.NHEADS",
            2,
            "MODEL.DETR.ENC_LAYERS",
            2,
            "MODEL.DETR.DEC_LAYERS",
            2,
            "MODEL.DETR.DIM_FEEDFORWARD",
            64,
            "MODEL.DETR.NUM_OBJECT_QUERIES",
            8,
        ],
    )
    for k, v in overrides.items():
        cfg.merge_from_list([k, v])
    return cfg


def save_base_checkpoint(cfg, path, seed: int = 0) -> str:
    """A plain checkpoint of the tiny detector ``FORGET.DETECTOR`` (random weights)."""
    base_cfg = cfg.clone()
    base_cfg.defrost()
    base_cfg.MODEL.META_ARCHITECTURE = cfg.FORGET.DETECTOR
    torch.manual_seed(seed)
    model = build_model(base_cfg)
    torch.save({"model": model.state_dict()}, path)
    return str(path)

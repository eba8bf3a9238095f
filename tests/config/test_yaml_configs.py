"""Every yaml file under configs/ loads as its tool loads it and builds its model.

Full-size models (ResNet-50 DETR / Deformable DETR, ViTDet-B) are built with size
overrides given as opts, so the yaml file itself is loaded unchanged; no weights or
datasets are read (class names resolve through the datasets' registered metadata).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from torch_threads import one_torch_thread

import det_forget  # noqa: F401  (registrations)
from det_forget.classification.cli import setup_cfg
from det_forget.classification.model import build_classifier
from det_forget.config import check_ignored_keys
from det_forget.engine import finalize_forget_config
from det_forget.engine.inference import build_config
from det_forget.forgetting.methods import check_method, task_type_of

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
YAML_FILES = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))
DETECTION = [p for p in YAML_FILES if not p.startswith("classification/")]
CLASSIFICATION = [p for p in YAML_FILES if p.startswith("classification/")]

# A ResNet-18 under a 32-d transformer of 1 + 1 layers (for the ResNet-50 DETR family).
TINY_RESNET_DETR = [
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.DETR.HIDDEN_DIM", 32,
    "MODEL.DETR.NHEADS", 2,
    "MODEL.DETR.ENC_LAYERS", 1,
    "MODEL.DETR.DEC_LAYERS", 1,
    "MODEL.DETR.DIM_FEEDFORWARD", 64,
    "MODEL.DETR.NUM_OBJECT_QUERIES", 10,
]  # fmt: skip
# A 2-block, 64-d ViT with a thin box head (for ViTDet-B).
TINY_VITDET = [
    "MODEL.VIT.EMBED_DIM", 64,
    "MODEL.VIT.DEPTH", 2,
    "MODEL.VIT.NUM_HEADS", 2,
    "MODEL.VIT.WINDOW_BLOCK_INDEXES", [0],
    "MODEL.VIT.OUT_CHANNELS", 32,
    "MODEL.ROI_BOX_HEAD.CONV_DIM", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
]  # fmt: skip


def _size_overrides(cfg) -> list:
    """Opts that shrink a full-size model; none for the CPU-tiny ones."""
    if cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone" and cfg.MODEL.RESNETS.DEPTH >= 50:
        return TINY_RESNET_DETR
    if cfg.MODEL.BACKBONE.NAME == "build_vit_sfp_backbone" and cfg.MODEL.VIT.EMBED_DIM > 192:
        return TINY_VITDET
    return []


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def test_configs_found():
    assert "detr/deformable_detr_r50_coco_forget.yaml" in DETECTION
    assert "detr/deformable_detr_r50_coco_forget_continual.yaml" in DETECTION
    assert "vitdet_b_coco_forget.yaml" in DETECTION
    assert "classification/face_casia100.yaml" in CLASSIFICATION


@pytest.mark.parametrize("name", DETECTION)
def test_detection_config_loads_and_builds(name):
    path = CONFIGS / name
    opts = _size_overrides(build_config(path)) + ["MODEL.DEVICE", "cpu"]
    cfg = build_config(path, opts)
    check_ignored_keys(cfg)
    if cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector":
        check_method(cfg.FORGET.METHOD, task_type_of(cfg))
        # Resolves the classes against the training set's metadata (no data is read).
        finalize_forget_config(cfg)
        assert cfg.SOLVER.MAX_ITER % cfg.FORGET.MAX_ITER == 0
    torch.manual_seed(0)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector":
        assert type(model.detector).__name__ == cfg.FORGET.DETECTOR
        if model.lora_report is not None:
            assert model.lora_report.wrapped, f"{name}: no layer matched FORGET.LORA"


def test_deformable_detr_coco_forget_configs_keep_their_tasks():
    single = build_config(CONFIGS / "detr/deformable_detr_r50_coco_forget.yaml")
    assert len(single.FORGET.CLASSES) == 10 and single.FORGET.MAX_ITER == 6000
    continual = build_config(CONFIGS / "detr/deformable_detr_r50_coco_forget_continual.yaml")
    assert [len(t) for t in continual.FORGET.TASKS] == [10] * 7
    finalize_forget_config(continual)
    assert continual.SOLVER.MAX_ITER == 7 * 6000


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_config_loads_and_builds(name):
    cfg = setup_cfg(str(CONFIGS / name), ["CLS.NUM_THREADS", "0"])
    check_method(cfg.FORGET.METHOD, task_type_of(cfg))
    torch.manual_seed(0)
    model = build_classifier(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0

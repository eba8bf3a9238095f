"""DETR's two forget losses: det_forget's matched-query loss and GS-LoRA's detector code
(``FORGET.LOSS.DETR_FORGET: reference``), and the per-task beta list."""

from __future__ import annotations

import pytest
import torch
from detection_fixtures import TINY_TRAIN, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from torch_threads import one_torch_thread

from det_forget.checkpoint import ForgetCheckpointer
from det_forget.errors import ConfigValueError
from det_forget.forgetting import ForgetTask

DEFORMABLE = "detr/shapes_deformable_detr_tiny_forget.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model(tmp_path, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_cfg(tmp_path, DEFORMABLE, **overrides)
    cfg.defrost()
    cfg.MODEL.DETR.IN_FEATURES = ["p3", "p4"]
    cfg.MODEL.WEIGHTS = save_base_checkpoint(cfg, tmp_path / "base.pth")
    torch.manual_seed(0)
    model = build_model(cfg)
    ForgetCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return cfg, model


def _forget_batch(cfg, n=4):
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(TINY_TRAIN)[:n]]
    forget = []
    for b in batch:
        inst = b["instances"]
        if (inst.gt_classes < 2).any():
            forget.append({**b, "instances": inst[inst.gt_classes < 2]})
    assert forget, "the tiny set has images with classes 0/1"
    return forget, batch


REFERENCE = {
    "FORGET.LOSS.DETR_FORGET": "reference",
    "FORGET.LOSS.PER_CLASS": False,
    "FORGET.LOSS.BOUND": 1000.0,  # far above the loss: the ReLU stays linear
    "FORGET.LOSS.FORGET_WEIGHT": 0.5,
    "MODEL.DETR.DEEP_SUPERVISION": False,
    "MODEL.DETR.CLASS_WEIGHT": 2.0,
}


def test_reference_mode_bounds_the_criterion_classification_loss_of_all_queries(
    tmp_path, tiny_shapes
):
    cfg, model = _model(tmp_path, **REFERENCE)
    assert model.detector.forget_loss_mode == "reference"
    model.set_task(ForgetTask(0, forget=(0, 1), retain=tuple(range(2, 10))))
    forget, batch = _forget_batch(cfg)
    model.train()
    torch.manual_seed(1)
    terms = model({"forget": forget, "retain": batch})
    # The detector's own criterion on the forget images (last layer, no aux): its
    # weighted classification loss is over every query (unmatched ones against background).
    torch.manual_seed(1)
    own = model.detector(forget)
    assert set(own) == {"loss_ce", "loss_bbox", "loss_giou"}  # no auxiliary layers
    beta = 0.5
    torch.testing.assert_close(terms["loss_forget_bounded"], beta * (1000.0 - own["loss_ce"]))
    torch.testing.assert_close(terms["loss_forget_bbox"], beta * own["loss_bbox"])
    torch.testing.assert_close(terms["loss_forget_giou"], beta * own["loss_giou"])
    # The matched-query mode gives another value for the same batch.
    matched_cfg, matched = _model(
        tmp_path / "m", **{**REFERENCE, "FORGET.LOSS.DETR_FORGET": "matched"}
    )
    matched.set_task(ForgetTask(0, forget=(0, 1), retain=tuple(range(2, 10))))
    matched.train()
    torch.manual_seed(1)
    other = matched({"forget": forget, "retain": batch})
    assert not torch.allclose(other["loss_forget_bounded"], terms["loss_forget_bounded"])
    sum(terms.values()).backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_reference_mode_refuses_per_class_bounding_and_unbounded_methods(tmp_path, tiny_shapes):
    with pytest.raises(ConfigValueError, match="PER_CLASS False"):
        _model(tmp_path, **{**REFERENCE, "FORGET.LOSS.PER_CLASS": True})
    with pytest.raises(ConfigValueError, match="PER_OBJECT False"):
        _model(tmp_path / "o", **{**REFERENCE, "FORGET.LOSS.PER_OBJECT": True})
    with pytest.raises(ConfigValueError, match="no bounded forget term"):
        _model(tmp_path / "n", **{**REFERENCE, "FORGET.METHOD": "neg_grad"})
    with pytest.raises(ConfigValueError, match="DETR_FORGET must be one of"):
        _model(tmp_path / "x", **{"FORGET.LOSS.DETR_FORGET": "official"})


def test_beta_per_task(tmp_path, tiny_shapes):
    _, model = _model(tmp_path, **{"FORGET.LOSS.FORGET_WEIGHTS": [0.015, 0.02, 0.025]})
    for index, beta in enumerate((0.015, 0.02, 0.025)):
        model.set_task(ForgetTask(index, forget=(index,), retain=tuple(range(index + 1, 10))))
        assert model.objective.forget_weight == beta
    with pytest.raises(ConfigValueError, match="one value per task"):
        model.set_task(ForgetTask(3, forget=(3,), retain=tuple(range(4, 10))))

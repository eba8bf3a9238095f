"""``FORGET.OPTIMIZER``: one name -> torch optimizer mapping for detection and classification."""

from __future__ import annotations

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from det_forget.classification.config import get_classification_cfg
from det_forget.classification.trainer import _build_optimizer
from det_forget.config import OPTIMIZERS, add_forget_config, resolve_optimizer
from det_forget.engine.base_trainer import build_optimizer


@pytest.mark.parametrize(
    "name, cls",
    [
        ("AdamW", torch.optim.AdamW),
        ("adamw", torch.optim.AdamW),
        ("Adam", torch.optim.Adam),
        ("ADAM", torch.optim.Adam),
        ("SGD", torch.optim.SGD),
        ("sgd", torch.optim.SGD),
    ],
)
def test_names_map_to_torch_optimizers(name, cls):
    got, kwargs = resolve_optimizer(name, weight_decay=0.01, momentum=0.5)
    assert got is cls
    assert kwargs["weight_decay"] == 0.01
    assert kwargs.get("momentum", 0.5) == 0.5
    assert ("momentum" in kwargs) == (cls is torch.optim.SGD)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="FORGET.OPTIMIZER 'lamb'") as err:
        resolve_optimizer("lamb", weight_decay=0.0)
    for name in OPTIMIZERS:
        assert name in str(err.value)


def test_default_is_the_same_for_every_task_type():
    assert add_forget_config(get_cfg()).FORGET.OPTIMIZER == "AdamW"
    assert get_classification_cfg().FORGET.OPTIMIZER == "AdamW"
    assert "OPTIMIZER" not in get_classification_cfg().CLS.SOLVER


@pytest.mark.parametrize("name", ["Adam", "sgd"])
def test_detection_and_classification_read_the_same_key(name):
    model = nn.Linear(3, 2)
    det = add_forget_config(get_cfg())
    det.FORGET.OPTIMIZER = name
    det.SOLVER.BASE_LR, det.SOLVER.WEIGHT_DECAY = 0.05, 0.001
    cls_cfg = get_classification_cfg()
    cls_cfg.FORGET.OPTIMIZER = name
    cls_cfg.CLS.SOLVER.BASE_LR, cls_cfg.CLS.SOLVER.WEIGHT_DECAY = 0.05, 0.001
    detection = build_optimizer(det, model)
    classification = _build_optimizer(
        list(model.parameters()), cls_cfg.CLS.SOLVER, cls_cfg.FORGET.OPTIMIZER
    )
    expected, _ = resolve_optimizer(name, weight_decay=0.0)
    # detectron2 may wrap the class for gradient clipping; it stays a subclass.
    assert isinstance(detection, expected) and type(classification) is expected
    for opt in (detection, classification):
        group = opt.param_groups[0]
        assert group["lr"] == 0.05 and group["weight_decay"] == 0.001


def test_detection_refuses_an_unknown_optimizer():
    cfg = add_forget_config(get_cfg())
    cfg.FORGET.OPTIMIZER = "Adagrad"
    with pytest.raises(ValueError, match="valid"):
        build_optimizer(cfg, nn.Linear(3, 2))

"""DETR and Deformable DETR: matching, criterion, training/inference, forgetting."""

import itertools

import pytest
import torch
from detection_fixtures import TINY_TRAIN, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import Instances

from det_forget.forgetting import ForgetTask, build_groups
from det_forget.lora import LoraConfig, LoraLinear, inject_lora
from det_forget.modeling.detr import (
    DETR,
    DeformableDETR,
    DeformableTransformer,
    DetrTransformer,
    HungarianMatcher,
    SetCriterion,
)
from det_forget.modeling.meta_arch import ForgettingDetector

CONFIGS = {
    "DETR": "detr/shapes_detr_tiny_forget.yaml",
    "DeformableDETR": "detr/shapes_deformable_detr_tiny_forget.yaml",
}


@pytest.fixture(params=sorted(CONFIGS))
def arch(request, tiny_shapes):
    return request.param


def _detector_cfg(tmp_path, arch):
    cfg = tiny_cfg(tmp_path, CONFIGS[arch])
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = arch
    if arch == "DeformableDETR":
        cfg.MODEL.DETR.IN_FEATURES = ["p3", "p4"]
    return cfg


def _batch(cfg, n=2):
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(d) for d in DatasetCatalog.get(TINY_TRAIN)[:n]]


def test_matcher_finds_the_cheapest_assignment():
    torch.manual_seed(0)
    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
    logits = torch.randn(1, 4, 6)
    boxes = torch.rand(1, 4, 4) * 0.4 + 0.3
    targets = [{"labels": torch.tensor([1, 4, 2]), "boxes": torch.rand(3, 4) * 0.4 + 0.3}]
    ((rows, cols),) = matcher(logits, boxes, targets)
    # The same costs, recomputed here, minimised over all 4P3 assignments by brute force.
    from torchvision.ops import box_convert, generalized_box_iou

    prob = logits[0].softmax(-1)[:, targets[0]["labels"]]
    giou = generalized_box_iou(
        box_convert(boxes[0], "cxcywh", "xyxy"), box_convert(targets[0]["boxes"], "cxcywh", "xyxy")
    )
    cost = -prob + 5 * torch.cdist(boxes[0], targets[0]["boxes"], p=1) - 2 * giou
    best = min(
        itertools.permutations(range(4), 3),
        key=lambda qs: sum(cost[q, t] for t, q in enumerate(qs)),
    )
    got = dict(zip(cols.tolist(), rows.tolist()))
    assert [got[t] for t in range(3)] == list(best)


def test_criterion_box_losses_vanish_for_perfect_boxes():
    matcher = HungarianMatcher()
    crit = SetCriterion(3, matcher, {"loss_ce": 1, "loss_bbox": 5, "loss_giou": 2})
    tgt = [
        {
            "labels": torch.tensor([0, 2]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]),
        }
    ]
    boxes = torch.cat([tgt[0]["boxes"], torch.tensor([[0.5, 0.5, 0.1, 0.1]])])[None]
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 0] = logits[0, 1, 2] = logits[0, 2, 3] = 10.0
    losses = crit({"pred_logits": logits, "pred_boxes": boxes}, tgt)
    assert losses["loss_bbox"].item() == pytest.approx(0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0, abs=1e-6)
    assert losses["loss_ce"].item() < 1e-3
    logits[0, 2, 3] = -10.0
    logits[0, 2, 1] = 10.0  # an unmatched query now claims a class
    assert crit({"pred_logits": logits, "pred_boxes": boxes}, tgt)["loss_ce"] > 0.1


def test_focal_criterion_is_zero_only_for_confident_correct_scores():
    crit = SetCriterion(
        2, HungarianMatcher(focal=True), {"loss_ce": 2, "loss_bbox": 5, "loss_giou": 2}, focal=True
    )
    tgt = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]])
    good = torch.tensor([[[-12.0, 12.0], [-12.0, -12.0]]])
    bad = torch.tensor([[[12.0, -12.0], [-12.0, -12.0]]])
    out = {"pred_boxes": boxes}
    assert crit({**out, "pred_logits": good}, tgt)["loss_ce"] < 1e-4
    assert crit({**out, "pred_logits": bad}, tgt)["loss_ce"] > 1.0


def test_train_losses_backward_and_inference_instances(tmp_path, arch):
    cfg = _detector_cfg(tmp_path, arch)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, DETR if arch == "DETR" else DeformableDETR)
    batch = _batch(cfg)
    losses = model(batch)
    layers = cfg.MODEL.DETR.DEC_LAYERS
    assert {"loss_ce", "loss_bbox", "loss_giou", f"loss_ce_{layers - 2}"} <= set(losses)
    assert len(losses) == 3 * layers
    sum(losses.values()).backward()
    assert model.query_embed.weight.grad.abs().sum() > 0
    assert model.transformer.encoder.layers[0].linear1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 128, "width": 96}])
    inst = out[0]["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (128, 96)
    # The best (query, class) pairs of 8 queries x 10 classes, for both families.
    assert len(inst) == min(cfg.TEST.DETECTIONS_PER_IMAGE, 8 * 10)
    assert inst.pred_classes.max() < 10 and (inst.scores <= 1).all()
    b = inst.pred_boxes.tensor
    assert (b[:, 2] <= 96).all() and (b[:, 3] <= 128).all()


def test_frozen_backbone_gets_no_gradient(tmp_path, arch):
    cfg = _detector_cfg(tmp_path, arch)
    cfg.MODEL.DETR.FREEZE_BACKBONE = True
    model = build_model(cfg)
    sum(model(_batch(cfg)).values()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.input_proj.weight.grad is not None if arch == "DETR" else True


@pytest.mark.parametrize("transformer_cls", [DetrTransformer, DeformableTransformer])
def test_gs_lora_groups_are_the_6_encoder_and_6_decoder_ffns(transformer_cls):
    model = transformer_cls(d_model=16, nhead=2, dim_feedforward=32)
    report = inject_lora(model, LoraConfig(rank=2, target_modules=["linear1", "linear2"]))
    assert len(report.wrapped) == 24
    assert all(isinstance(m, LoraLinear) for n, m in model.named_modules() if n.endswith("linear1"))
    groups = build_groups(model, "block", r"^(.*?\.\d+)(?:\.|$)")
    assert sorted(g.name for g in groups) == [f"decoder.layers.{i}" for i in range(6)] + [
        f"encoder.layers.{i}" for i in range(6)
    ]


def test_forgetting_step_on_detr(tmp_path, arch):
    cfg = tiny_cfg(tmp_path, CONFIGS[arch])
    if arch == "DeformableDETR":
        cfg.defrost()
        cfg.MODEL.DETR.IN_FEATURES = ["p3", "p4"]
    cfg.MODEL.WEIGHTS = save_base_checkpoint(cfg, tmp_path / "base.pth")
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, ForgettingDetector)
    from det_forget.checkpoint import ForgetCheckpointer

    ForgetCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert all(("linear1" in n or "linear2" in n) for n in trainable)
    model.set_task(ForgetTask(0, forget=(0, 1), retain=tuple(range(2, 10))))
    batch = _batch(cfg, 4)
    forget = [b for b in batch if (b["instances"].gt_classes < 2).any()]
    for b in forget:
        inst = b["instances"]
        b["instances"] = inst[inst.gt_classes < 2]
    assert forget, "the tiny set has images with classes 0/1"
    model.train()
    terms = model({"forget": forget, "retain": batch})
    assert {
        "loss_forget_bounded",
        "loss_forget_bbox",
        "loss_forget_giou",
        "loss_group_lasso",
    } <= set(terms)
    assert any(k.startswith("retain_loss_ce") for k in terms)
    sum(terms.values()).backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_A" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # GS-LoRA++ prototypes are the class head's rows.
    rows = model.classifier_prototypes()
    assert rows.shape[0] == (11 if arch == "DETR" else 10)


def test_shipped_deformable_detr_loads_strictly_into_its_forget_config():
    import os

    from detection_fixtures import REPO

    from det_forget.checkpoint import ForgetCheckpointer
    from det_forget.engine.inference import build_config

    cfg = build_config(
        os.path.join(REPO, "configs", "detr", "shapes_deformable_detr_tiny_forget.yaml"),
        ["MODEL.DEVICE", "cpu"],
    )
    assert os.path.isfile(os.path.join(REPO, cfg.MODEL.WEIGHTS))
    model = build_model(cfg)
    ForgetCheckpointer(model, strict=True).load(os.path.join(REPO, cfg.MODEL.WEIGHTS))
    head = model.detector.class_embed[-1]
    assert head.weight.shape == (10, 128) and head.weight.abs().sum() > 0

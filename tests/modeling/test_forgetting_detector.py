import pytest
import torch
from detection_fixtures import TINY_TRAIN, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage

from det_forget.checkpoint import CheckpointMismatchError, ForgetCheckpointer
from det_forget.lora import LoraLinear, disabled_adapters, lora_layers
from det_forget.modeling import ForgettingDetector
from det_forget.modeling.meta_arch import jitter_boxes


def _batch(cfg, n=2):
    mapper = DatasetMapper(cfg, is_train=True)
    dicts = DatasetCatalog.get(TINY_TRAIN)[:n]
    return [mapper(d) for d in dicts]


def test_vit_sfp_backbone_shapes(tmp_path):
    cfg = tiny_cfg(tmp_path)
    backbone = build_backbone(cfg)
    out = backbone(torch.zeros(1, 3, 64, 64))
    assert {k: v.shape[-1] for k, v in out.items()} == {"p3": 8, "p4": 4, "p5": 2, "p6": 1}
    assert {k: s.stride for k, s in backbone.output_shape().items()} == {
        "p3": 8,
        "p4": 16,
        "p5": 32,
        "p6": 64,
    }


def test_bad_scale_factor_is_named(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"MODEL.VIT.SCALE_FACTORS": [3.0, 1.0]})
    with pytest.raises(ValueError, match="SCALE_FACTORS"):
        build_backbone(cfg)


def test_lora_on_vit_and_box_head_ffns_and_only_lora_trainable(tmp_path):
    model = build_model(tiny_cfg(tmp_path))
    assert isinstance(model, ForgettingDetector)
    names = [n for n, _ in lora_layers(model)]
    assert names == [
        f"detector.backbone.net.blocks.{b}.mlp.fc{i}" for b in (0, 1) for i in (1, 2)
    ] + ["detector.roi_heads.box_head.fc1", "detector.roi_heads.box_head.fc2"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert not isinstance(model.detector.backbone.net.blocks[0].attn.qkv, LoraLinear)
    groups = [g.name for g in model.objective.groups]  # one group a block, box head apart
    assert groups == [
        "backbone.net.blocks.0",
        "backbone.net.blocks.1",
        "roi_heads.box_head.fc1",
        "roi_heads.box_head.fc2",
    ]


def test_no_retain_puts_adapters_on_qkv(tmp_path):
    cfg = tiny_cfg(
        tmp_path,
        **{
            "FORGET.METHOD": "no_retain",
            "FORGET.LORA.TARGET_MODULES": [],
            "FORGET.LORA.QKV_MODULES": ["attn.qkv"],
        },
    )
    model = build_model(cfg)
    layers = dict(lora_layers(model))
    assert all(n.endswith("attn.qkv") for n in layers)
    assert all(layer.parts == ("q", "k", "v") for layer in layers.values())


def test_training_returns_each_term_and_trains_only_adapters(tmp_path, tiny_shapes):
    cfg = tiny_cfg(tmp_path, **{"FORGET.METHOD": "gs_lora_pp"})
    model = build_model(cfg)
    model.train()
    from det_forget.forgetting import ForgetTask

    model.set_task(ForgetTask(0, forget=(1,), retain=tuple(c for c in range(10) if c != 1)))
    assert model.prototypes is not None and model.prototypes.shape[0] == 11
    batch = _batch(cfg)
    with EventStorage(0):
        terms = model({"forget": batch, "retain": batch})
    assert {"loss_forget_bounded", "loss_group_lasso", "loss_prototype"} <= set(terms)
    assert {"retain_loss_cls", "retain_loss_box_reg", "retain_loss_rpn_cls"} <= set(terms)
    assert "loss_retain" not in terms  # split into the detector's own terms
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_" in n for n in with_grad)
    assert any(".lora_A." in n for n in with_grad)


def test_bounded_forget_term_is_zero_past_the_bound(tmp_path, tiny_shapes):
    model = build_model(tiny_cfg(tmp_path, **{"FORGET.LOSS.BOUND": 0.0}))
    model.train()
    batch = _batch(tiny_cfg(tmp_path))
    with EventStorage(0):
        terms = model({"forget": batch, "retain": batch})
    assert terms["loss_forget_bounded"].item() == 0.0


def test_inference_is_the_wrapped_detector(tmp_path, tiny_shapes):
    cfg = tiny_cfg(tmp_path)
    model = build_model(cfg).eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _batch(cfg, 1)]
    with torch.no_grad():
        out = model(inputs)
        direct = model.detector(inputs)
        with disabled_adapters(model):
            disabled = model(inputs)
    assert torch.equal(out[0]["instances"].scores, direct[0]["instances"].scores)
    assert torch.equal(out[0]["instances"].scores, disabled[0]["instances"].scores)  # fresh


def test_training_needs_forget_and_retain_batches(tmp_path, tiny_shapes):
    cfg = tiny_cfg(tmp_path)
    model = build_model(cfg).train()
    with pytest.raises(TypeError, match="'forget': batch, 'retain': batch"):
        model(_batch(cfg))


def test_plain_checkpoint_loads_and_foreign_one_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path)
    path = save_base_checkpoint(cfg, tmp_path / "base.pth")
    base = torch.load(path)["model"]
    model = build_model(cfg)
    ForgetCheckpointer(model).load(path)
    w = model.detector.backbone.net.blocks[0].mlp.fc1
    assert isinstance(w, LoraLinear)
    assert torch.equal(w.base_layer.weight, base["backbone.net.blocks.0.mlp.fc1.weight"])
    assert torch.equal(
        model.detector.roi_heads.box_predictor.cls_score.weight,
        base["roi_heads.box_predictor.cls_score.weight"],
    )
    other = tiny_cfg(tmp_path, **{"MODEL.ROI_HEADS.NUM_CLASSES": 5})
    bad = save_base_checkpoint(other, tmp_path / "other.pth")
    with pytest.raises(CheckpointMismatchError, match="cls_score.weight: checkpoint"):
        ForgetCheckpointer(build_model(cfg)).load(bad)


def test_jitter_boxes_keeps_originals_and_overlaps():
    from detectron2.structures import Boxes, pairwise_iou

    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]])
    out = jitter_boxes(boxes, copies=5)
    assert out.shape == (12, 4) and torch.equal(out[:2], boxes)
    iou = pairwise_iou(Boxes(out[2:]), Boxes(boxes))
    assert (iou.max(dim=1).values > 0.55).all()


def test_random_label_targets_are_kept_foreground_classes(tmp_path):
    from det_forget.forgetting import ForgetTask

    model = build_model(tiny_cfg(tmp_path, **{"FORGET.METHOD": "random_labels"}))
    model.set_task(ForgetTask(1, forget=(2, 3), retain=tuple(range(4, 10)), old=(0,)))
    labels = torch.tensor([2, 3] * 500)
    targets = model.forget_targets(labels)
    # The R-CNN head has 11 logits (10 classes + background at index 10): a random label
    # is never background, never this task's classes and never an earlier task's.
    assert set(targets.tolist()) == set(range(4, 10)) | {1}
    gs_lora = build_model(tiny_cfg(tmp_path))
    assert torch.equal(gs_lora.forget_targets(labels), labels)


def test_background_term_trains_forget_boxes_as_background(tmp_path, tiny_shapes):
    """FORGET.LOSS.BACKGROUND_WEIGHT adds loss_forget_background, the box head's CE to the
    background logit on the forget boxes, with a gradient into the adapters; 0 leaves the
    terms as they were. A sigmoid head (no background logit) is refused."""
    from det_forget.errors import ConfigValueError
    from det_forget.modeling.meta_arch.forgetting import ForgetOutputs

    batch = _batch(tiny_cfg(tmp_path))
    model = build_model(tiny_cfg(tmp_path))
    model.train()
    with EventStorage(0):
        assert "loss_forget_background" not in model({"forget": batch, "retain": batch})
    model = build_model(tiny_cfg(tmp_path, **{"FORGET.LOSS.BACKGROUND_WEIGHT": 2.0}))
    model.train()
    with EventStorage(0):
        terms = model({"forget": batch, "retain": batch})
    value = terms["loss_forget_background"]
    assert torch.isfinite(value) and value.item() > 0
    model.zero_grad()
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    c = model.num_classes
    logits = torch.zeros(2, c + 1)
    logits[0, c] = 5.0  # already background
    logits[1, 3] = 5.0  # confidently class 3
    out = ForgetOutputs(logits, torch.tensor([3, 3]), torch.zeros(2, 4))
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([c, c]), reduction="none")
    assert torch.allclose(model.background_loss(out), expected)
    assert model.background_loss(out)[0] < 0.1 < 5.0 < model.background_loss(out)[1]
    with pytest.raises(ConfigValueError, match="background logit"):
        model.background_loss(ForgetOutputs(logits[:, :c], out.labels, out.features, sigmoid=True))

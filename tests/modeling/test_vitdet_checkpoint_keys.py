"""A ViTDet model-zoo checkpoint loads into configs/vitdet_b_coco_forget.yaml by key name.

The reference is detectron2's own ViTDet LazyConfig model (common/models/mask_rcnn_vitdet.py):
its state dict is what the model zoo's ViTDet-B checkpoints hold. Its tensors are
random here (nothing is downloaded); names, shapes and a strict load are what is checked.
"""

import os

import torch
from detection_fixtures import REPO
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model

from det_forget.checkpoint import ForgetCheckpointer
from det_forget.engine.inference import build_config
from det_forget.lora import lora_layers


def test_vitdet_b_checkpoint_names_and_shapes_match(tmp_path):
    zoo = os.path.join(
        os.path.dirname(__import__("detectron2").__file__),
        "model_zoo/configs/common/models/mask_rcnn_vitdet.py",
    )
    ref = instantiate(LazyConfig.load(zoo).model)
    ref_state = ref.state_dict()
    del ref

    cfg = build_config(os.path.join(REPO, "configs", "vitdet_b_coco_forget.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    ours = build_model(cfg)
    names = [n for n, _ in lora_layers(ours)]
    # fc1/fc2 of all 12 blocks, and the 4conv1fc box head's single fc1
    assert len(names) == 25 and names[-1] == "detector.roi_heads.box_head.fc1"
    # The checkpoint as the model zoo would ship it: the reference's names and shapes.
    ckpt = {k: v for k, v in ref_state.items() if not k.startswith("roi_heads.mask_head")}
    path = tmp_path / "vitdet_b.pth"
    torch.save({"model": ckpt}, path)
    ForgetCheckpointer(ours).load(str(path))  # strict: raises on any missing/mis-shaped key
    w = ours.detector.backbone.net.blocks[2].attn.rel_pos_h
    assert torch.equal(w, ckpt["backbone.net.blocks.2.attn.rel_pos_h"])
    fc1 = ours.detector.backbone.net.blocks[11].mlp.fc1.base_layer.weight
    assert torch.equal(fc1, ckpt["backbone.net.blocks.11.mlp.fc1.weight"])
    head = ours.detector.roi_heads.box_head.conv4.weight
    assert torch.equal(head, ckpt["roi_heads.box_head.conv4.weight"])

"""Official DETR / Deformable DETR checkpoints: safe loading and key mapping.

The official state dicts are re-created here from the published architectures (their key
names and shapes), independently of det_forget's modules, with random values.
"""

import argparse
import os

import pytest
import torch
import torchvision
from detection_fixtures import REPO
from detectron2.modeling import build_model

from det_forget.engine.inference import build_config
from det_forget.modeling.detr import convert_official_detr, load_official_checkpoint
from det_forget.modeling.detr.official_checkpoint import coco_thing_ids


def _resnet50_body() -> dict[str, tuple]:
    sd = torchvision.models.resnet50(weights=None).state_dict()
    return {
        "backbone.0.body." + k: tuple(v.shape)
        for k, v in sd.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }


def _mha(prefix: str, d: int) -> dict[str, tuple]:
    return {
        f"{prefix}.in_proj_weight": (3 * d, d),
        f"{prefix}.in_proj_bias": (3 * d,),
        f"{prefix}.out_proj.weight": (d, d),
        f"{prefix}.out_proj.bias": (d,),
    }


def _linear(prefix: str, out: int, inp: int) -> dict[str, tuple]:
    return {f"{prefix}.weight": (out, inp), f"{prefix}.bias": (out,)}


def _norms(prefix: str, names, d: int) -> dict[str, tuple]:
    return {f"{prefix}.{n}.{p}": (d,) for n in names for p in ("weight", "bias")}


def _mlp(prefix: str, d: int) -> dict[str, tuple]:
    out = {}
    for i, o in enumerate((d, d, 4)):
        out |= _linear(f"{prefix}.layers.{i}", o, d)
    return out


def official_detr_r50_shapes(d=256, ffn=2048) -> dict[str, tuple]:
    keys = _resnet50_body()
    for i in range(6):
        p = f"transformer.encoder.layers.{i}"
        keys |= _mha(f"{p}.self_attn", d) | _linear(f"{p}.linear1", ffn, d)
        keys |= _linear(f"{p}.linear2", d, ffn) | _norms(p, ("norm1", "norm2"), d)
        p = f"transformer.decoder.layers.{i}"
        keys |= _mha(f"{p}.self_attn", d) | _mha(f"{p}.multihead_attn", d)
        keys |= _linear(f"{p}.linear1", ffn, d) | _linear(f"{p}.linear2", d, ffn)
        keys |= _norms(p, ("norm1", "norm2", "norm3"), d)
    keys |= _norms("transformer.decoder", ("norm",), d)
    keys |= _linear("class_embed", 92, d) | _mlp("bbox_embed", d)
    keys |= {
        "query_embed.weight": (100, d),
        "input_proj.weight": (d, 2048, 1, 1),
        "input_proj.bias": (d,),
    }
    return keys


def _msdeform(prefix: str, d=256, heads=8, levels=4, points=4) -> dict[str, tuple]:
    return (
        _linear(f"{prefix}.sampling_offsets", heads * levels * points * 2, d)
        | _linear(f"{prefix}.attention_weights", heads * levels * points, d)
        | _linear(f"{prefix}.value_proj", d, d)
        | _linear(f"{prefix}.output_proj", d, d)
    )


def official_deformable_detr_r50_shapes(d=256, ffn=1024) -> dict[str, tuple]:
    keys = _resnet50_body()
    keys["transformer.level_embed"] = (4, d)
    for i in range(6):
        p = f"transformer.encoder.layers.{i}"
        keys |= _msdeform(f"{p}.self_attn") | _linear(f"{p}.linear1", ffn, d)
        keys |= _linear(f"{p}.linear2", d, ffn) | _norms(p, ("norm1", "norm2"), d)
        p = f"transformer.decoder.layers.{i}"
        keys |= _msdeform(f"{p}.cross_attn") | _mha(f"{p}.self_attn", d)
        keys |= _linear(f"{p}.linear1", ffn, d) | _linear(f"{p}.linear2", d, ffn)
        keys |= _norms(p, ("norm1", "norm2", "norm3"), d)
        keys |= _linear(f"class_embed.{i}", 91, d) | _mlp(f"bbox_embed.{i}", d)
    keys |= _linear("transformer.reference_points", 2, d)
    keys["query_embed.weight"] = (300, 2 * d)
    for lvl, c in enumerate((512, 1024, 2048)):
        keys[f"input_proj.{lvl}.0.weight"] = (d, c, 1, 1)
        keys[f"input_proj.{lvl}.0.bias"] = (d,)
        keys |= _norms(f"input_proj.{lvl}", ("1",), d)
    keys["input_proj.3.0.weight"] = (d, 2048, 3, 3)
    keys["input_proj.3.0.bias"] = (d,)
    keys |= _norms("input_proj.3", ("1",), d)
    return keys


@pytest.mark.parametrize(
    "config,shapes",
    [
        ("detr_r50_coco.yaml", official_detr_r50_shapes),
        ("deformable_detr_r50_coco.yaml", official_deformable_detr_r50_shapes),
    ],
)
def test_official_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path, config, shapes):
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=g) for k, s in shapes().items()}
    # Without box refinement the official model shares one head across decoder layers.
    for k in list(official):
        if k.startswith(("class_embed.", "bbox_embed.")) and k.split(".")[1].isdigit():
            official[k] = official[k.split(".")[0] + ".0." + k.split(".", 2)[2]]
    path = tmp_path / "official.pth"
    args = argparse.Namespace(lr=1e-4, backbone="resnet50", num_queries=100, aux_loss=True)
    torch.save({"model": official, "args": args, "epoch": 499}, path)

    converted = convert_official_detr(load_official_checkpoint(path))
    cfg = build_config(
        os.path.join(REPO, "configs", "detr", config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    )
    model = build_model(cfg)
    result = model.load_state_dict(converted, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    # Values land where they belong: a backbone BN, an FFN, and the class rows by COCO id.
    sd = model.state_dict()
    torch.testing.assert_close(
        sd["backbone.res3.0.shortcut.norm.running_var"],
        official["backbone.0.body.layer2.0.downsample.1.running_var"],
    )
    torch.testing.assert_close(
        sd["transformer.decoder.layers.5.linear2.weight"],
        official["transformer.decoder.layers.5.linear2.weight"],
    )
    head = "class_embed.weight" if "class_embed.weight" in official else "class_embed.0.weight"
    ids = coco_thing_ids()
    assert ids[0] == 1 and ids[-1] == 90 and len(ids) == 80
    torch.testing.assert_close(sd[head][:80], official[head][ids])
    if head == "class_embed.weight":  # DETR keeps its no-object row last
        torch.testing.assert_close(sd[head][80], official[head][91])


class _NotAllowed:
    pass


def test_checkpoints_with_other_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"transformer.x": torch.zeros(1)}, "payload": _NotAllowed()}, path)
    with pytest.raises(ValueError, match="holds Python objects beyond tensors"):
        load_official_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_official_checkpoint(tmp_path / "missing.pth")


def test_box_refinement_checkpoints_are_refused():
    official = {k: torch.zeros(s) for k, s in official_deformable_detr_r50_shapes().items()}
    official["class_embed.3.bias"] = torch.ones(91)
    with pytest.raises(ValueError, match="box refinement"):
        convert_official_detr(official)


def test_non_detr_state_dicts_are_refused(tmp_path):
    path = tmp_path / "rcnn.pth"
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="no 'transformer"):
        convert_official_detr(load_official_checkpoint(path))
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="no 'model' dict"):
        load_official_checkpoint(path)


def test_convert_tool_writes_a_checkpoint_the_detector_loads(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_detr_checkpoint", os.path.join(REPO, "tools", "convert_detr_checkpoint.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    official = {k: torch.zeros(s) for k, s in official_detr_r50_shapes().items()}
    src, dst = tmp_path / "detr-r50.pth", tmp_path / "out" / "converted.pth"
    dst.parent.mkdir()
    torch.save({"model": official, "args": argparse.Namespace(lr=1e-4)}, src)
    assert tool.main([str(src), str(dst)]) == 0
    from det_forget.checkpoint import ForgetCheckpointer

    cfg = build_config(
        os.path.join(REPO, "configs", "detr", "detr_r50_coco.yaml"),
        ["MODEL.WEIGHTS", str(dst), "MODEL.DEVICE", "cpu"],
    )
    model = build_model(cfg)
    ForgetCheckpointer(model, strict=True).load(str(dst))  # strict: every parameter covered
    assert float(model.class_embed.weight.abs().sum()) == 0.0
    with pytest.raises(SystemExit):
        tool.main([str(src), str(src)])

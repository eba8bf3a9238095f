"""ViT classifier: shapes, features, LoRA targets, config path, checkpoint round trip."""

from __future__ import annotations

import json

import pytest
import torch

from det_forget.classification import (
    ViTClassifier,
    augment_batch,
    build_classifier,
    get_classification_cfg,
    load_classifier,
    save_classifier,
)
from det_forget.config import lora_config_from_cfg
from det_forget.lora import inject_lora

TINY = dict(img_size=16, in_chans=1, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def _tiny(**kw):
    torch.manual_seed(0)
    return ViTClassifier(num_classes=4, pixel_mean=(0.5,), pixel_std=(0.25,), **TINY, **kw)


def test_forward_shapes_and_features():
    model = _tiny().eval()
    x = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    logits, feats = model(x, return_features=True)
    assert logits.shape == (3, 4) and feats.shape == (3, model.feature_dim)
    assert torch.allclose(model.features(x), feats)
    assert torch.allclose(model.vit.head(feats), logits)
    # uint8 and [0, 1] float inputs are the same image.
    assert torch.allclose(model(x), model(x.float() / 255), atol=1e-5)
    assert torch.isfinite(logits).all()


def test_from_config_and_registry():
    cfg = get_classification_cfg()
    model = build_classifier(cfg)
    assert isinstance(model, ViTClassifier)
    assert model.arch["embed_dim"] == cfg.CLS.MODEL.EMBED_DIM
    assert model.arch["depth"] == cfg.CLS.MODEL.DEPTH


@pytest.mark.parametrize("method, wrapped", [("gs_lora", 4), ("no_retain", 2)])
def test_lora_targets_from_config(method, wrapped):
    # The registry places the adapters: FFNs for GS-LoRA, the fused q/k/v for no_retain,
    # whatever the other list holds.
    cfg = get_classification_cfg()
    cfg.FORGET.METHOD = method
    report = inject_lora(_tiny(), lora_config_from_cfg(cfg))
    assert len(report.wrapped) == wrapped
    if method == "no_retain":
        assert all(parts == ("q", "k", "v") for parts in report.wrapped.values())


def test_checkpoint_round_trip(tmp_path):
    model = _tiny().eval()
    path = save_classifier(model, tmp_path / "m.safetensors", {"test_accuracy": 12.5})
    loaded, meta = load_classifier(path, expected_arch={"embed_dim": 32})
    assert meta == {"test_accuracy": 12.5}
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x), loaded(x))


def test_checkpoint_that_does_not_fit(tmp_path):
    path = save_classifier(_tiny(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="embed_dim: config 64 vs checkpoint 32"):
        load_classifier(path, expected_arch={"embed_dim": 64})
    info = json.loads(path.with_suffix(".json").read_text())
    info["arch"]["depth"] = 3
    path.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="does not fit ViTClassifier: missing vit.blocks.2"):
        load_classifier(path)
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "absent.safetensors")


def test_save_refuses_model_with_adapters(tmp_path):
    model = _tiny()
    inject_lora(model, lora_config_from_cfg(get_classification_cfg()))
    with pytest.raises(ValueError, match="LoRA adapters"):
        save_classifier(model, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_augment_batch_shifts_and_flips():
    x = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, gen, pad=1)
    assert out.shape == x.shape and out.dtype == x.dtype
    # Each output is a translated (possibly flipped) copy: its non-zero values come from x.
    for i in range(2):
        assert set(out[i].flatten().tolist()) - {0} <= set(x[i].flatten().tolist())
    assert torch.equal(augment_batch(x, gen, pad=0)[:, :, :, :].sort(-1).values, x.sort(-1).values)

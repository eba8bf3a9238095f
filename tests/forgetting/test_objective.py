import pytest
import torch

from det_forget.forgetting import (
    ForgettingObjective,
    SparsityWarmup,
    WeightAnchor,
    build_groups,
    get_method,
)
from det_forget.lora import LoraConfig, inject_lora


def _lora_model():
    from vit_fixtures import tiny_timm_vit

    model = tiny_timm_vit()
    inject_lora(model, LoraConfig(rank=2, qkv_modules=["attn.qkv"]))
    return model


def test_gs_lora_terms_and_warmup():
    model = _lora_model()
    obj = ForgettingObjective(
        method="gs_lora",
        bound=5.0,
        forget_weight=0.5,
        sparsity=SparsityWarmup(1.0, warmup=1),
        groups=build_groups(model),
    )
    kw = dict(
        forget_loss=torch.tensor([1.0, 2.0]),
        forget_labels=torch.tensor([0, 1]),
        retain_loss=torch.tensor(0.3),
        model=model,
    )
    t0 = obj(step=0, **kw)
    assert set(t0) == set(get_method("gs_lora").terms)
    assert t0["loss_forget_bounded"].item() == pytest.approx(0.5 * (4.0 + 3.0) / 2)
    assert t0["loss_retain"].item() == pytest.approx(0.3)
    assert t0["loss_group_lasso"].item() == 0.0
    assert obj(step=1, **kw)["loss_group_lasso"].item() > 0


def test_no_retain_uses_reciprocal_and_l1_on_b():
    model = _lora_model()
    obj = ForgettingObjective(method="no_retain", no_retain_l1=0.1, reciprocal_eps=1e-3)
    assert not obj.uses_retain_data
    terms = obj(step=0, model=model, forget_loss=torch.tensor([2.0]))
    assert terms["loss_forget_reciprocal"].item() == pytest.approx(1 / 2.001)
    assert terms["loss_lora_b_l1"].item() == 0.0  # fresh adapters: B = 0


def test_weight_change_baselines_need_an_anchor():
    lin = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="WeightAnchor"):
        ForgettingObjective(method="bounded_retain_l1")
    anchor = WeightAnchor(lin)
    with torch.no_grad():
        lin.weight.add_(1.0)
    obj = ForgettingObjective(method="l2", anchor=anchor, baseline_l2=2.0)
    terms = obj(
        step=0,
        forget_loss=torch.tensor([100.0]),
        forget_labels=torch.tensor([0]),
        retain_loss=torch.tensor(0.0),
    )
    assert terms["loss_weight_l2"].item() == pytest.approx(2.0 * 6)
    assert terms["loss_forget_bounded"].item() == 0.0


def test_nan_names_the_term_and_unknown_method():
    obj = ForgettingObjective(method="finetune")
    with pytest.raises(FloatingPointError, match="'loss_retain' is nan"):
        obj(step=3, retain_loss=torch.tensor(float("nan")))
    with pytest.raises(ValueError, match="unknown FORGET.METHOD 'forget_all'"):
        ForgettingObjective(method="forget_all")
    with pytest.raises(ValueError, match="needs an input"):
        obj(step=0)

"""The registry says what each method is, as its paper states it: Poppi et al.'s four
retain-free rows, the renamed GS-LoRA ablation, and each paper's LoRA scaling and A init."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from det_forget.config import add_forget_config, lora_config_from_cfg
from det_forget.errors import ConfigValueError, UnknownNameError
from det_forget.forgetting import ForgettingObjective, get_method
from det_forget.forgetting.regularizers import WeightAnchor
from det_forget.lora import LoraConfig, inject_lora, lora_layers
from det_forget.lora.layer import LoraLinear


def _cfg(method: str, *opts):
    cfg = add_forget_config(get_cfg())
    cfg.merge_from_list(["FORGET.METHOD", method, *opts])
    return cfg


# (method, its forget term, its weight-change penalty, adapters) for Poppi et al.'s Table 1
POPPI_RETAIN_FREE = [
    ("neg_grad_l1", "loss_forget_negative", "loss_weight_l1", "none"),
    ("neg_grad_lora", "loss_forget_negative", "loss_lora_b_l1", "qkv"),
    ("reciprocal_l1", "loss_forget_reciprocal", "loss_weight_l1", "none"),
    ("no_retain", "loss_forget_reciprocal", "loss_lora_b_l1", "qkv"),
]


@pytest.mark.parametrize("name, forget, penalty, adapters", POPPI_RETAIN_FREE)
def test_poppi_rows_are_retain_free_with_their_loss_and_penalty(name, forget, penalty, adapters):
    m = get_method(name)
    assert set(m.terms) == {forget, penalty}
    assert not m.uses_retain_data and m.data == "forget"
    assert m.adapters == adapters
    assert "Poppi" in m.reference and "Table 1" in m.reference or name == "no_retain"
    if adapters == "qkv":  # low rank: the paper's W0 + BA with a Gaussian A
        assert m.lora_alpha is None and m.lora_init == "gaussian"


def test_gs_lora_ablation_is_renamed_and_says_it_uses_retain_data():
    m = get_method("bounded_retain_l1")
    assert m.uses_retain_data and "loss_forget_bounded" in m.terms
    assert "reciprocal_l1" in m.reference  # points to Poppi's retain-free row
    with pytest.raises(UnknownNameError, match="renamed: use bounded_retain_l1"):
        get_method("bounded_l1")


def test_objective_terms_of_the_new_rows():
    model = nn.Linear(4, 3)
    anchor = WeightAnchor(model)
    with torch.no_grad():
        model.weight.add_(0.5)
    ce = torch.tensor([2.0, 4.0])
    terms = ForgettingObjective(method="reciprocal_l1", baseline_l1=0.1, anchor=anchor)(
        step=0, forget_loss=ce
    )
    assert terms["loss_forget_reciprocal"].item() == pytest.approx(1 / (3.0 + 1e-3))
    assert terms["loss_weight_l1"].item() == pytest.approx(0.1 * 0.5 * 12)

    lin = LoraLinear(nn.Linear(6, 9), rank=2, parts=("q", "k", "v"), init="gaussian")
    with torch.no_grad():
        for b in lin.lora_B.values():
            b.fill_(-1.0)
    terms = ForgettingObjective(method="neg_grad_lora", no_retain_l1=0.01)(
        step=0, model=lin, forget_loss=ce
    )
    assert terms["loss_forget_negative"].item() == pytest.approx(-3.0)
    assert terms["loss_lora_b_l1"].item() == pytest.approx(0.01 * 9 * 2)


@pytest.mark.parametrize(
    "method, scaling, init",
    [
        ("gs_lora", 1 / 8, "kaiming"),
        ("gs_lora_pp", 1 / 8, "kaiming"),
        ("no_retain", 1.0, "gaussian"),
        ("neg_grad_lora", 1.0, "gaussian"),
    ],
)
def test_lora_scaling_and_init_default_to_the_paper(method, scaling, init):
    lc = lora_config_from_cfg(_cfg(method))
    assert lc.scaling == pytest.approx(scaling) and lc.init == init
    # Explicit keys win over the method's own.
    lc = lora_config_from_cfg(_cfg(method, "FORGET.LORA.ALPHA", 2.0, "FORGET.LORA.INIT", "kaiming"))
    assert lc.scaling == pytest.approx(2.0 / 8) and lc.init == "kaiming"
    # Scaling follows the rank for alpha = r methods (always 1), not for alpha = 1 ones.
    lc = lora_config_from_cfg(_cfg(method, "FORGET.LORA.RANK", 4))
    assert lc.scaling == pytest.approx(1.0 if scaling == 1.0 else 1 / 4)


def test_unknown_lora_init_is_a_config_error():
    with pytest.raises(ConfigValueError, match="FORGET.LORA.INIT"):
        lora_config_from_cfg(_cfg("gs_lora", "FORGET.LORA.INIT", "xavier"))
    with pytest.raises(ValueError, match="init"):
        LoraConfig(init="xavier")


def test_gaussian_and_kaiming_init_distributions_and_no_op():
    torch.manual_seed(0)
    base = nn.Linear(256, 48)
    x = torch.randn(5, 256)
    expected = base(x)
    for init in ("gaussian", "kaiming"):
        layer = LoraLinear(nn.Linear(256, 48), rank=8, init=init)
        layer.base_layer.load_state_dict(base.state_dict())
        a = layer.lora_A["full"]
        if init == "gaussian":
            assert a.std().item() == pytest.approx(1 / 8, rel=0.05)
            assert a.abs().max().item() > 1 / math.sqrt(256)  # not the kaiming bound
        else:  # kaiming-uniform a=sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            assert a.abs().max().item() <= 1 / math.sqrt(256) + 1e-6
        assert torch.count_nonzero(layer.lora_B["full"]) == 0
        torch.testing.assert_close(layer(x), expected)
        # A reset after merging between continual tasks keeps the layer's init.
        layer.merge_and_reset()
        if init == "gaussian":
            assert layer.lora_A["full"].std().item() == pytest.approx(1 / 8, rel=0.05)


def test_inject_passes_init_and_scaling_to_every_layer():
    model = nn.Sequential()
    model.add_module("attn", nn.Module())
    model.attn.add_module("qkv", nn.Linear(12, 36))
    lc = lora_config_from_cfg(_cfg("no_retain", "FORGET.LORA.QKV_MODULES", ["attn.qkv"]))
    inject_lora(model, lc)
    ((_, layer),) = lora_layers(model)
    assert layer.init == "gaussian" and layer.scaling == 1.0 and layer.parts == ("q", "k", "v")

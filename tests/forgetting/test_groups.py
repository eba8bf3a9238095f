import math

import pytest
import torch

from det_forget.forgetting import (
    SparsityWarmup,
    build_groups,
    group_lasso,
    lora_b_l1,
    zero_group_ratio,
)
from det_forget.lora import LoraConfig, inject_lora, lora_layers


@pytest.fixture
def vit():
    from vit_fixtures import tiny_timm_vit

    model = tiny_timm_vit()
    inject_lora(model, LoraConfig(rank=2, target_modules=["mlp.fc1", "mlp.fc2"]))
    return model


def _fill(model, value_a, value_b):
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A["full"].fill_(value_a)
            layer.lora_B["full"].fill_(value_b)


def test_group_granularities_count(vit):
    assert [g.name for g in build_groups(vit, "block")] == ["blocks.0", "blocks.1", "blocks.2"]
    assert len(build_groups(vit, "module")) == 6
    assert len(build_groups(vit, "matrix")) == 12
    assert all(len(g.params) == 4 for g in build_groups(vit, "block"))
    with pytest.raises(ValueError, match="granularity"):
        build_groups(vit, "layer")


def test_group_lasso_by_hand(vit):
    _fill(vit, 1.0, 0.0)
    # one block: A_fc1 (2x32) + A_fc2 (2x128) ones, B zeros -> sqrt(64 + 256) per group
    groups = build_groups(vit, "block")
    assert group_lasso(groups).item() == pytest.approx(3 * math.sqrt(320), rel=1e-6)
    matrix = build_groups(vit, "matrix")
    expected = 3 * (math.sqrt(64) + math.sqrt(256))  # B groups contribute 0
    assert group_lasso(matrix).item() == pytest.approx(expected, rel=1e-6)


def test_zero_group_has_finite_zero_gradient(vit):
    _fill(vit, 0.0, 0.0)
    groups = build_groups(vit, "matrix")
    group_lasso(groups).backward()
    for g in groups:
        for p in g.params:
            assert torch.isfinite(p.grad).all() and torch.count_nonzero(p.grad) == 0


def test_lora_b_l1_by_hand(vit):
    _fill(vit, 5.0, -0.5)
    # B_fc1 (128x2) and B_fc2 (32x2) per block, 3 blocks
    assert lora_b_l1(vit).item() == pytest.approx(3 * 0.5 * (256 + 64))


def test_zero_group_ratio_threshold(vit):
    _fill(vit, 1.0, 1.0)
    groups = build_groups(vit, "block")
    with torch.no_grad():
        for p in groups[0].params:
            p.mul_(1e-4)  # far below 1e-3 x the largest group norm
        for p in groups[1].params:
            p.mul_(1e-2)  # above it
    assert zero_group_ratio(groups) == pytest.approx(1 / 3)
    assert zero_group_ratio(groups, rel_threshold=0.1) == pytest.approx(2 / 3)


def test_sparsity_warmup():
    sched = SparsityWarmup(alpha=1e-4, warmup=3)
    assert [sched.value(s) for s in range(5)] == [0.0, 0.0, 0.0, 1e-4, 1e-4]

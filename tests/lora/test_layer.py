import pytest
import torch
from torch import nn

from det_forget.lora import FULL_PART, LoraLinear


def _trained(layer: LoraLinear) -> LoraLinear:
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.normal_()
    return layer


def test_fresh_adapter_is_a_no_op_merged_or_not():
    torch.manual_seed(0)
    base = nn.Linear(12, 9)
    x = torch.randn(4, 12)
    ref = base(x)
    layer = LoraLinear(nn.Linear(12, 9), rank=4)
    layer.base_layer.load_state_dict(base.state_dict())
    assert torch.equal(layer(x), ref)
    layer.merge()
    assert torch.equal(layer(x), ref)
    assert torch.equal(layer.base_layer.weight, base.weight)


def test_init_a_kaiming_b_zero_and_scaling():
    layer = LoraLinear(nn.Linear(64, 32), rank=8, alpha=1.0)
    assert layer.scaling == pytest.approx(1 / 8)
    assert torch.count_nonzero(layer.lora_B[FULL_PART]) == 0
    a = layer.lora_A[FULL_PART]
    bound = 1 / 64**0.5  # kaiming_uniform(a=sqrt(5)) on fan_in 64
    assert a.abs().max() <= bound and a.std() > bound / 4


def test_delta_weight_equals_scaled_b_a_and_merge_matches_forward():
    torch.manual_seed(1)
    layer = _trained(LoraLinear(nn.Linear(10, 6), rank=3, alpha=6.0))
    expected = 2.0 * layer.lora_B[FULL_PART] @ layer.lora_A[FULL_PART]
    torch.testing.assert_close(layer.get_delta_weight(), expected)
    x = torch.randn(5, 10)
    unmerged = layer(x)
    w0 = layer.base_layer.weight.clone()
    layer.merge()
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-6)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-6)


def test_disabled_is_base_after_training():
    torch.manual_seed(2)
    base = nn.Linear(8, 8)
    layer = _trained(LoraLinear(nn.Linear(8, 8), rank=2))
    layer.base_layer.load_state_dict(base.state_dict())
    x = torch.randn(3, 8)
    assert not torch.allclose(layer(x), base(x))
    layer.disabled = True
    assert torch.equal(layer(x), base(x))
    layer.disabled = False
    layer.merge()
    layer.disabled = True
    with pytest.raises(RuntimeError, match="unmerge"):
        layer(x)


def test_qkv_parts_adapt_only_their_slice():
    torch.manual_seed(3)
    layer = _trained(LoraLinear(nn.Linear(6, 18), rank=2, parts=("q", "v")))
    assert layer.parts == ("q", "v")
    delta = layer.get_delta_weight()
    assert torch.count_nonzero(delta[6:12]) == 0  # k untouched
    assert torch.count_nonzero(delta[:6]) > 0 and torch.count_nonzero(delta[12:]) > 0
    x = torch.randn(2, 4, 6)
    out = layer(x)
    torch.testing.assert_close(out, layer.base_layer(x) + x @ delta.T, rtol=1e-5, atol=1e-6)


def test_qkv_needs_divisible_output_and_known_parts():
    with pytest.raises(ValueError, match="divisible by 3"):
        LoraLinear(nn.Linear(4, 10), parts=("q",))
    with pytest.raises(ValueError, match="parts"):
        LoraLinear(nn.Linear(4, 12), parts=("x",))


def test_merge_and_reset_keeps_function_and_starts_fresh():
    torch.manual_seed(4)
    layer = _trained(LoraLinear(nn.Linear(5, 5), rank=2))
    x = torch.randn(3, 5)
    before = layer(x)
    layer.merge_and_reset()
    assert not layer.merged
    assert torch.count_nonzero(layer.lora_B[FULL_PART]) == 0
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-6)


def test_base_checkpoint_loads_into_wrapped_layer():
    base = nn.Linear(4, 3)
    layer = LoraLinear(nn.Linear(4, 3), rank=2)
    missing, unexpected = layer.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected
    assert set(missing) == {"lora_A.full", "lora_B.full"}
    assert torch.equal(layer.base_layer.weight, base.weight)


def test_wraps_only_linear():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoraLinear(nn.Conv2d(3, 3, 1))

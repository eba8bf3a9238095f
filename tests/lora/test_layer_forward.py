"""LoraLinear's forward paths agree: training (fused multiply-add or per-part), inference
with the cached effective weight, and the cache follows every change of A, B or W."""

import torch
from torch import nn

from det_forget.lora.layer import LoraLinear


def _layer(parts=("full",), out=12, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    layer = LoraLinear(nn.Linear(6, out), rank=2, alpha=4.0, parts=parts, dropout=dropout)
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.normal_()
    return layer


def _reference(layer, x):
    """``W x + b + scaling * B A x`` written out, part by part."""
    out = layer.base_layer(x)
    delta = torch.zeros_like(out)
    for name, (s, e) in layer.slices.items():
        delta[..., s:e] = x @ layer.lora_A[name].T @ layer.lora_B[name].T
    return out + layer.scaling * delta


def test_training_and_inference_paths_match_the_formula():
    x = torch.randn(3, 5, 6)
    for parts in (("full",), ("q", "v")):
        layer = _layer(parts)
        expected = _reference(layer, x).detach()
        layer.train()
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        layer.eval()
        with torch.no_grad():
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
            assert layer._weight_cache is not None
        # Eval mode with autograd on (e.g. a gradient through a frozen model) trains A, B.
        y = layer(x)
        assert y.requires_grad
        torch.testing.assert_close(y.detach(), expected, atol=1e-5, rtol=1e-5)


def test_fused_training_path_gives_the_same_gradients():
    x = torch.randn(4, 6)
    fused, plain = _layer(), _layer()
    fused(x).square().sum().backward()
    _reference(plain, x).square().sum().backward()
    for name in ("lora_A", "lora_B"):
        a = getattr(fused, name)["full"].grad
        b = getattr(plain, name)["full"].grad
        assert a is not None and a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert fused.base_layer.weight.grad is None  # the base stays frozen


def test_inference_cache_follows_optimizer_steps_loads_merges_and_moves():
    layer = _layer()
    x = torch.randn(2, 6)
    opt = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.5)

    def infer(inputs=x):
        layer.eval()
        with torch.no_grad():
            return layer(inputs)

    before = infer()
    layer.train()
    layer(x).sum().backward()
    opt.step()  # in place on A and B
    after_step = infer()
    assert not torch.allclose(before, after_step)
    torch.testing.assert_close(after_step, _reference(layer, x).detach(), atol=1e-5, rtol=1e-5)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["lora_B.full"].zero_()
    layer.load_state_dict(state)  # copies into the same tensors
    torch.testing.assert_close(infer(), layer.base_layer(x).detach())
    with torch.no_grad():
        layer.lora_B["full"].normal_()
    expected = _reference(layer, x).detach()
    layer.merge()  # W changes in place; the merged path uses the base only
    torch.testing.assert_close(infer(), expected, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(infer(), expected, atol=1e-5, rtol=1e-5)
    layer.double()  # new tensors
    torch.testing.assert_close(infer(x.double()), _reference(layer, x.double()).detach())


def test_dropout_applies_only_in_training():
    layer = _layer(dropout=0.5)
    x = torch.randn(64, 6)
    expected = _reference(layer, x).detach()
    layer.train()
    torch.manual_seed(0)
    assert not torch.allclose(layer(x), expected, atol=1e-3)
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)

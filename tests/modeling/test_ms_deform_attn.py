"""Pure-PyTorch multi-scale deformable attention against a direct computation."""

import math

import pytest
import torch

from det_forget.modeling.detr import MSDeformAttn, ms_deform_attn_core


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample ``img`` (D, H, W) at normalised (x, y) in [0, 1]; zeros outside."""
    _, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5  # pixel centres at integer + 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < w and 0 <= yi < h:
                out = out + wx * wy * img[:, yi, xi]
    return out


def _reference(value, shapes, locations, weights):
    n, _, heads, dim = value.shape
    _, q, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes.tolist()[:-1]:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, q, heads, dim, dtype=value.dtype)
    for b in range(n):
        for qi in range(q):
            for hd in range(heads):
                for lv, (h, w) in enumerate(shapes.tolist()):
                    img = value[b, starts[lv] : starts[lv] + h * w, hd].T.reshape(dim, h, w)
                    for p in range(points):
                        x, y = locations[b, qi, hd, lv, p].tolist()
                        out[b, qi, hd] += weights[b, qi, hd, lv, p] * _bilinear(img, x, y)
    return out.flatten(2)


def _inputs(seed=0, n=2, q=3, heads=2, dim=4, points=2):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[5, 6], [3, 2], [1, 1]])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(n, s, heads, dim, generator=g, dtype=torch.float64)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    loc = torch.rand(n, q, heads, len(shapes), points, 2, generator=g, dtype=torch.float64)
    loc = loc * 1.3 - 0.15
    w = torch.rand(n, q, heads, len(shapes), points, generator=g, dtype=torch.float64)
    w = w / w.flatten(-2).sum(-1)[..., None, None]
    return value, shapes, loc, w


def test_core_matches_direct_bilinear_computation():
    value, shapes, loc, w = _inputs()
    got = ms_deform_attn_core(value, shapes, loc, w)
    want = _reference(value, shapes, loc, w)
    assert got.shape == want.shape == (2, 3, 8)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradients_flow_to_values_locations_and_weights():
    value, shapes, loc, w = _inputs(seed=1)
    for t in (value, loc, w):
        t.requires_grad_(True)
    ms_deform_attn_core(value, shapes, loc, w).square().sum().backward()
    for name, t in (("value", value), ("locations", loc), ("weights", w)):
        assert t.grad is not None and t.grad.abs().sum() > 0, name
    assert torch.autograd.gradcheck(
        lambda v, l_, a: ms_deform_attn_core(v, shapes, l_, a),
        (value[:1, :, :1, :2], loc[:1, :1, :1], w[:1, :1, :1]),
    )


def test_module_trains_offsets_and_respects_padding_mask():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    shapes = torch.tensor([[4, 4], [2, 2]])
    src = torch.randn(1, 20, 16)
    query = torch.randn(1, 5, 16)
    ref = torch.rand(1, 5, 2, 2)
    out = attn(query, ref, src, shapes)
    assert out.shape == (1, 5, 16) and torch.isfinite(out).all()
    out.sum().backward()
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0
    assert attn.attention_weights.weight.grad.abs().sum() > 0
    # Values at padded positions are ignored: changing them changes nothing.
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 12:16] = True
    a = attn(query, ref, src, shapes, mask)
    src2 = src.clone()
    src2[0, 12:16] = 1e3
    torch.testing.assert_close(attn(query, ref, src2, shapes, mask), a)


def test_module_rejects_shapes_that_do_not_cover_the_input():
    attn = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=1)
    with pytest.raises(ValueError, match="spatial shapes cover 9"):
        attn(
            torch.randn(1, 2, 8),
            torch.rand(1, 2, 1, 2),
            torch.randn(1, 10, 8),
            torch.tensor([[3, 3]]),
        )

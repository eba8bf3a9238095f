"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The sampling is ``F.grid_sample`` per feature level, so the layer runs on CPU and GPU
without the compiled ``MSDeformAttn`` op of the official code; parameter names and
shapes follow the official module, so its checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDeformAttn", "ms_deform_attn_core"]


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted bilinear samples of ``value`` at ``sampling_locations``.

    Args:
        value: ``(N, S, H, D)``: the flattened levels of every head's values,
            ``S = sum(h_l * w_l)``.
        spatial_shapes: ``(L, 2)`` ``(h_l, w_l)`` of each level, in the order of ``value``.
        sampling_locations: ``(N, Q, H, L, P, 2)`` ``(x, y)`` in ``[0, 1]`` of each level
            (0 and 1 are the outer edges of the border pixels); outside samples read 0.
        attention_weights: ``(N, Q, H, L, P)``; normalised over ``L * P`` by the caller.

    Returns:
        ``(N, Q, H * D)``.
    """
    n, _, heads, dim = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    value_levels = value.split(sizes, dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] with align_corners=False
    samples = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        # (N, h*w, H, D) -> (N*H, D, h, w)
        v = value_levels[lvl].flatten(2).transpose(1, 2).reshape(n * heads, dim, int(h), int(w))
        # (N, Q, H, P, 2) -> (N*H, Q, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # (N*H, D, Q, P)
    # (N, Q, H, L, P) -> (N*H, 1, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, q, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (N*H, D, Q)
    return out.view(n, heads * dim, q).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query attends to ``n_points`` learned
    offsets around its reference point on each of ``n_levels`` feature levels.

    Args:
        d_model: feature dimension.
        n_levels: feature levels.
        n_heads: attention heads (``d_model`` must divide by it).
        n_points: sampling points per head and level.
    """

    def __init__(
        self,
        d_model: int = 256,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: offsets start on rays in ``n_heads`` directions."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            query: ``(N, Q, C)``.
            reference_points: ``(N, Q, L, 2)`` normalised ``(x, y)`` per level, or
                ``(N, Q, L, 4)`` boxes ``(cx, cy, w, h)`` (offsets scale with the box).
            input_flatten: ``(N, S, C)`` the flattened levels.
            input_spatial_shapes: ``(L, 2)``.
            input_padding_mask: ``(N, S)``, True on padding.

        Returns:
            ``(N, Q, C)``.
        """
        n, q, _ = query.shape
        s = input_flatten.shape[1]
        expected = int((input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum())
        if expected != s:
            raise ValueError(f"spatial shapes cover {expected} positions, input has {s}")
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(
            n, q, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            n, q, self.n_heads, self.n_levels * self.n_points
        )
        weights = weights.softmax(-1).view(n, q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            normalizer = input_spatial_shapes.flip(-1).to(offsets.dtype)  # (w, h)
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                f"reference_points must end in 2 or 4 values, got {reference_points.shape[-1]}"
            )
        out = ms_deform_attn_core(value, input_spatial_shapes, locations, weights)
        return self.output_proj(out)

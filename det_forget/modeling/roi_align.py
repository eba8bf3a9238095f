"""ROIAlign as two small interpolation matrices: the same numbers as torchvision's
``roi_align``, with a backward pass made of matrix products.

Why: on CPU, torchvision's ``roi_align`` backward is a scalar loop. Profiling a step of
the demo's forgetting (tiny ViT Faster R-CNN, 8 + 8 images of 192 px) put 30% of the
step in ``torchvision::_roi_align_backward`` (48 ms per call, 6 calls a step), more than
every matrix product of the ViT together. The gradient has to flow through ROIAlign:
GS-LoRA's adapters sit in the backbone, under the box head.

How: ROIAlign samples a regular grid in each bin and averages bilinear interpolations.
Bilinear weights are a product of a y-weight and an x-weight, the "outside the map"
test is a product of a y-test and an x-test, and the average over a ``gh x gw`` sample
grid is the product of the averages over ``gh`` rows and ``gw`` columns. So for one box,
``out[c] = A_y @ F[c] @ A_x^T`` with ``A_y`` (pooled_h, H) and ``A_x`` (pooled_w, W)
built from the box alone: the exact algorithm of torchvision's kernel (aligned or not,
fixed or adaptive sampling ratio, boxes partly or wholly outside the map), written as
two matrix products per image whose backward is two more.

The products are dense over the feature map, so they pay off only where maps are small
(the tiny detectors here: 24 x 24 at p3; COCO-size images keep torchvision at p2-p4).
:class:`MatmulROIAlign` uses them on CPU for maps of at most :data:`MATMUL_MAX_AREA`
cells and calls torchvision otherwise (GPU, large maps, quantized input); both give the
same output, so the choice is invisible.
"""

from __future__ import annotations

import torch
from detectron2.layers import ROIAlign
from torch import nn

__all__ = ["MATMUL_MAX_AREA", "MatmulROIAlign", "matmul_roi_align", "use_matmul_roi_align"]

#: Largest feature map (H * W) that takes the matrix path on CPU. Measured on 2 cores,
#: forward + backward of 512 boxes over 8 images, 128 channels: 44 vs 146 ms at 24 x 24,
#: 93 vs 208 ms at 48 x 48, 159 vs 273 ms at 64 x 64 (still 275 vs 367 ms at 96 x 96).
MATMUL_MAX_AREA = 64 * 64

#: Elements of the (boxes * pooled_h, C * W) intermediate computed at once.
_CHUNK_ELEMENTS = 1 << 23


def _axis_weights(
    start: torch.Tensor, size: torch.Tensor, pooled: int, grid: torch.Tensor, length: int
) -> torch.Tensor:
    """Averaged 1-D interpolation weights ``(N, pooled, length)`` along one axis.

    ``start``/``size``: the boxes' first coordinate and extent in feature-map cells;
    ``grid``: samples per bin along this axis (torchvision's ``roi_bin_grid``; 0 or less
    means no sample, as in its kernel).
    """
    n = start.shape[0]
    max_grid = max(int(grid.max()), 1) if n else 1
    dtype = start.dtype
    p = torch.arange(pooled, device=start.device, dtype=dtype).view(1, pooled, 1)
    i = torch.arange(max_grid, device=start.device, dtype=dtype).view(1, 1, max_grid)
    g = grid.to(dtype).view(n, 1, 1)
    g_div = g.clamp(min=1)
    bin_size = (size / pooled).view(n, 1, 1)
    pos = start.view(n, 1, 1) + p * bin_size + (i + 0.5) * bin_size / g_div
    # A sample exists (i < grid) and lies within [-1, length] (else it contributes 0).
    use = ((i < g) & (pos >= -1.0) & (pos <= length)).to(dtype)
    pos = pos.clamp(min=0)
    low = pos.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low)
    weights = torch.zeros(n, pooled, length, dtype=dtype, device=start.device)
    weights.scatter_add_(2, low.long(), (1 - frac) * use / g_div)
    weights.scatter_add_(2, high.long(), frac * use / g_div)
    return weights


def matmul_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """torchvision's ``roi_align(features, rois, ...)`` computed with matrix products.

    Args:
        features: ``(B, C, H, W)``.
        rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in input coordinates.
        output_size: ``(pooled_h, pooled_w)``.
        spatial_scale: feature-map cells per input pixel.
        sampling_ratio: samples per bin along each axis; 0 = adaptive
            (``ceil(box size / pooled size)``), as torchvision.
        aligned: shift boxes by half a cell (detectron2's ``ROIAlignV2``).

    Returns:
        ``(K, C, pooled_h, pooled_w)``, equal to torchvision's up to float rounding, with
        gradients for ``features`` (boxes get none, as in detectron2, whose boxes are
        detached).
    """
    ph, pw = output_size
    b, c, h, w = features.shape
    rois = rois.to(features.dtype)
    with torch.no_grad():
        offset = 0.5 if aligned else 0.0
        batch = rois[:, 0].long()
        x1 = rois[:, 1] * spatial_scale - offset
        y1 = rois[:, 2] * spatial_scale - offset
        roi_w = rois[:, 3] * spatial_scale - offset - x1
        roi_h = rois[:, 4] * spatial_scale - offset - y1
        if not aligned:  # torchvision's legacy mode: at least one cell
            roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
        if sampling_ratio > 0:
            grid_h = grid_w = torch.full_like(batch, sampling_ratio)
        else:
            grid_h, grid_w = torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()
        a_y = _axis_weights(y1, roi_h, ph, grid_h, h)
        a_x = _axis_weights(x1, roi_w, pw, grid_w, w)
    # (H, C * W): rows of every channel side by side, so A_y multiplies all at once.
    by_rows = features.permute(0, 2, 1, 3).reshape(b, h, c * w)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, ph * c * w))
    outs, order = [], []
    for image in range(b):
        idx = (batch == image).nonzero().squeeze(1)
        for part in idx.split(chunk):
            n = part.numel()
            t = a_y[part].reshape(n * ph, h) @ by_rows[image]  # (n * ph, C * W)
            o = torch.bmm(t.view(n, ph * c, w), a_x[part].transpose(1, 2))  # (n, ph*C, pw)
            outs.append(o.view(n, ph, c, pw).permute(0, 2, 1, 3))
            order.append(part)
    if not outs:
        return features.new_zeros(rois.shape[0], c, ph, pw)
    out = torch.cat(outs)
    order_t = torch.cat(order)
    if order_t.numel() != rois.shape[0]:
        raise ValueError(f"roi batch indices must lie in [0, {b}); got {batch.unique().tolist()}")
    if not bool((order_t[1:] > order_t[:-1]).all()):
        out = out[torch.argsort(order_t)]
    return out.contiguous()


class MatmulROIAlign(ROIAlign):
    """detectron2's ``ROIAlign`` that takes the matrix path on CPU for small maps.

    Same constructor, same output; see the module docstring for when each path runs.
    """

    def uses_matmul(self, features: torch.Tensor) -> bool:
        """Whether ``forward(features, ...)`` takes the matrix path."""
        return (
            features.device.type == "cpu"
            and not features.is_quantized
            and features.dim() == 4
            and features.shape[-2] * features.shape[-1] <= MATMUL_MAX_AREA
        )

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if not self.uses_matmul(input):
            return super().forward(input, rois)
        if rois.dim() != 2 or rois.size(1) != 5:
            raise ValueError(f"rois must have shape (K, 5), got {tuple(rois.shape)}")
        return matmul_roi_align(
            input,
            rois,
            tuple(self.output_size),
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )


def use_matmul_roi_align(model: nn.Module) -> int:
    """Replace every detectron2 ``ROIAlign`` in ``model``'s ROI poolers by
    :class:`MatmulROIAlign` (no parameters or buffers change); returns how many."""
    swapped = 0
    for module in model.modules():
        poolers = getattr(module, "level_poolers", None)
        if not isinstance(poolers, nn.ModuleList):
            continue
        for i, pooler in enumerate(poolers):
            if type(pooler) is ROIAlign:
                poolers[i] = MatmulROIAlign(
                    pooler.output_size,
                    pooler.spatial_scale,
                    pooler.sampling_ratio,
                    aligned=pooler.aligned,
                )
                swapped += 1
    return swapped

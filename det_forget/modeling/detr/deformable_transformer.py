"""Deformable DETR's encoder-decoder over multi-scale features (single stage, no box
refinement: the configuration of the official COCO model GS-LoRA reports on).

Names follow the official code (``level_embed``, ``reference_points``,
``encoder.layers.N.self_attn.sampling_offsets``, ``decoder.layers.N.cross_attn``,
``linear1``/``linear2`` FFNs), so official checkpoints load by name.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .ms_deform_attn import MSDeformAttn
from .transformer import _activation, _with_pos

__all__ = ["DeformableTransformer", "DeformableEncoderLayer", "DeformableDecoderLayer"]


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over all levels + FFN, post-norm."""

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = _activation(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, padding_mask=None):
        src2 = self.self_attn(
            _with_pos(src, pos), reference_points, src, spatial_shapes, padding_mask
        )
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class DeformableDecoderLayer(nn.Module):
    """Query self-attention, deformable cross-attention to the memory, FFN; post-norm."""

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
    ) -> None:
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = _activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, padding_mask):
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, tgt)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(
            _with_pos(tgt, query_pos), reference_points, memory, spatial_shapes, padding_mask
        )
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


class _Stack(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` fraction ``(w, h)`` of a ``(N, H, W)`` padding mask that is image."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).to(torch.float32)
    valid_w = (~mask[:, 0, :]).sum(1).to(torch.float32)
    return torch.stack([valid_w / w, valid_h / h], -1)


def encoder_reference_points(spatial_shapes: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Pixel centres of every level, normalised to each image's valid area, seen from each
    level: ``(N, S, L, 2)``."""
    refs = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, int(h), device=ratios.device),
            torch.linspace(0.5, w - 0.5, int(w), device=ratios.device),
            indexing="ij",
        )
        ys = ys.reshape(-1)[None] / (ratios[:, None, lvl, 1] * h)
        xs = xs.reshape(-1)[None] / (ratios[:, None, lvl, 0] * w)
        refs.append(torch.stack((xs, ys), -1))
    return torch.cat(refs, 1)[:, :, None] * ratios[:, None]


class DeformableTransformer(nn.Module):
    """Args:
    d_model: hidden size.
    nhead: heads of every attention.
    num_encoder_layers / num_decoder_layers: depths (6 / 6 official).
    dim_feedforward: FFN width (1024 official).
    dropout: dropout.
    activation: FFN activation.
    num_feature_levels: input levels (4 official).
    dec_n_points / enc_n_points: sampling points per head and level.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        num_feature_levels: int = 4,
        dec_n_points: int = 4,
        enc_n_points: int = 4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = _Stack(
            DeformableEncoderLayer(
                d_model,
                dim_feedforward,
                dropout,
                activation,
                num_feature_levels,
                nhead,
                enc_n_points,
            ),
            num_encoder_layers,
        )
        self.decoder = _Stack(
            DeformableDecoderLayer(
                d_model,
                dim_feedforward,
                dropout,
                activation,
                num_feature_levels,
                nhead,
                dec_n_points,
            ),
            num_decoder_layers,
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def forward(
        self,
        srcs: list[torch.Tensor],
        masks: list[torch.Tensor],
        pos_embeds: list[torch.Tensor],
        query_embed: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            srcs / masks / pos_embeds: per level ``(N, C, H, W)`` / ``(N, H, W)`` /
                ``(N, C, H, W)``.
            query_embed: ``(Q, 2C)``: query position and initial content.

        Returns:
            ``hs`` ``(num_decoder_layers, N, Q, C)`` every decoder layer's output, and the
            reference points ``(N, Q, 2)`` in ``[0, 1]``.
        """
        flat, flat_mask, flat_pos, shapes = [], [], [], []
        for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            shapes.append(src.shape[-2:])
            flat.append(src.flatten(2).transpose(1, 2))
            flat_mask.append(mask.flatten(1))
            flat_pos.append(pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src = torch.cat(flat, 1)
        mask = torch.cat(flat_mask, 1)
        pos = torch.cat(flat_pos, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src.device)
        ratios = torch.stack([valid_ratios(m) for m in masks], 1)  # (N, L, 2)

        memory = src
        enc_refs = encoder_reference_points(spatial_shapes, ratios)
        for layer in self.encoder.layers:
            memory = layer(memory, pos, enc_refs, spatial_shapes, mask)

        n, c = memory.shape[0], memory.shape[-1]
        query_pos, tgt = torch.split(query_embed, c, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(n, -1, -1)
        tgt = tgt.unsqueeze(0).expand(n, -1, -1)
        reference_points = self.reference_points(query_pos).sigmoid()
        ref_input = reference_points[:, :, None] * ratios[:, None]
        outputs = []
        for layer in self.decoder.layers:
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes, mask)
            outputs.append(tgt)
        return torch.stack(outputs), reference_points

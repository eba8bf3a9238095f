"""DETR's encoder-decoder transformer (post-norm, as the official COCO models).

Module and parameter names follow the official code (``encoder.layers.N.linear1``,
``decoder.layers.N.multihead_attn``, ``decoder.norm``, ...), so official checkpoints load
by name and GS-LoRA's adapters target the FFNs as ``linear1`` / ``linear2``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DetrTransformer", "DetrEncoderLayer", "DetrDecoderLayer", "FFN_ACTIVATIONS"]

FFN_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _activation(name: str):
    if name not in FFN_ACTIVATIONS:
        raise ValueError(f"unknown FFN activation {name!r}; valid: {sorted(FFN_ACTIVATIONS)}")
    return FFN_ACTIVATIONS[name]


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class DetrEncoderLayer(nn.Module):
    """Self-attention + FFN (``linear1`` -> activation -> ``linear2``), post-norm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, src, pos=None, key_padding_mask=None):
        q = k = _with_pos(src, pos)
        src2 = self.self_attn(q, k, value=src, key_padding_mask=key_padding_mask)[0]
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(src2))


class DetrDecoderLayer(nn.Module):
    """Self-attention over queries, cross-attention to the memory, FFN; post-norm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, tgt, memory, pos=None, query_pos=None, memory_key_padding_mask=None):
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, value=tgt)[0]
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.multihead_attn(
            query=_with_pos(tgt, query_pos),
            key=_with_pos(memory, pos),
            value=memory,
            key_padding_mask=memory_key_padding_mask,
        )[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class _Stack(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = norm


class DetrTransformer(nn.Module):
    """Encoder over the flattened feature map, decoder over learned queries.

    Args:
        d_model: hidden size.
        nhead: attention heads.
        num_encoder_layers / num_decoder_layers: depths (6 / 6 in the official models).
        dim_feedforward: FFN width (2048 official).
        dropout: dropout in attention and FFN.
        activation: FFN activation ("relu").
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = _Stack(
            DetrEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation),
            num_encoder_layers,
        )
        self.decoder = _Stack(
            DetrDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation),
            num_decoder_layers,
            nn.LayerNorm(d_model),
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        src: torch.Tensor,
        mask: torch.Tensor,
        query_embed: torch.Tensor,
        pos_embed: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            src: ``(N, C, H, W)`` projected features.
            mask: ``(N, H, W)`` True on padding.
            query_embed: ``(Q, C)`` learned query positions.
            pos_embed: ``(N, C, H, W)``.

        Returns:
            ``(num_decoder_layers, N, Q, C)``: every decoder layer's output after the
            decoder's final norm (for auxiliary losses).
        """
        n = src.shape[0]
        memory = src.flatten(2).transpose(1, 2)
        pos = pos_embed.flatten(2).transpose(1, 2)
        key_mask = mask.flatten(1)
        for layer in self.encoder.layers:
            memory = layer(memory, pos=pos, key_padding_mask=key_mask)
        query_pos = query_embed.unsqueeze(0).expand(n, -1, -1)
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos, memory_key_padding_mask=key_mask)
            outputs.append(self.decoder.norm(tgt))
        return torch.stack(outputs)

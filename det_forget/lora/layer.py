"""The LoRA layer: a frozen ``nn.Linear`` plus low-rank updates on slices of its output.

One class serves both cases GS-LoRA and low-rank unlearning need:

* a plain linear layer (FFN ``fc1``/``fc2``) with one adapter over the whole output
  (part name ``"full"``);
* a fused ``qkv`` projection with separate adapters for the ``q``, ``k`` and ``v``
  output slices, as in Poppi et al., so each projection has its own rank-``r`` update.

The layer wraps the base layer rather than subclassing it (as PEFT does), so the base
weights stay an ordinary ``nn.Linear`` that can be unwrapped into a plain checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import LORA_INITS, QKV_PARTS

__all__ = ["LoraLinear", "FULL_PART"]

#: Part name of the single adapter that covers a plain layer's whole output.
FULL_PART = "full"


class LoraLinear(nn.Module):
    """``y = base(x) + (alpha / r) * concat_p( drop(x) A_p^T B_p^T )``.

    ``A_p`` has shape ``(r, in_features)`` and is initialised like ``nn.Linear``
    (``init="kaiming"``: kaiming-uniform, ``a = sqrt(5)``, as loralib and GS-LoRA) or
    from a normal distribution with std ``1 / r`` (``init="gaussian"``, PEFT's
    "gaussian", for Poppi et al.'s Gaussian A); ``B_p`` has shape ``(out_p, r)`` and
    starts at zero, so a fresh adapter is an exact no-op. Output features not covered by any part
    (a fused qkv layer with only some of q/k/v adapted) get no update.

    Args:
        base_layer: the frozen ``nn.Linear`` to adapt; its parameters are set to
            ``requires_grad=False``.
        rank: adapter rank ``r``.
        alpha: scaling numerator (``scaling = alpha / r``).
        dropout: dropout probability on the adapter input.
        parts: names of the adapted output slices: ``("full",)`` for a plain layer, a
            subset of ``("q", "k", "v")`` for a fused qkv layer (whose output size must
            then be divisible by 3).
        init: how A starts: ``"kaiming"`` or ``"gaussian"`` (see above).
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        *,
        rank: int = 8,
        alpha: float = 1.0,
        dropout: float = 0.0,
        parts: Sequence[str] = (FULL_PART,),
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoraLinear wraps nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        if init not in LORA_INITS:
            raise ValueError(f"LoRA init must be one of {LORA_INITS}, got {init!r}")
        self.init = init
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scaling = self.alpha / self.rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.slices = self._output_slices(base_layer.out_features, tuple(parts))
        in_f = base_layer.in_features
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.lora_A = nn.ParameterDict(
            {n: nn.Parameter(torch.empty(self.rank, in_f, **factory)) for n in self.slices}
        )
        self.lora_B = nn.ParameterDict(
            {
                n: nn.Parameter(torch.empty(e - s, self.rank, **factory))
                for n, (s, e) in self.slices.items()
            }
        )
        self.merged = False
        self.disabled = False
        # Inference without autograd: the effective weight W + scaling * B @ A, cached
        # until A, B or W change (see _inference_weight).
        self._weight_cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_lora_parameters()
        # Checkpoints of the unwrapped model name the base weight "<prefix>weight";
        # accept them so a base checkpoint loads straight into a wrapped model.
        self._register_load_state_dict_pre_hook(_remap_base_keys)

    @staticmethod
    def _output_slices(out_features: int, parts: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        if parts == (FULL_PART,):
            return {FULL_PART: (0, out_features)}
        bad = [p for p in parts if p not in QKV_PARTS]
        if bad or not parts or len(set(parts)) != len(parts):
            raise ValueError(
                f"parts must be ('{FULL_PART}',) or distinct names from {QKV_PARTS}, got {parts}"
            )
        if out_features % 3:
            raise ValueError(
                f"a fused qkv layer needs out_features divisible by 3, got {out_features}"
            )
        d = out_features // 3
        return {
            p: (QKV_PARTS.index(p) * d, (QKV_PARTS.index(p) + 1) * d)
            for p in QKV_PARTS
            if p in parts
        }

    @property
    def parts(self) -> tuple[str, ...]:
        """Names of the adapted output slices."""
        return tuple(self.slices)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (merged with the adapter when :attr:`merged`)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def reset_lora_parameters(self) -> None:
        """Re-initialise every adapter: A as :attr:`init` says, B zero (a no-op update)."""
        if self.merged:
            raise RuntimeError("reset_lora_parameters() on a merged layer; unmerge() first")
        with torch.no_grad():
            for a in self.lora_A.values():
                if self.init == "gaussian":
                    nn.init.normal_(a, std=1.0 / self.rank)
                else:
                    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            for b in self.lora_B.values():
                b.zero_()

    def get_delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B @ A`` laid out like the base weight ``(out, in)``."""
        if self.parts == (FULL_PART,):
            return (self.lora_B[FULL_PART] @ self.lora_A[FULL_PART]) * self.scaling
        delta = torch.zeros_like(self.base_layer.weight)
        for name, (s, e) in self.slices.items():
            delta[s:e] = (self.lora_B[name] @ self.lora_A[name]) * self.scaling
        return delta

    def merge(self) -> None:
        """Add the update into the base weight; the forward pass then uses the base only."""
        if self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight.add_(self.get_delta_weight().to(self.base_layer.weight.dtype))
        self.merged = True

    def unmerge(self) -> None:
        """Subtract a previously merged update from the base weight."""
        if not self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight.sub_(self.get_delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False

    def merge_and_reset(self) -> None:
        """Fold the update into the base weight for good and start a fresh adapter.

        This is the step between two continual-forgetting tasks: the next task trains a
        new zero-initialised adapter on top of the weights the previous task produced.
        """
        self.merge()
        self.merged = False
        self.reset_lora_parameters()

    def lora_delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's contribution for input ``x`` (without the base output)."""
        dtype = next(iter(self.lora_A.values())).dtype
        x = self.dropout(x if x.dtype == dtype else x.to(dtype))
        outs = []
        covered = 0
        for name, (s, e) in self.slices.items():
            if s > covered:
                outs.append(x.new_zeros(*x.shape[:-1], s - covered))
            outs.append(F.linear(F.linear(x, self.lora_A[name]), self.lora_B[name]))
            covered = e
        if covered < self.out_features:
            outs.append(x.new_zeros(*x.shape[:-1], self.out_features - covered))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return out * self.scaling

    def _inference_weight(self) -> torch.Tensor:
        """``W + scaling * B @ A``, recomputed only when A, B or W changed (in place, as an
        optimizer step, ``load_state_dict`` or a merge do, or replaced, as ``.to()`` does)."""
        tensors = (self.base_layer.weight, *self.lora_A.values(), *self.lora_B.values())
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        key += (self.scaling,)
        if self._weight_cache is None or self._weight_cache[0] != key:
            weight = self.base_layer.weight + self.get_delta_weight().to(
                self.base_layer.weight.dtype
            )
            self._weight_cache = (key, weight)
        return self._weight_cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            if self.disabled:
                raise RuntimeError(
                    "adapters are disabled but merged into the weights; unmerge() first"
                )
            return self.base_layer(x)
        if self.disabled:
            return self.base_layer(x)
        if not self.training and not torch.is_grad_enabled():
            # Inference: one matrix product with the effective weight, the base layer's
            # cost, instead of the base product plus two thin ones, a scale and an add
            # (the fixed per-layer cost that dominated small models).
            return F.linear(x, self._inference_weight(), self.base_layer.bias)
        self._weight_cache = None  # training: the adapter moves every step
        out = self.base_layer(x)
        if self.parts == (FULL_PART,) and isinstance(self.dropout, nn.Identity):
            a, b = self.lora_A[FULL_PART], self.lora_B[FULL_PART]
            if x.dtype == a.dtype == out.dtype and x.dim() >= 2:
                # out + scaling * (x A^T) B^T as one fused multiply-add.
                h = F.linear(x, a).reshape(-1, self.rank)
                fused = torch.addmm(out.reshape(-1, out.shape[-1]), h, b.t(), alpha=self.scaling)
                return fused.view(out.shape)
        return out + self.lora_delta(x).to(out.dtype)

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha}, parts={self.parts}, merged={self.merged}, "
            f"disabled={self.disabled}"
        )


def _remap_base_keys(state_dict, prefix, *args, **kwargs) -> None:
    for name in ("weight", "bias"):
        old = prefix + name
        if old in state_dict:
            state_dict[prefix + "base_layer." + name] = state_dict.pop(old)

"""Parameter groups over LoRA adapters, the group-lasso penalty, and sparsity measures.

GS-LoRA groups all adapter matrices of one transformer block (A_fc1, B_fc1, A_fc2,
B_fc2) and penalises ``sum_g ||g||_2`` so whole blocks switch off; the ablations also
group per LoRA module and per matrix. Groups are discovered from module names, so the
number of blocks is never hard-coded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..lora.inject import lora_layers

__all__ = [
    "GROUP_GRANULARITIES",
    "DEFAULT_BLOCK_REGEX",
    "ZERO_GROUP_REL_THRESHOLD",
    "ParamGroup",
    "build_groups",
    "group_norms",
    "group_lasso",
    "lora_b_l1",
    "zero_group_ratio",
    "SparsityWarmup",
]

GROUP_GRANULARITIES = ("block", "module", "matrix")

#: A block is the name up to and including the first numeric component:
#: ``backbone.net.blocks.3.mlp.fc1`` -> ``backbone.net.blocks.3``,
#: ``transformer.decoder.layers.2.linear1`` -> ``transformer.decoder.layers.2``.
DEFAULT_BLOCK_REGEX = r"^(.*?\.\d+)(?:\.|$)"

#: A group counts as zero when its norm is below this fraction of the largest group norm.
ZERO_GROUP_REL_THRESHOLD = 1e-3


@dataclass
class ParamGroup:
    """A named set of adapter parameters penalised together."""

    name: str
    params: list[nn.Parameter]

    def norm(self) -> torch.Tensor:
        """``sqrt(sum_{W in group} ||W||_F^2)``, differentiable."""
        return torch.linalg.vector_norm(torch.cat([p.reshape(-1) for p in self.params]))


def build_groups(
    model: nn.Module,
    granularity: str = "block",
    block_regex: str = DEFAULT_BLOCK_REGEX,
) -> list[ParamGroup]:
    """Group a model's adapter parameters.

    Args:
        model: a model with LoRA adapters.
        granularity: ``"block"`` (all adapters of a block, GS-LoRA's default),
            ``"module"`` (one group per LoRA layer) or ``"matrix"`` (each A and B alone).
        block_regex: for ``"block"``, a regex whose first group extracts the block name
            from a layer name. Layers it does not match form a group of their own.

    Returns:
        Groups in model order.
    """
    if granularity not in GROUP_GRANULARITIES:
        raise ValueError(f"granularity must be one of {GROUP_GRANULARITIES}, got {granularity!r}")
    pattern = re.compile(block_regex)
    groups: OrderedDict[str, list[nn.Parameter]] = OrderedDict()
    for name, layer in lora_layers(model):
        for part in layer.parts:
            for kind, param in (("lora_A", layer.lora_A[part]), ("lora_B", layer.lora_B[part])):
                if granularity == "matrix":
                    key = f"{name}.{kind}.{part}"
                elif granularity == "module":
                    key = name
                else:
                    m = pattern.match(name)
                    key = m.group(1) if m else name
                groups.setdefault(key, []).append(param)
    if not groups:
        raise ValueError("model has no LoRA adapters to group; call inject_lora first")
    return [ParamGroup(k, v) for k, v in groups.items()]


def group_norms(groups: list[ParamGroup]) -> torch.Tensor:
    """The L2 norm of each group, as a 1-D tensor."""
    return torch.stack([g.norm() for g in groups])


def group_lasso(groups: list[ParamGroup]) -> torch.Tensor:
    """``L_struct = sum_g sqrt(sum_{W in g} ||W||_F^2)`` (plain group lasso, no size weight).

    The gradient at an all-zero group is zero (PyTorch's norm subgradient), not NaN.
    """
    return group_norms(groups).sum()


def lora_b_l1(model: nn.Module) -> torch.Tensor:
    """``sum_layers ||vec(B)||_1`` over every adapter's B matrices (Poppi et al.)."""
    terms = [b.abs().sum() for _, layer in lora_layers(model) for b in layer.lora_B.values()]
    if not terms:
        raise ValueError("model has no LoRA adapters; L1 on B is undefined")
    return torch.stack(terms).sum()


@torch.no_grad()
def zero_group_ratio(
    groups: list[ParamGroup],
    rel_threshold: float = ZERO_GROUP_REL_THRESHOLD,
    abs_threshold: float = 0.0,
) -> float:
    """Share of groups whose norm is ~0 (GS-LoRA's Zero Group Ratio).

    A group is zero when its norm is ``<= max(abs_threshold, rel_threshold * largest
    group norm)``. The reference code gives no threshold; ours is relative by default
    (``1e-3`` of the largest group) so it does not depend on the model's scale.

    Returns:
        A fraction in [0, 1]; 1.0 when every group is exactly zero.
    """
    norms = group_norms(groups)
    threshold = max(abs_threshold, rel_threshold * float(norms.max()))
    return float((norms <= threshold).float().mean())


@dataclass
class SparsityWarmup:
    """GS-LoRA's "sparsity warm-up": ``alpha_s = 0`` for ``warmup`` steps, then constant.

    Steps are whatever the caller counts (epochs in the papers, iterations in
    detectron2); ``value(step)`` is the weight of the group-lasso term at that step.
    """

    alpha: float
    warmup: int = 0

    def value(self, step: int) -> float:
        """The group-lasso weight at ``step`` (0-based)."""
        return 0.0 if step < self.warmup else self.alpha

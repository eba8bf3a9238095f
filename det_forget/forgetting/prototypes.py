"""Class prototypes and GS-LoRA++'s prototype regulariser.

A prototype is the mean feature of a class (classification/face), or a row of the
pre-trained classifier weight (detection). The regulariser pushes forget-class features
away from their prototype and keeps retain-class features near theirs:
``L_pro = w_f * ReLU(BND_pro - KL_forget) + w_r * KL_retain`` with
``KL(x) = KL(softmax(p_y) || softmax(h(x)))``, softmax over the feature dimension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PrototypeAccumulator", "compute_prototypes", "prototype_kl", "prototype_loss"]


class PrototypeAccumulator:
    """Running per-class feature sums, for prototypes over a whole data loader.

    Args:
        num_classes: number of classes.
        dim: feature dimension.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.long)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of features ``(N, D)`` with labels ``(N,)``."""
        if features.ndim != 2 or features.shape[0] != labels.shape[0]:
            raise ValueError(
                f"features must be (N, D) matching labels (N,), got {tuple(features.shape)} "
                f"and {tuple(labels.shape)}"
            )
        labels = labels.cpu()
        self.sums.index_add_(0, labels, features.detach().double().cpu())
        self.counts += torch.bincount(labels, minlength=len(self.counts))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prototypes (C, D) float32, present (C,) bool)``; absent classes are zero rows."""
        present = self.counts > 0
        protos = torch.zeros_like(self.sums)
        protos[present] = self.sums[present] / self.counts[present, None]
        return protos.float(), present


def compute_prototypes(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean features of one tensor of samples.

    Returns:
        ``(prototypes (C, D), present (C,) bool)``; classes without samples (missing
        classes) have ``present == False`` and must not be used.
    """
    acc = PrototypeAccumulator(num_classes, features.shape[1])
    acc.update(features, labels)
    protos, present = acc.compute()
    return protos.to(features.device), present.to(features.device)


def prototype_kl(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor
) -> torch.Tensor:
    """Per-sample ``KL(softmax(p_{y_i}) || softmax(h_i))`` over the feature dimension.

    Args:
        features: ``h(x)``, shape ``(N, D)``.
        labels: class of each sample ``(N,)``.
        prototypes: ``(C, D)``.

    Returns:
        ``(N,)`` non-negative KL values.
    """
    target = F.softmax(prototypes[labels].to(features.dtype), dim=-1)
    log_q = F.log_softmax(features, dim=-1)
    return F.kl_div(log_q, target, reduction="none").sum(dim=-1)


def prototype_loss(
    prototypes: torch.Tensor,
    *,
    forget_features: torch.Tensor | None = None,
    forget_labels: torch.Tensor | None = None,
    retain_features: torch.Tensor | None = None,
    retain_labels: torch.Tensor | None = None,
    bound: float = 18.0,
    forget_weight: float = 1.0,
    retain_weight: float = 0.0,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """``w_f * ReLU(BND - mean KL_forget) + w_r * mean KL_retain`` (GS-LoRA++).

    Args:
        prototypes: ``(C, D)`` prototypes computed before forgetting starts.
        forget_features: features ``h(x)`` of forget samples ``(N_f, D)``.
        forget_labels: their classes ``(N_f,)``.
        retain_features: features of retain samples ``(N_r, D)``.
        retain_labels: their classes ``(N_r,)``.
        bound: BND_pro (18 in the reference, 50 few-shot).
        forget_weight: ``w_f``.
        retain_weight: ``w_r`` (0 in every released reference config).
        present: which classes have a prototype; samples of others are ignored.

    Returns:
        A scalar loss.
    """
    terms = []
    for feats, labels, is_forget in (
        (forget_features, forget_labels, True),
        (retain_features, retain_labels, False),
    ):
        w = forget_weight if is_forget else retain_weight
        if feats is None or labels is None or w == 0:
            continue
        if present is not None:
            keep = present[labels]
            feats, labels = feats[keep], labels[keep]
        if labels.numel() == 0:
            continue
        kl = prototype_kl(feats, labels, prototypes).mean()
        terms.append(w * F.relu(bound - kl) if is_forget else w * kl)
    if not terms:
        return prototypes.new_zeros(())
    return torch.stack(terms).sum()

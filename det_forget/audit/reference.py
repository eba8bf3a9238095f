"""Reference models for the calibrated attack: trained on known random halves of a pool.

The pool is the audit's members followed by its non-members (the training split and the
held-out split). Each reference trains on a random half of it, with the recipe of the
audited model, so for every sample some references saw it (IN) and others did not (OUT):
what :func:`.calibrated.lira_scores` needs. Halves are drawn per sample (each sample is IN
for exactly half of the references when their number is even, as in LiRA), so every
sample is calibrated by the same number of IN and OUT models.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..classification.data import ImageClassData
from ..classification.evaluate import predict
from ..classification.pretrain import PretrainRecipe, train_classifier
from .calibrated import calibrated_attack, scaled_logit_confidence
from .membership import MembershipResult

__all__ = [
    "ReferenceModels",
    "balanced_keep_masks",
    "train_reference_classifiers",
    "calibrated_classifier_attack",
]

logger = logging.getLogger(__name__)


def balanced_keep_masks(num_samples: int, num_models: int, seed: int = 0) -> torch.Tensor:
    """``(num_models, num_samples)`` booleans: which model trains on which sample.

    With two or more models every sample goes to exactly ``num_models // 2`` of them, so
    each sample has IN and OUT references; with one model, a random half of the samples
    (rounded down) is IN.

    Args:
        num_samples: size of the pool.
        num_models: number of reference models.
        seed: RNG seed.

    Returns:
        The boolean mask.
    """
    if num_samples <= 0 or num_models <= 0:
        raise ValueError(
            f"need at least one sample and one model, got {num_samples} and {num_models}"
        )
    gen = torch.Generator().manual_seed(seed)
    if num_models == 1:
        keep = torch.zeros(1, num_samples, dtype=torch.bool)
        keep[0, torch.randperm(num_samples, generator=gen)[: num_samples // 2]] = True
        return keep
    ranks = torch.rand(num_samples, num_models, generator=gen).argsort(dim=1).argsort(dim=1)
    return (ranks < num_models // 2).T.contiguous()


@dataclass
class ReferenceModels:
    """Reference models and which audited samples each was trained on.

    Attributes:
        models: the ``K`` reference models.
        member_keep: ``(K, len(members))`` True where a reference trained on that member.
        nonmember_keep: ``(K, len(nonmembers))`` the same for the non-members.
        seconds: wall time spent training them.
    """

    models: list[nn.Module]
    member_keep: torch.Tensor
    nonmember_keep: torch.Tensor
    seconds: float = 0.0

    def __post_init__(self) -> None:
        k = len(self.models)
        if k == 0:
            raise ValueError("ReferenceModels needs at least one model")
        for name in ("member_keep", "nonmember_keep"):
            mask = getattr(self, name)
            if mask.ndim != 2 or mask.shape[0] != k:
                raise ValueError(f"{name} must be ({k} models, samples), got {tuple(mask.shape)}")

    def __len__(self) -> int:
        return len(self.models)


def train_reference_classifiers(
    build_model: Callable[[], nn.Module],
    members: ImageClassData,
    nonmembers: ImageClassData,
    recipe: PretrainRecipe,
    *,
    num_models: int = 4,
    seed: int = 0,
) -> ReferenceModels:
    """Train ``num_models`` classifiers, each on a random half of members + non-members.

    Args:
        build_model: returns a freshly initialised model of the audited architecture.
        members: the audited model's training data.
        nonmembers: held-out data of the same classes.
        recipe: the training recipe (that of the audited model, for comparable scores).
        num_models: how many references (4 or more allows the online attack).
        seed: seed of the halves and of each model's initialisation and batches.

    Returns:
        The :class:`ReferenceModels`.
    """
    if members.classes != nonmembers.classes:
        raise ValueError("members and non-members must share the class list")
    pool = ImageClassData(
        torch.cat([members.images, nonmembers.images]),
        torch.cat([members.labels, nonmembers.labels]),
        members.classes,
    )
    keep = balanced_keep_masks(len(pool), num_models, seed)
    start = time.perf_counter()
    models = []
    for k in range(num_models):
        torch.manual_seed(seed + 1000 + k)
        model = build_model()
        half = pool.subset(torch.nonzero(keep[k]).flatten())
        train_classifier(
            model, half, None, dataclasses.replace(recipe, seed=recipe.seed + 1000 + k)
        )
        models.append(model.eval())
        logger.info("reference %d/%d trained on %d samples", k + 1, num_models, len(half))
    n = len(members)
    return ReferenceModels(
        models=models,
        member_keep=keep[:, :n],
        nonmember_keep=keep[:, n:],
        seconds=time.perf_counter() - start,
    )


def _statistic(model: nn.Module, data: ImageClassData, batch_size: int) -> torch.Tensor:
    _, logits = predict(model, data.images, batch_size)
    return scaled_logit_confidence(logits, data.labels)


def calibrated_classifier_attack(
    model: nn.Module,
    references: ReferenceModels,
    members: ImageClassData,
    member_index: Sequence[int] | torch.Tensor,
    nonmembers: ImageClassData,
    nonmember_index: Sequence[int] | torch.Tensor,
    *,
    mode: str = "offline",
    batch_size: int = 500,
    reference_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[MembershipResult, tuple[torch.Tensor, torch.Tensor]]:
    """The calibrated attack on ``model`` for the samples at the given indices.

    Args:
        model: the audited classifier.
        references: reference models whose masks index ``members`` / ``nonmembers``.
        members: the training data the masks refer to.
        member_index: which members to attack with.
        nonmembers: the held-out data the masks refer to.
        nonmember_index: which non-members to attack with.
        mode: ``offline`` (default), ``online`` or ``auto`` (see :mod:`.calibrated`).
        batch_size: images per forward pass.
        reference_stats: the references' statistics from an earlier call on the same
            samples (they do not depend on the audited model; passing them saves the
            forward passes).

    Returns:
        ``(result, (member reference stats (K, N_m), non-member reference stats (K, N_n)))``.
    """
    mi = torch.as_tensor(member_index, dtype=torch.long)
    ni = torch.as_tensor(nonmember_index, dtype=torch.long)
    mem, non = members.subset(mi), nonmembers.subset(ni)
    if reference_stats is None:
        reference_stats = (
            torch.stack([_statistic(r, mem, batch_size) for r in references.models]),
            torch.stack([_statistic(r, non, batch_size) for r in references.models]),
        )
    result = calibrated_attack(
        _statistic(model, mem, batch_size),
        reference_stats[0],
        references.member_keep[:, mi],
        _statistic(model, non, batch_size),
        reference_stats[1],
        references.nonmember_keep[:, ni],
        mode,
    )
    return result, reference_stats

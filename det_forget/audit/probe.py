"""Linear probe on frozen features: can the forgotten classes still be told apart?

A forgetting method can make the classifier's output forget a class while the features
underneath still encode it. The probe measures that: a logistic regression (in torch,
full batch, L-BFGS, float64, so it is deterministic) learns to separate the forgotten
classes from the retained ones on one part of the features and is scored on the other.
The score to read is the balanced accuracy on the held-out part (0.5: chance; 1.0: the
forgotten classes are still linearly separable) and the AUC of the probe's logits.

Comparing against the base model (before) and, above all, a model retrained without
the classes is what makes the number meaningful: features learned on other classes
often separate an unseen class too, so "separable after forgetting" alone is no proof
that forgetting failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..classification.data import stratified_split
from ..evaluation.metrics import accuracy_per_class
from .membership import rank_auc

__all__ = ["ProbeResult", "fit_logistic_regression", "balanced_accuracy", "linear_probe"]


@dataclass
class ProbeResult:
    """A linear probe separating forgotten (positive) from retained (negative) samples.

    Attributes:
        balanced_accuracy: mean of the per-group accuracies on the test part (0.5 chance).
        auc: ROC AUC of the probe's logits on the test part.
        train_balanced_accuracy: the same on the part it was fitted on (how well it fits).
        train_samples: samples it was fitted on.
        test_positives: forgotten-class samples it was scored on.
        test_negatives: retained-class samples it was scored on.
        feature_dim: width of the features.
        seed: seed of the train/test split.
    """

    balanced_accuracy: float
    auc: float
    train_balanced_accuracy: float
    train_samples: int
    test_positives: int
    test_negatives: int
    feature_dim: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ProbeResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__})


def balanced_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean of the two per-class accuracies of a binary prediction, in ``[0, 1]``.

    Uses :func:`det_forget.evaluation.metrics.accuracy_per_class` (percent) underneath.
    """
    per_class = accuracy_per_class(predictions.long(), targets.long(), 2)
    return sum(per_class.values()) / (100.0 * len(per_class))


def fit_logistic_regression(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced L2-regularised logistic regression, fitted with L-BFGS.

    Both classes weigh the same in the loss whatever their counts, so a probe cannot
    score well by always answering the majority class.

    Args:
        features: ``(N, D)`` (standardise them first).
        targets: ``(N,)`` booleans or 0/1.
        weight_decay: coefficient of ``||w||^2 / 2`` (the bias is not penalised).
        max_iter: L-BFGS iterations.

    Returns:
        ``(weight (D,), bias ())`` in float64.
    """
    x = features.double()
    y = targets.double()
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"a probe needs both classes to fit on; got {int(n_pos)} positive and "
            f"{int(n_neg)} negative samples"
        )
    sample_weight = torch.where(y > 0.5, 0.5 / n_pos, 0.5 / n_neg)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ w + b
        loss = (
            F.binary_cross_entropy_with_logits(logits, y, weight=sample_weight, reduction="sum")
            + 0.5 * weight_decay * (w * w).sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def linear_probe(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    test_fraction: float = 0.5,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
    seed: int = 0,
) -> ProbeResult:
    """Fit a probe on part of ``features`` and score it on the rest.

    The test part holds the same number of positives and negatives (``test_fraction`` of
    the smaller group, drawn with ``seed``); everything else is for fitting.
    Standardisation uses the fitting part's statistics only.

    Args:
        features: ``(N, D)`` frozen features.
        targets: ``(N,)`` True for forgotten-class samples, False for retained ones.
        test_fraction: share of the smaller group held out for scoring, in ``(0, 1)``.
        weight_decay: L2 coefficient of the probe.
        max_iter: L-BFGS iterations.
        seed: seed of the split.

    Returns:
        The :class:`ProbeResult`.

    Raises:
        ValueError: mismatched shapes, a bad ``test_fraction``, or a group with fewer
            than two samples.
    """
    if features.ndim != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            f"features must be (N, D) matching targets (N,), got {tuple(features.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x = features.detach().double().cpu()
    y = targets.detach().cpu().bool().long()
    smaller = int(min(int(y.sum()), int(len(y) - y.sum())))
    if smaller < 2:
        raise ValueError(
            f"a probe needs at least 2 samples of each group, got {int(y.sum())} forgotten "
            f"and {int(len(y) - y.sum())} retained"
        )
    per_group = min(max(1, round(test_fraction * smaller)), smaller - 1)
    train_idx, test_idx = stratified_split(y, per_group, seed=seed)
    mean = x[train_idx].mean(dim=0)
    std = x[train_idx].std(dim=0).clamp_min(1e-6)
    x = (x - mean) / std
    w, b = fit_logistic_regression(
        x[train_idx], y[train_idx], weight_decay=weight_decay, max_iter=max_iter
    )
    logits = x @ w + b
    test_logits, test_y = logits[test_idx], y[test_idx]
    return ProbeResult(
        balanced_accuracy=balanced_accuracy((test_logits > 0).long(), test_y),
        auc=rank_auc(test_logits[test_y == 1], test_logits[test_y == 0]),
        train_balanced_accuracy=balanced_accuracy((logits[train_idx] > 0).long(), y[train_idx]),
        train_samples=len(train_idx),
        test_positives=int(test_y.sum()),
        test_negatives=int(len(test_y) - test_y.sum()),
        feature_dim=int(x.shape[1]),
        seed=seed,
    )

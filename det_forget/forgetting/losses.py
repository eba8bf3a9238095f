"""Forgetting and retaining losses shared by detection, classification and face heads.

Every loss here takes per-sample (or per-object) losses plus their class labels, so one
implementation serves a classifier's cross-entropy, a box head's classification loss and
DETR's matched-query loss alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "object_nll",
    "retain_loss",
    "per_class_mean",
    "balanced_mean",
    "bounded_forget_loss",
    "reciprocal_forget_loss",
    "negative_gradient_loss",
    "random_labels",
    "random_label_loss",
]


def object_nll(logits: torch.Tensor, target: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """Per-sample ``-log p(target)``: softmax cross-entropy, or for sigmoid classifiers
    (Deformable DETR) ``-log sigmoid(logit_target)``, so only the target class's own score
    moves."""
    if not sigmoid:
        return F.cross_entropy(logits, target, reduction="none")
    return F.softplus(-logits.gather(1, target[:, None])[:, 0])


def retain_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on retain data (mean over the batch)."""
    return F.cross_entropy(logits, labels)


def per_class_mean(values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` for each class present in ``labels``.

    Args:
        values: per-sample values, shape ``(N,)``.
        labels: integer labels, shape ``(N,)``.

    Returns:
        ``(classes, means)``: the sorted classes present and the mean value of each.
    """
    if values.shape != labels.shape:
        raise ValueError(f"values {tuple(values.shape)} and labels {tuple(labels.shape)} differ")
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    sums = torch.zeros(len(classes), dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, inverse, values)
    counts = torch.bincount(inverse, minlength=len(classes)).to(values.dtype)
    return classes, sums / counts


def balanced_mean(
    values: torch.Tensor, labels: torch.Tensor | None, per_class: bool
) -> torch.Tensor:
    """Mean of the per-class means of ``values`` (``per_class``) or their plain mean.

    Zero (with a graph) when there are no values.

    Raises:
        ValueError: ``per_class`` without labels.
    """
    if values.numel() == 0:
        return values.sum()
    if not per_class:
        return values.mean()
    if labels is None:
        raise ValueError("a per-class mean needs labels")
    return per_class_mean(values, labels)[1].mean()


def bounded_forget_loss(
    per_sample_loss: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    bound: float,
    weight: float = 1.0,
    per_class: bool = True,
    per_object: bool = False,
) -> torch.Tensor:
    """GS-LoRA's bounded forgetting loss: maximise the forget loss up to ``bound``.

    * per class (default): ``mean_c ReLU(bound - weight * mean_{i: y_i = c} L_i)`` over the
      forget classes present, so a class that is already forgotten cannot hide one
      that is not;
    * batch mean (the reference): ``ReLU(bound - weight * mean_i L_i)``;
    * ``per_object``: the bound moves inside the mean, ``ReLU(bound - weight * L_i)`` for
      every sample, averaged per class (``per_class``) or over the batch; objects already
      past the bound cannot hide one that is not (a mean CE of 12 can hide a box the
      model still gives probability 0.5).

    Past the bound the term is zero and so is its gradient.

    Args:
        per_sample_loss: e.g. cross-entropy per forget sample / object, shape ``(N,)``.
        labels: class of each sample; required when ``per_class``.
        bound: BND; the loss is 0 once ``weight * CE`` exceeds it.
        weight: factor on the loss inside the ReLU (the DETR reference uses 2).
        per_class: per-class bounding (default) or batch mean.
        per_object: bound every sample's loss, then average (see above).

    Returns:
        A scalar; zero (with a graph) when there are no samples.
    """
    if per_sample_loss.numel() == 0:
        return per_sample_loss.sum()
    if per_class and labels is None:
        raise ValueError("bounded_forget_loss(per_class=True) needs labels")
    if per_object:
        return balanced_mean(F.relu(bound - weight * per_sample_loss), labels, per_class)
    if not per_class:
        return F.relu(bound - weight * per_sample_loss.mean())
    _, class_means = per_class_mean(per_sample_loss, labels)
    return F.relu(bound - weight * class_means).mean()


def reciprocal_forget_loss(per_sample_loss: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``1 / (mean CE + eps)``: Poppi et al.'s bounded unlearning loss (no retain data).

    ``eps`` keeps the loss finite (at most ``1 / eps``) when a confident model starts with
    CE near 0, while leaving a gradient everywhere (a clamp would zero it).
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if per_sample_loss.numel() == 0:
        return per_sample_loss.sum()
    return 1.0 / (per_sample_loss.mean() + eps)


def negative_gradient_loss(per_sample_loss: torch.Tensor) -> torch.Tensor:
    """``-mean CE`` (gradient ascent on the forget data; unbounded)."""
    if per_sample_loss.numel() == 0:
        return per_sample_loss.sum()
    return -per_sample_loss.mean()


def random_labels(
    labels: torch.Tensor,
    num_classes: int,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniformly random labels different from the true ones (and from ``exclude``).

    Args:
        labels: true labels ``(N,)``.
        num_classes: number of classes.
        generator: RNG for reproducibility (on the labels' device).
        exclude: classes never to draw (e.g. all forget classes); the true label is
            always excluded.
    """
    allowed = torch.ones(len(labels), num_classes, dtype=torch.bool, device=labels.device)
    allowed[torch.arange(len(labels), device=labels.device), labels] = False
    if exclude is not None:
        allowed[:, exclude.to(labels.device)] = False
    if not bool(allowed.any(dim=1).all()):
        raise ValueError("random_labels: no class left to draw for some sample")
    scores = torch.rand(allowed.shape, generator=generator, device=labels.device)
    return scores.masked_fill(~allowed, -1.0).argmax(dim=1)


def random_label_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy against :func:`random_labels` (the random-label forgetting baseline)."""
    target = random_labels(labels, logits.shape[-1], generator=generator, exclude=exclude)
    return F.cross_entropy(logits, target)

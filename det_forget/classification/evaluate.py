"""Evaluation of classifiers and face models: per-class accuracy, embeddings, TAR at FAR.

Per-class accuracy comes from :func:`det_forget.evaluation.metrics.accuracy_per_class`, so
classification and face identification report the same numbers as detection does with AP.
Verification adds :func:`tar_at_far`: the true-accept rate of genuine pairs at the
similarity threshold where the false-accept rate of impostor pairs is at most a target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation.metrics import accuracy_per_class

__all__ = [
    "predict",
    "evaluate_per_class",
    "embed",
    "tar_at_far",
    "verification_pairs",
    "verification_report",
]


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and their logits, batch by batch in eval mode.

    Args:
        model: returns logits ``(N, C)`` for images.
        images: ``(N, C, H, W)`` uint8 or float.
        batch_size: images per forward pass.

    Returns:
        ``(predictions (N,), logits (N, C))`` on the CPU.
    """
    was_training = model.training
    model.eval()
    logits = [
        model(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    out = torch.cat(logits) if logits else torch.empty(0, 0)
    return out.argmax(dim=1) if len(out) else torch.empty(0, dtype=torch.long), out


def evaluate_per_class(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 500,
) -> dict[int, float]:
    """Top-1 accuracy (%) of each class that has samples.

    Args:
        model: a classifier (or a face model whose ``forward`` gives identity logits).
        images: ``(N, C, H, W)``.
        labels: ``(N,)``.
        num_classes: number of classes.
        batch_size: images per forward pass.

    Returns:
        ``{class id: accuracy in [0, 100]}``.
    """
    preds, _ = predict(model, images, batch_size)
    return accuracy_per_class(preds, labels, num_classes)


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """L2-normalised embeddings ``model.features(images)`` ``(N, D)``, in eval mode."""
    was_training = model.training
    model.eval()
    feats = [
        model.features(images[i : i + batch_size]).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return F.normalize(torch.cat(feats), dim=1)


def tar_at_far(genuine: torch.Tensor, impostor: torch.Tensor, far: float) -> tuple[float, float]:
    """True-accept rate at a false-accept rate of at most ``far``.

    A pair is accepted when its similarity is strictly above the threshold. The threshold
    is the smallest impostor score that lets through at most ``floor(far * N_imp)``
    impostor pairs, so the realised FAR never exceeds the target.

    Args:
        genuine: similarities of same-identity pairs ``(N_gen,)``.
        impostor: similarities of different-identity pairs ``(N_imp,)``.
        far: target false-accept rate in ``[0, 1]``.

    Returns:
        ``(TAR, threshold)``; TAR in ``[0, 1]``.

    Raises:
        ValueError: ``far`` outside ``[0, 1]`` or an empty score set.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    if genuine.numel() == 0 or impostor.numel() == 0:
        raise ValueError("tar_at_far needs at least one genuine and one impostor pair")
    imp = torch.sort(impostor.double().flatten(), descending=True).values
    allowed = math.floor(far * imp.numel() + 1e-9)
    # Accepting the `allowed` highest impostors means a threshold at the next one down.
    threshold = float(imp[allowed]) if allowed < imp.numel() else float(imp[-1]) - 1.0
    tar = float((genuine.double() > threshold).double().mean())
    return tar, threshold


def verification_pairs(
    labels: torch.Tensor, max_impostor: int = 20000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """All genuine pairs and a random sample of impostor pairs of a labelled set.

    Args:
        labels: identity per sample ``(N,)``.
        max_impostor: cap on impostor pairs (all of them when there are fewer).
        seed: RNG seed of the impostor sample.

    Returns:
        ``(genuine (G, 2), impostor (I, 2))`` index pairs ``i < j``.
    """
    i, j = torch.triu_indices(len(labels), len(labels), offset=1)
    same = labels[i] == labels[j]
    genuine = torch.stack([i[same], j[same]], dim=1)
    imp = torch.stack([i[~same], j[~same]], dim=1)
    if len(imp) > max_impostor:
        gen = torch.Generator().manual_seed(seed)
        imp = imp[torch.randperm(len(imp), generator=gen)[:max_impostor]]
    return genuine, imp


def verification_report(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    fars: Sequence[float] = (1e-3, 1e-2, 1e-1),
    max_impostor: int = 20000,
) -> dict[str, float]:
    """TAR at each FAR for cosine similarity of L2-normalised embeddings.

    Args:
        embeddings: ``(N, D)`` normalised embeddings.
        labels: identity of each ``(N,)``.
        fars: target false-accept rates.
        max_impostor: cap on impostor pairs.

    Returns:
        ``{"TAR@FAR=<far>": TAR in %}`` plus the pair counts.
    """
    genuine_idx, impostor_idx = verification_pairs(labels, max_impostor)
    sim = lambda p: (embeddings[p[:, 0]] * embeddings[p[:, 1]]).sum(dim=1)  # noqa: E731
    genuine, impostor = sim(genuine_idx), sim(impostor_idx)
    out: dict[str, float] = {"genuine_pairs": len(genuine), "impostor_pairs": len(impostor)}
    for far in fars:
        out[f"TAR@FAR={far:g}"] = 100.0 * tar_at_far(genuine, impostor, far)[0]
    return out

"""Audit a classifier's forgetting: membership inference, a probe on its embedding and,
optionally, the calibrated attack and relearn time.

Members are training images of the forgotten classes (the base model was trained on
them), non-members held-out images of the same classes (the test split). The probe
separates forgotten from retained classes on the held-out images' pre-logit features
(``model.features``), so it measures what the representation encodes, not what it
memorised. With reference models (:mod:`.reference`) every model also gets the
calibrated attack, which becomes the headline; with relearn settings every model is
fine-tuned on a few training images until the forgotten classes come back
(:mod:`.relearn`), measured on the probe's held-out images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..classification.data import ImageClassData, subsample_per_class
from ..classification.evaluate import predict
from ..evaluation.metrics import accuracy_per_class, group_mean
from .calibrated import CALIBRATED_ATTACK
from .membership import membership_inference
from .probe import linear_probe
from .reference import ReferenceModels, calibrated_classifier_attack
from .relearn import relearn_time
from .report import AuditReport, ModelAudit

__all__ = ["audit_classifier", "classifier_features"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def classifier_features(
    model: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """``model.features(images)`` ``(N, D)`` batch by batch in eval mode (not normalised)."""
    was_training = model.training
    model.eval()
    feats = [
        model.features(images[i : i + batch_size]).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(feats)


def _per_class_shots(total: int, num_classes: int) -> int:
    """Samples per class so that ``num_classes`` classes give at most ``total`` (0: all)."""
    if total <= 0:
        return 0
    return max(1, total // num_classes)


def audit_classifier(
    base: nn.Module,
    forgotten: nn.Module,
    *,
    members: ImageClassData,
    nonmembers: ImageClassData,
    forget_classes: Sequence[int],
    retrained: nn.Module | None = None,
    max_samples: int = 1000,
    probe_per_class: int = 200,
    tolerance: float = 0.05,
    seed: int = 0,
    batch_size: int = 500,
    sources: Mapping[str, str] | None = None,
    references: ReferenceModels | None = None,
    calibration: str = "offline",
    relearn: Mapping[str, Any] | None = None,
) -> AuditReport:
    """Audit forgetting of ``forget_classes`` by a classifier.

    Args:
        base: the model before forgetting (trained on ``members``).
        forgotten: the model after forgetting.
        members: data the base model was trained on (e.g. the training split).
        nonmembers: held-out data of the same distribution (e.g. the test split).
        forget_classes: ids of the forgotten classes.
        retrained: optional model trained without the forgotten classes.
        max_samples: members and non-members each, at most this many (split evenly over
            the forgotten classes; 0: all).
        probe_per_class: held-out images per class for the probe (0: all).
        tolerance: allowed MIA AUC difference to the reference.
        seed: seed of every subsample and of the probe's split.
        batch_size: images per forward pass.
        sources: ``{role: where the model came from}`` for the report.
        references: reference models whose masks index ``members`` and ``nonmembers``
            (:func:`~.reference.train_reference_classifiers`): adds the calibrated attack
            and makes it the headline.
        calibration: its mode (``offline``, ``online`` or ``auto``).
        relearn: keyword arguments of :func:`~.relearn.relearn_time` (``shots``,
            ``steps``, ``lr``, ``batch_size``, ...): adds relearn time, fine-tuning on
            ``members`` and measuring on the probe's held-out images (the target is half
            the base model's accuracy there). None: not measured.

    Returns:
        The :class:`AuditReport`.

    Raises:
        ValueError: no forget class, or a forget class without members or non-members.
    """
    start = time.perf_counter()
    forget = sorted({int(c) for c in forget_classes})
    if not forget:
        raise ValueError("audit_classifier needs at least one forget class")
    shots = _per_class_shots(max_samples, len(forget))
    member_index = subsample_per_class(members.labels, forget, shots=shots, seed=seed)
    nonmember_index = subsample_per_class(nonmembers.labels, forget, shots=shots, seed=seed + 1)
    mem, non = members.subset(member_index), nonmembers.subset(nonmember_index)
    for name, part in (("members", mem), ("non-members", non)):
        absent = sorted(set(forget) - set(part.labels.tolist()))
        if absent:
            raise ValueError(f"forget classes {absent} have no {name} to audit with")
    probe_set = nonmembers.subset(
        subsample_per_class(
            nonmembers.labels,
            range(nonmembers.num_classes),
            shots=probe_per_class,
            seed=seed + 2,
        )
    )
    targets = torch.isin(probe_set.labels, torch.tensor(forget))
    sources = dict(sources or {})
    models = {"base": base, "forgotten": forgotten}
    if retrained is not None:
        models["retrained"] = retrained
    original_accuracy = None
    if relearn is not None:
        original_accuracy = group_mean(
            accuracy_per_class(
                predict(base, probe_set.images, batch_size)[0],
                probe_set.labels,
                nonmembers.num_classes,
            ),
            forget,
        )
    reference_stats = None
    audits: dict[str, ModelAudit] = {}
    for role, model in models.items():
        _, mem_logits = predict(model, mem.images, batch_size)
        _, non_logits = predict(model, non.images, batch_size)
        membership = membership_inference(mem_logits, mem.labels, non_logits, non.labels)
        if references is not None:
            membership[CALIBRATED_ATTACK], reference_stats = calibrated_classifier_attack(
                model,
                references,
                members,
                member_index,
                nonmembers,
                nonmember_index,
                mode=calibration,
                batch_size=batch_size,
                reference_stats=reference_stats,
            )
        features = classifier_features(model, probe_set.images, batch_size)
        probe = linear_probe(features, targets, seed=seed)
        per_class = accuracy_per_class(non_logits.argmax(dim=1), non.labels, nonmembers.num_classes)
        audits[role] = ModelAudit(
            role=role,
            source=sources.get(role, "in memory"),
            membership=membership,
            probe=probe,
            forget_accuracy=group_mean(per_class, forget),
            relearn=None
            if relearn is None
            else relearn_time(
                model,
                members,
                probe_set,
                forget,
                original_accuracy=original_accuracy,
                seed=seed,
                eval_batch_size=batch_size,
                **relearn,
            ),
        )
        logger.info(
            "%s: MIA AUC loss %.3f confidence %.3f%s, probe balanced accuracy %.3f%s",
            role,
            membership["loss"].auc,
            membership["confidence"].auc,
            "" if references is None else f" calibrated {membership[CALIBRATED_ATTACK].auc:.3f}",
            probe.balanced_accuracy,
            "" if audits[role].relearn is None else f", relearn {audits[role].relearn.describe()}",
        )
    names = members.classes
    data = {
        "members": f"training samples of the forgotten classes ({len(mem)})",
        "nonmembers": f"held-out samples of the forgotten classes ({len(non)})",
        "probe": (
            f"held-out samples of every class ({len(probe_set)}; {int(targets.sum())} "
            "forgotten vs the rest), features = model.features (pre-logit embedding)"
        ),
        "members_count": len(mem),
        "nonmembers_count": len(non),
        "probe_count": len(probe_set),
        "max_samples": max_samples,
        "probe_per_class": probe_per_class,
        "seed": seed,
        "forget_class_ids": forget,
    }
    if references is not None:
        data["references"] = (
            f"{len(references)} reference models, each trained on a random half of the "
            f"training + held-out images ({references.member_keep.shape[1]} + "
            f"{references.nonmember_keep.shape[1]}), {references.seconds:.0f} s"
        )
        data["calibration"] = audits["base"].membership[CALIBRATED_ATTACK].attack
    if relearn is not None:
        data["relearn"] = {
            "train": "the training images (members)",
            "eval": f"the probe's held-out images ({len(probe_set)})",
            "original_forget_accuracy": original_accuracy,
            **dict(relearn),
        }
    return AuditReport(
        task="classification",
        forget_classes=[names[c] for c in forget],
        models=audits,
        data=data,
        headline_attack=CALIBRATED_ATTACK if references is not None else "loss",
        tolerance=tolerance,
        seconds=time.perf_counter() - start,
    )

"""Forgetting metrics: per-class scores aggregated by class group, Drop and H-Mean.

Works on any per-class score (top-1 accuracy in %, COCO AP in %), so classification,
face identification and detection report the same numbers the same way.

Groups (disjoint):
    forget:  classes forgotten by the current task (Acc_f / AP_f);
    retain:  classes to keep that had training data (Acc_r / AP_r);
    old:     classes forgotten by earlier tasks (Acc_o / AP_o);
    missing: classes to keep that had no training data at all (Acc_m, GS-LoRA++).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CLASS_GROUPS",
    "ClassGroups",
    "accuracy_per_class",
    "group_mean",
    "aggregate_by_group",
    "drop",
    "h_mean",
    "forgetting_summary",
]

CLASS_GROUPS = ("forget", "retain", "old", "missing")


@dataclass(frozen=True)
class ClassGroups:
    """Which classes belong to which group; every class in at most one group."""

    forget: tuple[Hashable, ...]
    retain: tuple[Hashable, ...]
    old: tuple[Hashable, ...] = field(default_factory=tuple)
    missing: tuple[Hashable, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        seen: dict[Hashable, str] = {}
        for group in CLASS_GROUPS:
            values = tuple(getattr(self, group))
            object.__setattr__(self, group, values)
            for c in values:
                if c in seen:
                    raise ValueError(f"class {c!r} is in both {seen[c]!r} and {group!r}")
                seen[c] = group

    def as_dict(self) -> dict[str, list[Hashable]]:
        """``{group: [classes]}``."""
        return {g: list(getattr(self, g)) for g in CLASS_GROUPS}


def accuracy_per_class(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> dict[int, float]:
    """Top-1 accuracy in percent for each class that has samples.

    Args:
        predictions: predicted class per sample ``(N,)``.
        labels: true class per sample ``(N,)``.
        num_classes: number of classes.

    Returns:
        ``{class: accuracy in [0, 100]}`` for classes with at least one sample.
    """
    labels = labels.cpu().long()
    correct = (predictions.cpu().long() == labels).long()
    total = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels, weights=correct.double(), minlength=num_classes)
    return {c: 100.0 * float(hits[c]) / int(total[c]) for c in range(num_classes) if total[c] > 0}


def group_mean(per_class: Mapping[Hashable, float], classes: Iterable[Hashable]) -> float | None:
    """Mean score over ``classes`` that have a finite score; ``None`` if there is none."""
    vals = [per_class[c] for c in classes if c in per_class and math.isfinite(per_class[c])]
    return sum(vals) / len(vals) if vals else None


def aggregate_by_group(
    per_class: Mapping[Hashable, float], groups: ClassGroups
) -> dict[str, float | None]:
    """``{group: mean score}`` for every group in :data:`CLASS_GROUPS`."""
    return {g: group_mean(per_class, getattr(groups, g)) for g in CLASS_GROUPS}


def drop(before: float, after: float) -> float:
    """``Drop = score_f(before) - score_f(after)``: how much the forget classes lost."""
    return before - after


def h_mean(drop_value: float, retain_score: float) -> float:
    """``2 * Drop * Acc_r / (Drop + Acc_r)``: forgetting and retention in one number.

    A negative Drop (the forget classes got better) counts as 0, so H-Mean is 0 when
    nothing was forgotten or nothing retained.
    """
    d = max(drop_value, 0.0)
    r = max(retain_score, 0.0)
    return 0.0 if d + r == 0 else 2.0 * d * r / (d + r)


def forgetting_summary(
    before: Mapping[Hashable, float],
    after: Mapping[Hashable, float],
    groups: ClassGroups,
) -> dict[str, Any]:
    """All forgetting numbers for one task.

    Args:
        before: per-class scores before the task.
        after: per-class scores after the task.
        groups: class groups of the task.

    Returns:
        ``{"before": {group: score}, "after": {group: score}, "drop": Drop,
        "h_mean": H-Mean, "retain_change": score_r(after) - score_r(before)}``; Drop and
        H-Mean are ``None`` when the forget or retain group has no scores.
    """
    b = aggregate_by_group(before, groups)
    a = aggregate_by_group(after, groups)
    out: dict[str, Any] = {"before": b, "after": a, "drop": None, "h_mean": None}
    if b["forget"] is not None and a["forget"] is not None:
        out["drop"] = drop(b["forget"], a["forget"])
        if a["retain"] is not None:
            out["h_mean"] = h_mean(out["drop"], a["retain"])
    out["retain_change"] = (
        a["retain"] - b["retain"] if a["retain"] is not None and b["retain"] is not None else None
    )
    return out

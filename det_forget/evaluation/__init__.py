"""Forgetting metrics and (with detectron2) forget/retain evaluators."""

from .metrics import (
    CLASS_GROUPS,
    ClassGroups,
    accuracy_per_class,
    aggregate_by_group,
    drop,
    forgetting_summary,
    group_mean,
    h_mean,
)

__all__ = [
    "CLASS_GROUPS",
    "ClassGroups",
    "accuracy_per_class",
    "aggregate_by_group",
    "drop",
    "forgetting_summary",
    "group_mean",
    "h_mean",
]

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

# The COCO evaluator subclasses detectron2's COCOEvaluator: import it on first access so that
# the metrics above stay importable (and cheap) without detectron2.
_COCO_FORGET_NAMES = (
    "ForgetCOCOEvaluator",
    "GROUP_SUFFIXES",
    "PROTOCOL",
    "REPORT_FORMAT",
    "load_before",
    "per_category_ap",
)
__all__ += list(_COCO_FORGET_NAMES)


def __getattr__(name: str):
    if name in _COCO_FORGET_NAMES:
        from . import coco_forget

        return getattr(coco_forget, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

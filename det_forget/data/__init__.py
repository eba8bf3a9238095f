"""Datasets shipped with det_forget: a deterministic synthetic COCO-format shapes dataset."""

from .synthetic import (
    SHAPES_CATEGORIES,
    SHAPES_CLASS_NAMES,
    SHAPES_SPLITS,
    default_shapes_root,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    register_shapes_dataset,
)

__all__ = [
    "SHAPES_CATEGORIES",
    "SHAPES_CLASS_NAMES",
    "SHAPES_SPLITS",
    "default_shapes_root",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "register_shapes_dataset",
]

from .forget_retain import (  # noqa: E402
    MISSING_POLICIES,
    ForgetRetainSplit,
    build_forget_retain_split,
    class_statistics,
    forget_view,
    register_view,
    resolve_classes,
    retain_view,
    subsample_per_class,
)

__all__ += [
    "MISSING_POLICIES",
    "ForgetRetainSplit",
    "build_forget_retain_split",
    "class_statistics",
    "forget_view",
    "register_view",
    "resolve_classes",
    "retain_view",
    "subsample_per_class",
]

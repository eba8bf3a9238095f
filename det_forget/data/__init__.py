"""Datasets shipped with det_forget: deterministic COCO-format shapes and fashion_det sets."""

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

from .fashion_det import (  # noqa: E402
    FASHION_DET_CATEGORIES,
    FASHION_DET_CLASS_NAMES,
    FASHION_DET_DEFAULT_FORGET,
    FASHION_DET_RETRAIN_NAME,
    FASHION_DET_SPLITS,
    default_fashion_det_root,
    ensure_fashion_det_dataset,
    generate_fashion_det_dataset,
    register_fashion_det_dataset,
)

__all__ += [
    "FASHION_DET_CATEGORIES",
    "FASHION_DET_CLASS_NAMES",
    "FASHION_DET_DEFAULT_FORGET",
    "FASHION_DET_RETRAIN_NAME",
    "FASHION_DET_SPLITS",
    "default_fashion_det_root",
    "ensure_fashion_det_dataset",
    "generate_fashion_det_dataset",
    "register_fashion_det_dataset",
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

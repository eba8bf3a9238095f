"""det_forget: make a trained vision model forget chosen classes with group-sparse LoRA.

The core (:mod:`det_forget.lora`, :mod:`det_forget.forgetting`,
:mod:`det_forget.evaluation.metrics`) needs only PyTorch. When detectron2 is importable,
importing ``det_forget`` also registers its detectron2 components (the ViT backbone, the
``ForgettingDetector`` meta-architecture) and the embedded ``shapes_train``/``shapes_val``
datasets and ``fashion_det_train``/``fashion_det_val`` (generated on first use, not at import).
"""

from __future__ import annotations

import importlib.util

__version__ = "0.1.0"

HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None

if HAS_DETECTRON2:
    from . import modeling  # noqa: F401  (registers backbones and meta-architectures)
    from .data import register_fashion_det_dataset, register_shapes_dataset

    register_shapes_dataset()
    register_fashion_det_dataset()

__all__ = ["HAS_DETECTRON2", "__version__"]

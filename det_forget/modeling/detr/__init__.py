"""The DETR family in detectron2: ``DETR`` and ``DeformableDETR`` meta-architectures
(registered in ``META_ARCH_REGISTRY``), their forgetting outputs for
``ForgettingDetector``, and loading of the official COCO checkpoints."""

from . import forget_outputs  # noqa: F401  (registers the forgetting outputs)
from .criterion import SetCriterion
from .deformable_transformer import DeformableTransformer
from .detr import DETR, DETR_ARCHITECTURES, MLP, DeformableDETR
from .matcher import HungarianMatcher
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from .official_checkpoint import convert_official_detr, load_official_checkpoint
from .position_encoding import PositionEmbeddingSine
from .transformer import DetrTransformer

__all__ = [
    "DETR",
    "DETR_ARCHITECTURES",
    "DeformableDETR",
    "DeformableTransformer",
    "DetrTransformer",
    "HungarianMatcher",
    "MLP",
    "MSDeformAttn",
    "PositionEmbeddingSine",
    "SetCriterion",
    "convert_official_detr",
    "load_official_checkpoint",
    "ms_deform_attn_core",
]

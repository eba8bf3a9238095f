"""detectron2 registrations: importing this module registers det_forget's components."""

from . import detr  # noqa: F401  (registers DETR and DeformableDETR)
from .backbone import build_vit_sfp_backbone
from .meta_arch import ForgettingDetector, register_forget_outputs

__all__ = [
    "build_vit_sfp_backbone",
    "ForgettingDetector",
    "register_forget_outputs",
]

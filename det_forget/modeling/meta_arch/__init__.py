"""Meta-architectures registered in detectron2's ``META_ARCH_REGISTRY``."""

from .forgetting import FORGET_OUTPUTS, ForgettingDetector, jitter_boxes, register_forget_outputs

__all__ = ["FORGET_OUTPUTS", "ForgettingDetector", "jitter_boxes", "register_forget_outputs"]

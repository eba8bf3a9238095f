"""Widgets of the app, one concern per file."""

from .category_panel import CategoryPanel
from .compare_view import CompareView
from .forget_panel import ForgetPanel, ForgetSettings, format_eta, method_tooltip
from .image_panel import ImagePanel
from .image_view import BoxSpec, DetectionView
from .load_dialog import LoadModelDialog
from .loss_plot import LossPlot
from .model_panel import ModelPanel

__all__ = [
    "BoxSpec",
    "CategoryPanel",
    "CompareView",
    "DetectionView",
    "ForgetPanel",
    "ForgetSettings",
    "ImagePanel",
    "LoadModelDialog",
    "LossPlot",
    "ModelPanel",
    "format_eta",
    "method_tooltip",
]

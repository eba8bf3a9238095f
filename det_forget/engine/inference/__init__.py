"""Inference for applications: configs, a detector on one image, a run's history, export.

What the desktop app (and any script) needs besides training, with no GUI code, one
concern per module:

* :mod:`.configs`: :func:`build_config` (a config as ``tools/train_net.py`` builds it),
  :func:`forgetting_config` / :func:`detector_config` (its forgetting or plain-detector
  flavour), :func:`class_names_of`;
* :mod:`.predictor`: :func:`load_detector` (config + checkpoint + adapters in task order),
  :class:`ImagePredictor` (one RGB image in, :class:`Detections` out),
  :func:`evaluate_per_class_ap`, :func:`read_image`, :func:`list_images`;
* :mod:`.history`: :func:`read_forget_history` / :func:`records_from_history`, one
  :class:`ForgetRecord` per task of a run directory
  (:class:`~det_forget.forgetting.run_dir.RunDirectory`) or adapter manifest;
* :mod:`.export`: :func:`export_file`, :func:`export_directory`,
  :func:`save_merged_checkpoint` (writes are atomic).
"""

from .configs import build_config, class_names_of, detector_config, forgetting_config
from .export import export_directory, export_file, save_merged_checkpoint
from .history import ForgetRecord, read_forget_history, records_from_history
from .predictor import (
    IMAGE_EXTENSIONS,
    Detections,
    ImagePredictor,
    LoadedDetector,
    evaluate_per_class_ap,
    list_images,
    load_detector,
    read_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Detections",
    "ForgetRecord",
    "ImagePredictor",
    "LoadedDetector",
    "build_config",
    "class_names_of",
    "detector_config",
    "evaluate_per_class_ap",
    "export_directory",
    "export_file",
    "forgetting_config",
    "list_images",
    "load_detector",
    "read_forget_history",
    "read_image",
    "records_from_history",
    "save_merged_checkpoint",
]

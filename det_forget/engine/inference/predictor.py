"""A detector ready for inference, and running it on one image or a dataset.

* :func:`load_detector`: a plain detector from config + checkpoint (+ adapter folders, in
  task order), in eval mode, refusing files that do not fit with a clear error;
* :class:`ImagePredictor`: ``DefaultPredictor``'s preprocessing around a model you already
  hold (RGB in, :class:`Detections` out);
* :func:`evaluate_per_class_ap`: COCO AP per class on a registered dataset;
* :func:`read_image`, :func:`list_images`: images in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...checkpoint import CheckpointMismatchError, ForgetCheckpointer
from ...errors import UnfitFileError, UserError
from ...lora import load_adapter_sequence, lora_layers
from .configs import class_names_of, detector_config

__all__ = [
    "IMAGE_EXTENSIONS",
    "Detections",
    "ImagePredictor",
    "LoadedDetector",
    "evaluate_per_class_ap",
    "list_images",
    "load_detector",
    "read_image",
]

#: File name endings :func:`list_images` accepts (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass
class LoadedDetector:
    """A detector ready for inference and what it was loaded from.

    Attributes:
        cfg: the plain-detector config it was built with (``MODEL.WEIGHTS`` = ``weights``).
        model: the detector in eval mode; it carries LoRA layers when adapters were loaded
            (the last adapter live, earlier ones merged).
        class_names: class names in contiguous-id order.
        weights: the checkpoint file.
        adapters: the adapter folders loaded, in order.
        adapter_configs: their parsed ``adapter_config.json``.
    """

    cfg: Any
    model: nn.Module
    class_names: list[str]
    weights: str
    adapters: list[str] = field(default_factory=list)
    adapter_configs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def adapter_layers(self) -> list[str]:
        """Names of the layers that carry an adapter."""
        return [name for name, _ in lora_layers(self.model)]


def load_detector(
    cfg: Any,
    weights: str | os.PathLike | None = None,
    adapters: Iterable[str | os.PathLike] = (),
    *,
    score_thresh: float | None = 0.05,
) -> LoadedDetector:
    """Build the config's detector, load a checkpoint strictly, then adapters in task order.

    Args:
        cfg: a detector or forgetting config (see :func:`~.configs.build_config`).
        weights: checkpoint file; ``None``: ``cfg.MODEL.WEIGHTS``.
        adapters: adapter folders (``save_adapter`` output), loaded with
            :func:`~det_forget.lora.load_adapter_sequence`: each one after the first on top
            of the previous ones merged, as a continual run trained them.
        score_thresh: lowest score the detector keeps (``ROI_HEADS.SCORE_THRESH_TEST``);
            apps filter higher thresholds from the cached detections.

    Returns:
        A :class:`LoadedDetector`.

    Raises:
        FileNotFoundError: the checkpoint or an adapter folder does not exist.
        CheckpointMismatchError: the checkpoint belongs to another architecture.
        AdapterMismatchError: an adapter was trained for another model.
        UnsafeFileError: the checkpoint holds Python objects beyond weights (loading it
            could run code; nothing of it is loaded).
        UnfitFileError: the checkpoint is not a readable checkpoint.
    """
    from detectron2.modeling import build_model

    dcfg = detector_config(cfg)
    path = str(weights if weights is not None else dcfg.MODEL.WEIGHTS)
    if not path:
        raise ValueError("no checkpoint given (MODEL.WEIGHTS is empty)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    dcfg.MODEL.WEIGHTS = path
    if score_thresh is not None:
        dcfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_thresh)
    dcfg.freeze()
    model = build_model(dcfg)
    try:
        ForgetCheckpointer(model, strict=True).load(path)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{path}: {e}") from e
    except UserError:  # unsafe, truncated or corrupt: the message names the file
        raise
    except Exception as e:  # other pickle/zip errors: not a checkpoint at all
        raise UnfitFileError(f"cannot read {path} as a checkpoint: {type(e).__name__}: {e}") from e
    adapter_dirs = [str(a) for a in adapters]
    docs = load_adapter_sequence(model, adapter_dirs, device=dcfg.MODEL.DEVICE)
    model.eval()
    return LoadedDetector(
        cfg=dcfg,
        model=model,
        class_names=class_names_of(dcfg),
        weights=path,
        adapters=adapter_dirs,
        adapter_configs=docs,
    )


def evaluate_per_class_ap(
    cfg: Any, model: nn.Module, dataset: str, output_dir: str | None = None
) -> dict[str, float | None]:
    """COCO box AP (%) per class of ``model`` on the registered ``dataset``.

    Returns:
        ``{class name: AP}``; ``None`` for classes without ground truth.
    """
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from ...evaluation.coco_forget import ForgetCOCOEvaluator

    loader = build_detection_test_loader(cfg, dataset)
    evaluator = ForgetCOCOEvaluator(dataset, None, output_dir=output_dir, distributed=False)
    inference_on_dataset(model, loader, evaluator)
    per_class = evaluator.last_per_class.get("bbox", {})
    return {name: v.get("AP") for name, v in per_class.items()}


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------


@dataclass
class Detections:
    """Detections of one image in its original pixel coordinates.

    Attributes:
        boxes: ``(N, 4)`` float32 XYXY.
        scores: ``(N,)`` float32.
        classes: ``(N,)`` int64 contiguous class ids.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_instances(cls, instances: Any) -> Detections:
        """From detectron2 ``Instances`` with ``pred_boxes``, ``scores``, ``pred_classes``."""
        inst = instances.to("cpu")
        return cls(
            inst.pred_boxes.tensor.numpy().astype(np.float32),
            inst.scores.numpy().astype(np.float32),
            inst.pred_classes.numpy().astype(np.int64),
        )

    def filter(self, score_thresh: float = 0.0, classes: Iterable[int] | None = None) -> Detections:
        """The detections with ``score >= score_thresh`` (and a class in ``classes``)."""
        keep = self.scores >= score_thresh
        if classes is not None:
            keep &= np.isin(self.classes, np.asarray(list(classes), dtype=np.int64))
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


class ImagePredictor:
    """Run a detector you hold on one RGB image, with the config's test-time resizing.

    Unlike ``DefaultPredictor`` it neither builds nor loads a model, so the same predictor
    serves a base model, a model with adapters disabled, and a forgetting result.

    Args:
        cfg: the model's config (``INPUT.MIN_SIZE_TEST``, ``MAX_SIZE_TEST``, ``FORMAT``).
        model: a detector in eval mode (a ``ForgettingDetector`` in eval is its detector).
    """

    def __init__(self, cfg: Any, model: nn.Module) -> None:
        from detectron2.data import transforms as T

        self.model = model
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")

    def __call__(self, image: np.ndarray) -> Detections:
        """Detections of ``image`` (``H x W x 3`` uint8, RGB)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
        if self.model.training:
            raise ValueError("the model is in training mode; call model.eval() first")
        height, width = image.shape[:2]
        if self.input_format == "BGR":
            image = image[:, :, ::-1]
        resized = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        with torch.no_grad():
            out = self.model([{"image": tensor, "height": height, "width": width}])[0]
        return Detections.from_instances(out["instances"])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB (EXIF orientation applied)."""
    from detectron2.data.detection_utils import read_image as d2_read_image

    return np.ascontiguousarray(d2_read_image(str(path), format="RGB"))


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        NotADirectoryError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(
        str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )

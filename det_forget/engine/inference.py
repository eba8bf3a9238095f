"""Inference for applications: load a detector, run it on one image, read a run's history.

What the desktop app (and any script) needs besides training, with no GUI code:

* :func:`build_config` / :func:`forgetting_config` / :func:`detector_config`: a config as
  ``tools/train_net.py`` builds it, and its forgetting or plain-detector flavour;
* :func:`load_detector`: a plain detector from config + checkpoint (+ adapter folders, in
  task order), in eval mode, refusing files that do not fit with a clear error;
* :class:`ImagePredictor`: ``DefaultPredictor``'s preprocessing around a model you already
  hold (RGB in, :class:`Detections` out);
* :func:`read_forget_history`: one :class:`ForgetRecord` per task from a run folder's
  ``forget_report.json`` or from adapter manifests;
* :func:`evaluate_per_class_ap`: COCO AP per class on a registered dataset;
* :func:`list_images`, :func:`export_file`, :func:`export_directory`,
  :func:`save_merged_checkpoint`: files in and out (writes are atomic).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointMismatchError, ForgetCheckpointer
from ..config import num_classes_of
from ..lora import (
    LoraConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_and_reset_adapters,
    read_adapter_config,
    unload_adapters,
)
from ..utils.io import atomic_directory, atomic_torch_save, atomic_write

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

logger = logging.getLogger(__name__)

#: File name endings :func:`list_images` accepts (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_FORGETTING_ARCH = "ForgettingDetector"


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def build_config(config_file: str | os.PathLike, opts: Sequence[Any] = ()) -> Any:
    """A detectron2 config with the ``FORGET`` node, as ``tools/train_net.py``'s ``setup``.

    Args:
        config_file: a yaml config (``_BASE_`` chains are followed).
        opts: ``KEY VALUE`` overrides, as on the command line.

    Returns:
        The config, not frozen; ``MODEL.DEVICE`` is ``cpu`` when CUDA is not available.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
        ValueError: the file is not a config this detectron2 reads (the message says why).
    """
    from detectron2.config import get_cfg

    from ..config import add_forget_config

    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = get_cfg()
    add_forget_config(cfg)
    try:
        cfg.merge_from_file(str(path))
        cfg.merge_from_list(list(opts))
    except Exception as e:  # yaml, yacs and key errors all mean "not a usable config"
        raise ValueError(f"{path} is not a detectron2/det_forget config: {e}") from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def forgetting_config(cfg: Any) -> Any:
    """``cfg`` with ``MODEL.META_ARCHITECTURE: ForgettingDetector`` (what ``ForgetJob`` runs).

    A plain detector config (e.g. a run's ``merged_config.yaml``) keeps its detector as
    ``FORGET.DETECTOR``; a forgetting config is returned as a clone.
    """
    out = cfg.clone()
    out.defrost()
    if out.MODEL.META_ARCHITECTURE != _FORGETTING_ARCH:
        out.FORGET.DETECTOR = out.MODEL.META_ARCHITECTURE
        out.MODEL.META_ARCHITECTURE = _FORGETTING_ARCH
    return out


def detector_config(cfg: Any) -> Any:
    """``cfg`` with the wrapped detector as meta-architecture (the model a checkpoint holds)."""
    out = cfg.clone()
    out.defrost()
    if out.MODEL.META_ARCHITECTURE == _FORGETTING_ARCH:
        out.MODEL.META_ARCHITECTURE = out.FORGET.DETECTOR
    return out


def class_names_of(cfg: Any) -> list[str]:
    """Class names of the config's datasets (contiguous-id order).

    Taken from the metadata of ``DATASETS.TEST[0]`` or ``DATASETS.TRAIN[0]``; when neither
    is registered (a model used without its data), ``class_0 ... class_{N-1}`` for the
    detector's classes (:func:`det_forget.config.num_classes_of`).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    num = num_classes_of(cfg)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        if name not in DatasetCatalog.list():
            continue
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if not classes:
            try:
                DatasetCatalog.get(name)  # loading a COCO json fills thing_classes
            except Exception as e:  # a missing data folder must not stop loading the model
                logger.warning("cannot read dataset %s for class names: %s", name, e)
                continue
            classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes and len(classes) == num:
            return list(classes)
    return [f"class_{i}" for i in range(num)]


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
        cfg: a detector or forgetting config (see :func:`build_config`).
        weights: checkpoint file; ``None``: ``cfg.MODEL.WEIGHTS``.
        adapters: adapter folders (``save_adapter`` output). Each one after the first is
            loaded on top of the previous ones merged, as a continual run trained them.
        score_thresh: lowest score the detector keeps (``ROI_HEADS.SCORE_THRESH_TEST``);
            apps filter higher thresholds from the cached detections.

    Returns:
        A :class:`LoadedDetector`.

    Raises:
        FileNotFoundError: the checkpoint or an adapter folder does not exist.
        CheckpointMismatchError: the checkpoint belongs to another architecture.
        AdapterMismatchError: an adapter was trained for another model.
        ValueError: the checkpoint is not a readable checkpoint.
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
    except Exception as e:  # pickle/zip errors: not a checkpoint at all
        raise ValueError(f"cannot read {path} as a checkpoint: {type(e).__name__}: {e}") from e
    adapter_dirs = [str(a) for a in adapters]
    docs = []
    for directory in adapter_dirs:
        doc = read_adapter_config(directory)
        if any(True for _ in lora_layers(model)):
            merge_and_reset_adapters(model)
        else:
            lora = LoraConfig.from_dict(doc["lora_config"])
            inject_lora(model, lora)
            model.to(dcfg.MODEL.DEVICE)
        load_adapter(model, directory)
        docs.append(doc)
    model.eval()
    return LoadedDetector(
        cfg=dcfg,
        model=model,
        class_names=class_names_of(dcfg),
        weights=path,
        adapters=adapter_dirs,
        adapter_configs=docs,
    )


def save_merged_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Write ``model`` (a detector or ``ForgettingDetector``) with adapters merged.

    The model itself is not changed; the file is a plain detector checkpoint.
    """
    detector = getattr(model, "detector", model)
    if any(True for _ in lora_layers(detector)):
        detector = unload_adapters(copy.deepcopy(detector), merge=True)
    atomic_torch_save({"model": detector.state_dict(), "__author__": "det_forget"}, path)
    return str(path)


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


# --------------------------------------------------------------------------------------------
# History of a run
# --------------------------------------------------------------------------------------------


@dataclass
class ForgetRecord:
    """One finished forgetting task.

    Attributes:
        task: task index.
        classes: class names per group (``forget``, ``retain``, ``old``, ``missing``).
        before: per-class COCO AP (%) before the task (``None`` when not evaluated).
        after: per-class COCO AP (%) after the task.
        summary: group means, Drop and H-Mean (``forgetting_summary``), or ``None``.
        adapter: the adapter folder, when it exists.
        date: when the task's files were written (file modification time).
    """

    task: int
    classes: dict[str, list[str]]
    before: dict[str, float | None] | None
    after: dict[str, float | None] | None
    summary: dict[str, Any] | None = None
    adapter: str | None = None
    date: _dt.datetime | None = None


def _mtime(path: str | os.PathLike | None) -> _dt.datetime | None:
    if path is None or not os.path.exists(path):
        return None
    return _dt.datetime.fromtimestamp(os.path.getmtime(path))


def _adapter_dir(recorded: str | None, run_dir: Path | None, index: int) -> str | None:
    candidates = []
    if recorded:
        candidates.append(Path(recorded))
    if run_dir is not None:
        candidates.append(run_dir / "adapters" / f"task_{index:02d}")
    for c in candidates:
        if (c / "adapter_config.json").is_file():
            return str(c)
    return None


def _ap_by_class(value: Any, class_names: Sequence[str]) -> dict[str, float | None] | None:
    """Per-class AP of a history entry.

    Entries are ``{class: {"AP": .., "AP50": ..}}`` (what the trainer records), plain
    ``{class: AP}`` (older runs), or the path of a report given as ``FORGET.BEFORE_REPORT``.
    """
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        from ..evaluation.coco_forget import load_before

        try:
            return dict(load_before(value, list(class_names))[0])
        except (OSError, ValueError) as e:
            logger.warning("cannot read the 'before' scores %s: %s", value, e)
            return None
    return {str(k): (v.get("AP") if isinstance(v, dict) else v) for k, v in dict(value).items()}


def records_from_history(
    history: Sequence[dict[str, Any]], run_dir: str | os.PathLike | None = None
) -> list[ForgetRecord]:
    """:class:`ForgetRecord` per entry of a ``ForgetTrainer`` history (or report ``tasks``).

    Args:
        history: ``JobResult.history`` or ``forget_report.json``'s ``"tasks"``.
        run_dir: the run's ``OUTPUT_DIR``, to find adapters whose recorded path is relative
            to another working directory.
    """
    root = Path(run_dir) if run_dir is not None else None
    records = []
    for i, rec in enumerate(history):
        index = int(rec.get("task", {}).get("index", i))
        adapter = _adapter_dir(rec.get("adapter"), root, index)
        date = _mtime(Path(adapter) / "adapter_config.json" if adapter else None)
        if date is None and root is not None:
            date = _mtime(root / "forget_report.json")
        classes = {k: list(v) for k, v in rec.get("classes", {}).items()}
        names = [n for group in classes.values() for n in group]
        records.append(
            ForgetRecord(
                task=index,
                classes=classes,
                before=_ap_by_class(rec.get("before"), names),
                after=_ap_by_class(rec.get("after"), names),
                summary=rec.get("summary"),
                adapter=adapter,
                date=date,
            )
        )
    return records


def _record_from_manifest(directory: Path) -> ForgetRecord:
    meta = read_adapter_config(directory)["lora_config"].get("metadata", {})
    classes = {k: list(v) for k, v in (meta.get("classes") or {}).items()}
    names = [n for group in classes.values() for n in group]
    return ForgetRecord(
        task=int(meta.get("task", 0)),
        classes=classes,
        before=_ap_by_class(meta.get("metrics_before"), names),
        after=_ap_by_class(meta.get("metrics_after"), names),
        summary=meta.get("summary"),
        adapter=str(directory),
        date=_mtime(directory / "adapter_config.json"),
    )


def read_forget_history(path: str | os.PathLike) -> list[ForgetRecord]:
    """The forgetting history stored at ``path``, oldest task first.

    Args:
        path: a run folder (``OUTPUT_DIR``, with ``forget_report.json`` or ``adapters/``),
            a ``forget_report.json`` file, an ``adapters`` folder, or one adapter folder.

    Raises:
        FileNotFoundError: ``path`` holds neither a report nor adapter manifests.
        ValueError: the report is not valid JSON of a forgetting run.
    """
    path = Path(path)
    report = path if path.is_file() else path / "forget_report.json"
    if report.is_file():
        try:
            doc = json.loads(report.read_text())
            tasks = doc["tasks"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{report} is not a det_forget forget_report.json: {e}") from e
        return records_from_history(tasks, report.parent)
    if (path / "adapter_config.json").is_file():
        return [_record_from_manifest(path)]
    adapters = path / "adapters" if (path / "adapters").is_dir() else path
    dirs = sorted(d for d in adapters.glob("task_*") if (d / "adapter_config.json").is_file())
    if not dirs:
        raise FileNotFoundError(
            f"no forgetting history in {path}: expected forget_report.json, an adapter folder "
            "(adapter_config.json) or adapters/task_XX folders"
        )
    return sorted((_record_from_manifest(d) for d in dirs), key=lambda r: r.task)


# --------------------------------------------------------------------------------------------
# Evaluation and export
# --------------------------------------------------------------------------------------------


def evaluate_per_class_ap(
    cfg: Any, model: nn.Module, dataset: str, output_dir: str | None = None
) -> dict[str, float | None]:
    """COCO box AP (%) per class of ``model`` on the registered ``dataset``.

    Returns:
        ``{class name: AP}``; ``None`` for classes without ground truth.
    """
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from ..evaluation.coco_forget import ForgetCOCOEvaluator

    loader = build_detection_test_loader(cfg, dataset)
    evaluator = ForgetCOCOEvaluator(dataset, None, output_dir=output_dir, distributed=False)
    inference_on_dataset(model, loader, evaluator)
    per_class = evaluator.last_per_class.get("bbox", {})
    return {name: v.get("AP") for name, v in per_class.items()}


def export_file(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy a file so that ``dst`` is either absent/unchanged or complete."""
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return str(dst)


def export_directory(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy a folder (e.g. an adapter) as a whole; an existing ``dst`` is replaced."""
    if not os.path.isdir(src):
        raise NotADirectoryError(f"not a folder: {src}")
    with atomic_directory(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return str(dst)

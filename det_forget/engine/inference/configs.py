"""Configs for inference: built as ``tools/train_net.py`` builds them, in two flavours.

A checkpoint holds a plain detector; a forgetting job runs a ``ForgettingDetector`` that
wraps it. :func:`detector_config` and :func:`forgetting_config` switch between the two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...config import num_classes_of
from ...config.overrides import check_overrides
from ...errors import ConfigValueError

__all__ = ["build_config", "class_names_of", "detector_config", "forgetting_config"]

logger = logging.getLogger(__name__)

_FORGETTING_ARCH = "ForgettingDetector"


def build_config(config_file: str | os.PathLike, opts: Sequence[Any] = ()) -> Any:
    """A detectron2 config with the ``FORGET`` node, as ``tools/train_net.py``'s ``setup``.

    Args:
        config_file: a yaml config (``_BASE_`` chains are followed).
        opts: ``KEY VALUE`` overrides, as on the command line.

    Returns:
        The config, not frozen; ``MODEL.DEVICE`` is ``cpu`` when CUDA is not available.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
        ConfigValueError: the file is not a config this detectron2 reads, or an override
            names an unknown key, has a value of the wrong type or is a misplaced flag
            (the message says which).
    """
    from detectron2.config import get_cfg

    from ...config import add_forget_config

    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = get_cfg()
    add_forget_config(cfg)
    check_overrides(opts)
    try:
        cfg.merge_from_file(str(path))
    except Exception as e:  # yaml, yacs and key errors all mean "not a usable config"
        raise ConfigValueError(f"{path} is not a detectron2/det_forget config: {_reason(e)}") from e
    try:
        cfg.merge_from_list(list(opts))
    except Exception as e:  # unknown key, or a value of the wrong type
        raise ConfigValueError(f"bad KEY VALUE override: {_reason(e)}") from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def _reason(e: Exception) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


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

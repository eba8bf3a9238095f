"""det_forget's yacs keys: :func:`add_forget_config` and the helpers that read them.

One module per concern; each documents every key with a comment where it is assigned
(detectron2's ``config/defaults.py`` style):

* :mod:`.forgetting`: ``FORGET.*``, the forgetting run (every task type);
* :mod:`.vit`: ``MODEL.VIT.*``, the ViT + simple feature pyramid backbone;
* :mod:`.detr`: ``MODEL.DETR.*`` and ``SOLVER.BACKBONE_MULTIPLIER``, the DETR family;
* :mod:`.optimizer`: ``FORGET.OPTIMIZER`` as a torch optimizer;
* :mod:`.ignored`: :func:`check_ignored_keys`, which refuses keys a task type ignores;
* :mod:`.values`: :func:`check_values`, which refuses values no run can use.

Classification's ``CLS.*`` keys are in :mod:`det_forget.classification.config`.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

from .detr import add_detr_config
from .forgetting import add_forget_node
from .ignored import check_ignored_keys
from .optimizer import OPTIMIZERS, resolve_optimizer
from .values import check_values
from .vit import add_vit_config

__all__ = [
    "add_forget_config",
    "check_ignored_keys",
    "check_values",
    "lora_config_from_cfg",
    "num_classes_of",
    "OPTIMIZERS",
    "resolve_optimizer",
]


def add_forget_config(cfg: CN) -> CN:
    """Add det_forget's keys to ``cfg`` in place and return it.

    Always ``FORGET.*`` (:mod:`.forgetting`); when ``cfg`` has a ``MODEL`` node (a
    detectron2 config) also ``MODEL.VIT.*`` (:mod:`.vit`), ``MODEL.DETR.*`` and
    ``SOLVER.BACKBONE_MULTIPLIER`` (:mod:`.detr`).

    Args:
        cfg: a detectron2 config, or a plain fvcore/yacs ``CfgNode`` (classification).

    Returns:
        ``cfg``.
    """
    add_forget_node(cfg)
    if "MODEL" in cfg:
        add_vit_config(cfg)
        add_detr_config(cfg)
    return cfg


def num_classes_of(cfg: CN) -> int:
    """Foreground classes of the detector a config builds.

    ``MODEL.DETR.NUM_CLASSES`` for the DETR family (also when wrapped by
    ``ForgettingDetector``), ``MODEL.ROI_HEADS.NUM_CLASSES`` otherwise.
    """
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "ForgettingDetector" and "FORGET" in cfg:
        arch = cfg.FORGET.DETECTOR
    if arch in ("DETR", "DeformableDETR"):
        return int(cfg.MODEL.DETR.NUM_CLASSES)
    return int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)


def lora_config_from_cfg(cfg: CN, metadata: dict | None = None):
    """The :class:`~det_forget.lora.LoraConfig` of ``cfg.FORGET.LORA`` for ``FORGET.METHOD``.

    Where the adapters go is the method's (registry ``adapters``): FFN methods wrap
    ``TARGET_MODULES``, q/k/v methods (``no_retain``) wrap the fused ``QKV_MODULES``
    (``QKV_PARTS`` of them). Full-weight methods have no adapters. ``ALPHA`` 0 and
    ``INIT`` "" take the method's registry ``lora_alpha`` / ``lora_init``.

    Raises:
        ValueError: the method trains no adapters, or its layer list is empty.
    """
    from ..errors import ConfigValueError
    from ..forgetting.methods import get_method
    from ..lora import LoraConfig
    from ..lora.config import LORA_INITS

    method = get_method(cfg.FORGET.METHOD)
    lc = cfg.FORGET.LORA
    if method.adapters == "none":
        raise ValueError(f"FORGET.METHOD {method.name!r} trains the full weights, no adapters")
    key = "TARGET_MODULES" if method.adapters == "ffn" else "QKV_MODULES"
    if len(lc[key]) == 0:
        raise ValueError(
            f"FORGET.METHOD {method.name!r} puts its adapters on FORGET.LORA.{key}, which is empty"
        )
    # ALPHA 0 / INIT "": the scaling numerator and A initialisation the method's paper states.
    if lc.INIT not in ("", *LORA_INITS):
        raise ConfigValueError(
            f"FORGET.LORA.INIT must be one of {list(LORA_INITS)} or '' (the method's own), "
            f"got {lc.INIT!r}"
        )
    alpha = float(lc.ALPHA) if lc.ALPHA > 0 else method.lora_alpha
    return LoraConfig(
        rank=lc.RANK,
        alpha=float(lc.RANK) if alpha is None else alpha,
        init=lc.INIT or method.lora_init,
        dropout=lc.DROPOUT,
        target_modules=list(lc.TARGET_MODULES) if method.adapters == "ffn" else [],
        qkv_modules=list(lc.QKV_MODULES) if method.adapters == "qkv" else [],
        qkv_parts=tuple(lc.QKV_PARTS),
        exclude_modules=list(lc.EXCLUDE_MODULES),
        metadata=dict(metadata or {}),
    )

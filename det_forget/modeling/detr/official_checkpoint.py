"""Load the official DETR / Deformable DETR COCO checkpoints into det_forget's models.

The official ``.pth`` files hold ``{"model": state_dict, "args": argparse.Namespace,
...}``. They are read with ``torch.load(weights_only=True)`` and only
``argparse.Namespace`` allow-listed, so no arbitrary object is ever unpickled.

Key mapping (everything else keeps its name: the transformer and heads use the
official names):

* ``backbone.0.body.*`` (torchvision ResNet) -> ``backbone.*`` (detectron2 ResNet):
  ``conv1``/``bn1`` -> ``stem.conv1``/``stem.conv1.norm``; ``layerI.J.convK`` /
  ``bnK`` -> ``res{I+1}.J.convK`` / ``.convK.norm``; ``downsample.0`` / ``.1`` ->
  ``shortcut`` / ``shortcut.norm``.
* class heads: the official models have one logit per COCO category *id* (91, plus
  DETR's no-object); the rows of the 80 thing classes are kept in detectron2's
  contiguous order (and DETR's no-object row last).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence

import torch

from ...checkpoint.safe_load import load_torch_weights
from ...errors import UnfitFileError

__all__ = ["load_official_checkpoint", "convert_official_detr", "coco_thing_ids"]

_RESNET_PREFIX = "backbone.0.body."
_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.*)$")


def coco_thing_ids() -> list[int]:
    """COCO category ids of the 80 thing classes in detectron2's contiguous order."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return [c["id"] for c in COCO_CATEGORIES if c["isthing"]]


def load_official_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model tensors of an official checkpoint, read without unpickling code.

    Raises:
        FileNotFoundError: no such file.
        UnsafeFileError: the file holds objects other than tensors, containers, numpy
            arrays and an ``argparse.Namespace`` (nothing of it is loaded).
        UnfitFileError: the file is truncated or corrupt, or has no ``model`` state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = load_torch_weights(path)
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        found = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UnfitFileError(
            f"{path} is not an official DETR checkpoint: no 'model' dict ({found})"
        )
    return state


def _resnet_key(key: str) -> str:
    if key.startswith("conv1."):
        return "stem.conv1." + key[len("conv1.") :]
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1.") :]
    m = _LAYER.match(key)
    if m is None:
        raise ValueError(f"unexpected ResNet key {_RESNET_PREFIX}{key}")
    stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return f"res{stage + 1}.{block}.{rest}"


def _check_shared_heads(state_dict: dict[str, torch.Tensor]) -> None:
    """Deformable DETR without box refinement lists one shared head per decoder layer;
    per-layer heads (``--with_box_refine`` / ``--two_stage``) are another architecture."""
    first: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"(class_embed|bbox_embed)\.\d+\.(.*)", key)
        if m is None:
            continue
        name = f"{m.group(1)}.*.{m.group(2)}"
        if name not in first:
            first[name] = value
        elif not torch.equal(first[name], value):
            raise ValueError(
                f"{key} differs from the other decoder layers' {m.group(1)}: a Deformable "
                "DETR with box refinement or two-stage, which det_forget does not implement "
                "(use the plain r50_deformable_detr checkpoint)"
            )


def convert_official_detr(
    state_dict: dict[str, torch.Tensor], class_ids: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Rename an official DETR / Deformable DETR state dict to det_forget's modules.

    Args:
        state_dict: the official ``checkpoint["model"]``.
        class_ids: the official class index (COCO category id) of each of our classes,
            in contiguous order; default: the 80 COCO thing classes.

    Returns:
        A state dict for :class:`DETR` / :class:`DeformableDETR` with
        ``MODEL.DETR.NUM_CLASSES = len(class_ids)`` on a detectron2 ResNet backbone.
    """
    if not any(k.startswith("transformer.") for k in state_dict):
        raise ValueError(
            "not a DETR-family state dict: no 'transformer.*' keys "
            f"(first keys: {sorted(state_dict)[:5]})"
        )
    _check_shared_heads(state_dict)
    ids = list(coco_thing_ids() if class_ids is None else class_ids)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith(_RESNET_PREFIX):
            key = "backbone." + _resnet_key(key[len(_RESNET_PREFIX) :])
        elif re.fullmatch(r"class_embed\.(\d+\.)?(weight|bias)", key):
            rows = torch.as_tensor(ids)
            if key.startswith("class_embed.weight") or key == "class_embed.bias":
                # DETR (softmax): the last row is "no object".
                rows = torch.cat([rows, torch.as_tensor([value.shape[0] - 1])])
            if int(rows.max()) >= value.shape[0]:
                raise ValueError(
                    f"{key} has {value.shape[0]} rows; class id {int(rows.max())} is out of range"
                )
            value = value[rows]
        out[key] = value
    return out

"""A timm ViT image classifier that exposes the feature fed to its head.

The network is timm's own ``VisionTransformer`` (no pretrained download), wrapped so that:

* pixel normalisation lives in the model (a checkpoint is self-contained: feed it uint8 or
  ``[0, 1]`` float images);
* :meth:`ViTClassifier.features` returns the pre-logit embedding, GS-LoRA++'s prototype
  feature, and :meth:`ViTClassifier.forward` can return it along with the logits in one pass;
* LoRA finds the usual timm names: ``vit.blocks.<i>.mlp.fc1/fc2`` (GS-LoRA) and
  ``vit.blocks.<i>.attn.qkv`` (low-rank unlearning).

Checkpoints are a ``.safetensors`` file plus a ``.json`` next to it holding the architecture
(the keyword arguments of :class:`ViTClassifier`) and free-form metadata (test accuracy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from detectron2.config import configurable
from fvcore.common.registry import Registry
from safetensors.torch import save as safetensors_bytes
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..checkpoint.safe_load import load_safetensors_weights
from ..errors import UnfitFileError
from ..utils.io import atomic_write

__all__ = [
    "CLASSIFIER_REGISTRY",
    "ViTClassifier",
    "build_classifier",
    "save_classifier",
    "load_classifier",
    "read_checkpoint_info",
]

CLASSIFIER_REGISTRY = Registry("CLASSIFIER")
CLASSIFIER_REGISTRY.__doc__ = """Image classifiers; ``CLS.MODEL.NAME`` picks one."""


def _to_float_images(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


@CLASSIFIER_REGISTRY.register()
class ViTClassifier(nn.Module):
    """timm ``VisionTransformer`` with built-in normalisation and a feature output.

    Args:
        num_classes: output classes.
        img_size: input side length.
        in_chans: input channels.
        patch_size: patch side length.
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: FFN hidden width / embed_dim.
        drop_path_rate: stochastic depth (pre-training regulariser).
        pixel_mean: per-channel mean of ``[0, 1]`` pixels.
        pixel_std: per-channel std of ``[0, 1]`` pixels.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        img_size: int = 28,
        in_chans: int = 1,
        patch_size: int = 4,
        embed_dim: int = 96,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pixel_mean: Sequence[float] = (0.2860,),
        pixel_std: Sequence[float] = (0.3530,),
    ) -> None:
        super().__init__()
        if len(pixel_mean) != in_chans or len(pixel_std) != in_chans:
            raise ValueError(
                f"pixel_mean/pixel_std need {in_chans} values, got {list(pixel_mean)} and "
                f"{list(pixel_std)}"
            )
        self.arch: dict[str, Any] = {
            "name": type(self).__name__,
            "num_classes": int(num_classes),
            "img_size": int(img_size),
            "in_chans": int(in_chans),
            "patch_size": int(patch_size),
            "embed_dim": int(embed_dim),
            "depth": int(depth),
            "num_heads": int(num_heads),
            "mlp_ratio": float(mlp_ratio),
            "pixel_mean": [float(v) for v in pixel_mean],
            "pixel_std": [float(v) for v in pixel_std],
        }
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
        )
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1)
        )

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        m = cfg.CLS.MODEL
        return {
            "num_classes": m.NUM_CLASSES,
            "img_size": m.IMG_SIZE,
            "in_chans": m.IN_CHANS,
            "patch_size": m.PATCH_SIZE,
            "embed_dim": m.EMBED_DIM,
            "depth": m.DEPTH,
            "num_heads": m.NUM_HEADS,
            "mlp_ratio": m.MLP_RATIO,
            "drop_path_rate": m.DROP_PATH_RATE,
            "pixel_mean": tuple(m.PIXEL_MEAN),
            "pixel_std": tuple(m.PIXEL_STD),
        }

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.arch["num_classes"]

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`."""
        return self.arch["embed_dim"]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) or float (0..1) images -> normalised float input."""
        return (_to_float_images(images) - self.pixel_mean) / self.pixel_std

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The pre-logit embedding ``(N, embed_dim)`` (class token after the final norm)."""
        tokens = self.vit.forward_features(self.normalize(images))
        return self.vit.forward_head(tokens, pre_logits=True)

    def forward(
        self, images: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, num_classes)``, or ``(logits, features)`` with ``return_features``."""
        feats = self.features(images)
        logits = self.vit.head(self.vit.head_drop(feats))
        return (logits, feats) if return_features else logits

    def train_logits(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, features)`` for training losses (a linear head has no margin)."""
        return self(images, return_features=True)


def build_classifier(cfg) -> nn.Module:
    """The classifier named by ``cfg.CLS.MODEL.NAME``, built from ``cfg.CLS.MODEL``.

    Args:
        cfg: a config with the ``CLS`` node (:func:`add_classification_config`).

    Returns:
        The model (random weights).
    """
    return CLASSIFIER_REGISTRY.get(cfg.CLS.MODEL.NAME)(cfg)


def _json_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_classifier(
    model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and its arch to ``path.json``.

    Both files are written atomically. The model must not carry LoRA adapters (merge and
    unload them first): the checkpoint is a plain model.

    Args:
        model: a model with an ``arch`` dict (e.g. :class:`ViTClassifier`).
        path: ``*.safetensors`` destination.
        metadata: extra JSON-serialisable information (accuracy, training recipe).

    Returns:
        The weights path.
    """
    path = Path(path)
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ValueError(f"{type(model).__name__} has no 'arch' dict; cannot describe it")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if any("lora_" in k or "base_layer" in k for k in state):
        raise ValueError("save_classifier: model still has LoRA adapters; unload them first")
    with atomic_write(path, "wb") as f:
        f.write(safetensors_bytes(state))
    with atomic_write(_json_path(path)) as f:
        json.dump({"arch": arch, "metadata": metadata or {}}, f, indent=2, sort_keys=True)
    return path


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The ``{"arch": ..., "metadata": ...}`` JSON next to a classifier checkpoint."""
    path = Path(path)
    info = _json_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint {path} does not exist")
    if not info.is_file():
        raise FileNotFoundError(f"{info} (architecture of {path.name}) does not exist")
    try:
        doc = json.loads(info.read_text())
    except ValueError as e:  # truncated or not JSON
        raise UnfitFileError(f"{info} (architecture of {path.name}) is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("arch"), dict):
        raise UnfitFileError(f"{info} has no 'arch' object describing {path.name}")
    return doc


def load_classifier(
    path: str | os.PathLike, expected_arch: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the classifier described next to ``path`` and load its weights.

    Args:
        path: ``*.safetensors`` written by :func:`save_classifier`.
        expected_arch: if given, every key here must equal the checkpoint's value (e.g.
            the dims a config asks for); a checkpoint that does not fit is refused.

    Returns:
        ``(model in eval mode, metadata)``.

    Raises:
        ValueError: the checkpoint's arch differs from ``expected_arch`` or its tensors do
            not fit the architecture (names every offending key).
    """
    info = read_checkpoint_info(path)
    arch = dict(info["arch"])
    if expected_arch:
        diff = {k: (v, arch.get(k)) for k, v in expected_arch.items() if arch.get(k) != v}
        if diff:
            raise ValueError(
                f"checkpoint {path} does not fit the requested model: "
                + ", ".join(f"{k}: config {a!r} vs checkpoint {b!r}" for k, (a, b) in diff.items())
            )
    name = arch.pop("name", None)
    if name not in CLASSIFIER_REGISTRY:
        raise UnfitFileError(
            f"{path}: architecture {name!r} is not a registered classifier "
            f"({sorted(k for k, _ in CLASSIFIER_REGISTRY)})"
        )
    try:
        model = CLASSIFIER_REGISTRY.get(name)(**arch)
    except TypeError as e:  # unknown or missing architecture keys
        raise UnfitFileError(f"{path}: its architecture does not build a {name}: {e}") from e
    state = load_safetensors_weights(path)
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if problems:
        raise ValueError(f"checkpoint {path} does not fit {name}: " + "; ".join(problems[:10]))
    model.load_state_dict(state)
    return model.eval(), dict(info.get("metadata", {}))

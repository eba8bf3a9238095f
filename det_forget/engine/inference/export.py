"""Files out: copies and merged checkpoints, written so a reader never sees half a file."""

from __future__ import annotations

import copy
import os
import shutil

from torch import nn

from ...lora import lora_layers, unload_adapters
from ...utils.io import atomic_directory, atomic_torch_save, atomic_write

__all__ = ["export_directory", "export_file", "save_merged_checkpoint"]


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


def save_merged_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Write ``model`` (a detector or ``ForgettingDetector``) with adapters merged.

    The model itself is not changed; the file is a plain detector checkpoint.

    Args:
        model: the model to save.
        path: the ``.pth`` file to write (atomically).

    Returns:
        ``path`` as a string.
    """
    detector = getattr(model, "detector", model)
    if any(True for _ in lora_layers(detector)):
        detector = unload_adapters(copy.deepcopy(detector), merge=True)
    atomic_torch_save({"model": detector.state_dict(), "__author__": "det_forget"}, path)
    return str(path)

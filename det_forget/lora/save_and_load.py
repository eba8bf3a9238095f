"""Adapter files: ``adapter_model.safetensors`` + ``adapter_config.json`` in one folder.

A forgetting task is one small, auditable folder. The JSON holds the
:class:`~det_forget.lora.config.LoraConfig`, the task metadata and, for every adapted
layer, its parts, shapes and a fingerprint of the base weight it was trained on; loading
checks all of it and names each layer that does not fit. :func:`load_adapter_sequence`
loads the adapters of a continual run in task order, each on top of the earlier ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UnfitFileError
from ..utils.io import atomic_directory
from .config import LoraConfig
from .inject import inject_lora, lora_layers, merge_and_reset_adapters
from .layer import LoraLinear

logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_WEIGHTS_NAME",
    "ADAPTER_CONFIG_NAME",
    "AdapterMismatchError",
    "adapter_lora_config",
    "base_fingerprint",
    "lora_state_dict",
    "save_adapter",
    "load_adapter",
    "load_adapter_sequence",
    "read_adapter_config",
]

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
_MANIFEST_KEYS = frozenset({"format_version", "lora_config", "layers", "weights_sha256"})
#: Version 2 records the sha256 of the weights file; version 1 (no checksum) still loads.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Largest adapter scaling ``alpha / r`` accepted on load. det_forget's configs use 1/8 to
#: 1; a value far above that (e.g. a corrupted alpha) makes the model find nothing.
MAX_SCALING = 64.0

# Relative tolerance when comparing base-weight fingerprints: merging and unmerging an
# adapter changes the weights by float rounding only, far below this.
_FINGERPRINT_RTOL = 1e-4


class AdapterMismatchError(UnfitFileError):
    """An adapter does not fit the model it is loaded into; the message lists each layer."""


def base_fingerprint(layer: LoraLinear) -> list[float]:
    """A cheap signature of the base weight an adapter sits on.

    Three float64 statistics (sum, sum of squares, and a dot product with a fixed
    pseudo-random sign pattern) of the un-merged base weight. They tell an adapter
    trained on another model apart while tolerating merge/unmerge rounding.
    """
    w = layer.base_layer.weight.detach()
    if layer.merged:
        w = w - layer.get_delta_weight().detach()
    w = w.double().flatten().cpu()
    gen = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, (w.numel(),), generator=gen, dtype=torch.int8).double() * 2 - 1
    return [float(w.sum()), float((w * w).sum()), float((w * signs).sum())]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter matrices only, keyed ``<layer>.lora_A.<part>`` / ``<layer>.lora_B.<part>``."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(model):
        for part in layer.parts:
            out[f"{name}.lora_A.{part}"] = layer.lora_A[part].detach().cpu().contiguous()
            out[f"{name}.lora_B.{part}"] = layer.lora_B[part].detach().cpu().contiguous()
    return out


def _layer_manifest(model: nn.Module) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "parts": list(layer.parts),
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "base_fingerprint": base_fingerprint(layer),
        }
        for name, layer in lora_layers(model)
    }


def save_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    config: LoraConfig,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the model's adapters to ``directory`` atomically.

    Args:
        model: a model with adapters (merged or not: the adapter matrices are saved).
        directory: output folder; replaced as a whole only once fully written.
        config: the config the adapters were injected with.
        metadata: task information (classes, data used, metrics, config hash), merged
            over ``config.metadata``.

    Returns:
        The folder path.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("model has no LoRA adapters to save")
    meta = {**config.metadata, **(metadata or {})}
    doc = {
        "format_version": FORMAT_VERSION,
        "lora_config": {**config.to_dict(), "metadata": meta},
        "layers": _layer_manifest(model),
    }
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        save_file(lora_state_dict(model), str(tmp / ADAPTER_WEIGHTS_NAME))
        doc["weights_sha256"] = _sha256(tmp / ADAPTER_WEIGHTS_NAME)
        (tmp / ADAPTER_CONFIG_NAME).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return directory


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` of an adapter folder."""
    path = Path(directory) / ADAPTER_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"not an adapter folder: {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterMismatchError(f"{path} is not valid JSON (truncated or corrupt): {e}") from e
    if not isinstance(doc, dict) or doc.get("format_version") not in _READABLE_VERSIONS:
        version = doc.get("format_version") if isinstance(doc, dict) else None
        raise AdapterMismatchError(
            f"{path}: adapter format_version {version!r}, this det_forget reads "
            f"{list(_READABLE_VERSIONS)}"
        )
    for key, kind in (("lora_config", dict), ("layers", dict)):
        if not isinstance(doc.get(key), kind):
            raise AdapterMismatchError(f"{path}: {key!r} is missing or not a JSON object")
    unknown = sorted(set(doc) - _MANIFEST_KEYS)
    if unknown:
        raise AdapterMismatchError(
            f"{path}: unknown keys {unknown} (an adapter manifest holds {sorted(_MANIFEST_KEYS)})"
        )
    return doc


def adapter_lora_config(directory: str | os.PathLike, doc: dict[str, Any]) -> LoraConfig:
    """The :class:`LoraConfig` of a parsed ``adapter_config.json``.

    Raises:
        AdapterMismatchError: unknown keys or values of the wrong type or range, naming
            the file.
    """
    try:
        return LoraConfig.from_dict(doc["lora_config"])
    except (TypeError, ValueError) as e:
        raise AdapterMismatchError(
            f"{Path(directory) / ADAPTER_CONFIG_NAME}: bad lora_config: {e}"
        ) from e


def _check_values(directory: Path, doc: dict[str, Any], config: LoraConfig) -> None:
    """The weights file is the one the manifest was written with, and its values are sane."""
    weights = directory / ADAPTER_WEIGHTS_NAME
    expected = doc.get("weights_sha256")
    if expected is None:
        if doc["format_version"] >= 2:
            raise AdapterMismatchError(f"{directory / ADAPTER_CONFIG_NAME} lacks weights_sha256")
        logger.warning(
            "%s: adapter of format 1 has no checksum; its weights are not verified", directory
        )
    elif _sha256(weights) != expected:
        raise AdapterMismatchError(
            f"{weights}: the file's sha256 differs from the one its adapter_config.json "
            "recorded (corrupted or edited after it was saved)"
        )
    if not (math.isfinite(config.alpha) and config.alpha > 0):
        raise AdapterMismatchError(f"{directory}: implausible LoRA alpha {config.alpha!r}")
    if config.scaling > MAX_SCALING:
        raise AdapterMismatchError(
            f"{directory}: implausible LoRA scaling alpha / r = {config.scaling:g} "
            f"(alpha {config.alpha:g}, rank {config.rank}); at most {MAX_SCALING:g} is accepted"
        )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _FINGERPRINT_RTOL * max(abs(a), abs(b), 1e-8)


def load_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    check_base: bool = True,
) -> LoraConfig:
    """Load adapter weights into a model that carries adapters of the same layout.

    Every problem is collected before anything is written, so a refused adapter leaves
    the model untouched.

    Args:
        model: the model, already injected (e.g. with the returned config's layout).
        directory: an adapter folder written by :func:`save_adapter`.
        check_base: also require the base weights to match the ones the adapter was
            trained on (fingerprint); an adapter for another model is refused.

    Returns:
        The adapter's :class:`LoraConfig` (with its task metadata).

    Raises:
        AdapterMismatchError: listing every layer that is missing, extra, shaped
            differently or sits on other base weights.
    """
    directory = Path(directory)
    doc = read_adapter_config(directory)
    config = adapter_lora_config(directory, doc)
    weights_path = directory / ADAPTER_WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"adapter weights missing: {weights_path}")
    _check_values(directory, doc, config)
    try:
        tensors = load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise AdapterMismatchError(f"{weights_path} is not a readable safetensors file: {e}") from e
    bad = sorted(k for k, t in tensors.items() if not bool(torch.isfinite(t).all()))
    if bad:
        raise AdapterMismatchError(f"{weights_path}: non-finite values (NaN or inf) in {bad[:5]}")
    model_layers = dict(lora_layers(model))
    problems: list[str] = []
    for name, spec in doc["layers"].items():
        layer = model_layers.get(name)
        if layer is None:
            problems.append(f"layer {name!r}: in the adapter but the model has no adapter there")
            continue
        if not _close(layer.scaling, config.scaling):
            problems.append(
                f"layer {name!r}: the model's adapter scaling {layer.scaling:g} differs from "
                f"the file's alpha / r = {config.scaling:g}"
            )
        if list(layer.parts) != spec["parts"]:
            problems.append(f"layer {name!r}: adapter parts {spec['parts']} vs model {layer.parts}")
            continue
        for part in layer.parts:
            for kind, param in (("lora_A", layer.lora_A[part]), ("lora_B", layer.lora_B[part])):
                key = f"{name}.{kind}.{part}"
                t = tensors.get(key)
                if t is None:
                    problems.append(f"layer {name!r}: weights file lacks {key}")
                elif tuple(t.shape) != tuple(param.shape):
                    problems.append(
                        f"layer {name!r}: {kind}.{part} shape {tuple(t.shape)} in the adapter "
                        f"vs {tuple(param.shape)} in the model"
                    )
        if check_base and not all(
            _close(a, b) for a, b in zip(spec["base_fingerprint"], base_fingerprint(layer))
        ):
            problems.append(
                f"layer {name!r}: base weights differ from those the adapter was trained on "
                "(adapter for another model or checkpoint)"
            )
    for name in model_layers:
        if name not in doc["layers"]:
            problems.append(f"layer {name!r}: the model has an adapter there but the file has none")
    if problems:
        raise AdapterMismatchError(
            f"adapter {directory} does not fit the model:\n  " + "\n  ".join(problems)
        )
    with torch.no_grad():
        for name, layer in model_layers.items():
            was_merged = layer.merged
            layer.unmerge()
            for part in layer.parts:
                layer.lora_A[part].copy_(tensors[f"{name}.lora_A.{part}"])
                layer.lora_B[part].copy_(tensors[f"{name}.lora_B.{part}"])
            if was_merged:
                layer.merge()
    return config


def load_adapter_sequence(
    model: nn.Module,
    directories: Iterable[str | os.PathLike],
    *,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """Load the adapters of a continual run into ``model``, in task order.

    Each task's adapter was trained on the model with the earlier tasks' adapters merged,
    so each one after the first is loaded after merging the previous one into the weights
    and resetting it (the task boundary of training, replayed). The first adapter is
    injected with its own :class:`LoraConfig` when the model carries none. Afterwards the
    last adapter is live and the earlier ones are merged.

    Args:
        model: the base model (the weights the first task was trained on).
        directories: adapter folders (:func:`save_adapter` output), first task first.
        device: where to move the model afterwards (None: where it is; new adapters are
            created on the device of the layer they wrap).

    Returns:
        The parsed ``adapter_config.json`` of each adapter, in order.

    Raises:
        FileNotFoundError: a folder is not an adapter folder.
        AdapterMismatchError: an adapter does not fit (another model, another layout, or
            the adapters given out of order). The model then holds the adapters loaded so
            far; build a fresh one to retry.
    """
    docs = []
    for directory in directories:
        doc = read_adapter_config(directory)
        if any(True for _ in lora_layers(model)):
            merge_and_reset_adapters(model)
        else:
            try:
                inject_lora(model, adapter_lora_config(directory, doc))
            except ValueError as e:  # its layer names match nothing in this model
                raise AdapterMismatchError(
                    f"{Path(directory) / ADAPTER_CONFIG_NAME} does not fit this model: {e}"
                ) from e
        load_adapter(model, directory)
        docs.append(doc)
    if device is not None:
        model.to(device)
    return docs

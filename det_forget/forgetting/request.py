"""What a run was asked to do, recorded when it starts, so ``--resume`` only continues it.

A forgetting run folder documents a deletion request: which classes, by which method, on
which weights. ``request.json`` is written when a run starts from scratch; resuming a run
with a config that asks for something else (other classes, method, base weights, loss
settings, ...) is refused with the differences named, instead of training nothing and
rewriting the folder's config to describe a deletion that never happened.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write
from .tasks import ForgetTask

__all__ = [
    "REQUEST_FILE",
    "RUNTIME_KEYS",
    "RunRequestMismatchError",
    "check_resume_request",
    "file_sha256",
    "run_request",
    "write_request",
]

REQUEST_FILE = "request.json"
#: Config keys a resumed run may change: where and how it runs, not what it does.
RUNTIME_KEYS = (
    "OUTPUT_DIR",
    "MODEL.DEVICE",
    "DATALOADER.NUM_WORKERS",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "VIS_PERIOD",
    "CUDNN_BENCHMARK",
    "CLS.NUM_THREADS",
    "CLS.LOG_PERIOD",
    "CLS.EVAL_BATCH_SIZE",
)


class RunRequestMismatchError(ValueError):
    """``--resume`` with a config that asks for something other than the run did."""


def file_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of a file (None when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def run_request(
    cfg, tasks: Sequence[ForgetTask], class_names: Sequence[str], weights: str
) -> dict[str, Any]:
    """The request a config makes: tasks by class name, method, weights (and their hash),
    and every config key that changes what the run does (not :data:`RUNTIME_KEYS`).

    Args:
        cfg: the run's config.
        tasks: its tasks.
        class_names: the model's classes.
        weights: the checkpoint the run starts from.
    """
    config = {
        k: v
        for k, v in _flatten(json.loads(json.dumps(cfg, default=list))).items()
        if k not in RUNTIME_KEYS
    }
    return {
        "method": cfg.FORGET.METHOD,
        "tasks": [[class_names[int(c)] for c in t.forget] for t in tasks],
        "missing": sorted({class_names[int(c)] for t in tasks for c in t.missing}),
        "weights": str(weights),
        "weights_sha256": file_sha256(weights) if weights else None,
        "config": config,
    }


def write_request(run_dir: str | os.PathLike, request: Mapping[str, Any]) -> Path:
    """Write ``request.json`` into the run folder (atomically)."""
    path = Path(run_dir) / REQUEST_FILE
    with atomic_write(path) as f:
        json.dump(dict(request), f, indent=2, sort_keys=True)
    return path


def request_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"key: run's value -> now"`` for each difference between two requests."""
    out = []
    for key in ("method", "tasks", "missing", "weights_sha256"):
        if old.get(key) != new.get(key):
            label = "base weights (sha256)" if key == "weights_sha256" else key
            out.append(f"{label}: {old.get(key)!r} -> {new.get(key)!r}")
    a, b = old.get("config", {}), new.get("config", {})
    for key in sorted(set(a) | set(b)):
        if key in ("MODEL.WEIGHTS", "FORGET.CLASSES", "FORGET.TASKS", "FORGET.METHOD"):
            continue  # compared above, by what they resolve to
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def check_resume_request(run_dir: str | os.PathLike, request: Mapping[str, Any]) -> None:
    """Refuse to resume a run whose recorded request differs from ``request``.

    Raises:
        RunRequestMismatchError: the run recorded another request (names each
            difference), or recorded none (a run of an earlier det_forget).
    """
    path = Path(run_dir) / REQUEST_FILE
    if not path.is_file():
        raise RunRequestMismatchError(
            f"--resume: {run_dir} has checkpoints but no {REQUEST_FILE}, so what it was "
            "asked to forget cannot be checked; start a new run (another OUTPUT_DIR)"
        )
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunRequestMismatchError(f"{path} is not valid JSON: {e}") from e
    new = json.loads(json.dumps(dict(request), default=list))
    differences = request_differences(old, new)
    if differences:
        raise RunRequestMismatchError(
            f"--resume: this config asks for something other than the run in {run_dir} did "
            "(run -> now):\n  "
            + "\n  ".join(differences)
            + f"\nResume with the run's own config ({Path(run_dir) / 'config.yaml'}), or "
            "start a new run in another OUTPUT_DIR."
        )

"""Reuse the "before" evaluation of a detector instead of running it again.

A forgetting run needs the per-class AP of the model *before* forgetting (the baseline of
Drop and H-Mean). When the same weights were already evaluated on the same val set with
the same test-time settings, the numbers are the same, so they are looked up instead:

* in the **model card** next to the weights (``<weights stem>.json``, e.g.
  ``det_forget/model_zoo/shapes_vit_tiny_frcnn.json``), under ``"evaluations"``;
* (the evaluator's report of an earlier run is reused with ``FORGET.BEFORE_REPORT``.)

An entry matches only when all three hashes are equal (:class:`EvaluationKey`): the
weights file's sha256, the evaluation set's and the test-time settings'. Detection
(:func:`evaluation_key`): the val set's content (:func:`dataset_sha256`: images, sizes and
boxes, independent of where the files are) and the detector's ``MODEL`` node without the
weights path, the test input size and the detections per image (:func:`settings_sha256`);
per class ``{"AP", "AP50"}``. Classification and face (:func:`classifier_evaluation_key`):
the test images and labels (:func:`tensor_sha256`) and the ``CLS.MODEL`` node; per class
``{"accuracy"}``. Anything else -- other weights, another val set, another input size --
is evaluated as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EvaluationKey",
    "add_card_evaluation",
    "card_path_of",
    "classifier_evaluation_key",
    "dataset_sha256",
    "evaluation_key",
    "find_card_before",
    "settings_sha256",
    "tensor_sha256",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationKey:
    """What identifies an evaluation: weights, val set and test-time settings (sha256)."""

    weights_sha256: str
    val_set: str
    val_set_sha256: str
    settings_sha256: str


def dataset_sha256(dicts: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of a detection dataset's content: per image (in image-id order) the file's
    base name, its size and every annotation's class, box and crowd flag."""
    rows = []
    for r in sorted(dicts, key=lambda r: str(r.get("image_id"))):
        anns = sorted(
            (
                int(a["category_id"]),
                [round(float(v), 2) for v in a["bbox"]],
                int(a.get("bbox_mode", 0)),
                int(a.get("iscrowd", 0)),
            )
            for a in r.get("annotations", ())
        )
        rows.append(
            [
                str(r.get("image_id")),
                os.path.basename(str(r.get("file_name", ""))),
                int(r.get("height", 0)),
                int(r.get("width", 0)),
                anns,
            ]
        )
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def settings_sha256(cfg) -> str:
    """sha256 of what decides a detector's test-time output besides its weights."""
    model = cfg.MODEL.clone()
    model.defrost()
    model.WEIGHTS = ""
    model.DEVICE = ""
    if model.META_ARCHITECTURE == "ForgettingDetector":
        model.META_ARCHITECTURE = cfg.FORGET.DETECTOR
    settings = {
        "MODEL": model.dump(sort_keys=True),
        "INPUT": [
            cfg.INPUT.FORMAT,
            cfg.INPUT.MIN_SIZE_TEST,
            cfg.INPUT.MAX_SIZE_TEST,
        ],
        "DETECTIONS_PER_IMAGE": cfg.TEST.DETECTIONS_PER_IMAGE,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def evaluation_key(cfg, dataset: str, weights_sha256: str | None = None) -> EvaluationKey | None:
    """The key of evaluating ``cfg.MODEL.WEIGHTS`` on the registered ``dataset``.

    Returns:
        None when the weights are not a file (nothing to identify them by).
    """
    from ..data.checks import load_dataset
    from ..forgetting.request import file_sha256

    weights = weights_sha256 or (file_sha256(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else None)
    if weights is None:
        return None
    return EvaluationKey(
        weights_sha256=weights,
        val_set=dataset,
        val_set_sha256=dataset_sha256(load_dataset(dataset)),
        settings_sha256=settings_sha256(cfg),
    )


def tensor_sha256(*tensors) -> str:
    """sha256 of tensors' shapes, dtypes and bytes (e.g. a classification test set)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def classifier_evaluation_key(cfg, weights: str | os.PathLike, name: str, images, labels):
    """The key of evaluating a classifier's ``weights`` on ``images``/``labels``
    (``cfg.CLS.MODEL`` as the settings); None when the weights are not a file."""
    from ..forgetting.request import file_sha256

    sha = file_sha256(weights)
    if sha is None:
        return None
    return EvaluationKey(
        weights_sha256=sha,
        val_set=name,
        val_set_sha256=tensor_sha256(images, labels),
        settings_sha256=hashlib.sha256(cfg.CLS.MODEL.dump(sort_keys=True).encode()).hexdigest(),
    )


def card_path_of(weights: str | os.PathLike) -> Path:
    """The model card of a weights file: same folder and stem, ``.json``."""
    return Path(weights).with_suffix(".json")


def _matches(entry: Mapping[str, Any], key: EvaluationKey) -> bool:
    return (
        entry.get("weights_sha256") == key.weights_sha256
        and entry.get("val_set_sha256") == key.val_set_sha256
        and entry.get("settings_sha256") == key.settings_sha256
    )


def find_card_before(
    card: str | os.PathLike,
    key: EvaluationKey,
    class_names: Sequence[str],
    metrics: Sequence[str] = ("AP", "AP50"),
) -> dict[str, dict[str, float | None]] | None:
    """The per-class scores a model card holds for ``key``, if any.

    Args:
        card: the card's path (a missing or unreadable card holds nothing).
        key: the evaluation wanted.
        class_names: the dataset's classes; the entry must list exactly these.
        metrics: the scores of each class (``("accuracy",)`` for classifiers).

    Returns:
        ``{class: {metric: ..}}`` (what an evaluation returns) or None.
    """
    path = Path(card)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("model card %s is unreadable (%s); evaluating instead", path, e)
        return None
    for entry in data.get("evaluations", []) if isinstance(data, Mapping) else []:
        if not isinstance(entry, Mapping) or not _matches(entry, key):
            continue
        per_class = entry.get("per_class")
        if not isinstance(per_class, Mapping) or set(per_class) != set(class_names):
            continue
        return {c: {m: per_class[c].get(m) for m in metrics} for c in class_names}
    return None


def add_card_evaluation(
    card: str | os.PathLike,
    key: EvaluationKey,
    per_class: Mapping[str, Mapping[str, float | None]],
    command: str,
) -> None:
    """Record an evaluation in a model card (replacing one with the same key); atomic."""
    from ..utils.io import atomic_write

    path = Path(card)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    entries = [e for e in data.get("evaluations", []) if not _matches(e, key)]
    entries.append(
        {
            **asdict(key),
            "command": command,
            "per_class": {c: dict(v) for c, v in per_class.items()},
        }
    )
    data["evaluations"] = entries
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2) + "\n")

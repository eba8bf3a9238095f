"""Saving a forgetting result: adapters, merged checkpoint, reports, and the comparison.

Every file is written atomically (``det_forget.utils.io``), so a failed save never leaves
a half-written checkpoint or adapter behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtWidgets import QWidget

from det_forget.engine.inference import export_directory, export_file, records_from_history
from det_forget.forgetting.run_dir import RunDirectory
from det_forget.utils.io import atomic_write

from ..session import ModelSession
from .errors import ActionRefused

__all__ = ["comparison_summary", "run_files", "save_results", "widget_png"]


def run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files of a run folder a save copies (those the run wrote): ``history.json``,
    ``config.yaml``, the merged model and ``merged_config.yaml``."""
    run = RunDirectory(run_dir)
    files = [run.history_path, run.config_path, run.merged_model(), run.merged_config_path]
    return [f for f in files if f is not None and f.is_file()]


def widget_png(widget: QWidget) -> bytes:
    """What ``widget`` shows, as PNG bytes."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    widget.grab().save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def comparison_summary(
    session: ModelSession,
    image_path: str | None,
    *,
    sources: tuple[str | None, str | None],
    score_threshold: float,
    display_filter: str,
    visible_ids: Sequence[int] | None,
) -> dict[str, Any]:
    """What the comparison shows, as data: the boxes of each side above the threshold.

    Args:
        session: the models and their cached detections (nothing is run here).
        image_path: the image shown (``None``: no image).
        sources: the session sources of the before and after panes.
        score_threshold: the lowest score shown.
        display_filter: the display filter's name (recorded as is).
        visible_ids: the classes shown (``None``: all).
    """
    sides = {}
    for side, source in zip(("before", "after"), sources):
        dets = session.cached(source, image_path) if source and image_path else None
        if dets is None:
            continue
        shown = dets.filter(score_threshold, visible_ids)
        sides[side] = {
            "model": session.describe(source),
            "detections": [
                {
                    "class": session.class_names[int(c)],
                    "score": round(float(s), 4),
                    "box_xyxy": [round(float(v), 1) for v in b],
                }
                for b, s, c in zip(shown.boxes, shown.scores, shown.classes)
            ],
        }
    last = session.records[-1] if session.records else None
    return {
        "image": image_path,
        "score_threshold": score_threshold,
        "display_filter": display_filter,
        "forgotten_classes": session.result_forget_classes(),
        "run": session.result.output_dir if session.result is not None else None,
        "summary": last.summary if last else None,
        **sides,
    }


def save_results(
    session: ModelSession | None, folder: str | os.PathLike, png: bytes, comparison: dict
) -> list[str]:
    """Write the last job's adapters, run files (:func:`run_files`) and the comparison.

    Args:
        session: holds the result to save.
        folder: where to write (created).
        png: ``comparison.png``'s bytes (:func:`widget_png`).
        comparison: ``comparison.json``'s content (:func:`comparison_summary`).

    Returns:
        The paths written.

    Raises:
        ActionRefused: no result to save.
        OSError: a file could not be written (the files before it are in place).
    """
    if session is None or session.result is None:
        raise ActionRefused("Nothing to save", "Run a forgetting job first.")
    run = Path(session.result.output_dir)
    out = Path(folder)
    written: list[str] = []
    for rec in records_from_history(session.result.history, run):
        if rec.adapter:
            dst = out / "adapters" / os.path.basename(rec.adapter)
            written.append(export_directory(rec.adapter, dst))
    for path in run_files(run):
        written.append(export_file(path, out / path.name))
    with atomic_write(out / "comparison.png", "wb") as f:
        f.write(png)
    written.append(str(out / "comparison.png"))
    with atomic_write(out / "comparison.json") as f:
        json.dump(comparison, f, indent=2)
    written.append(str(out / "comparison.json"))
    return written

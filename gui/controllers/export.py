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
from det_forget.forgetting.run_dir import MERGED_CONFIG_FILE, RunDirectory
from det_forget.utils.io import atomic_write

from ..session import ModelSession
from .errors import ActionRefused

__all__ = ["comparison_png", "comparison_summary", "run_files", "save_results", "widget_png"]


#: Files beside a run's own that a save copies when they exist (the audit, the report).
EXTRA_RUN_FILES = ("request.json", "audit.json", "review_report.html")


def run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files of a run folder a save copies (those the run wrote): ``history.json``,
    ``config.yaml``, the merged model, ``merged_config.yaml``, and ``request.json``,
    ``audit.json`` and ``review_report.html`` when they exist."""
    run = RunDirectory(run_dir)
    files = [run.history_path, run.config_path, run.merged_model(), run.merged_config_path]
    files += [run.path / name for name in EXTRA_RUN_FILES]
    return [f for f in files if f is not None and f.is_file()]


def comparison_png(compare) -> bytes:
    """The compare view's two images as PNG: each view cropped to its image (not the
    empty background around it), side by side, under their titles as plain text."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QColor, QImage, QPainter, QTextDocument

    parts = []
    for view, title in (
        (compare.before, compare.before_title),
        (compare.after, compare.after_title),
    ):
        area = view.mapFromScene(view.sceneRect()).boundingRect()
        area = area.intersected(QRect(0, 0, view.viewport().width(), view.viewport().height()))
        parts.append((view.viewport().grab(area).toImage(), title.text()))
    title_h, gap = 40, 8
    width = sum(img.width() for img, _ in parts) + gap * (len(parts) + 1)
    height = max(img.height() for img, _ in parts) + title_h + gap
    out = QImage(width, height, QImage.Format.Format_RGB32)
    out.fill(QColor(255, 255, 255))
    painter = QPainter(out)
    x = gap
    for img, title in parts:
        doc = QTextDocument()
        doc.setHtml(title)
        doc.setTextWidth(img.width())
        painter.save()
        painter.translate(x, 2)
        doc.drawContents(painter)
        painter.restore()
        painter.drawImage(x, title_h, img)
        x += img.width() + gap
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    out.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


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
    merged = RunDirectory(run).merged_model()
    for path in run_files(run):
        target = out / path.name
        if path.name == MERGED_CONFIG_FILE and merged is not None:
            # The saved config loads the merged model saved beside it, not the run's.
            text = path.read_text(encoding="utf-8").replace(
                str(merged), str((out / merged.name).resolve())
            )
            with atomic_write(target) as f:
                f.write(text)
            written.append(str(target))
        else:
            written.append(export_file(path, target))
    with atomic_write(out / "comparison.png", "wb") as f:
        f.write(png)
    written.append(str(out / "comparison.png"))
    with atomic_write(out / "comparison.json") as f:
        json.dump(comparison, f, indent=2)
    written.append(str(out / "comparison.json"))
    _readable(out)
    return written


def _readable(folder: Path) -> None:
    """Saved results are meant to be handed on: files 0644, folders 0755."""
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)

"""The forgetting history of a run, one :class:`ForgetRecord` per task, for apps to show.

Runs are read through :class:`~det_forget.forgetting.run_dir.RunDirectory` (its
``history.json``); a single adapter folder through its manifest, which carries the same
record. Folders of earlier det_forget layouts are refused by the reader with a message
naming ``tools/convert_run.py``.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...forgetting.run_dir import LegacyRunError, RunDirectory, RunHistory
from ...lora import read_adapter_config

__all__ = ["ForgetRecord", "read_forget_history", "records_from_history"]


@dataclass
class ForgetRecord:
    """One finished forgetting task.

    Attributes:
        task: task index.
        classes: class names per group (``forget``, ``retain``, ``old``, ``missing``).
        before: per-class score (%) before the task (``None`` when not evaluated).
        after: per-class score (%) after the task.
        summary: group means, Drop and H-Mean (``forgetting_summary``), or ``None``.
        adapter: the adapter folder, when it exists.
        date: when the task's files were written (file modification time).
        metric: what the scores are (``"AP"`` for detectors, ``"accuracy"`` otherwise).
        details: task-type extras (detection: AP50 per class, the evaluator's results).
    """

    task: int
    classes: dict[str, list[str]]
    before: dict[str, float | None] | None
    after: dict[str, float | None] | None
    summary: dict[str, Any] | None = None
    adapter: str | None = None
    date: _dt.datetime | None = None
    metric: str = "AP"
    details: dict[str, Any] = field(default_factory=dict)


def _mtime(path: Path | None) -> _dt.datetime | None:
    if path is None or not path.exists():
        return None
    return _dt.datetime.fromtimestamp(path.stat().st_mtime)


def _scores(value: Mapping[str, Any] | None) -> dict[str, float | None] | None:
    return None if value is None else {str(k): v for k, v in value.items()}


def _record(
    rec: Mapping[str, Any],
    adapter: Path | None,
    date: _dt.datetime | None,
    metric: str,
) -> ForgetRecord:
    return ForgetRecord(
        task=int(rec["task"]["index"]),
        classes={k: list(v) for k, v in rec["classes"].items()},
        before=_scores(rec.get("before")),
        after=_scores(rec.get("after")),
        summary=rec.get("summary"),
        adapter=None if adapter is None else str(adapter),
        date=date,
        metric=metric,
        details=dict(rec.get("details") or {}),
    )


def records_from_history(
    history: RunHistory | Sequence[Mapping[str, Any]],
    run_dir: str | os.PathLike | None = None,
    *,
    metric: str = "AP",
) -> list[ForgetRecord]:
    """:class:`ForgetRecord` per task record of a run (``history.json``'s ``tasks``).

    Args:
        history: a :class:`~det_forget.forgetting.run_dir.RunHistory`, or its task records
            (e.g. ``JobResult.history``).
        run_dir: the run folder; task adapters are recorded relative to it (without it,
            records have no adapter).
        metric: what the scores are, when ``history`` is a list of records.

    Raises:
        ValueError: a record lacks ``task`` or ``classes`` (not a record of this format).
    """
    if isinstance(history, RunHistory):
        metric, history = history.metric, history.tasks
    root = Path(run_dir) if run_dir is not None else None
    records = []
    for rec in history:
        if not isinstance(rec.get("task"), Mapping) or "classes" not in rec:
            raise ValueError(
                f"not a det_forget task record (expected 'task' and 'classes'): {sorted(rec)}"
            )
        adapter = None
        if root is not None and rec.get("adapter"):
            candidate = root / rec["adapter"]
            adapter = candidate if (candidate / "adapter_config.json").is_file() else None
        date = _mtime(adapter / "adapter_config.json" if adapter else None)
        if date is None and root is not None:
            date = _mtime(RunDirectory(root).history_path)
        records.append(_record(rec, adapter, date, metric))
    return records


def _record_from_manifest(directory: Path) -> ForgetRecord:
    meta = read_adapter_config(directory)["lora_config"].get("metadata", {})
    if not isinstance(meta.get("task"), Mapping) or "classes" not in meta:
        raise LegacyRunError(
            f"{directory} is an adapter of an earlier det_forget (its manifest has no task "
            "record); convert its run folder with: python tools/convert_run.py RUN_DIR"
        )
    rec = {
        "task": meta["task"],
        "classes": meta["classes"],
        "before": meta.get("metrics_before"),
        "after": meta.get("metrics_after"),
        "summary": meta.get("summary"),
    }
    return _record(
        rec, directory, _mtime(directory / "adapter_config.json"), meta.get("metric", "AP")
    )


def read_forget_history(path: str | os.PathLike) -> list[ForgetRecord]:
    """The forgetting history stored at ``path``, oldest task first.

    Args:
        path: a run folder (``OUTPUT_DIR``), a file in it (e.g. its ``history.json``), or
            one adapter folder (its manifest holds the task's record).

    Raises:
        LegacyRunError: a run (or adapter) of an earlier det_forget layout; the message
            names ``tools/convert_run.py``.
        FileNotFoundError: ``path`` holds no run history.
        ValueError: ``history.json`` is not valid (the message names the file).
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    if (path / "adapter_config.json").is_file():
        return [_record_from_manifest(path)]
    run = RunDirectory(path)
    return records_from_history(run.read_history(), run.path)

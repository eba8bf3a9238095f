"""The run directory: one layout, one writer and one reader for every task type.

A forgetting run (detection, classification or face; one task or a continual sequence)
leaves in its ``OUTPUT_DIR``::

    config.yaml              the full config of the run
    request.json             what the run was asked (detection: written at its start;
                             --resume must ask the same, see forgetting/request.py)
    history.json             the run: method, task type, classes, one record per task
    adapters/task_00/        adapter_model.safetensors + adapter_config.json (manifest)
    adapters/task_01/ ...    one per task, each trained on the model with the earlier
                             ones merged
    model_merged.pth         the merged model (detectors: a plain detectron2 checkpoint,
      + merged_config.yaml   with the config stock detectron2 loads it with) or
    model_merged.safetensors (classifiers)

Detection also keeps detectron2's own files there (``metrics.json`` event lines,
``model_final.pth`` training checkpoints, ``last_checkpoint``, ``log.txt``).

The app, ``tools/audit.py`` and the benchmarks read runs only through
:class:`RunDirectory`. Folders written by det_forget before this format
(``forget_report.json``, or ``artifacts/task_N/adapter``) are refused with a message
naming ``tools/convert_run.py``, which rewrites them in place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputDirError, UserError
from ..utils.io import atomic_write

__all__ = [
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "HISTORY_FILE",
    "LegacyRunError",
    "RunHistory",
    "RunDirectory",
]

RUN_FORMAT = "det_forget.run"
RUN_FORMAT_VERSION = 2
HISTORY_FILE = "history.json"
CONFIG_FILE = "config.yaml"
ADAPTERS_DIR = "adapters"
MERGED_STEM = "model_merged"
MERGED_CONFIG_FILE = "merged_config.yaml"
_MERGED_SUFFIXES = (".pth", ".safetensors")


class LegacyRunError(UserError):
    """A run folder of an earlier det_forget layout; the message says how to convert it."""


@dataclass
class RunHistory:
    """What ``history.json`` holds.

    Attributes:
        method: ``FORGET.METHOD``.
        task_type: ``rcnn``, ``detr``, ``classification`` or ``face``.
        metric: what the per-class scores are (``"AP"`` or ``"accuracy"``, in %).
        class_names: every class of the model, in contiguous-id order.
        tasks: one record per finished task (see :meth:`RunDirectory.task_record`).
        info: the rest of the header (config hash, base weights, status, ...).
    """

    method: str
    task_type: str
    metric: str
    class_names: list[str]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def forgotten_classes(self) -> list[str]:
        """Every class forgotten by the run's tasks, in task order."""
        out: list[str] = []
        for rec in self.tasks:
            out += [c for c in rec["classes"]["forget"] if c not in out]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            **self.info,
            "method": self.method,
            "task_type": self.task_type,
            "metric": self.metric,
            "class_names": list(self.class_names),
            "tasks": list(self.tasks),
        }


class RunDirectory:
    """Read and write one run folder (see the module docstring).

    Args:
        path: the run's ``OUTPUT_DIR``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ paths
    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def merged_config_path(self) -> Path:
        return self.path / MERGED_CONFIG_FILE

    def adapter_dir(self, task_index: int) -> Path:
        """Where task ``task_index``'s adapter goes."""
        return self.path / ADAPTERS_DIR / f"task_{int(task_index):02d}"

    def merged_model_path(self, suffix: str) -> Path:
        """Where the merged model goes (``.pth`` for detectors, ``.safetensors`` else)."""
        if suffix not in _MERGED_SUFFIXES:
            raise ValueError(f"merged model suffix must be one of {_MERGED_SUFFIXES}")
        return self.path / f"{MERGED_STEM}{suffix}"

    # ------------------------------------------------------------------ writing
    def write_history(self, history: RunHistory) -> Path:
        """Write ``history.json`` atomically (strict JSON: NaN is refused)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.history_path) as f:
            json.dump(history.to_dict(), f, indent=2, allow_nan=False, default=_json_default)
        return self.history_path

    def write_config(self, text: str) -> Path:
        """Write ``config.yaml`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.config_path) as f:
            f.write(text)
        return self.config_path

    @staticmethod
    def task_record(
        task,
        class_names: Sequence[str],
        *,
        before: Mapping[str, float | None] | None,
        after: Mapping[str, float | None],
        summary: Mapping[str, Any] | None,
        adapter: str | None,
        train: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One task's record: classes by id and name, per-class scores, summary, adapter.

        Args:
            task: the :class:`~det_forget.forgetting.tasks.ForgetTask`.
            class_names: the model's classes.
            before: per-class scores (by class name) before the task (None: not known).
            after: per-class scores after the task.
            summary: :func:`~det_forget.evaluation.metrics.forgetting_summary`.
            adapter: the adapter folder relative to the run folder (None: no adapter).
            train: training statistics (steps, seconds, last loss terms, ...).
            details: task-type extras (detection: AP50 per class, the evaluator's flat
                results).
        """
        return {
            "task": task.to_dict(),
            "classes": {g: [class_names[c] for c in v] for g, v in task.groups().as_dict().items()},
            "before": None if before is None else dict(before),
            "after": dict(after),
            "summary": None if summary is None else dict(summary),
            "adapter": adapter,
            "train": dict(train or {}),
            "details": dict(details or {}),
        }

    # ------------------------------------------------------------------ starting
    def finished_outputs(self) -> list[Path]:
        """What a finished run left here: ``history.json`` with finished tasks, adapter
        folders, the merged model (empty: nothing a new run could destroy)."""
        found: list[Path] = []
        try:
            doc = json.loads(self.history_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and doc.get("tasks"):
            found.append(self.history_path)
        adapters = self.path / ADAPTERS_DIR
        if adapters.is_dir():
            found += sorted(p for p in adapters.iterdir() if (p / "adapter_config.json").is_file())
        found += [p for s in _MERGED_SUFFIXES if (p := self.merged_model_path(s)).is_file()]
        return found

    def check_new_run(
        self, *, overwrite: bool, can_resume: bool = False, main_process: bool = True
    ) -> None:
        """Before a new (not resumed) run writes anything into this folder.

        The folder must be a writable folder (or not exist yet, under a writable one). A
        finished run in it is never replaced silently: without ``overwrite`` the new run
        is refused; with it, the finished run's outputs (history, adapters, merged model)
        are removed first, so the folder never mixes two runs.

        Args:
            overwrite: ``FORGET.OVERWRITE``.
            can_resume: the tool has ``--resume`` (named in the message).
            main_process: remove files (other processes of a distributed run only check).

        Raises:
            OutputDirError: the folder is a file or not writable, or holds a finished run
                and ``overwrite`` is off (the message names the options).
        """
        if self.path.exists() and not self.path.is_dir():
            raise OutputDirError(f"OUTPUT_DIR {self.path} is a file, not a folder")
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OutputDirError(f"OUTPUT_DIR {self.path}: {existing} is not a writable folder")
        finished = self.finished_outputs()
        if not finished:
            return
        if not overwrite:
            names = ", ".join(str(p.relative_to(self.path)) for p in finished[:4])
            options = ["--resume to continue it"] if can_resume else []
            options += ["another OUTPUT_DIR", "FORGET.OVERWRITE True to replace it"]
            raise OutputDirError(
                f"OUTPUT_DIR {self.path} holds a finished run ({names}); a new run would "
                f"overwrite it. Use {', '.join(options[:-1])} or {options[-1]}"
            )
        if main_process:
            logging.getLogger(__name__).warning(
                "FORGET.OVERWRITE: removing the finished run in %s", self.path
            )
            for path in [
                self.history_path,
                self.path / ADAPTERS_DIR,
                self.merged_config_path,
                *(self.merged_model_path(s) for s in _MERGED_SUFFIXES),
            ]:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.is_file():
                    path.unlink()

    # ------------------------------------------------------------------ reading
    def is_run(self) -> bool:
        """Whether the folder holds a run of this format."""
        return self.history_path.is_file()

    def read_history(self) -> RunHistory:
        """The run's ``history.json``.

        Raises:
            LegacyRunError: a folder of an earlier layout (says how to convert it).
            FileNotFoundError: no run here.
            ValueError: the file is not a det_forget run history (names the problem).
        """
        if not self.history_path.is_file():
            legacy = self.legacy_layout()
            if legacy:
                raise LegacyRunError(
                    f"{self.path} is a run of an earlier det_forget ({legacy}); convert it "
                    f"with: python tools/convert_run.py {self.path}"
                )
            raise FileNotFoundError(
                f"{self.path} is not a det_forget run: {HISTORY_FILE} does not exist"
            )
        try:
            doc = json.loads(self.history_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.history_path} is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
            raise ValueError(f"{self.history_path} is not a det_forget run history")
        if doc.get("format_version") != RUN_FORMAT_VERSION:
            raise ValueError(
                f"{self.history_path}: run format version {doc.get('format_version')!r}; "
                f"this det_forget reads version {RUN_FORMAT_VERSION}"
            )
        try:
            return RunHistory(
                method=doc.pop("method"),
                task_type=doc.pop("task_type"),
                metric=doc.pop("metric"),
                class_names=list(doc.pop("class_names")),
                tasks=list(doc.pop("tasks")),
                info={k: v for k, v in doc.items() if k not in ("format", "format_version")},
            )
        except KeyError as e:
            raise ValueError(f"{self.history_path} lacks the key {e}") from e

    def adapters(self) -> list[Path]:
        """The adapter folders of the finished tasks, in task order."""
        history = self.read_history()
        out = []
        for rec in history.tasks:
            if rec.get("adapter"):
                directory = self.path / rec["adapter"]
                if not (directory / "adapter_config.json").is_file():
                    raise FileNotFoundError(
                        f"{self.path}: task {rec['task']['index']}'s adapter {directory} is missing"
                    )
                out.append(directory)
        return out

    def merged_model(self) -> Path | None:
        """The merged model file, if the run wrote one."""
        for suffix in _MERGED_SUFFIXES:
            path = self.merged_model_path(suffix)
            if path.is_file():
                return path
        return None

    def legacy_layout(self) -> str:
        """What earlier layout the folder has (``""``: none)."""
        if (self.path / "forget_report.json").is_file():
            return "forget_report.json + adapters/task_XX"
        if (self.path / "artifacts").is_dir():
            return "artifacts/task_N/adapter + metrics.json"
        return ""


def _json_default(o):
    import torch

    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

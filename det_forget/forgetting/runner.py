"""The task runner: the one task loop of every task type.

A forgetting run is a sequence of tasks (:mod:`~det_forget.forgetting.tasks`). For each
task the runner: builds its objective inputs (the registry's anchor), lets the task type
train, and at the task boundary evaluates, records the task (per-class scores by name,
Drop / H-Mean), saves the adapter with its manifest into the run directory, writes
``history.json``, then merges the adapter into the weights and starts a fresh one for
the next task (GS-LoRA's continual protocol).

Two ways to drive it:

* task types that own their step loop (classification, face) call :meth:`TaskRunner.run`
  with a ``train_task`` and an ``evaluate`` function;
* detection keeps detectron2's training loop: a thin hook calls :meth:`TaskRunner.end_task`
  at each task boundary (``ForgetTaskHook``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..evaluation.metrics import aggregate_by_group, forgetting_summary
from ..lora import lora_layers, merge_and_reset_adapters, save_adapter
from .methods import ForgetMethod
from .run_dir import RunDirectory, RunHistory
from .tasks import ForgetTask

__all__ = ["TaskRunner", "config_hash"]

logger = logging.getLogger(__name__)

TrainFn = Callable[[ForgetTask], Mapping[str, Any] | None]
EvalFn = Callable[[], Mapping[str, float | None]]


def config_hash(cfg) -> str:
    """sha256 (16 hex digits) of the config dump: identifies the run that made an adapter."""
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]


class TaskRunner:
    """Run a sequence of forgetting tasks on one model and keep the run directory.

    Args:
        model: the model being trained (with adapters for LoRA methods).
        tasks: the tasks, in order.
        class_names: the model's classes (contiguous-id order).
        method: the registry entry of ``FORGET.METHOD``.
        task_type: ``rcnn``, ``detr``, ``classification`` or ``face``.
        metric: what the per-class scores are (``"AP"`` or ``"accuracy"``).
        run_dir: where outputs go (None: nothing is written).
        lora_config: the adapters' config (LoRA methods), saved in each manifest.
        info: run-level facts for ``history.json`` and the manifests (config hash, base
            weights, ...).
        config_text: the run's config (``cfg.dump()``), written as ``config.yaml`` with
            the first task's outputs, so a run that fails before any task finished leaves
            an earlier run's files as they were.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[ForgetTask],
        *,
        class_names: Sequence[str],
        method: ForgetMethod,
        task_type: str,
        metric: str,
        run_dir: RunDirectory | None = None,
        lora_config=None,
        info: Mapping[str, Any] | None = None,
        config_text: str | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("a forgetting run needs at least one task")
        self.model = model
        self.tasks = list(tasks)
        self.class_names = list(class_names)
        self.method = method
        self.run_dir = run_dir
        self.lora_config = lora_config
        self.config_text = config_text
        self.history = RunHistory(
            method=method.name,
            task_type=task_type,
            metric=metric,
            class_names=self.class_names,
            info=dict(info or {}),
        )

    @property
    def records(self) -> list[dict[str, Any]]:
        """The finished tasks' records."""
        return self.history.tasks

    def names(self, ids) -> list[str]:
        return [self.class_names[int(c)] for c in ids]

    def end_task(
        self,
        task: ForgetTask,
        *,
        before: Mapping[str, float | None] | None,
        after: Mapping[str, float | None],
        train: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        main_process: bool = True,
    ) -> dict[str, Any]:
        """The task boundary: record, save the adapter and history, merge and reset.

        The adapter and ``history.json`` are written before the merge, so a failure
        while writing leaves the model as it was trained.

        Args:
            task: the finished task.
            before: per-class scores by class name before the task (None: not known).
            after: per-class scores by class name after the task.
            train: training statistics of the task.
            details: task-type extras kept in the record.
            main_process: write files (False on other distributed processes).

        Returns:
            The task's record.
        """
        groups = task.groups()
        named = type(groups)(**{g: self.names(v) for g, v in groups.as_dict().items()})
        if before is not None:
            summary = forgetting_summary(_defined(before), _defined(after), named)
        else:
            # Not evaluated before (e.g. FORGET.EVAL_BEFORE False): the after numbers by
            # group still stand; Drop and H-Mean need a before.
            summary = {
                "before": None,
                "after": aggregate_by_group(_defined(after), named),
                "drop": None,
                "h_mean": None,
                "retain_change": None,
            }
        adapter = None
        has_adapters = any(True for _ in lora_layers(self.model))
        if self.run_dir is not None and has_adapters:
            adapter = str(self.run_dir.adapter_dir(task.index).relative_to(self.run_dir.path))
        record = RunDirectory.task_record(
            task,
            self.class_names,
            before=before,
            after=after,
            summary=summary,
            adapter=adapter,
            train=train,
            details=details,
        )
        if self.run_dir is not None and main_process:
            if has_adapters:
                self._save_adapter(task, record)
            self.history.tasks.append(record)
            if self.config_text is not None:
                self.run_dir.write_config(self.config_text)
            self.run_dir.write_history(self.history)
        else:
            self.history.tasks.append(record)
        if task is not self.tasks[-1] and has_adapters:
            merge_and_reset_adapters(self.model)
        return record

    def _save_adapter(self, task: ForgetTask, record: dict[str, Any]) -> Path:
        """The task's adapter with the one manifest schema of every task type."""
        if self.lora_config is None:
            raise ValueError("TaskRunner needs lora_config to save adapters")
        meta = {
            **self.history.info,
            "method": self.method.name,
            "task_type": self.history.task_type,
            "metric": self.history.metric,
            "task": record["task"],
            "classes": record["classes"],
            "class_names": self.class_names,
            "metrics_before": record["before"],
            "metrics_after": record["after"],
            "summary": record["summary"],
            "train": record["train"],
            "data_used": record["details"].get("data_used"),
        }
        path = self.run_dir.adapter_dir(task.index)  # type: ignore[union-attr]
        return save_adapter(self.model, path, self.lora_config, metadata=meta)

    def run(
        self,
        train_task: TrainFn,
        evaluate: EvalFn,
        before: Mapping[str, float | None] | None = None,
        start_task: int = 0,
    ) -> list[dict[str, Any]]:
        """Train and evaluate tasks ``start_task..`` in order (step-function task types).

        Args:
            train_task: trains the model on one task; returns its statistics.
            evaluate: per-class scores (by class name) of the model as it is.
            before: the scores before the first task, if already known.
            start_task: first task to run (earlier ones already merged into the model).

        Returns:
            The records of every finished task.
        """
        scores = dict(before) if before is not None else dict(evaluate())
        for task in self.tasks[start_task:]:
            logger.info(
                "task %d/%d: forget %s (%d retained, %d old)",
                task.index + 1,
                len(self.tasks),
                self.names(task.forget),
                len(task.retain),
                len(task.old),
            )
            stats = train_task(task) or {}
            after = dict(evaluate())
            self.end_task(task, before=scores, after=after, train=stats)
            scores = after
        return self.records


def _defined(scores: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in scores.items() if v is not None}

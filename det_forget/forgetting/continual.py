"""Continual forgetting, independent of the task type.

A sequence of forgetting tasks is built from a class order and task sizes (or explicit
lists). :class:`ContinualRunner` runs them: evaluate, train the adapter, evaluate, save,
then merge the adapter into the weights and start a fresh one for the next task. What
"train" and "evaluate" mean is given by the caller (a detectron2 trainer, a classifier
loop), so detection, classification and face recognition share this logic.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..evaluation.metrics import ClassGroups, forgetting_summary
from ..lora.inject import merge_and_reset_adapters

__all__ = ["ForgetTask", "build_tasks", "ContinualRunner"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetTask:
    """One forgetting request in a sequence.

    Attributes:
        index: 0-based position in the sequence.
        forget: classes to forget now.
        retain: classes still to keep (never forgotten so far).
        old: classes forgotten by earlier tasks.
        missing: retain classes that have no training data.
    """

    index: int
    forget: tuple[Hashable, ...]
    retain: tuple[Hashable, ...]
    old: tuple[Hashable, ...] = ()
    missing: tuple[Hashable, ...] = ()

    @property
    def forgotten(self) -> tuple[Hashable, ...]:
        """Every class forgotten once this task is done (this task's and earlier ones)."""
        return tuple(self.forget) + tuple(self.old)

    def groups(self) -> ClassGroups:
        """Disjoint metric groups (missing classes are taken out of retain)."""
        missing = set(self.missing)
        return ClassGroups(
            forget=self.forget,
            retain=tuple(c for c in self.retain if c not in missing),
            old=self.old,
            missing=tuple(c for c in self.retain if c in missing),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "index": self.index,
            "forget": list(self.forget),
            "retain": list(self.retain),
            "old": list(self.old),
            "missing": list(self.missing),
        }


def build_tasks(
    classes: Sequence[Hashable],
    *,
    explicit: Sequence[Sequence[Hashable]] | None = None,
    task_sizes: Sequence[int] | None = None,
    seed: int | None = None,
    missing: Sequence[Hashable] = (),
) -> list[ForgetTask]:
    """Build a sequence of forgetting tasks.

    Args:
        classes: every class the model knows.
        explicit: the forget classes of each task, in order. Exclusive with task_sizes.
        task_sizes: sizes of consecutive tasks taken from the class order (the classes
            shuffled with ``seed``, or as given when ``seed`` is None).
        seed: shuffle seed for the class order (Python's ``random.Random``, so the
            order does not depend on torch's RNG state).
        missing: retain classes that have no training data.

    Returns:
        The tasks, each with its forget, retain and old classes.

    Raises:
        ValueError: unknown or repeated classes, an empty task, or a sequence that would
            forget every class (nothing left to retain).
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError("classes contains duplicates")
    known = set(classes)
    if (explicit is None) == (task_sizes is None):
        raise ValueError("give exactly one of explicit= or task_sizes=")
    if explicit is None:
        order = list(classes)
        if seed is not None:
            random.Random(seed).shuffle(order)
        sizes = [int(s) for s in task_sizes]  # type: ignore[union-attr]
        if any(s <= 0 for s in sizes):
            raise ValueError(f"task sizes must be positive, got {sizes}")
        if sum(sizes) > len(order):
            raise ValueError(f"task sizes {sizes} need {sum(sizes)} classes, only {len(order)}")
        explicit, start = [], 0
        for s in sizes:
            explicit.append(order[start : start + s])
            start += s
    unknown_missing = [c for c in missing if c not in known]
    if unknown_missing:
        raise ValueError(f"missing classes {unknown_missing} are not among the classes")
    tasks: list[ForgetTask] = []
    forgotten: list[Hashable] = []
    for i, forget in enumerate(explicit):
        forget = list(forget)
        if not forget:
            raise ValueError(f"task {i} forgets no class (empty forget set)")
        unknown = [c for c in forget if c not in known]
        if unknown:
            raise ValueError(f"task {i}: unknown classes {unknown}; known classes: {classes}")
        again = [c for c in forget if c in forgotten or forget.count(c) > 1]
        if again:
            raise ValueError(f"task {i}: classes {again} are forgotten more than once")
        forgotten_now = forgotten + forget
        retain = tuple(c for c in classes if c not in forgotten_now)
        if not retain:
            raise ValueError(
                f"task {i} would forget every class; at least one class must be retained"
            )
        miss_in_forget = [c for c in forget if c in missing]
        if miss_in_forget:
            raise ValueError(f"task {i}: classes {miss_in_forget} are both forgotten and missing")
        tasks.append(
            ForgetTask(
                index=i,
                forget=tuple(forget),
                retain=retain,
                old=tuple(forgotten),
                missing=tuple(c for c in retain if c in set(missing)),
            )
        )
        forgotten = forgotten_now
    return tasks


TrainFn = Callable[[ForgetTask], Mapping[str, Any] | None]
EvalFn = Callable[[], Mapping[Hashable, float]]
SaveFn = Callable[[ForgetTask, dict[str, Any]], Any]


class ContinualRunner:
    """Run forgetting tasks one after another on a model with LoRA adapters.

    Args:
        model: the model; it must carry adapters (``inject_lora``).
        tasks: from :func:`build_tasks`.
        train_task: trains the current adapter on one task; may return statistics.
        evaluate: returns per-class scores (accuracy or AP, in %) of the model as it is.
        save_task: called after each task with the task and its history record, before
            the merge (e.g. to write the adapter file).
        merge_between_tasks: fold each adapter into the weights and start a fresh one
            before the next task (GS-LoRA's protocol).
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[ForgetTask],
        *,
        train_task: TrainFn,
        evaluate: EvalFn,
        save_task: SaveFn | None = None,
        merge_between_tasks: bool = True,
    ) -> None:
        if not tasks:
            raise ValueError("ContinualRunner needs at least one task")
        self.model = model
        self.tasks = list(tasks)
        self.train_task = train_task
        self.evaluate = evaluate
        self.save_task = save_task
        self.merge_between_tasks = merge_between_tasks
        self.history: list[dict[str, Any]] = []

    def run(self, start_task: int = 0, before: Mapping[Hashable, float] | None = None):
        """Run tasks ``start_task..`` and return the history (one record per task).

        Args:
            start_task: index of the first task to run (to resume a sequence whose
                earlier tasks are already merged into the model).
            before: per-class scores of the model as it is now, if already known.

        Returns:
            A list of records: task description, per-class scores before and after,
            the :func:`~det_forget.evaluation.metrics.forgetting_summary`, and whatever
            ``train_task`` returned.
        """
        scores = dict(before) if before is not None else dict(self.evaluate())
        for task in self.tasks[start_task:]:
            logger.info(
                "task %d/%d: forget %s (%d retained, %d old)",
                task.index + 1,
                len(self.tasks),
                list(task.forget),
                len(task.retain),
                len(task.old),
            )
            stats = self.train_task(task) or {}
            after = dict(self.evaluate())
            record = {
                "task": task.to_dict(),
                "before": scores,
                "after": after,
                "summary": forgetting_summary(scores, after, task.groups()),
                "train": dict(stats),
            }
            self.history.append(record)
            if self.save_task is not None:
                self.save_task(task, record)
            if self.merge_between_tasks and task is not self.tasks[-1]:
                merge_and_reset_adapters(self.model)
            scores = after
        return self.history

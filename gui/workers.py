"""Work off the GUI thread: a serial task runner and the forgetting job's worker.

* :class:`TaskRunner`: one background thread that runs short tasks (loading a model,
  reading a dataset, detecting on one image, evaluating) one after another. Tasks that
  touch the held models never overlap, because there is only one such thread.
* :class:`ForgetWorker`: wraps :class:`det_forget.engine.ForgetJob` for a ``QThread``;
  progress, result, cancellation and failure come back as signals.

Signals cross threads as queued connections to slots of objects living in the GUI
thread, so every callback below runs on the GUI thread.
"""

from __future__ import annotations

import itertools
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from det_forget.engine import ForgetJob, JobCancelled

__all__ = ["ForgetWorker", "TaskRunner"]


class _Executor(QObject):
    """Lives in the runner's thread and runs what it is sent (unless cancelled meanwhile)."""

    started = Signal(int)
    finished = Signal(int, object)
    failed = Signal(int, object, str)

    def __init__(self, cancelled: set[int]) -> None:
        super().__init__()
        self._cancelled = cancelled

    @Slot(int, object)
    def execute(self, task_id: int, fn: Callable[[], Any]) -> None:
        if task_id in self._cancelled:  # cancelled while queued: never starts
            self._cancelled.discard(task_id)
            return
        self.started.emit(task_id)
        try:
            result = fn()
        except Exception as e:  # reported to the caller's error callback, never raised
            self.failed.emit(task_id, e, traceback.format_exc())
        else:
            self.finished.emit(task_id, result)


@dataclass
class _Task:
    label: str
    on_done: Callable | None
    on_error: Callable | None
    on_cancel: Callable | None
    cancellable: bool


class TaskRunner(QObject):
    """Run callables on one background thread, in submission order.

    Each task has a label the window shows while it is queued or running. Cancelling a
    task drops it if it has not started; a running task cannot be interrupted (Python
    code is not), so its result is discarded when it ends and ``on_cancel`` runs at once.

    Args:
        parent: owning QObject (the main window).
    """

    _request = Signal(int, object)
    #: number of tasks queued or running changed (idle when 0)
    pending_changed = Signal(int)
    #: the labels of the tasks queued or running, running first (empty: idle)
    activity_changed = Signal(list)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("det_forget-tasks")
        self._cancelled: set[int] = set()
        self._executor = _Executor(self._cancelled)
        self._executor.moveToThread(self._thread)
        self._request.connect(self._executor.execute)
        self._executor.started.connect(self._on_started)
        self._executor.finished.connect(self._on_finished)
        self._executor.failed.connect(self._on_failed)
        self._tasks: dict[int, _Task] = {}
        self._running: int | None = None
        self._ids = itertools.count()
        self._thread.start()

    @property
    def pending(self) -> int:
        """Tasks queued or running (cancelled ones not counted)."""
        return len(self._tasks)

    def labels(self) -> list[str]:
        """Labels of the tasks queued or running, the running one first."""
        order = sorted(self._tasks, key=lambda i: (i != self._running, i))
        return [self._tasks[i].label for i in order]

    def cancellable(self) -> bool:
        """Whether a task queued or running may be cancelled."""
        return any(t.cancellable for t in self._tasks.values())

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException, str], None] | None = None,
        *,
        label: str = "working",
        on_cancel: Callable[[], None] | None = None,
        cancellable: bool = True,
    ) -> int:
        """Queue ``fn``; ``on_done(result)`` or ``on_error(exception, traceback)`` follow.

        Args:
            fn: the work (runs on the runner's thread).
            on_done: called with its result on the GUI thread.
            on_error: called with the exception and traceback on the GUI thread.
            label: what the task does, shown while it is queued or running.
            on_cancel: called (on the GUI thread) when the task is cancelled.
            cancellable: whether :meth:`cancel_all` may cancel it (detections of the
                image shown, merging a job's start model are not).

        Returns:
            The task id.
        """
        task_id = next(self._ids)
        self._tasks[task_id] = _Task(label, on_done, on_error, on_cancel, cancellable)
        self._changed()
        self._request.emit(task_id, fn)
        return task_id

    def cancel(self, task_id: int) -> bool:
        """Cancel one task (see the class docstring). Returns whether it was pending."""
        task = self._tasks.pop(task_id, None)
        if task is None:
            return False
        if task_id != self._running:
            self._cancelled.add(task_id)
        self._changed()
        if task.on_cancel is not None:
            task.on_cancel()
        return True

    def cancel_all(self) -> int:
        """Cancel every cancellable task. Returns how many were cancelled."""
        ids = [i for i, t in self._tasks.items() if t.cancellable]
        return sum(self.cancel(i) for i in ids)

    def _changed(self) -> None:
        self.pending_changed.emit(self.pending)
        self.activity_changed.emit(self.labels())

    @Slot(int)
    def _on_started(self, task_id: int) -> None:
        self._running = task_id
        if task_id in self._tasks:
            self._changed()

    def _pop(self, task_id: int) -> _Task | None:
        if self._running == task_id:
            self._running = None
        task = self._tasks.pop(task_id, None)
        if task is not None:
            self._changed()
        return task

    @Slot(int, object)
    def _on_finished(self, task_id: int, result: Any) -> None:
        task = self._pop(task_id)
        if task is not None and task.on_done is not None:
            task.on_done(result)

    @Slot(int, object, str)
    def _on_failed(self, task_id: int, error: BaseException, tb: str) -> None:
        task = self._pop(task_id)
        if task is not None and task.on_error is not None:
            task.on_error(error, tb)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop the thread after the task that is running (queued ones are dropped)."""
        self._cancelled.update(self._tasks)
        self._tasks.clear()
        self._thread.quit()
        self._thread.wait(timeout_ms)


class ForgetWorker(QObject):
    """Runs one :class:`ForgetJob` when its thread starts (``thread.started -> run``).

    Args:
        cfg: the forgetting config of the job.
    """

    progress = Signal(object)  # JobProgress
    finished = Signal(object)  # JobResult, model in eval mode
    cancelled = Signal(str)
    failed = Signal(str, str)  # message, traceback
    done = Signal()  # after any of the three above

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Stop at the next training step (safe from any thread)."""
        self.cancel_event.set()

    @Slot()
    def run(self) -> None:
        try:
            job = ForgetJob(
                self.cfg, on_progress=self.progress.emit, cancel_event=self.cancel_event
            )
            result = job.run()
            result.model.eval()
        except JobCancelled as e:
            self.cancelled.emit(str(e))
        except Exception as e:  # shown to the user; the app keeps running
            self.failed.emit(f"{type(e).__name__}: {e}", traceback.format_exc())
        else:
            self.finished.emit(result)
        self.done.emit()

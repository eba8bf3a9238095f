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
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from det_forget.engine import ForgetJob, JobCancelled

__all__ = ["ForgetWorker", "TaskRunner"]


class _Executor(QObject):
    """Lives in the runner's thread and runs what it is sent."""

    finished = Signal(int, object)
    failed = Signal(int, object, str)

    @Slot(int, object)
    def execute(self, task_id: int, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except Exception as e:  # reported to the caller's error callback, never raised
            self.failed.emit(task_id, e, traceback.format_exc())
        else:
            self.finished.emit(task_id, result)


class TaskRunner(QObject):
    """Run callables on one background thread, in submission order.

    Args:
        parent: owning QObject (the main window).
    """

    _request = Signal(int, object)
    #: number of tasks queued or running changed (idle when 0)
    pending_changed = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("det_forget-tasks")
        self._executor = _Executor()
        self._executor.moveToThread(self._thread)
        self._request.connect(self._executor.execute)
        self._executor.finished.connect(self._on_finished)
        self._executor.failed.connect(self._on_failed)
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self._ids = itertools.count()
        self._thread.start()

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
        return len(self._callbacks)

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException, str], None] | None = None,
    ) -> int:
        """Queue ``fn``; ``on_done(result)`` or ``on_error(exception, traceback)`` follow.

        Returns:
            The task id.
        """
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)
        self.pending_changed.emit(self.pending)
        self._request.emit(task_id, fn)
        return task_id

    @Slot(int, object)
    def _on_finished(self, task_id: int, result: Any) -> None:
        on_done, _ = self._callbacks.pop(task_id, (None, None))
        self.pending_changed.emit(self.pending)
        if on_done is not None:
            on_done(result)

    @Slot(int, object, str)
    def _on_failed(self, task_id: int, error: BaseException, tb: str) -> None:
        _, on_error = self._callbacks.pop(task_id, (None, None))
        self.pending_changed.emit(self.pending)
        if on_error is not None:
            on_error(error, tb)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop the thread after the task that is running (queued ones are dropped)."""
        self._callbacks.clear()
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

"""The forgetting job: its config, its thread, cancelling it, and what it reports.

:class:`JobController` runs one :class:`det_forget.engine.ForgetJob` at a time in its own
``QThread`` (a :class:`~gui.workers.ForgetWorker`). The config comes from
:func:`det_forget.engine.job_config.build_job_config`, so the app checks a job exactly as
the library does: the method must be one the model's task type runs, the classes must be
the model's. Every signal is delivered on the GUI thread.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from det_forget.engine import JobProgress, JobResult
from det_forget.engine.inference import save_merged_checkpoint
from det_forget.engine.job_config import build_job_config, job_output_dir
from det_forget.forgetting.run_dir import RunDirectory
from det_forget.utils.io import atomic_write

from ..session import ModelSession
from ..views.forget_panel import ForgetSettings
from ..workers import ForgetWorker, TaskRunner
from .errors import ActionRefused

__all__ = ["APP_JOB_OPTIONS", "CANCELLED_MARKER", "JobController", "check_job_config", "job_config"]

#: Written into a cancelled job's folder when it keeps finished outputs (earlier tasks).
CANCELLED_MARKER = "CANCELLED"

logger = logging.getLogger(__name__)

#: Overrides every job the app starts gets before the user's "More options": forked data
#: loader workers and a Qt process do not mix well, and the app's data is small.
APP_JOB_OPTIONS = ("DATALOADER.NUM_WORKERS", "0")

#: File the loaded adapters are merged into when a job continues from them.
START_CHECKPOINT = "start_model_merged.pth"


def job_config(
    session: ModelSession, classes: Sequence[str], settings: ForgetSettings, output_root: str
) -> Any:
    """The config of a job forgetting ``classes`` of the session's model with ``settings``.

    Args:
        session: the loaded model (its forgetting config and checkpoint are the start).
        classes: the checked class names.
        settings: the forget panel's settings.
        output_root: parent folder of the job's output when ``settings`` names none.

    Raises:
        ValueError: a setting, a class or an extra option is not valid (the message
            says which and what would be).
    """
    root = settings.output_root or output_root
    return build_job_config(
        session.cfg,
        classes=classes,
        class_names=session.class_names,
        method=settings.method,
        max_iter=settings.max_iter,
        data_ratio=settings.data_ratio,
        base_lr=settings.base_lr,
        weights=session.loaded.weights,
        output_dir=job_output_dir(root, classes),
        extra_opts=[*APP_JOB_OPTIONS, *settings.extra_opts()],
    )


def check_job_config(cfg: Any) -> None:
    """Refuse, before a job starts, the settings that would only fail inside it.

    The library's :func:`build_job_config` checks the method, the classes and the keys;
    this checks the values a training loop asserts on much later (batch size, learning
    rate, iterations, image sizes, loader workers) and that the datasets are registered.

    Raises:
        ValueError: the first bad value, named with what would be valid.
    """
    from detectron2.data import DatasetCatalog

    checks = [
        ("SOLVER.IMS_PER_BATCH", cfg.SOLVER.IMS_PER_BATCH, lambda v: v >= 1, "at least 1"),
        ("SOLVER.BASE_LR", cfg.SOLVER.BASE_LR, lambda v: v > 0, "above 0"),
        ("FORGET.MAX_ITER", cfg.FORGET.MAX_ITER, lambda v: v >= 1, "at least 1"),
        ("DATALOADER.NUM_WORKERS", cfg.DATALOADER.NUM_WORKERS, lambda v: v >= 0, "0 or more"),
        ("INPUT.MAX_SIZE_TRAIN", cfg.INPUT.MAX_SIZE_TRAIN, lambda v: v >= 1, "at least 1"),
        ("INPUT.MAX_SIZE_TEST", cfg.INPUT.MAX_SIZE_TEST, lambda v: v >= 1, "at least 1"),
        ("INPUT.MIN_SIZE_TEST", cfg.INPUT.MIN_SIZE_TEST, lambda v: v >= 0, "0 or more"),
    ]
    sizes = cfg.INPUT.MIN_SIZE_TRAIN
    sizes = sizes if isinstance(sizes, list | tuple) else [sizes]
    checks.append(
        ("INPUT.MIN_SIZE_TRAIN", tuple(sizes), lambda v: all(x >= 1 for x in v), "sizes ≥ 1")
    )
    for key, value, ok, valid in checks:
        if not ok(value):
            raise ValueError(f"{key} is {value!r}; it must be {valid}.")
    registered = set(DatasetCatalog.list())
    for key in ("TRAIN", "TEST"):
        for name in getattr(cfg.DATASETS, key):
            if name not in registered:
                raise ValueError(
                    f"DATASETS.{key} names {name!r}, which is not a registered dataset."
                )


class JobController(QObject):
    """Starts, cancels and reports the app's forgetting jobs (one at a time).

    Args:
        runner: the app's background runner (merging loaded adapters before a job).
        parent: owning QObject.

    Signals:
        started(object): the job's config, when its thread starts.
        progress(object): a :class:`JobProgress` after every step.
        finished(object): the :class:`JobResult`.
        cancelled(str): the job stopped on request; the loaded model is untouched.
        failed(str, str): the job raised (message, traceback).
        prepare_failed(str, object, str): the start model could not be written (title,
            exception, traceback).
        running_changed(bool): a job thread started or ended.
    """

    started = Signal(object)
    progress = Signal(object)
    finished = Signal(object)
    cancelled = Signal(str)
    failed = Signal(str, str)
    prepare_failed = Signal(str, object, str)
    running_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.cfg: Any = None  # the last job's config
        self._thread: QThread | None = None
        self._worker: ForgetWorker | None = None

    @property
    def running(self) -> bool:
        """A job thread is running (from start to its thread's end)."""
        return self._thread is not None

    def start(
        self,
        session: ModelSession | None,
        classes: Sequence[str],
        settings: ForgetSettings,
        output_root: str,
    ) -> Any:
        """Forget ``classes`` of the session's model in a worker thread.

        With loaded adapters the job continues from them: they are merged into a plain
        checkpoint (``start_model_merged.pth`` in the job's folder) on the runner first.

        Returns:
            The job's config (``None`` when a job is running already).

        Raises:
            ActionRefused: no model, nothing checked, every class checked, or settings
                the job cannot run with.
        """
        if self.running:
            return None
        if session is None:
            raise ActionRefused("No model", "Load a model first (File ▸ Load demo model).")
        if not classes:
            raise ActionRefused(
                "Nothing selected", "Check at least one category to forget (Categories tab)."
            )
        if len(set(classes)) >= len(session.class_names):
            raise ActionRefused("Nothing left", "Every class is checked; keep at least one.")
        try:
            cfg = job_config(session, classes, settings, output_root)
            check_job_config(cfg)
        except ValueError as e:
            raise ActionRefused("Invalid settings", str(e)) from e
        if session.has_adapters:
            # The job builds its model from a checkpoint: continue from the loaded
            # adapters by starting from them merged into a plain checkpoint.
            start = os.path.join(cfg.OUTPUT_DIR, START_CHECKPOINT)
            cfg.MODEL.WEIGHTS = start
            self.runner.submit(
                functools.partial(save_merged_checkpoint, session.loaded.model, start),
                lambda _: self._launch(cfg),
                lambda e, tb: self.prepare_failed.emit("Cannot prepare the start model", e, tb),
                label="Merging the loaded adapters into the job's start model",
                cancellable=False,
            )
        else:
            self._launch(cfg)
        return cfg

    def _launch(self, cfg: Any) -> None:
        thread = QThread(self)
        thread.setObjectName("det_forget-job")
        worker = ForgetWorker(cfg)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        worker.done.connect(thread.quit)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker, self.cfg = thread, worker, cfg
        self.running_changed.emit(True)
        logger.info("Forgetting %s -> %s", list(cfg.FORGET.CLASSES), cfg.OUTPUT_DIR)
        thread.start()
        self.started.emit(cfg)

    def cancel(self) -> bool:
        """Stop the running job at its next step (the loaded model is not touched).

        Returns:
            Whether a job was running.
        """
        if self._worker is None:
            return False
        self._worker.cancel()
        return True

    def clean_partial_run(self) -> str:
        """After a cancelled job: remove its folder when it holds no finished task, else
        mark it with a ``CANCELLED`` file. Returns what was done, for the user."""
        if self.cfg is None or not self.cfg.OUTPUT_DIR:
            return ""
        run = RunDirectory(self.cfg.OUTPUT_DIR)
        if not run.path.exists():
            return "no run folder was written"
        if not run.finished_outputs():
            # job_output_dir gave this job a new folder: nothing in it predates the job.
            shutil.rmtree(run.path, ignore_errors=True)
            return f"the partial run folder {run.path} was removed"
        with atomic_write(run.path / CANCELLED_MARKER) as f:
            f.write("cancelled from the det_forget app; the tasks in history.json finished\n")
        return f"{run.path} keeps its finished tasks and is marked {CANCELLED_MARKER}"

    @Slot(object)
    def _on_progress(self, progress: JobProgress) -> None:
        self.progress.emit(progress)

    @Slot(object)
    def _on_finished(self, result: JobResult) -> None:
        self.finished.emit(result)

    @Slot(str)
    def _on_cancelled(self, message: str) -> None:
        self.cancelled.emit(message)

    @Slot(str, str)
    def _on_failed(self, message: str, tb: str) -> None:
        self.failed.emit(message, tb)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.deleteLater()
        self.running_changed.emit(False)

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Cancel a running job and wait for its thread."""
        self.cancel()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(timeout_ms)

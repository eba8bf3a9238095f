"""``ForgetJob``: run the same forgetting as ``tools/train_net.py`` from Python, with progress
callbacks and cooperative cancellation (what the desktop app's worker thread calls).

The job trains on its own copy of the model built from the config; whatever model the
caller holds is never touched, so a cancelled job leaves it bit-identical.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detectron2.engine.train_loop import HookBase

from .forget_trainer import ForgetTaskHook, ForgetTrainer, finalize_forget_config

__all__ = ["ForgetJob", "JobCancelled", "JobProgress", "JobResult"]

logger = logging.getLogger(__name__)


class JobCancelled(RuntimeError):
    """Raised inside the training loop when the job's cancel event is set."""


@dataclass
class JobProgress:
    """One progress report (after every training step, and at task boundaries)."""

    iteration: int
    max_iter: int
    task: int
    num_tasks: int
    eta_seconds: float | None
    losses: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        """Share of iterations done, in [0, 1]."""
        return self.iteration / max(self.max_iter, 1)


@dataclass
class JobResult:
    """What a finished job produced."""

    history: list[dict[str, Any]]
    output_dir: str
    model: Any  # the trained ForgettingDetector (adapters not merged)


class _ProgressHook(HookBase):
    def __init__(self, job: ForgetJob) -> None:
        self.job = job
        self.start = time.perf_counter()

    def before_step(self) -> None:
        if self.job.cancel_event.is_set():
            raise JobCancelled(f"cancelled at iteration {self.trainer.iter}")

    def after_step(self) -> None:
        it = self.trainer.iter + 1
        done = it - self.trainer.start_iter
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.trainer.max_iter - it) if done else None
        storage = self.trainer.storage
        losses = {
            k: float(v.latest())
            for k, v in storage.histories().items()
            if k.startswith(("loss_", "retain_loss")) or k == "total_loss"
        }
        per_task = self.trainer.cfg.FORGET.MAX_ITER
        self.job._emit(
            JobProgress(
                iteration=it,
                max_iter=self.trainer.max_iter,
                task=min((it - 1) // per_task, len(self.trainer.tasks) - 1),
                num_tasks=len(self.trainer.tasks),
                eta_seconds=eta,
                losses=losses,
                message=_stop_message(self.trainer),
            )
        )


def _stop_message(trainer) -> str:
    """The latest early stop of the run, in the log's words ("" while none stopped)."""
    for hook in getattr(trainer, "_hooks", ()):
        if isinstance(hook, ForgetTaskHook):
            stopped = [(i, s) for i, s in enumerate(hook.stoppers) if s.stopped_at is not None]
            if stopped:
                i, s = stopped[-1]
                return (
                    f"task {i + 1} stopped at iteration {s.stopped_at} of {s.max_iter}: {s.reason}"
                )
    return ""


class ForgetJob:
    """A forgetting run in-process.

    Args:
        cfg: a config with ``MODEL.META_ARCHITECTURE: ForgettingDetector`` (not frozen, or
            frozen; it is cloned).
        on_progress: called with a :class:`JobProgress` after every step (from the thread
            that runs the job).
        cancel_event: set it from any thread to stop at the next step.

    Example::

        job = ForgetJob(cfg, on_progress=print)
        result = job.run()  # or job.cancel() from another thread
    """

    def __init__(
        self,
        cfg,
        *,
        on_progress: Callable[[JobProgress], None] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg.clone()
        self.cfg.defrost()
        finalize_forget_config(self.cfg)
        self.cfg.freeze()
        self.on_progress = on_progress
        self.cancel_event = cancel_event or threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at the next step (thread-safe)."""
        self.cancel_event.set()

    def _emit(self, progress: JobProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def run(self) -> JobResult:
        """Train, evaluate and write the outputs, as ``train_net.py`` does.

        Raises:
            JobCancelled: the cancel event was set; no merged model or report of a
                finished run is written.
        """
        trainer = ForgetTrainer(self.cfg)
        trainer.register_hooks([_ProgressHook(self)])
        trainer.resume_or_load(resume=False)
        history = trainer.train()
        return JobResult(history=history, output_dir=self.cfg.OUTPUT_DIR, model=trainer.model)

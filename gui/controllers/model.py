"""Loading a model: config + checkpoint (+ adapters in task order) into a session.

:func:`load_session` does the work (no Qt; it runs on the app's background runner) and
:class:`ModelLoader` submits it and reports on the GUI thread.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from det_forget.engine.inference import (
    build_config,
    forgetting_config,
    load_detector,
    read_forget_history,
)

from ..session import ModelSession
from ..workers import TaskRunner

__all__ = ["ModelLoader", "load_session", "resolve_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str, root: Path = REPO_ROOT) -> str:
    """A relative path as given if it exists from here, else relative to the repository."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = root / path
    return str(candidate) if candidate.exists() else path


def load_session(
    config_file: str, weights: str | None = None, adapters: Sequence[str] = ()
) -> ModelSession:
    """A session holding the detector of ``config_file`` + ``weights`` + ``adapters``.

    The session's config is the forgetting config jobs start from (``ForgettingDetector``
    around the loaded detector, ``MODEL.WEIGHTS`` the loaded checkpoint); its records are
    the history the adapters' manifests carry.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: the config is not readable.
        det_forget.checkpoint.CheckpointMismatchError: the checkpoint is of another model.
        det_forget.lora.AdapterMismatchError: an adapter was trained for another model.
    """
    cfg = build_config(config_file)
    cfg.MODEL.WEIGHTS = resolve_path(weights or cfg.MODEL.WEIGHTS)
    loaded = load_detector(cfg, cfg.MODEL.WEIGHTS, adapters)
    records = []
    for a in adapters:
        records += read_forget_history(a)
    job_cfg = forgetting_config(cfg)
    job_cfg.MODEL.WEIGHTS = loaded.weights
    session = ModelSession(config_file, job_cfg, loaded)
    session.records = list(records)
    return session


class ModelLoader(QObject):
    """Loads models on the app's runner.

    Signals:
        loaded(object): the new :class:`~gui.session.ModelSession`.
        failed(str, object, str): loading raised (title, exception, traceback).
        cancelled(str): loading was cancelled (the config file); nothing changes.
    """

    loaded = Signal(object)
    failed = Signal(str, object, str)
    cancelled = Signal(str)  # the config whose loading was cancelled

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner

    def load(
        self, config_file: str, weights: str | None = None, adapters: Sequence[str] = ()
    ) -> None:
        """Load in the background; ``loaded`` or ``failed`` follows."""
        self.runner.submit(
            functools.partial(load_session, config_file, weights, tuple(adapters)),
            self.loaded.emit,
            lambda e, tb: self.failed.emit("Cannot load the model", e, tb),
            label=f"Loading {os.path.basename(weights or config_file)}",
            on_cancel=lambda: self.cancelled.emit(config_file),
        )

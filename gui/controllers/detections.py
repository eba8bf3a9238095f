"""Detections for the compare view: each (model, image) runs once, in the background.

:class:`DetectionController` submits :meth:`ModelSession.predict` to the app's runner for
the sources a pane shows, skips what is cached or already queued, and says when an
image's detections are ready (the session caches them; the score slider only filters).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal

from ..session import ModelSession
from ..workers import TaskRunner

__all__ = ["DetectionController"]


class DetectionController(QObject):
    """Runs the held models on images, once per (session, source, image).

    Signals:
        ready(object, str): detections of a session (the object) on an image path are
            cached.
        failed(str, object, str): a model raised on an image (title, exception,
            traceback).
    """

    ready = Signal(object, str)
    failed = Signal(str, object, str)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self._pending: set[tuple[int, str, str]] = set()

    def request(self, session: ModelSession, image_path: str, sources: Iterable[str | None]) -> int:
        """Queue what is neither cached nor queued yet.

        Returns:
            How many predictions were queued.
        """
        queued = 0
        for source in sources:
            if source is None or session.cached(source, image_path) is not None:
                continue
            key = (id(session), source, image_path)
            if key in self._pending:
                continue
            self._pending.add(key)
            self.runner.submit(
                functools.partial(session.predict, source, image_path),
                functools.partial(self._on_done, session, key),
                functools.partial(self._on_error, key),
                label=f"Detecting on {os.path.basename(image_path)} ({source} model)",
                cancellable=False,
            )
            queued += 1
        return queued

    def _on_done(self, session: ModelSession, key, _detections) -> None:
        self._pending.discard(key)
        self.ready.emit(session, key[2])

    def _on_error(self, key, error: BaseException, tb: str) -> None:
        self._pending.discard(key)
        self.failed.emit(f"Cannot run the model on {os.path.basename(key[2])}", error, tb)

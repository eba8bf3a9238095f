"""Launch timings of the app, for ``benchmarks/gui_startup.py`` (``DET_FORGET_GUI_PROBE``).

Times are seconds since ``DET_FORGET_GUI_LAUNCH_T`` (the wall-clock time the benchmark
started the process; the interpreter's start is included) or since this module's import.
A 20 ms heartbeat timer measures how long the event loop went without answering, per
phase (importing, loading the model and images, detecting the first image). When the
first image's detections are drawn the probe writes its JSON and quits the app.
"""

from __future__ import annotations

import json
import os
import time

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

__all__ = ["StartupProbe"]

HEARTBEAT_MS = 20


def _now() -> float:
    return time.time()


class StartupProbe(QObject):
    """Watches the startup window, then the main window, and writes what it saw.

    Args:
        path: the JSON file to write.
        startup: the :class:`gui.startup.StartupWindow`.
    """

    def __init__(self, path: str, startup) -> None:
        super().__init__()
        self.path = path
        self.t0 = float(os.environ.get("DET_FORGET_GUI_LAUNCH_T") or _now())
        self.events: dict[str, float] = {"probe_created": self._t()}
        self.phase = "importing"
        self.max_gap: dict[str, float] = {}
        self._last = _now()
        startup.installEventFilter(self)
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(HEARTBEAT_MS)
        self._heartbeat.timeout.connect(self._beat)
        self._heartbeat.start()
        startup.ready.connect(lambda _: self._mark("imported", "handing over"))

    def _t(self) -> float:
        return round(_now() - self.t0, 3)

    def _mark(self, event: str, next_phase: str | None = None) -> None:
        self.events.setdefault(event, self._t())
        if next_phase:
            self._beat()
            self.phase = next_phase

    def _beat(self) -> None:
        now = _now()
        gap = now - self._last
        self._last = now
        self.max_gap[self.phase] = round(max(self.max_gap.get(self.phase, 0.0), gap), 3)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Paint:
            self.events.setdefault("first_paint", self._t())
        return False

    def attach(self, window) -> None:
        """Follow the main window until the first image's detections are drawn."""
        self._mark("main_window_shown", "loading model and images")
        window.model_loaded.connect(lambda: self._mark("model_loaded"))
        window.images_loaded.connect(lambda _: self._mark("images_listed", "detecting"))
        window.detections_updated.connect(self._finish)
        window.error_shown.connect(lambda t, m: self.events.setdefault(f"error: {t}: {m}", 0))

    def _finish(self) -> None:
        self._mark("first_detections_drawn", "done")
        result = {
            "seconds_since_launch": self.events,
            "max_event_loop_gap_s": self.max_gap,
            "heartbeat_ms": HEARTBEAT_MS,
        }
        with open(self.path, "w") as f:
            json.dump(result, f, indent=2)
        QTimer.singleShot(0, QApplication.instance().closeAllWindows)

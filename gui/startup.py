"""The window the app paints in its first second, while torch and detectron2 import.

Importing :mod:`gui.main_window` imports torch, detectron2 and det_forget (15 s and more on
2 cores). :class:`StartupWindow` is plain Qt: it is shown before that import starts, runs
the import in a worker thread, shows what it is waiting for with the elapsed time, and
hands over to the main window (same place, same size) when the import is done. The event
loop keeps answering meanwhile (the import only holds the interpreter lock in short slices).
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["StartupWindow", "import_main_window"]

WINDOW_TITLE = "det_forget — forget classes of a detector"
WINDOW_SIZE = QSize(1500, 900)


def import_main_window() -> Any:
    """The :mod:`gui.main_window` module (imports torch, detectron2 and det_forget)."""
    return importlib.import_module("gui.main_window")


class _Importer(QObject):
    """Runs the import in its thread; reports the module or the error."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as e:  # shown in the window; the user can quit
            self.failed.emit(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        else:
            self.done.emit(result)


class StartupWindow(QMainWindow):
    """Painted at once; imports the app in the background and then hands over.

    Args:
        importer: what to import (default :func:`import_main_window`); returns what
            ``ready`` carries.

    Signals:
        ready(object): the import finished (its result).
        failed(str): the import raised (message and traceback; also shown).
    """

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, importer: Callable[[], Any] = import_main_window) -> None:
        super().__init__()
        self.setWindowTitle(WINDOW_TITLE)
        self.resize(WINDOW_SIZE)
        self.started_at = time.perf_counter()
        self.title = QLabel("<h2>det_forget</h2>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.message = QLabel("Starting: importing torch, detectron2 and det_forget …")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.elapsed = QLabel("0 s")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # busy indicator: the import has no measurable progress
        self.busy.setMaximumWidth(420)
        self.quit_button = QPushButton("Quit")
        self.quit_button.clicked.connect(self.close)
        box = QWidget()
        column = QVBoxLayout(box)
        column.addStretch(1)
        for w in (self.title, self.message, self.busy, self.elapsed, self.quit_button):
            column.addWidget(w, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addStretch(2)
        self.setCentralWidget(box)
        self.statusBar().showMessage("Starting …")
        self._tick = QTimer(self)
        self._tick.setInterval(250)
        self._tick.timeout.connect(self._update_elapsed)
        self._thread = QThread()
        self._thread.setObjectName("det_forget-import")
        self._importer = _Importer(importer)
        self._importer.moveToThread(self._thread)
        self._thread.started.connect(self._importer.run)
        self._importer.done.connect(self._on_done)
        self._importer.failed.connect(self._on_failed)
        self._importer.done.connect(self._thread.quit)
        self._importer.failed.connect(self._thread.quit)

    def start(self) -> None:
        """Start the import (call after :meth:`show`)."""
        self._tick.start()
        self._thread.start()

    @property
    def importing(self) -> bool:
        return self._thread.isRunning()

    def seconds(self) -> float:
        return time.perf_counter() - self.started_at

    def _update_elapsed(self) -> None:
        self.elapsed.setText(f"{self.seconds():.0f} s")

    def _join(self) -> None:
        # The worker has returned from the import; let its thread end before the window
        # (which owns the QThread object) can be deleted.
        self._thread.quit()
        self._thread.wait(10000)

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._join()
        self._tick.stop()
        self.message.setText("Started.")
        self.ready.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._join()
        self._tick.stop()
        self.busy.setRange(0, 1)
        self.message.setText("det_forget could not start:\n" + message)
        self.failed.emit(message)

    def closeEvent(self, event) -> None:  # noqa: N802
        # An import cannot be interrupted: wait for it so Python does not exit under it.
        if self._thread.isRunning():
            self.hide()
            self._thread.wait()
        super().closeEvent(event)

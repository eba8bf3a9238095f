"""A ``logging.Handler`` that forwards records to the GUI thread through a Qt signal."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

__all__ = ["QtLogHandler", "attach_log_handler", "detach_log_handler", "LOGGER_NAMES"]

#: Loggers whose INFO records the app shows (det_forget's and detectron2's trainer output).
LOGGER_NAMES = ("det_forget", "detectron2", "d2", "fvcore")


class _Emitter(QObject):
    message = Signal(str)


class QtLogHandler(logging.Handler):
    """Formats each record and emits it as ``handler.emitter.message``.

    Records may come from any thread (the forgetting job logs from its worker); Qt queues
    the signal to the receiver's thread, so a widget slot can append the text directly.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.emitter = _Emitter()
        self.setFormatter(
            logging.Formatter("[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emitter.message.emit(self.format(record))
        except RuntimeError:  # the emitter was deleted while the app shut down
            pass


def attach_log_handler(handler: logging.Handler) -> dict[str, int]:
    """Add ``handler`` to :data:`LOGGER_NAMES`, lowering them to INFO if needed.

    Returns:
        The previous levels, for :func:`detach_log_handler`.
    """
    previous = {}
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    return previous


def detach_log_handler(handler: logging.Handler, previous: dict[str, int]) -> None:
    """Undo :func:`attach_log_handler`."""
    for name, level in previous.items():
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(level)

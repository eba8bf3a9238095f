"""The one error controllers raise at the user: an action that cannot run now, and why."""

from __future__ import annotations

__all__ = ["ActionRefused"]


class ActionRefused(Exception):
    """What the user asked for cannot run now (no model, nothing selected, …).

    Args:
        title: a short title for the error dialog.
        message: what is missing and what to do about it.
    """

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message

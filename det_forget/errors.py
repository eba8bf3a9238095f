"""User errors: what a person gave det_forget is wrong, and one line says what and how to fix it.

Every exception here is a ``ValueError``, so ``except ValueError`` callers keep working.
The command-line tools run their ``main`` through :func:`run_tool`, which prints a user
error as ``error: <message>`` (and its hint) on stderr and exits with status 2; any other
exception is a bug and keeps its traceback. ``--debug`` shows the traceback of user
errors too.

What counts as a user error (:func:`is_user_error`): a :class:`UserError`; an ``OSError``
(a path that does not exist, is not writable, is a file where a folder is needed); a
``ValueError`` that det_forget's own code raised (its checks of configs, files and data
name the bad value by convention), but not one raised inside a library.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

__all__ = [
    "ConfigValueError",
    "DataError",
    "OutputDirError",
    "UnfitFileError",
    "UnknownNameError",
    "UnsafeFileError",
    "UserError",
    "format_user_error",
    "is_user_error",
    "run_tool",
]

# det_forget's own code: the package and the tools next to it.
_OWN_CODE = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools") + os.sep,
)


class UserError(ValueError):
    """Something the user gave is wrong; the message names it and what would be valid.

    Args:
        message: what is wrong.
        hint: how to fix it (printed on its own line by :func:`run_tool`).
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ConfigValueError(UserError):
    """A config key has a value det_forget cannot use, or the command line is malformed."""


class UnknownNameError(UserError):
    """A class, method, dataset or task type name that does not exist (lists the valid ones)."""


class UnfitFileError(UserError):
    """A checkpoint or adapter that is unreadable, corrupt, or made for another model."""


class UnsafeFileError(UnfitFileError):
    """A weights file that holds Python objects other than tensors and plain containers;
    loading it would run code from the file, so det_forget refuses it."""


class DataError(UserError):
    """A dataset that cannot be used (unknown category, unreadable image, empty split)."""


class OutputDirError(UserError):
    """``OUTPUT_DIR`` cannot take this run (a finished run is there, or it is not writable)."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user error (see the module docstring) rather than a bug."""
    if isinstance(exc, (UserError, OSError)):
        return True
    if isinstance(exc, ValueError):
        tb = exc.__traceback__
        last = None
        while tb is not None:
            last = tb.tb_frame.f_code.co_filename
            tb = tb.tb_next
        return last is not None and os.path.abspath(last).startswith(_OWN_CODE)
    return False


def format_user_error(exc: BaseException) -> str:
    """``error: <message>`` (+ ``hint: ...``) for ``exc``."""
    message = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    elif isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])
    text = f"error: {message or type(exc).__name__}"
    hint = getattr(exc, "hint", "")
    if hint:
        text += f"\nhint: {hint}"
    return text


def run_tool(
    main: Callable[..., object], argv: Sequence[str] | None = None, *, debug: bool | None = None
) -> int:
    """Run a tool's ``main(argv)``; a user error becomes one line on stderr and status 2.

    Args:
        main: the tool's entry point; its return value is the exit status (``None``: 0).
        argv: its arguments (default ``sys.argv[1:]``).
        debug: show tracebacks of user errors too (default: ``--debug`` is in ``argv``).

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if debug is None:
        debug = "--debug" in argv
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_user_error(e) and not _failed_in_worker(e):
            raise
        if debug:
            traceback.print_exc()
        elif not _failed_in_worker(e):
            print(format_user_error(e), file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


def _failed_in_worker(exc: BaseException) -> bool:
    # detectron2's launch with several processes: a worker that printed its user error
    # and exited with status 2 reaches the parent as ProcessExitedException.
    return type(exc).__name__ == "ProcessExitedException" and getattr(exc, "exit_code", 0) == 2

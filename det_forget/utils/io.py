"""Atomic writes, so a killed process never leaves a half-written checkpoint or adapter.

Every file det_forget writes for a user (adapters, merged checkpoints, reports) goes
through these helpers: the data lands in a temporary sibling first and is moved into
place with ``os.replace``, which is atomic on POSIX and Windows within one filesystem.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_directory", "atomic_torch_save", "remove_stale_temporaries"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, base: int) -> None:
    # mkstemp/mkdtemp create private (0600/0700) entries; a saved adapter or checkpoint
    # should get the permissions any normally created file would.
    os.chmod(path, base & ~_umask())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and move it onto ``path`` on success.

    Args:
        path: final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and
        ``path`` is left exactly as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _default_mode(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into place on success.

    An existing directory at ``path`` is replaced only after the new one is complete;
    on failure it is untouched and the temporary directory is removed.

    Yields:
        The temporary directory to write into.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _default_mode(tmp, 0o777)
    # Writers used inside (safetensors' save_file) may create private 0600 files.
    for entry in tmp.rglob("*"):
        _default_mode(entry, 0o777 if entry.is_dir() else 0o666)
    backup = None
    if path.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        backup.rmdir()
        os.replace(path, backup)
    os.replace(tmp, path)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed atomic writes left in ``folder`` (and its sub-folders).

    Only names these helpers create are touched: ``.<name>.<random>.tmp`` files and
    folders, and ``.<name>.<random>.old`` folders of an interrupted directory swap.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.rglob(".*.*.tmp")) + sorted(folder.rglob(".*.*.old")):
        if not entry.exists():
            continue  # inside a folder removed already
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed

"""Small shared utilities: atomic file writes."""

from .io import atomic_directory, atomic_torch_save, atomic_write

__all__ = ["atomic_directory", "atomic_write", "atomic_torch_save"]

"""The images to browse: a dataset split or a folder, by file name."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

__all__ = ["ImageEntry", "ImageListModel"]

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class ImageEntry:
    """One image: its file and, for dataset images, its ground-truth annotations."""

    path: str
    annotations: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


class ImageListModel(QAbstractListModel):
    """File names for display; the full path is the tooltip and ``UserRole``."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._entries: list[ImageEntry] = []
        self.source = ""

    def set_entries(self, entries: Iterable[ImageEntry], source: str = "") -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self.source = source
        self.endResetModel()

    def entries(self) -> list[ImageEntry]:
        return list(self._entries)

    def entry(self, row: int) -> ImageEntry:
        return self._entries[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.name
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.UserRole):
            return entry.path
        return None

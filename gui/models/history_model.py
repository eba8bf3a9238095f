"""The forgetting history: one row per finished task."""

from __future__ import annotations

import os
from collections.abc import Iterable

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from det_forget.engine.inference import ForgetRecord

__all__ = ["HistoryModel"]

from .table_base import ColumnsTableModel

_Index = QModelIndex | QPersistentModelIndex


def _pair(summary: dict | None, group: str) -> str:
    if not summary:
        return ""
    b = (summary.get("before") or {}).get(group)
    a = (summary.get("after") or {}).get(group)
    if a is None:
        return ""
    return f"{a:.1f}" if b is None else f"{b:.1f} → {a:.1f}"


class HistoryModel(ColumnsTableModel):
    """Columns: task, forgotten classes, date, AP_f and AP_r before → after, H-Mean, adapter."""

    COLUMNS = ("Task", "Forgotten", "Date", "AP_f", "AP_r", "H-Mean", "Adapter")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._records: list[ForgetRecord] = []

    def set_records(self, records: Iterable[ForgetRecord]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.endResetModel()

    def record(self, row: int) -> ForgetRecord:
        return self._records[row]

    @property
    def records(self) -> list[ForgetRecord]:
        return list(self._records)

    def _row_count(self) -> int:
        return len(self._records)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        rec = self._records[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            h = (rec.summary or {}).get("h_mean")
            return [
                str(rec.task),
                ", ".join(rec.classes.get("forget", [])),
                rec.date.strftime("%Y-%m-%d %H:%M") if rec.date else "",
                _pair(rec.summary, "forget"),
                _pair(rec.summary, "retain"),
                "" if h is None else f"{h:.1f}",
                os.path.basename(rec.adapter) if rec.adapter else "",
            ][col]
        if role == Qt.ItemDataRole.ToolTipRole and col == 6:
            return rec.adapter
        return None

"""The model's categories: checkable (the classes to forget), with AP before and after."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from ..colors import class_color
from .table_base import ColumnsTableModel

__all__ = ["CategoryModel"]

_Index = QModelIndex | QPersistentModelIndex


def _fmt_ap(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


class CategoryModel(ColumnsTableModel):
    """Rows are classes in contiguous-id order; column 0 is checkable.

    Columns: name (with the class colour), AP before forgetting, AP after.
    """

    COLUMNS = ("Category", "AP before", "AP after")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._checked: set[int] = set()
        self._before: dict[str, float | None] = {}
        self._after: dict[str, float | None] = {}
        self._checkable = True

    # -- contents --
    def set_classes(self, names: Iterable[str]) -> None:
        """Replace the classes; clears checks and AP values."""
        self.beginResetModel()
        self._names = list(names)
        self._checked.clear()
        self._before, self._after = {}, {}
        self.endResetModel()

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def set_ap(
        self,
        before: Mapping[str, float | None] | None = None,
        after: Mapping[str, float | None] | None = None,
    ) -> None:
        """Per-class AP (percent) by class name; ``None`` leaves a column as it is."""
        if before is not None:
            self._before = dict(before)
        if after is not None:
            self._after = dict(after)
        if self._names:
            self.dataChanged.emit(self.index(0, 1), self.index(len(self._names) - 1, 2))

    def ap_before(self, name: str) -> float | None:
        return self._before.get(name)

    def checked_names(self) -> list[str]:
        """Checked classes, in id order."""
        return [self._names[i] for i in sorted(self._checked)]

    def checked_ids(self) -> list[int]:
        return sorted(self._checked)

    def set_checked(self, names: Iterable[str], checked: bool = True) -> None:
        """Check (or uncheck) classes by name; unknown names raise ``KeyError``."""
        for name in names:
            if name not in self._names:
                raise KeyError(f"unknown category {name!r}; known: {self._names}")
            row = self._names.index(name)
            (self._checked.add if checked else self._checked.discard)(row)
            self.dataChanged.emit(self.index(row, 0), self.index(row, 0))

    def clear_checks(self) -> None:
        self.set_checked(self.checked_names(), checked=False)

    def set_checkable(self, checkable: bool) -> None:
        """Lock the checks (while a forgetting job runs on them)."""
        self._checkable = checkable
        if self._names:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._names) - 1, 0))

    # -- Qt model API --
    def _row_count(self) -> int:
        return len(self._names)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        name = self._names[row]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return name
            return _fmt_ap((self._before if col == 1 else self._after).get(name))
        if role == Qt.ItemDataRole.CheckStateRole and col == 0:
            return Qt.CheckState.Checked if row in self._checked else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return class_color(row, name)
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    def setData(self, index: _Index, value, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if not (index.isValid() and index.column() == 0 and self._checkable):
            return False
        if role != Qt.ItemDataRole.CheckStateRole:
            return False
        state = Qt.CheckState(value) if isinstance(value, int) else value
        if state == Qt.CheckState.Checked:
            self._checked.add(index.row())
        else:
            self._checked.discard(index.row())
        self.dataChanged.emit(index, index, [role])
        return True

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and self._checkable:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

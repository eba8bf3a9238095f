"""AP before vs after one forgetting task: group means, Drop, H-Mean, then every class.

Class rows are coloured by their numbers (:func:`gui.outcome.judge`): green when the class
passed its gate, red when it failed it (a retained class that lost too much, a forgotten
class still detected), grey when a number is missing; the tooltip says why.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from det_forget.engine.inference import ForgetRecord

from ..outcome import Gates, RunOutcome, judge
from .table_base import ColumnsTableModel

__all__ = ["APTableModel"]

_Index = QModelIndex | QPersistentModelIndex

_GROUP_LABELS = {
    "forget": "AP_f (forget)",
    "retain": "AP_r (retain)",
    "old": "AP_o (old)",
    "missing": "AP_m (missing)",
}


#: Row tints by verdict.
VERDICT_COLORS = {
    "pass": QColor(205, 240, 205),
    "fail": QColor(255, 190, 190),
    "unknown": QColor(232, 232, 232),
}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


class APTableModel(ColumnsTableModel):
    """Rows: one per defined group mean, Drop, H-Mean, then one per class (by group).

    Columns: name, group, before, after, change (after - before).
    """

    COLUMNS = ("Class / metric", "Group", "Before", "After", "Δ")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, str, float | None, float | None, bool]] = []
        self.gates = Gates()
        #: the verdicts of the record shown (``None``: no record)
        self.outcome: RunOutcome | None = None

    def set_record(self, record: ForgetRecord | None) -> None:
        """Show ``record`` (``None``: empty table)."""
        self.beginResetModel()
        self._rows = [] if record is None else self._build_rows(record)
        self.outcome = (
            None
            if record is None
            else judge(record.classes, record.before, record.after, self.gates)
        )
        self.endResetModel()

    def verdict(self, name: str) -> str | None:
        """``"pass"``, ``"fail"`` or ``"unknown"`` of class ``name`` (``None``: not shown)."""
        if self.outcome is None or name not in self.outcome.classes:
            return None
        return self.outcome.classes[name].verdict

    @staticmethod
    def _build_rows(rec: ForgetRecord):
        rows = []
        s = rec.summary or {}
        sb, sa = s.get("before") or {}, s.get("after") or {}
        for group, label in _GROUP_LABELS.items():
            if sa.get(group) is not None or sb.get(group) is not None:
                rows.append((label, group, sb.get(group), sa.get(group), True))
        if s.get("drop") is not None:
            rows.append(("Drop", "", None, s["drop"], True))
        if s.get("h_mean") is not None:
            rows.append(("H-Mean", "", None, s["h_mean"], True))
        before, after = rec.before or {}, rec.after or {}
        for group in _GROUP_LABELS:
            for name in rec.classes.get(group, []):
                rows.append((name, group, before.get(name), after.get(name), False))
        return rows

    def value(self, label: str, column: str = "After") -> float | None:
        """The number in row ``label`` (its first column) and ``column`` (for tests/export)."""
        col = self.COLUMNS.index(column)
        for row in self._rows:
            if row[0] == label:
                return row[col] if col in (2, 3) else None
        raise KeyError(label)

    def _row_count(self) -> int:
        return len(self._rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        name, group, before, after, is_summary = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return name
            if col == 1:
                return group
            if col == 2:
                return "" if before is None and is_summary and not group else _fmt(before)
            if col == 3:
                return _fmt(after)
            if before is None or after is None:
                return ""
            return f"{after - before:+.1f}"
        if role == Qt.ItemDataRole.FontRole and is_summary:
            font = QFont()
            font.setBold(True)
            return font
        if role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ToolTipRole) and not is_summary:
            outcome = self.outcome.classes.get(name) if self.outcome else None
            if outcome is None:
                return None
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"{outcome.verdict}: {outcome.reason} ({self.gates.describe()})"
            return VERDICT_COLORS[outcome.verdict]
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

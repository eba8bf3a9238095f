"""The categories: search, check the classes to forget, see their AP before and after."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..models import CategoryModel

__all__ = ["CategoryPanel"]


class CategoryPanel(QWidget):
    """A searchable table of the model's classes; checked rows are the forget set."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model = CategoryModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(0)
        self.search = QLineEdit(placeholderText="Search categories…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            self.table.horizontalHeader().setSectionResizeMode(
                col, QHeaderView.ResizeMode.ResizeToContents
            )
        self.clear_button = QPushButton("Uncheck all")
        self.clear_button.clicked.connect(self.model.clear_checks)
        self.summary = QLabel()
        self.model.dataChanged.connect(self._update_summary)
        self.model.modelReset.connect(self._update_summary)
        hint = QLabel("Check the classes to forget.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.clear_button)
        layout.addLayout(row)
        self._update_summary()

    def _update_summary(self, *args) -> None:
        names = self.model.checked_names()
        total = self.model.rowCount()
        self.summary.setText(f"{len(names)} of {total} checked" if total else "No model loaded")

    def set_locked(self, locked: bool) -> None:
        """Freeze the checks while a job runs."""
        self.model.set_checkable(not locked)
        self.clear_button.setEnabled(not locked)

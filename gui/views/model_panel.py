"""What is loaded: files, classes, the layers that carry adapters, and the history."""

from __future__ import annotations

import os

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from det_forget.engine.inference import ForgetRecord, LoadedDetector

from ..models import HistoryModel

__all__ = ["ModelPanel"]


class ModelPanel(QWidget):
    """Model files and adapters on top, the forgetting history (one row per task) below.

    Signals:
        record_selected(object): a history row was selected (its :class:`ForgetRecord`).
        open_run_requested(): "Open run history…" was clicked.
    """

    record_selected = Signal(object)
    open_run_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.config_label = QLabel("–")
        self.weights_label = QLabel("–")
        self.adapters_label = QLabel("none")
        self.classes_label = QLabel("–")
        for label in (self.config_label, self.weights_label, self.adapters_label):
            label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Config", self.config_label)
        form.addRow("Checkpoint", self.weights_label)
        form.addRow("Adapters", self.adapters_label)
        form.addRow("Classes", self.classes_label)
        self.adapter_layers = QListWidget()
        self.adapter_layers.setToolTip("Layers that carry a LoRA adapter")
        self.history_model = HistoryModel(self)
        self.history = QTableView()
        self.history.setModel(self.history_model)
        self.history.verticalHeader().hide()
        self.history.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.history.selectionModel().currentRowChanged.connect(self._on_row)
        self.open_run = QPushButton("Open run history…")
        self.open_run.setToolTip("A run folder (history.json + adapters/) or one adapter folder")
        self.open_run.clicked.connect(self.open_run_requested)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Layers with adapters"))
        layout.addWidget(self.adapter_layers, 1)
        layout.addWidget(QLabel("Forgetting history"))
        layout.addWidget(self.history, 2)
        layout.addWidget(self.open_run)

    def show_model(self, config_file: str, loaded: LoadedDetector) -> None:
        self.config_label.setText(config_file)
        self.config_label.setToolTip(config_file)
        self.weights_label.setText(os.path.basename(loaded.weights))
        self.weights_label.setToolTip(loaded.weights)
        self.adapters_label.setText(
            ", ".join(os.path.basename(a) for a in loaded.adapters) or "none"
        )
        self.classes_label.setText(str(len(loaded.class_names)))
        self.set_adapter_layers(loaded.adapter_layers)

    def set_adapter_layers(self, names: list[str]) -> None:
        self.adapter_layers.clear()
        self.adapter_layers.addItems(names or ["(no adapters)"])

    def set_history(self, records: list[ForgetRecord]) -> None:
        """Show ``records`` and select the last task."""
        self.history_model.set_records(records)
        if records:
            self.history.selectRow(len(records) - 1)

    def _on_row(self, current, previous) -> None:
        if current.isValid():
            self.record_selected.emit(self.history_model.record(current.row()))

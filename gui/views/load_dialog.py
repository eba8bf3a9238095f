"""The "Open model" dialog: config, checkpoint and optional adapter folders."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

__all__ = ["LoadModelDialog"]


class LoadModelDialog(QDialog):
    """Three paths; adapter folders are separated by ``;`` (loaded in task order)."""

    def __init__(
        self, parent=None, config: str = "", weights: str = "", adapters: list[str] = ()
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.config = QLineEdit(config)
        self.weights = QLineEdit(weights)
        self.adapters = QLineEdit(";".join(adapters))
        self.adapters.setPlaceholderText("optional: adapter folders, ';'-separated")
        form = QFormLayout(self)
        form.addRow("Config (.yaml)", self._with_browse(self.config, self._browse_config))
        form.addRow("Checkpoint (.pth)", self._with_browse(self.weights, self._browse_weights))
        form.addRow("Adapters", self._with_browse(self.adapters, self._browse_adapter))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(640, self.sizeHint().height())

    @staticmethod
    def _with_browse(edit: QLineEdit, slot) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(slot)
        row.addWidget(button)
        return box

    def _browse_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Config", "", "Configs (*.yaml *.yml)")
        if path:
            self.config.setText(path)

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pth *.pkl)")
        if path:
            self.weights.setText(path)

    def _browse_adapter(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Adapter folder")
        if path:
            current = [a for a in self.adapters.text().split(";") if a.strip()]
            self.adapters.setText(";".join([*current, path]))

    def values(self) -> tuple[str, str, list[str]]:
        """``(config, checkpoint, adapter folders)`` as typed."""
        adapters = [a.strip() for a in self.adapters.text().split(";") if a.strip()]
        return self.config.text().strip(), self.weights.text().strip(), adapters

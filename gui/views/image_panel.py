"""The images to browse: a registered dataset split or a folder, with search and keys."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..models import ImageEntry, ImageListModel

__all__ = ["ImagePanel", "ImageFilterProxy"]


class ImageFilterProxy(QSortFilterProxyModel):
    """The file-name search, and optionally only the images whose path is in a set."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.paths: set[str] | None = None

    def set_paths(self, paths: set[str] | None) -> None:
        self.paths = None if paths is None else set(paths)
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802
        if self.paths is not None:
            if self.sourceModel().entry(row).path not in self.paths:
                return False
        return super().filterAcceptsRow(row, parent)


class ImagePanel(QWidget):
    """Pick a source, search by file name, step with next/previous.

    Signals:
        dataset_requested(str): "Load" was clicked for a registered dataset name.
        folder_requested(): "Open folder…" was clicked.
        current_changed(object): the current :class:`ImageEntry` (or ``None``).
    """

    dataset_requested = Signal(str)
    folder_requested = Signal()
    current_changed = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model = ImageListModel(self)
        self.proxy = ImageFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.datasets = QComboBox()
        self.datasets.setEditable(True)
        self.datasets.setToolTip("Registered detectron2 datasets (e.g. shapes_val)")
        self.load_dataset = QPushButton("Load")
        self.load_dataset.clicked.connect(
            lambda: self.dataset_requested.emit(self.datasets.currentText().strip())
        )
        self.open_folder = QPushButton("Open folder…")
        self.open_folder.clicked.connect(self.folder_requested)
        self.search = QLineEdit(placeholderText="Search file names…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.list = QListView()
        self.list.setModel(self.proxy)
        self.list.setUniformItemSizes(True)
        self.list.selectionModel().currentChanged.connect(self._on_current)
        self.prev_button = QPushButton("◀ Previous (P)")
        self.next_button = QPushButton("Next (N) ▶")
        self.prev_button.clicked.connect(self.previous)
        self.next_button.clicked.connect(self.next)
        self.status = QLabel("No images")
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Dataset:"))
        row.addWidget(self.datasets, 1)
        row.addWidget(self.load_dataset)
        layout.addLayout(row)
        layout.addWidget(self.open_folder)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        layout.addLayout(row)
        layout.addWidget(self.status)

    def set_dataset_names(self, names: list[str], current: str | None = None) -> None:
        self.datasets.clear()
        self.datasets.addItems(names)
        if current:
            self.datasets.setCurrentText(current)

    def set_entries(self, entries: list[ImageEntry], source: str) -> None:
        """Show ``entries`` and select the first one."""
        self.search.clear()
        self.proxy.set_paths(None)
        self.model.set_entries(entries, source)
        self.status.setText(f"{len(entries)} images from {source}")
        if entries:
            self.select_row(0)
        else:
            self.current_changed.emit(None)

    def set_path_filter(self, paths: set[str] | None) -> None:
        """List only the images in ``paths`` (``None``: all); the current one stays current
        when it is listed, else the first listed image becomes current."""
        current = self.current_entry()
        self.proxy.set_paths(paths)
        source = self.model.source
        total = self.model.rowCount()
        shown = f"{self.proxy.rowCount()} of " if paths is not None else ""
        self.status.setText(f"{shown}{total} images from {source}")
        if current is not None and (paths is None or current.path in paths):
            for row in range(self.proxy.rowCount()):
                source_row = self.proxy.mapToSource(self.proxy.index(row, 0)).row()
                if self.model.entry(source_row) == current:
                    self.select_row(row)
                    return
        self.select_row(0)

    def count(self) -> int:
        """Images listed (after the search filter)."""
        return self.proxy.rowCount()

    def current_entry(self) -> ImageEntry | None:
        index = self.list.currentIndex()
        if not index.isValid():
            return None
        return self.model.entry(self.proxy.mapToSource(index).row())

    def current_row(self) -> int:
        index = self.list.currentIndex()
        return index.row() if index.isValid() else -1

    def select_row(self, row: int) -> None:
        """Make row ``row`` of the filtered list current (clamped to the list)."""
        if self.proxy.rowCount() == 0:
            return
        row = max(0, min(row, self.proxy.rowCount() - 1))
        index = self.proxy.index(row, 0)
        self.list.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.list.scrollTo(index)

    def next(self) -> None:
        self.select_row(self.current_row() + 1)

    def previous(self) -> None:
        self.select_row(max(self.current_row() - 1, 0))

    def _on_current(self, current, previous) -> None:
        entry = self.current_entry() if current.isValid() else None
        if entry is not None:
            self.status.setText(
                f"{self.current_row() + 1} / {self.proxy.rowCount()}  ·  {entry.name}"
            )
        self.current_changed.emit(entry)

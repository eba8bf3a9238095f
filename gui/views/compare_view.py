"""Before and after side by side, with one zoom and one pan for both views."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QGraphicsView, QGridLayout, QLabel, QWidget

from .image_view import DetectionView

__all__ = ["CompareView"]


class CompareView(QWidget):
    """Two :class:`DetectionView` s that share their transform and scroll bars.

    Zooming either view (wheel) zooms both around the mouse; dragging either pans both;
    a double click fits the image in both again. Attributes ``before`` and ``after`` are
    the two views.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.before = DetectionView()
        self.after = DetectionView()
        self.before_title = QLabel("Before")
        self.after_title = QLabel("After")
        for label in (self.before_title, self.after_title):
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
        # One grid: both titles share a row, so a title that wraps never pushes one image
        # lower than the other.
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for col, (title, view) in enumerate(
            ((self.before_title, self.before), (self.after_title, self.after))
        ):
            title.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            title.setMinimumWidth(10)
            layout.addWidget(title, 0, col)
            layout.addWidget(view, 1, col)
            layout.setColumnStretch(col, 1)
        layout.setRowStretch(1, 1)
        self._fit_mode = True
        self._syncing = False
        for a, b in ((self.before, self.after), (self.after, self.before)):
            a.zoom_requested.connect(lambda f, src=a: self.zoom(f, src))
            a.fit_requested.connect(self.fit)
            for bar_a, bar_b in (
                (a.horizontalScrollBar(), b.horizontalScrollBar()),
                (a.verticalScrollBar(), b.verticalScrollBar()),
            ):
                bar_a.valueChanged.connect(lambda v, bar=bar_b: self._follow(bar, v))
                bar_a.rangeChanged.connect(lambda *_: self._sync_scroll(self.before, self.after))

    def views(self) -> tuple[DetectionView, DetectionView]:
        return self.before, self.after

    def set_titles(self, before: str, after: str) -> None:
        self.before_title.setText(before)
        self.after_title.setText(after)

    # -- synchronisation --
    def _follow(self, bar, value: int) -> None:
        if not self._syncing:
            self._syncing = True
            bar.setValue(value)
            self._syncing = False

    def _sync_scroll(self, src: QGraphicsView, dst: QGraphicsView) -> None:
        self._syncing = True
        dst.horizontalScrollBar().setValue(src.horizontalScrollBar().value())
        dst.verticalScrollBar().setValue(src.verticalScrollBar().value())
        self._syncing = False

    def zoom(self, factor: float, source: DetectionView | None = None) -> None:
        """Scale both views by ``factor`` (around the mouse in ``source``)."""
        source = source or self.before
        other = self.after if source is self.before else self.before
        self._fit_mode = False
        source.scale(factor, factor)
        other.setTransform(QTransform(source.transform()))
        self._sync_scroll(source, other)

    def zoom_factor(self) -> float:
        """Current scale of the views (both have the same)."""
        return self.before.transform().m11()

    def fit(self) -> None:
        """Fit the image in both views (and keep fitting on resize)."""
        self._fit_mode = True
        self._refit()

    def _refit(self) -> None:
        ref = self.before if self.before.has_image() else self.after
        other = self.after if ref is self.before else self.before
        ref.fitInView(ref.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        if other.has_image():
            other.setTransform(QTransform(ref.transform()))
        else:
            other.fitInView(other.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._sync_scroll(ref, other)

    def image_changed(self) -> None:
        """Call after new images were set: refits when the user has not zoomed."""
        if self._fit_mode:
            self._refit()
        else:
            self.after.setTransform(QTransform(self.before.transform()))
            self._sync_scroll(self.before, self.after)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit_mode:
            self._refit()

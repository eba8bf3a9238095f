"""One image with its detections drawn as boxes, zoomable and pannable."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

__all__ = ["BoxSpec", "DetectionView"]


@dataclass(frozen=True)
class BoxSpec:
    """A box to draw, in image pixels (XYXY), with its label text and colour.

    Attributes:
        detail: shown on hover (tooltip) and sent by ``box_clicked`` (default: the label).
        kind: ``"detection"`` (solid), ``"gt"`` (dashed, ground truth) or ``"fate"``
            (thick dotted: a forgotten object and what became of it).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    color: QColor
    detail: str = ""
    kind: str = "detection"


_PEN_STYLES = {
    "detection": (2, Qt.PenStyle.SolidLine),
    "gt": (1.5, Qt.PenStyle.DashLine),
    "fate": (3, Qt.PenStyle.DotLine),
}


class _Label(QGraphicsItem):
    """Text on a filled background that keeps its size on screen at any zoom."""

    def __init__(
        self,
        text: str,
        color: QColor,
        parent: QGraphicsItem | None = None,
        *,
        align_right: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.text = text
        self.color = color
        self.font = QFont()
        self.font.setPointSizeF(8.0)
        metrics = QFontMetricsF(self.font)
        width = metrics.horizontalAdvance(text) + 6
        # Right-aligned labels end at their position (boxes near the right edge keep
        # their whole label inside the image).
        self._rect = QRectF(-width if align_right else 0, -metrics.height() - 2, width, 0)
        self._rect.setHeight(metrics.height() + 2)

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.fillRect(self._rect, self.color)
        light = self.color.lightnessF() > 0.6
        painter.setPen(QColor(0, 0, 0) if light else QColor(255, 255, 255))
        painter.setFont(self.font)
        painter.drawText(self._rect.adjusted(3, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, self.text)


class DetectionView(QGraphicsView):
    """A ``QGraphicsView`` of one image and its boxes.

    The wheel does not scroll: it asks for a zoom (``zoom_requested``) so that a
    :class:`~gui.views.compare_view.CompareView` can zoom both of its views together;
    dragging pans; a double click asks to fit the image (``fit_requested``).
    """

    zoom_requested = Signal(float)
    fit_requested = Signal()
    #: a box was clicked: its :class:`BoxSpec`
    box_clicked = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(
            QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform
        )
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QBrush(QColor(40, 40, 44)))
        self.setMinimumSize(200, 200)
        self._pixmap_item: QGraphicsPixmapItem | None = None
        self._placeholder: QGraphicsSimpleTextItem | None = None
        self._boxes: list[QGraphicsRectItem] = []
        self._specs: list[BoxSpec] = []

    # -- contents --
    def set_image(self, pixmap: QPixmap | None) -> None:
        """Show ``pixmap`` (``None``: clear); removes the boxes."""
        self.scene().clear()
        self._boxes, self._specs = [], []
        self._placeholder = None
        self._pixmap_item = None
        if pixmap is not None and not pixmap.isNull():
            self._pixmap_item = self.scene().addPixmap(pixmap)
            self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            self.scene().setSceneRect(QRectF(pixmap.rect()))

    def set_placeholder(self, text: str) -> None:
        """Show ``text`` instead of an image (e.g. "run Forget to see the result")."""
        self.set_image(None)
        self._placeholder = self.scene().addSimpleText(text)
        self._placeholder.setBrush(QBrush(QColor(200, 200, 200)))
        self.scene().setSceneRect(self._placeholder.boundingRect().adjusted(-20, -20, 20, 20))

    @property
    def placeholder_text(self) -> str:
        return self._placeholder.text() if self._placeholder is not None else ""

    def has_image(self) -> bool:
        return self._pixmap_item is not None

    def set_boxes(self, boxes: list[BoxSpec]) -> None:
        """Replace the drawn boxes."""
        for item in self._boxes:
            self.scene().removeItem(item)
        self._boxes, self._specs = [], []
        if self._pixmap_item is None:
            return
        for b in boxes:
            width, style = _PEN_STYLES[b.kind]
            pen = QPen(b.color, width)
            pen.setStyle(style)
            pen.setCosmetic(True)  # the same width on screen at any zoom
            rect = QGraphicsRectItem(QRectF(QPointF(b.x0, b.y0), QPointF(b.x1, b.y1)))
            rect.setPen(pen)
            rect.setZValue(2 if b.kind == "fate" else 1)
            rect.setToolTip(b.detail or b.label)
            right_half = (b.x0 + b.x1) / 2 > self.scene().sceneRect().center().x()
            label = _Label(b.label, b.color, rect, align_right=right_half)
            label.setToolTip(b.detail or b.label)
            x = b.x1 if right_half else b.x0
            if b.kind == "detection":
                label.setPos(x, b.y0)
            else:  # below the box: never on top of the detection label at the same corner
                label.setPos(x, b.y1 + label.boundingRect().height())
            self.scene().addItem(rect)
            self._boxes.append(rect)
            self._specs.append(b)

    def box_count(self, kind: str | None = "detection") -> int:
        """Number of boxes of ``kind`` drawn now (``None``: all kinds)."""
        return sum(kind is None or s.kind == kind for s in self._specs)

    def box_labels(self, kind: str | None = "detection") -> list[str]:
        """Label texts of the drawn boxes of ``kind`` (class name and score)."""
        return [s.label for s in self._specs if kind is None or s.kind == kind]

    def box_specs(self) -> list[BoxSpec]:
        """Every box drawn now, in drawing order."""
        return list(self._specs)

    def spec_at(self, pos) -> BoxSpec | None:
        """The box under viewport position ``pos`` (the smallest one when nested)."""
        # Hit-tested on the specs, not on scene items: no wrappers of items a redraw deletes.
        p = self.mapToScene(pos)
        x, y = p.x(), p.y()
        hits = [s for s in self._specs if s.x0 <= x <= s.x1 and s.y0 <= y <= s.y1]
        return min(hits, key=lambda s: (s.x1 - s.x0) * (s.y1 - s.y0)) if hits else None

    def mousePressEvent(self, event) -> None:  # noqa: N802
        spec = self.spec_at(event.position().toPoint())
        if spec is not None and event.button() == Qt.MouseButton.LeftButton:
            self.box_clicked.emit(spec)
        super().mousePressEvent(event)

    # -- interaction --
    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_requested.emit(1.25**steps)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit_requested.emit()
        event.accept()

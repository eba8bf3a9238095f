"""A small live line plot of the loss terms, drawn with QPainter (no QtCharts needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["LossPlot"]

# Far-apart hues and lightness (Okabe-Ito): no two series look alike, even in grey.
_PALETTE = (
    QColor(0, 0, 0),
    QColor(0, 114, 178),
    QColor(230, 159, 0),
    QColor(0, 158, 115),
    QColor(204, 121, 167),
    QColor(213, 94, 0),
    QColor(86, 180, 233),
    QColor(120, 120, 120),
)
_LEGEND_WIDTH = 170
_ROW = 14


class LossPlot(QWidget):
    """Loss terms against the iteration, one line each, with a legend of the last values.

    Args:
        max_series: at most this many terms are drawn (``total_loss`` first, then in the
            order they first appear).
    """

    def __init__(self, parent=None, max_series: int = 6) -> None:
        super().__init__(parent)
        self.max_series = max_series
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(320, 180)

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add_point(self, iteration: int, losses: Mapping[str, float]) -> None:
        """Append one step's values (non-finite values are skipped)."""
        names = sorted(losses, key=lambda k: (k != "total_loss", k))
        for name in names:
            value = float(losses[name])
            if not math.isfinite(value):
                continue
            if name not in self.series and len(self.series) >= self.max_series:
                continue
            self.series.setdefault(name, []).append((int(iteration), value))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(255, 255, 255))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        painter.setFont(font)
        # The legend never covers the curves: right of the plot when the widget is wide
        # enough, else below it.
        rows = _ROW * max(len(self.series), 1)
        beside = self.width() >= 2 * _LEGEND_WIDTH + 60
        if beside:
            plot = QRectF(self.rect()).adjusted(50, 10, -(_LEGEND_WIDTH + 12), -26)
        else:
            plot = QRectF(self.rect()).adjusted(50, 10, -10, -(26 + rows + 4))
        painter.setPen(QPen(QColor(160, 160, 160), 1))
        painter.drawRect(plot)
        points = [p for s in self.series.values() for p in s]
        if not points:
            painter.setPen(QColor(120, 120, 120))
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss curve (runs with Forget)")
            return
        x_min = min(p[0] for p in points)
        x_max = max(max(p[0] for p in points), x_min + 1)
        y_min = min(0.0, min(p[1] for p in points))
        y_max = max(p[1] for p in points)
        if y_max <= y_min:
            y_max = y_min + 1.0

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(
                plot.left() + (x - x_min) / (x_max - x_min) * plot.width(),
                plot.bottom() - (y - y_min) / (y_max - y_min) * plot.height(),
            )

        painter.setPen(QColor(90, 90, 90))
        for frac in (0.0, 0.5, 1.0):
            y = y_min + frac * (y_max - y_min)
            py = to_px(x_min, y).y()
            painter.drawText(QRectF(0, py - 8, 46, 16), Qt.AlignmentFlag.AlignRight, f"{y:.3g}")
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 4, plot.width(), 16),
            Qt.AlignmentFlag.AlignLeft,
            f"iter {x_min}",
        )
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 4, plot.width(), 16),
            Qt.AlignmentFlag.AlignRight,
            f"iter {x_max}",
        )
        if beside:
            legend_x, legend_y = plot.right() + 8, plot.top()
        else:
            legend_x, legend_y = plot.left(), plot.bottom() + 24
        for i, pts in enumerate(self.series.values()):
            color = _PALETTE[i % len(_PALETTE)]
            painter.setPen(QPen(color, 1.6))
            path = QPainterPath(to_px(*pts[0]))
            for x, y in pts[1:]:
                path.lineTo(to_px(x, y))
            if len(pts) == 1:
                painter.drawEllipse(to_px(*pts[0]), 2, 2)
            painter.drawPath(path)
        for i, (name, pts) in enumerate(self.series.items()):
            color = _PALETTE[i % len(_PALETTE)]
            painter.setPen(QPen(color, 1.6))
            text = f"{name} {pts[-1][1]:.3g}"
            box = QRectF(legend_x, legend_y, _LEGEND_WIDTH - 4, _ROW)
            painter.drawLine(
                QPointF(box.left(), box.center().y()), QPointF(box.left() + 12, box.center().y())
            )
            painter.setPen(QColor(40, 40, 40))
            painter.drawText(box.adjusted(16, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, text)
            legend_y += _ROW

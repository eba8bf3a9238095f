"""Stable colours per class: the same class has the same colour in every view and run."""

from __future__ import annotations

import re

from PySide6.QtGui import QColor

__all__ = ["class_color", "GROUP_COLORS"]

_GOLDEN = 0.618033988749895

# Colour words used as-is (slightly deepened where the plain SVG colour is too pale to
# read as a box outline on a light image).
_NAMED = {
    "red": "#e02020",
    "green": "#20b040",
    "blue": "#2850f0",
    "yellow": "#f0d800",
    "magenta": "#e020e0",
    "cyan": "#00d8e8",
    "orange": "#ff8c00",
    "purple": "#8020c0",
    "white": "#f4f4f4",
    "brown": "#8b4513",
    "black": "#101010",
    "pink": "#ff69b4",
    "gray": "#909090",
    "grey": "#909090",
}

#: Background tints of the class groups in tables (forget, retain, old, missing).
GROUP_COLORS = {
    "forget": QColor(255, 205, 205),
    "retain": QColor(210, 240, 210),
    "old": QColor(225, 225, 245),
    "missing": QColor(240, 240, 200),
}


def class_color(index: int, name: str | None = None) -> QColor:
    """The colour of contiguous class ``index`` (named ``name``).

    A class whose name starts with a colour word (``"blue_triangle"``) gets that colour,
    so boxes match what they surround; otherwise hues step by the golden ratio, so
    neighbouring ids get far-apart hues and adding classes never changes existing ones.
    """
    word = re.split(r"[^A-Za-z]", name or "", maxsplit=1)[0].lower()
    if word and word in _NAMED:
        return QColor(_NAMED[word])
    hue = (0.07 + index * _GOLDEN) % 1.0
    return QColor.fromHsvF(hue, 0.85, 0.95)

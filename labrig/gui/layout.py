"""Fitting the console on small screens: every dock's contents scroll instead of growing.

A dock whose contents are taller than the space it has would otherwise raise the
window's minimum size (the window then grows past the screen, and a run that adds a
line of status text makes it jump under the mouse). In a `QScrollArea` a dock keeps
the size the operator gave it and shows scroll bars when its contents do not fit.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QScrollArea, QWidget

__all__ = ["fit_to_screen", "scrollable"]


def scrollable(dock: QDockWidget) -> QScrollArea:
    """Put the dock's widget in a resizable scroll area (once; a second call is a no-op)."""
    inner = dock.widget()
    if isinstance(inner, QScrollArea):
        return inner
    area = QScrollArea()
    area.setObjectName(f"{dock.objectName()}-scroll")
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setMinimumSize(QSize(120, 80))
    if inner is not None:
        area.setWidget(inner)
    dock.setWidget(area)
    return area


def fit_to_screen(window: QWidget, wanted: QSize) -> QSize:
    """Resize `window` to `wanted`, shrunk to the screen's available area (minus a margin)."""
    screen = window.screen()
    size = QSize(wanted)
    if screen is not None:
        avail = screen.availableGeometry().size()
        size = size.boundedTo(QSize(max(640, avail.width() - 16), max(480, avail.height() - 48)))
    window.resize(size)
    return size

"""pyqtgraph set-up shared by the docks: image orientation, image views, colour maps.

Images are numpy arrays indexed (row, col), so pyqtgraph is switched to row-major
once: a frame then appears as it does in matplotlib or a camera viewer (row 0 on
top), and tile ROIs given as (top, left, bottom, right) land where they belong.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

__all__ = [
    "ColorImage",
    "configure",
    "cyclic_colormap",
    "diverging_colormap",
    "gray_colormap",
    "heat_colormap",
    "image_view",
]

_configured = False


def configure() -> None:
    """Row-major images; call before any image item is made (idempotent)."""
    global _configured
    if not _configured:
        pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
        _configured = True


def image_view(name: str = "") -> pg.ImageView:
    """An ImageView with histogram and levels, without the ROI/normalise buttons, y down."""
    configure()
    view = pg.ImageView(name=name or None)
    view.ui.roiBtn.hide()
    view.ui.menuBtn.hide()
    view.getView().invertY(True)
    view.getView().setAspectLocked(True)
    return view


def cyclic_colormap() -> pg.ColorMap:
    """A perceptually uniform cyclic map (CET-C2), so phase 0 and 2 pi look the same."""
    return pg.colormap.get("CET-C2")


def gray_colormap() -> pg.ColorMap:
    return pg.colormap.get("CET-L1")


def heat_colormap() -> pg.ColorMap:
    """For camera counts in tiles: dark is dark, bright stands out."""
    return pg.colormap.get("inferno")


def diverging_colormap() -> pg.ColorMap:
    """For signed kernels: zero in the middle."""
    return pg.colormap.get("CET-D1")


class ColorImage(pg.GraphicsLayoutWidget):
    """An image with a fixed-range colour bar (masks, phases, gray levels): no histogram,
    because here the range is known (0..2 pi, 0..levels-1) and must not float."""

    def __init__(self, parent: object = None) -> None:
        configure()
        super().__init__(parent)
        self.setMinimumSize(200, 180)
        self.plot = self.addPlot()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("bottom")
        self.plot.hideAxis("left")
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=gray_colormap(), interactive=False,
                                   width=12)
        self.bar.setImageItem(self.image)
        self.addItem(self.bar)

    def show_array(self, data: object, levels: tuple[float, float], cmap: pg.ColorMap) -> None:
        lo, hi = float(levels[0]), float(levels[1])
        if not hi > lo:
            hi = lo + 1.0
        self.bar.setColorMap(cmap)
        self.bar.setLevels((lo, hi))
        self.image.setImage(np.asarray(data, dtype=np.float32), levels=(lo, hi))

    def clear_image(self) -> None:
        self.image.clear()

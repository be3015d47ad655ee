"""A camera image drawn at video rate for little CPU: the live view's picture and histogram.

pyqtgraph's ImageView recomputes the histogram and the levels of every frame and
maps 16-bit counts to screen grey through a fresh 65536-entry table each time; at
30 frames/s of 1 Mpixel that cost most of a core. Here the work per frame is only
what the screen can show:

* the frame is strided to about the screen's resolution (zooming in brings full
  resolution back): detail Qt's nearest-neighbour drawing would drop anyway;
* counts become screen colours (32-bit RGB words) through one lookup table, rebuilt
  only when the levels or the colour map change, and Qt draws them as RGB32: its
  fastest scaled path (4x faster here than 8-bit grey, which Qt converts per paint);
* auto levels and the histogram come from a subsample a few times a second.

Coordinates stay camera pixels (a strided image is scaled back up), so tile ROIs
drawn on `viewbox` land where they belong. Numbers about the frame (saturation,
tile means) are the caller's job, on the full frame.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QTransform
from PySide6.QtWidgets import QWidget

from labrig.gui import plots

__all__ = ["LiveImage", "display_stride", "histogram", "palette", "to_uint8"]

#: pixels sampled for the levels and the histogram (a stride chosen per frame to reach it)
SAMPLE_PIXELS = 65536
HIST_BINS = 128


def display_stride(frame_shape: tuple[int, ...], pixel_size: tuple[float, float]) -> int:
    """Every how many camera pixels one is drawn, given `pixel_size` (camera pixels per screen
    pixel): the stride whose drawn image is closest to the screen's resolution (on a log scale:
    stride k up to sqrt(k (k+1)) camera pixels per screen pixel), so a 1024-px frame in a
    700-px view is drawn at 512 px and one in a 1000-px view at full resolution."""
    finest = min(float(pixel_size[0]), float(pixel_size[1]))
    if not math.isfinite(finest):
        return 1
    stride, cap = 1, max(1, max(frame_shape[:2]) // 2)
    while stride < cap and finest >= math.sqrt(stride * (stride + 1)):
        stride += 1
    return stride


def sample(frame: np.ndarray, pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """A strided view of `frame` with about `pixels` pixels (no copy)."""
    step = max(1, int(math.sqrt(frame.size / pixels)))
    return frame[::step, ::step]


def level_lut(levels: tuple[float, float], dtype: np.dtype) -> np.ndarray | None:
    """The table taking every value of an 8/16-bit unsigned `dtype` to grey 0..255 between
    `levels` (below black, above white); None for other types (scaled directly)."""
    if dtype not in (np.uint8, np.uint16):
        return None
    lo, hi = float(levels[0]), float(levels[1])
    span = hi - lo if hi > lo else 1.0
    values = np.arange(np.iinfo(dtype).max + 1, dtype=np.float32)
    return np.clip((values - lo) * (255.0 / span), 0, 255).astype(np.uint8)


def to_uint8(image: np.ndarray, levels: tuple[float, float], lut: np.ndarray | None = None) -> np.ndarray:
    """Grey levels 0..255 of `image` between `levels` (through `lut` when given: one lookup)."""
    if lut is not None:
        return np.take(lut, image, mode="wrap")  # the table covers the whole type: no wrap
    lo, hi = float(levels[0]), float(levels[1])
    span = hi - lo if hi > lo else 1.0
    scaled = (np.asarray(image, dtype=np.float32) - lo) * (255.0 / span)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)


def histogram(part: np.ndarray, bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, counts) of `part` over its range; integer counts are binned with integer
    arithmetic and one `bincount` (several times cheaper than `np.histogram`'s float path)."""
    if part.dtype.kind in "ui":
        lo, hi = int(part.min()), int(part.max())
        width = max(1, -(-(hi - lo + 1) // bins))  # ceil: every value lands in a bin
        index = (part.astype(np.int64, copy=False) - lo) // width
        counts = np.bincount(index.ravel(), minlength=bins)[:bins]
        return lo + width * (np.arange(bins) + 0.5), counts
    finite = part[np.isfinite(part)]
    lo_f, hi_f = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if not hi_f > lo_f:
        hi_f = lo_f + 1.0
    counts, edges = np.histogram(finite, bins=bins, range=(lo_f, hi_f))
    return 0.5 * (edges[:-1] + edges[1:]), counts


def palette(colors: np.ndarray | None = None) -> np.ndarray:
    """256 opaque 0xffRRGGBB words: grey, or `colors` (256 x 3 uint8 from a colour map)."""
    if colors is None:
        grey = np.arange(256, dtype=np.uint32)
        return np.uint32(0xFF000000) | (grey << 16) | (grey << 8) | grey
    rgb = np.asarray(colors, dtype=np.uint32)[:, :3]
    return np.uint32(0xFF000000) | (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


class _RgbItem(pg.ImageItem):
    """An ImageItem for images that are already 0xffRRGGBB words (2-D uint32): no levels,
    no lookup, handed to Qt as they are."""

    def render(self) -> None:
        image = self.image
        self._unrenderable = image is None or image.size == 0
        if not self._unrenderable:
            image = np.ascontiguousarray(image)
            self._rgb = image  # the QImage borrows this memory
            self.qimage = QImage(image.data, image.shape[1], image.shape[0], image.strides[0],
                                 QImage.Format.Format_RGB32)
        self._renderRequired = False


class LiveImage(pg.GraphicsLayoutWidget):
    """An image with a levels histogram (drag its region, right-click its bar for colour maps),
    y down, aspect locked; `draw` draws a frame, `set_levels` / `levels` are in camera counts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        plots.configure()
        super().__init__(parent)
        self.viewbox = self.addViewBox(row=0, col=0)
        self.viewbox.invertY(True)
        self.viewbox.setAspectLocked(True)
        self.image_item = _RgbItem()
        self.viewbox.addItem(self.image_item)
        self.hist = pg.HistogramLUTItem()
        self.addItem(self.hist, row=0, col=1)
        self.stride = 1
        self._levels = (0.0, 1.0)
        self._palette = palette()
        self._lut: np.ndarray | None = None  # counts -> RGB words, for 8/16-bit frames
        self._lut_dtype: np.dtype | None = None
        self.hist.region.sigRegionChanged.connect(self._region_moved)
        self.hist.sigLookupTableChanged.connect(self._gradient_changed)

    # -- levels ---------------------------------------------------------------------------
    def levels(self) -> tuple[float, float]:
        return self._levels

    def set_levels(self, lo: float, hi: float) -> None:
        """Black at `lo`, white at `hi` counts (the histogram's region follows)."""
        if not hi > lo:
            hi = lo + 1.0
        self.hist.region.setRegion((lo, hi))  # -> _region_moved

    def _region_moved(self) -> None:
        lo, hi = (float(v) for v in self.hist.region.getRegion())
        if (lo, hi) != self._levels:
            self._levels = (lo, hi)
            self._lut = None  # rebuilt for the next frame

    def auto_levels(self, frame: np.ndarray) -> None:
        """Levels from the frame's range, read off a subsample (what ImageView does per frame)."""
        part = sample(frame)
        if part.dtype.kind == "f":
            part = part[np.isfinite(part)]
        if part.size:
            self.set_levels(float(part.min()), float(part.max()))

    def _gradient_changed(self) -> None:
        """A colour map chosen on the histogram's bar (right-click): used from the next frame."""
        gradient = self.hist.gradient
        self._palette = palette(None if gradient.isLookupTrivial()
                                else gradient.getLookupTable(256, alpha=False))
        self._lut = None

    # -- drawing --------------------------------------------------------------------------
    def update_histogram(self, frame: np.ndarray) -> None:
        """The histogram of a subsample of `frame` (cheap; call a few times a second)."""
        part = sample(frame)
        centres, counts = histogram(part)
        self.hist.plot.setData(centres, counts)

    def draw(self, frame: np.ndarray, auto_range: bool = False) -> None:
        """Draw `frame` (2-D counts) with the current levels; `auto_range` fits it in the view."""
        if frame.ndim != 2:
            raise ValueError(f"live image: expected a 2-D frame, got shape {frame.shape}")
        stride = 1 if auto_range else display_stride(frame.shape, self.viewbox.viewPixelSize())
        if self._lut is None or self._lut_dtype != frame.dtype:
            grey = level_lut(self._levels, frame.dtype)
            self._lut = None if grey is None else self._palette[grey]
            self._lut_dtype = frame.dtype
        shown = frame[::stride, ::stride] if stride > 1 else frame
        # the table covers every value of the type, so "wrap" never wraps: it only skips the
        # bounds check that makes plain indexing ~2x slower
        rgb = (np.take(self._lut, shown, mode="wrap") if self._lut is not None
               else self._palette[to_uint8(shown, self._levels)])
        self.image_item.setImage(rgb, autoLevels=False)
        if stride != self.stride:
            self.stride = stride
            self.image_item.setTransform(QTransform.fromScale(stride, stride))
        if auto_range:
            self.viewbox.autoRange(padding=0)

    def on_screen(self) -> bool:
        """Shown (not in a hidden tab or closed dock, not in a minimised window)."""
        return self.isVisible() and not self.window().isMinimized()

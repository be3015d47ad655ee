"""The Live view dock: the camera at its frame rate, with what an operator checks first.

Frames come from a `LiveStream` thread (newest frame wins, so a slow display drops
frames rather than lagging); this dock only draws them: image, levels and
histogram, a saturation warning, the loaded program's tile ROIs and the mean
counts in each tile. Pause freezes the picture; Snapshot saves the frame shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QTransform
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QGraphicsItem,
    QGraphicsSimpleTextItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from drivers.errors import FrameDropped
from labrig.bench.frames import save_frame
from labrig.gui.framestats import RateMeter, roi_means, saturated_fraction
from labrig.gui.liveimage import LiveImage
from labrig.gui.session import Session
from labrig.gui.workers import LiveStream, TaskManager

__all__ = ["LiveDock"]

log = logging.getLogger("labrig.gui")

Rect = tuple[int, int, int, int]
#: the live view grabs at most this often (and never faster than the exposure allows): more
#: is not seen, and a simulated camera would spin a core to deliver it
MAX_FPS = 30.0
#: during a run the view shows the run's own frames, at most this often
RUN_VIEW_HZ = 5.0
#: the numbers under the picture (min/max/mean, saturation, tile means), on the full frame:
#: as often as one reads them
STATS_HZ = 4.0
#: auto levels and the histogram are recomputed at most this often (from a subsample)
LEVELS_HZ = 2.0
ROI_PEN = pg.mkPen("#00e0ff", width=1.5)
#: the calibration's ROI (where the input's image lands), apart from the program's tiles
INPUT_PEN = pg.mkPen("#ffd000", width=1.5, style=Qt.PenStyle.DashLine)
WARN_STYLE = "background:#c00000; color:white; font-weight:bold; padding:3px"


def _roi_label(text: str, color: str) -> QGraphicsSimpleTextItem:
    """An ROI's name just above its top-left corner, upright and unscaled whatever the zoom
    (a plain Qt text item: drawn by Qt without Python, it is repainted with every frame)."""
    label = QGraphicsSimpleTextItem(text)
    label.setBrush(QColor(color))
    label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
    label.setTransform(QTransform.fromTranslate(0, -label.boundingRect().height()))
    return label


class LiveDock(QDockWidget):
    #: one frame was drawn (its display time, perf_counter): for tests and the benchmark
    frame_shown = Signal(float)

    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Live view", parent)
        self.setObjectName("dock-live")
        self.session = session
        self.tasks = tasks
        self.stream = LiveStream(self)
        self.display_rate = RateMeter()
        self.frame: np.ndarray | None = None
        self.max_value = 0
        self.rois: list[Rect] = []
        self.roi_labels: list[str] = []
        self._roi_items: list[pg.GraphicsObject] = []
        self._resume_after_run = False
        self._first = True
        self._last_stats = 0.0
        self._last_run_frame = 0.0
        self._last_levels = 0.0
        self.max_fps = MAX_FPS

        self.view = LiveImage()
        self.view.setMinimumSize(240, 180)
        self.start_button = QPushButton("Start")
        self.start_button.setCheckable(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.auto_levels = QCheckBox("Auto levels")
        self.auto_levels.setChecked(True)
        self.auto_start = QCheckBox("Start on connect")
        self.auto_start.setChecked(True)
        levels_once = QPushButton("Levels once")
        snap = QPushButton("Snapshot…")
        self.start_button.setToolTip("start or stop streaming camera frames")
        self.auto_levels.setToolTip("rescale the display to every frame's range")
        self.auto_start.setToolTip("start the live view whenever a bench is connected")
        levels_once.setToolTip("rescale the display to the current frame once")
        snap.setToolTip("save one camera frame to a file")
        self.rate_label = QLabel("-")
        self.stats_label = QLabel("-")
        self.saturation = QLabel("")
        self.saturation.setStyleSheet(WARN_STYLE)
        self.saturation.hide()
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color:#c00000")
        self.error_label.setWordWrap(True)
        self.fit_label = QLabel("")
        self.fit_label.setStyleSheet("color:#c00000")
        self.fit_label.setWordWrap(True)
        self.fit_label.hide()
        self.tiles = QTableWidget(0, 3)
        self.tiles.setHorizontalHeaderLabels(["tile", "mean DN", "% full scale"])
        self.tiles.verticalHeader().hide()
        self.tiles.setMaximumHeight(150)
        self.tiles.hide()

        bar = QHBoxLayout()
        for w in (self.start_button, self.pause_button, levels_once, self.auto_levels, snap):
            bar.addWidget(w)
        for w in (self.start_button, self.pause_button):  # short words: no 80-px style minimum,
            w.setMinimumWidth(w.fontMetrics().horizontalAdvance("Pause") + 24)  # the bar fits 1366 px
        # the numbers change with every frame: their length must not set the dock's width
        self.stats_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addStretch(1)
        bar.addWidget(self.auto_start)
        info = QHBoxLayout()
        info.addWidget(self.rate_label)
        info.addWidget(self.stats_label, 1)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addLayout(info)
        layout.addWidget(self.saturation)  # a row of its own: its text must not widen the dock
        layout.addWidget(self.error_label)
        layout.addWidget(self.fit_label)
        layout.addWidget(self.tiles)
        self.setWidget(body)

        self.pause_button.setToolTip("freeze the picture; the camera is not read while paused")
        self.pause_button.toggled.connect(self.stream.set_paused)
        self.start_button.toggled.connect(self._start_toggled)
        levels_once.clicked.connect(self.levels_once)
        snap.clicked.connect(self._snapshot_dialog)
        self.stream.frame_ready.connect(self._on_frame_ready)
        self.stream.failed.connect(self._on_stream_failed)
        self.stream.stopped.connect(self._on_stream_stopped)
        session.bench_changed.connect(self._on_bench_changed)
        session.bench_closing.connect(self.stop)
        session.busy_changed.connect(self._on_busy)
        session.run_frame.connect(self._on_run_frame)
        session.fit_changed.connect(self._on_fit)
        self._rates = QTimer(self)
        self._rates.setInterval(500)
        self._rates.timeout.connect(self._show_rates)
        self._rates.start()
        self._update_enabled()

    # -- streaming ----------------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return self.stream.running

    def start(self, grab: Callable[[], np.ndarray] | None = None, max_value: int | None = None) -> None:
        """Stream from the bench's camera, or from `grab` (the benchmark's synthetic camera)."""
        floor = 1.0 / self.max_fps if self.max_fps > 0 else 0.0
        period: Callable[[], float] = lambda: floor  # noqa: E731
        if grab is None:
            bench = self.session.require_bench()
            max_value = bench.camera.max_value
            grab = self.session.grab
            camera = bench.camera
            period = lambda: max(floor, float(camera.exposure_s))  # noqa: E731 (a frame takes its exposure)
        self.max_value = int(max_value or 0)
        self.error_label.clear()
        self.display_rate.reset()
        self._first = True
        self.stream.start(grab, skip=(FrameDropped,), period=period)
        self.stream.set_paused(self.pause_button.isChecked())
        self._sync_button(True)
        log.info("live view started")

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop streaming; False if the grab in flight did not end within `timeout_s`."""
        was = self.streaming
        ok = self.stream.stop(timeout_s)
        self._sync_button(False)
        self.session.camera_fps = 0.0
        if was and ok:
            log.info("live view stopped")
        return ok

    @Slot(bool)
    def _start_toggled(self, on: bool) -> None:
        if on and not self.streaming:
            try:
                self.start()
            except Exception as exc:
                self._sync_button(False)
                self.tasks.report("live view", str(exc))
        elif not on and self.streaming:
            self.stop()

    def _sync_button(self, on: bool) -> None:
        self.start_button.blockSignals(True)
        self.start_button.setChecked(on)
        self.start_button.setText("Stop" if on else "Start")
        self.start_button.blockSignals(False)

    @Slot(str, str)
    def _on_stream_failed(self, message: str, tb: str) -> None:
        self.error_label.setText(f"camera stopped: {message}")
        self.tasks.report("live view", message, tb)

    @Slot()
    def _on_stream_stopped(self) -> None:
        self._sync_button(False)
        self.session.camera_fps = 0.0

    @Slot(object)
    def _on_bench_changed(self, bench: object) -> None:
        self.pause_button.setChecked(False)  # a frozen frame of another bench is no view of this one
        if bench is None:
            self.stop()
        elif self.auto_start.isChecked() and not self.session.busy:
            self.start()
        self._update_enabled()

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        """A run owns the camera: stop streaming and resume afterwards."""
        if busy:
            self._resume_after_run = self.streaming
            self.stop()
        elif self._resume_after_run and self.session.connected:
            self._resume_after_run = False
            self.start()
        self._update_enabled()

    @Slot(object)
    def _on_run_frame(self, frame: object) -> None:
        """A frame the run took: shown at most `RUN_VIEW_HZ` times a second (not when paused)."""
        now = time.perf_counter()
        if (not self.session.busy or self.pause_button.isChecked() or not isinstance(frame, np.ndarray)
                or now - self._last_run_frame < 1.0 / RUN_VIEW_HZ):
            return
        self._last_run_frame = now
        if self.max_value == 0 and self.session.connected and self.session.bench is not None:
            self.max_value = int(self.session.bench.camera.max_value)
        self.show_frame(frame)

    def _update_enabled(self) -> None:
        self.start_button.setEnabled(self.session.connected and not self.session.busy)

    # -- drawing ----------------------------------------------------------------------------------
    @Slot()
    def _on_frame_ready(self) -> None:
        item = self.stream.take()
        if item is None or self.pause_button.isChecked():
            return
        frame, _grabbed = item
        self.show_frame(frame)

    def show_frame(self, frame: np.ndarray) -> None:
        """Draw one frame with its warnings and tile readouts (the picture only when on screen:
        a live view in a hidden tab costs nothing to draw)."""
        self.frame = frame
        now = time.perf_counter()
        if self._first or self.view.on_screen():
            if self._first or now - self._last_levels >= 1.0 / LEVELS_HZ:
                self._last_levels = now
                if self.auto_levels.isChecked() or self._first:
                    self.view.auto_levels(frame)
                self.view.update_histogram(frame)
            self.view.draw(frame, auto_range=self._first)
            self._first = False
        self.display_rate.tick(now)
        if now - self._last_stats >= 1.0 / STATS_HZ:
            self._last_stats = now
            self._update_stats(frame)
        self.frame_shown.emit(now)

    def _update_stats(self, frame: np.ndarray) -> None:
        self.stats_label.setText(f"min {frame.min()}  max {frame.max()}  mean {frame.mean():.1f}")
        if self.max_value:
            frac = saturated_fraction(frame, self.max_value)
            self.saturation.setVisible(frac > 0)
            if frac > 0:
                self.saturation.setText(f"SATURATED: {100 * frac:.2f}% of pixels at {self.max_value}")
        if self.rois:
            means = roi_means(frame, self.rois)
            for k, m in enumerate(means):
                self.tiles.item(k, 1).setText(f"{m:.1f}")
                pct = 100 * m / self.max_value if self.max_value else float("nan")
                self.tiles.item(k, 2).setText(f"{pct:.1f}")

    @Slot()
    def _show_rates(self) -> None:
        if self.session.busy:
            self.rate_label.setText(f"showing the run's frames (at most {RUN_VIEW_HZ:g}/s)")
            return
        if not self.streaming:
            self.rate_label.setText("not streaming")
            return
        stream = self.stream.stream
        cam = stream.camera_rate.rate if stream is not None else 0.0
        self.session.camera_fps = cam
        self.rate_label.setText(f"camera {cam:.1f} fps, shown {self.display_rate.rate:.1f} fps")

    @Slot()
    def levels_once(self) -> None:
        if self.frame is not None:
            self.view.set_levels(float(self.frame.min()), float(self.frame.max()))

    # -- tile ROIs ---------------------------------------------------------------------------------
    @Slot(list)
    def _on_fit(self, problems: list[str]) -> None:
        """The active program (or none) and the calibration's ROIs were checked against the bench:
        draw the ROIs of whichever fits, and say why the others are hidden."""
        program = self.session.active_rois()
        calibration = self.session.active_calibration_rois()
        self.set_rois(program + calibration,
                      [str(k) for k in range(len(program))] + ["input"] * len(calibration))
        why = []
        if problems:
            why.append("program ROIs hidden: the program does not fit this bench: " + "; ".join(problems))
        if self.session.calibration_misfits:
            why.append("calibration ROI hidden: the calibration does not fit this bench: "
                       + "; ".join(self.session.calibration_misfits))
        self.fit_label.setText("\n".join(why))
        self.fit_label.setVisible(bool(why))

    def set_rois(self, rois: Sequence[Rect], labels: Sequence[str] | None = None) -> None:
        """Draw ROIs (camera pixels: the program's tiles, the calibration's input image) with
        their `labels` (default: their numbers) and list their readouts."""
        vb = self.view.viewbox
        for item in self._roi_items:
            vb.removeItem(item)
        self._roi_items = []
        self.rois = [tuple(int(v) for v in r) for r in rois]  # type: ignore[misc]
        names = [str(k) for k in range(len(self.rois))] if labels is None else [str(n) for n in labels]
        if len(names) != len(self.rois):
            raise ValueError(f"live view: {len(self.rois)} ROIs but {len(names)} labels")
        self.roi_labels = names
        self.tiles.setRowCount(len(self.rois))
        for k, (top, left, bottom, right) in enumerate(self.rois):
            rect = pg.QtWidgets.QGraphicsRectItem(QRectF(left, top, right - left, bottom - top))
            rect.setPen(ROI_PEN if names[k] != "input" else INPUT_PEN)
            label = _roi_label(names[k], "#00e0ff" if names[k] != "input" else "#ffd000")
            label.setPos(left, top)
            for item in (rect, label):
                vb.addItem(item)
                self._roi_items.append(item)
            for col, text in enumerate((names[k], "-", "-")):
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.tiles.setItem(k, col, cell)
        self.tiles.setVisible(bool(self.rois))
        if self.frame is not None:
            self._update_stats(self.frame)

    # -- snapshot ---------------------------------------------------------------------------------
    @Slot()
    def _snapshot_dialog(self) -> None:
        if self.frame is None:
            self.error_label.setText("no frame to save yet")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save frame", f"frame-{time.strftime('%Y%m%d-%H%M%S')}.npy",
            "Frames (*.npy *.png *.h5)")
        if path:
            self.snapshot(path)

    def snapshot(self, path: str | Path) -> Path | None:
        """Save the frame on screen (not a new one); errors are shown, not raised."""
        if self.frame is None:
            self.error_label.setText("no frame to save yet")
            return None
        try:
            out = save_frame(path, self.frame, self.session.bench if self.session.connected else None)
        except Exception as exc:
            self.error_label.setText(f"snapshot failed: {exc}")
            log.error("snapshot to %s failed: %s", path, exc)
            return None
        log.info("saved the live frame to %s", out)
        return out

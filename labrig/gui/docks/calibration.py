"""The Calibration dock: the routines in run order with their state, run one or all, see each plot.

The work is `calibration.session.calibrate` in one worker (the same engine as
``labrig calibrate``): progress and each routine's start/done/failure come back
as queued progress signals; Cancel sets the event the routines poll between
frames, and the engine makes the bench safe and leaves the file as it was. The
states (not run / fresh / stale / failed), the figure (each routine's own
`plot`) and the live view's ROIs come from `calibration.show`, not from here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labrig.gui.session import Session
from labrig.gui.workers import Job, TaskContext, TaskManager

__all__ = ["CalibrationDock"]

log = logging.getLogger("labrig.gui")

STATE_COLORS = {"fresh": "#2e9e44", "stale": "#c98a00", "failed": "#d03030", "not run": "#808080",
                "running": "#2070d0"}


class CalibrationDock(QDockWidget):
    #: camera ROIs (top, left, bottom, right) of the current calibration, for the live view
    rois_changed = Signal(list)
    #: the calibration now shown (or None)
    calibration_changed = Signal(object)

    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Calibration", parent)
        self.setObjectName("dock-calibration")
        self.session = session
        self.tasks = tasks
        self.calibration: Any = None
        self.failed: dict[str, str] = {}
        self.running_routine: str | None = None
        self.job: Job | None = None

        self.path = QLineEdit(str(Path("calibration.h5")))
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        load = QPushButton("Load")
        top = QHBoxLayout()
        top.addWidget(QLabel("File"))
        top.addWidget(self.path, 1)
        top.addWidget(browse)
        top.addWidget(load)

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["routine", "state", "frames", "detail"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)

        self.run_selected = QPushButton("Run selected")
        self.run_all = QPushButton("Run all")
        self.run_all.setStyleSheet("font-weight:bold")
        self.cancel_button = QPushButton("Cancel")
        self.rois_button = QPushButton("ROIs to live view")
        self.progress = QProgressBar()
        self.status = QLabel("connect a bench to calibrate")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for w in (self.run_selected, self.run_all, self.cancel_button, self.rois_button):
            buttons.addWidget(w)
        buttons.addWidget(self.progress, 1)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.canvas)
        split.setSizes([420, 480])
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self.setWidget(body)

        browse.clicked.connect(self._browse)
        load.clicked.connect(lambda: self.load(self.path.text().strip()))
        self.run_selected.clicked.connect(lambda: self.start(self.selected_routines()))
        self.run_all.clicked.connect(lambda: self.start(["all"]))
        self.cancel_button.clicked.connect(self.cancel)
        self.rois_button.clicked.connect(self.send_rois)
        self.table.itemSelectionChanged.connect(self._show_selected_plot)
        session.bench_changed.connect(lambda _b: self.refresh())
        self.refresh()

    # -- state ----------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def states(self) -> list[tuple[str, str, str]]:
        from calibration.show import routine_states

        bench = self.session.bench if self.session.connected else None
        return routine_states(self.calibration, bench, self.failed)

    def refresh(self) -> None:
        """Redraw the routine table and the buttons from the calibration and this session's failures."""
        from calibration.session import ROUTINES

        states = self.states()
        selected = set(self.selected_routines())
        self.table.setRowCount(len(states))
        for row, (name, state, detail) in enumerate(states):
            if name == self.running_routine:
                state = "running"
            cls = ROUTINES.get(name)
            cells = (name, state, str(cls.frames_hint) if cls is not None else "-", detail)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0 and cls is not None and cls.title:
                    item.setToolTip(cls.title)
                if col == 1:
                    item.setForeground(QBrush(QColor(STATE_COLORS.get(state, "#000000"))))
                if col == 3:
                    item.setToolTip(text)
                self.table.setItem(row, col, item)
            if name in selected:
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        ready = self.session.connected and not self.running
        self.run_selected.setEnabled(ready)
        self.run_all.setEnabled(ready)
        self.cancel_button.setEnabled(self.running)
        self.rois_button.setEnabled(self.calibration is not None and bool(self.calibration.routines))
        if not self.running and not self.session.connected:
            self.status.setText("connect a bench to calibrate" if self.calibration is None
                                else f"{self.calibration.path}: connect a bench to recalibrate")

    def state_of(self, name: str) -> str:
        return {n: s for n, s, _ in self.states()}.get(name, "unknown")

    def selected_routines(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).text() for r in rows if self.table.item(r, 0) is not None]

    # -- files ----------------------------------------------------------------------------------------
    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Calibration file", self.path.text(), "Calibrations (*.h5)")
        if path:
            self.path.setText(path)
            if Path(path).exists():
                self.load(path)

    def load(self, path: str | Path) -> None:
        """Read a calibration file (small: in the UI thread) and show its routines."""
        from calibration.store import load_calibration

        try:
            cal = load_calibration(path)
        except Exception as exc:
            self.status.setText(f"cannot load: {exc}")
            log.error("cannot load calibration: %s", exc)
            return
        self.path.setText(str(path))
        self.set_calibration(cal)
        self.status.setText(f"loaded {path}: {len(cal.routines)} routines, {cal.frames} frames")

    def set_calibration(self, cal: Any) -> None:
        self.calibration = cal
        self.refresh()
        self._show_selected_plot()
        self.calibration_changed.emit(cal)

    # -- running --------------------------------------------------------------------------------------
    def start(self, routines: list[str]) -> None:
        """Run `routines` ("all" or names) in a worker; the bench is busy (live view paused) meanwhile."""
        if self.running:
            return
        if not routines:
            self.status.setText("select one or more routines (or Run all)")
            return
        try:
            bench = self.session.require_bench()
            out = Path(self.path.text().strip() or "calibration.h5")
            out.parent.mkdir(parents=True, exist_ok=True)
        except Exception as exc:
            self.status.setText(f"cannot calibrate: {exc}")
            return
        previous = self.calibration if self.calibration is not None else (out if out.exists() else None)
        self.progress.setRange(0, 0)
        self.status.setText(f"calibrating {', '.join(routines)} on {bench.profile.name} → {out}")
        self.session.set_busy(True)

        def work(ctx: TaskContext) -> Any:
            from calibration.session import calibrate

            def listener(event: str, routine: str, payload: Any) -> None:
                ctx.progress(-1, -1, {"event": event, "routine": routine,
                                      "error": str(payload) if event == "failed" else ""})

            def progress(done: int, total: int, message: str) -> None:
                ctx.progress(done, total, {"message": message})

            return calibrate(bench, routines, out=out, previous=previous, progress=progress,
                             cancel=ctx.cancel.is_set, listener=listener)

        self.job = self.tasks.start("calibrate", work, on_success=self._on_done, on_progress=self._on_progress,
                                    on_failure=self._on_failed, on_finished=self._on_finished)
        self.refresh()

    @Slot()
    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self.status.setText("cancelling: the routine stops at its next frame …")

    def _on_progress(self, done: int, total: int, metrics: object) -> None:
        m = metrics if isinstance(metrics, dict) else {}
        event = m.get("event")
        if event == "start":
            self.running_routine = m["routine"]
            self.failed.pop(m["routine"], None)
            self.refresh()
        elif event == "done":
            self.running_routine = None
        elif event == "failed":
            self.running_routine = None
            self.failed[m["routine"]] = m.get("error", "")
            self.refresh()
        elif total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(max(0, min(done, total)))
            self.status.setText(str(m.get("message", "")))

    def _on_done(self, cal: Any) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.status.setText(f"calibrated: {len(cal.routines)} routines, {cal.frames} frames → {cal.path}")
        self.set_calibration(cal)
        self.send_rois()

    def _on_failed(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"calibration failed (the file is unchanged): {message}")

    def _on_finished(self) -> None:
        self.running_routine = None
        self.session.set_busy(False)
        self.refresh()

    # -- results --------------------------------------------------------------------------------------
    @Slot()
    def send_rois(self) -> None:
        """Tell the live view where the input's image lands on the camera, per the calibration."""
        from calibration.show import calibration_rois

        if self.calibration is None or not self.calibration.routines:
            return
        try:
            rois = calibration_rois(self.calibration)
        except Exception as exc:
            self.status.setText(f"no ROIs: {exc}")
            return
        # through the session's fit check, like a program's tiles: hidden (and why) on another bench
        self.session.set_calibration_rois(rois, self.calibration.provenance.get("geometry"))
        self.rois_changed.emit(rois)

    @Slot()
    def _show_selected_plot(self) -> None:
        from calibration.show import plot_routine

        self.figure.clear()
        names = self.selected_routines()
        cal = self.calibration
        name = next((n for n in names if cal is not None and n in cal.routines), None)
        ax = self.figure.add_subplot(1, 1, 1)
        if name is None:
            ax.text(0.5, 0.5, "select a routine that has a result", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        else:
            plot_routine(name, cal.routines[name].result, ax)
        self.figure.tight_layout()
        self.canvas.draw_idle()

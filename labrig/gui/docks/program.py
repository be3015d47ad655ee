"""The Model and program dock: load a checkpoint or a compiled program, look at its
masks channel by channel and its tile layout, compile a checkpoint for this bench.

Loading and compiling run in workers and call the engine (`labrig.deploy.load_student`,
`labrig.deploy.compile_checkpoint`, the same function as ``labrig compile``); what is
drawn comes from `program_info`, which turns either kind of file into the same arrays.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labrig.experiments.catalog import CheckpointEntry, checkpoint_label, list_checkpoints
from labrig.gui import plots
from labrig.gui.program_info import ProgramView, checkpoint_view, program_view
from labrig.gui.session import Session
from labrig.gui.workers import TaskContext, TaskManager

__all__ = ["VIEWS", "ProgramDock", "load_checkpoint_file", "load_program_file"]

log = logging.getLogger("labrig.gui")

#: what the image can show; "frame" views exist for compiled programs only
VIEWS = ("mask magnitude", "mask phase", "kernel", "frame gray levels", "frame mask magnitude",
         "frame mask phase")
TILE_PEN = pg.mkPen("#1f5fbf", width=1.5)
SELECTED_PEN = pg.mkPen("#e07000", width=3)


def load_program_file(path: str | Path) -> tuple[Any, ProgramView]:
    """Read a compiled program (worker thread): (Program, its view)."""
    from labrig.deploy import load_program

    program = load_program(path)
    return program, program_view(program, str(path))


def load_checkpoint_file(path: str | Path) -> tuple[Any, ProgramView]:
    """Rebuild a student from a checkpoint (worker thread): (StudentCheckpoint, its view)."""
    from labrig.deploy import load_student

    student = load_student(path)
    return student, checkpoint_view(student.model, student.checkpoint, str(path))


class ProgramDock(QDockWidget):
    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Model and program", parent)
        self.setObjectName("dock-program")
        self.session = session
        self.tasks = tasks
        self.view_data: ProgramView | None = None
        self.student: Any = None  # a labrig.deploy.StudentCheckpoint
        self.calibration_data: Any = None
        self.bench_calibration: Any = None  # the Calibration dock's current calibration (calibration.store)
        self._tile_items: list[Any] = []

        open_program = QPushButton("Open program…")
        open_checkpoint = QPushButton("Open checkpoint…")
        self.compile_button = QPushButton("Compile for this bench")
        self.save_button = QPushButton("Save program…")
        self.status = QLabel("nothing loaded")
        self.status.setWordWrap(True)
        self.active = QLabel("active program: none")
        self.active.setWordWrap(True)
        self.active.setStyleSheet("font-weight:bold")
        self.fit = QLabel("")
        self.fit.setWordWrap(True)
        self.fit.setStyleSheet("color:#c00000")
        self.fit.hide()
        buttons = QHBoxLayout()
        for b in (open_program, open_checkpoint, self.compile_button, self.save_button):
            buttons.addWidget(b)
        open_program.setToolTip("load a compiled program (.h5): it becomes the active program")
        open_checkpoint.setToolTip("load a trained student (.pt) to look at and compile for this bench")
        self.compile_button.setToolTip("compile the loaded checkpoint for the connected bench "
                                       "(its calibration images come from the folder below)")
        self.save_button.setToolTip("save the active program to an .h5 file")
        runs_folder = QPushButton("Runs folder…")
        runs_folder.setToolTip("list the finished training runs under a folder (an experiment's "
                               "output), by name and scores")
        self.runs = QComboBox()
        self.runs.setToolTip("a run's best checkpoint: pick one to load it")
        self.runs.setPlaceholderText("no runs listed: choose a runs folder")
        runs_row = QHBoxLayout()
        runs_row.addWidget(runs_folder)
        runs_row.addWidget(self.runs, 1)

        self.calibration = QLineEdit()
        self.calibration.setPlaceholderText("dataset folder for calibration images")
        self.calibration.textEdited.connect(lambda _t: setattr(self, "calibration_data", None))
        self.calibration_count = QSpinBox()
        self.calibration_count.setRange(1, 10000)
        self.calibration_count.setValue(32)
        cal = QHBoxLayout()
        cal.addWidget(QLabel("Calibration"))
        cal.addWidget(self.calibration, 1)
        cal.addWidget(self.calibration_count)
        self.through_calibration = QCheckBox("through the bench's calibration")
        self.through_calibration.toggled.connect(lambda _c: self._update_enabled())
        self.through_calibration.setToolTip("compile for the bench as the Calibration dock's calibration measured "
                                            "it: masks optimised through the calibrated twin, ROIs, dark level, "
                                            "exposure and a per-tile readout correction from it")
        self.bench_readout = QCheckBox("readout correction from bench frames")
        self.bench_readout.setToolTip("fit the per-tile readout correction on the bench's own frames of the "
                                      "calibration images (up to 256; frames per image each; the live view "
                                      "pauses) instead of the calibrated twin's: it then takes in what the twin "
                                      "does not model")
        through = QHBoxLayout()
        through.addWidget(self.through_calibration)
        through.addWidget(self.bench_readout)
        through.addStretch(1)

        self.summary = QTableWidget(0, 2)
        self.summary.setHorizontalHeaderLabels(["", ""])
        self.summary.horizontalHeader().hide()
        self.summary.verticalHeader().hide()
        self.summary.horizontalHeader().setStretchLastSection(True)
        self.summary.verticalHeader().setDefaultSectionSize(self.summary.fontMetrics().height() + 8)
        self.summary.setMaximumHeight(150)

        self.channel = QSpinBox()
        self.channel.setRange(0, 0)
        self.what = QComboBox()
        self.what.addItems(list(VIEWS))
        self.image = plots.ColorImage()
        self.image_info = QLabel("-")
        self.layout_plot = pg.PlotWidget()
        self.layout_plot.setAspectLocked(True)
        self.layout_plot.invertY(True)
        self.layout_plot.setMinimumSize(160, 140)
        self.image.setMinimumSize(160, 140)
        self.layout_plot.setTitle("tiles on the camera")
        pick = QFormLayout()
        pick.addRow("Channel", self.channel)
        pick.addRow("Show", self.what)
        views = QHBoxLayout()
        views.addWidget(self.image, 1)
        views.addWidget(self.layout_plot, 1)
        masks = QGroupBox("Masks and layout")
        mlayout = QVBoxLayout(masks)
        mlayout.addLayout(pick)
        mlayout.addLayout(views, 1)
        mlayout.addWidget(self.image_info)
        # the plots take the height the dock has left (not their preferred one, which would
        # scroll them out of a short dock)
        masks.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        masks.setMinimumHeight(240)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addLayout(runs_row)
        layout.addLayout(cal)
        layout.addLayout(through)
        layout.addWidget(self.status)
        layout.addWidget(self.active)
        layout.addWidget(self.fit)
        layout.addWidget(self.summary)
        layout.addWidget(masks, 1)
        self.setWidget(body)

        open_program.clicked.connect(self._open_program_dialog)
        open_checkpoint.clicked.connect(self._open_checkpoint_dialog)
        runs_folder.clicked.connect(self._runs_folder_dialog)
        self.runs.activated.connect(self._run_picked)
        self.compile_button.clicked.connect(self.compile)
        self.save_button.clicked.connect(self._save_dialog)
        self.channel.valueChanged.connect(lambda _v: self.redraw())
        self.what.currentTextChanged.connect(lambda _t: self.redraw())
        session.bench_changed.connect(lambda _b: self._update_enabled())
        session.busy_changed.connect(lambda _b: self._update_enabled())
        session.fit_changed.connect(self._show_fit)
        self._update_enabled()

    # -- loading ----------------------------------------------------------------------------------
    @Slot()
    def _open_program_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a compiled program", "",
                                              "Programs (*.h5 *.hdf5)")
        if path:
            self.open_program(path)

    @Slot()
    def _open_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a student checkpoint", "",
                                              "Checkpoints (*.pt *.pth)")
        if path:
            self.open_checkpoint(path)

    @Slot()
    def _runs_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of training runs")
        if folder:
            self.show_runs(folder)

    def show_runs(self, folder: str | Path) -> None:
        """List the runs' checkpoints under `folder` (worker: a big folder takes a while)."""
        self.tasks.start(f"list runs in {Path(folder).name}", lambda _ctx: list_checkpoints(folder),
                         on_success=self._runs_listed, on_failure=self._failed)

    def _runs_listed(self, entries: list[CheckpointEntry]) -> None:
        self.runs.clear()
        for entry in entries:
            self.runs.addItem(entry.label, str(entry.path))
            self.runs.setItemData(self.runs.count() - 1, str(entry.path), Qt.ItemDataRole.ToolTipRole)
        self.runs.setCurrentIndex(-1)
        self.status.setText(f"{len(entries)} run(s) listed: pick one to load its checkpoint")

    @Slot(int)
    def _run_picked(self, index: int) -> None:
        path = self.runs.itemData(index)
        if path:
            self.open_checkpoint(path)

    def open_program(self, path: str | Path) -> None:
        """Load a compiled program in a worker; it becomes the session's program."""
        self.status.setText(f"loading {path} …")
        self.tasks.start(f"load program {Path(path).name}", lambda _ctx: load_program_file(path),
                         on_success=lambda r: self._program_loaded(r, Path(path)),
                         on_failure=self._failed)

    def open_checkpoint(self, path: str | Path) -> None:
        """Load a student checkpoint in a worker, for viewing and compiling."""
        self.status.setText(f"loading {path} …")
        self.tasks.start(f"load checkpoint {Path(path).name}", lambda _ctx: load_checkpoint_file(path),
                         on_success=lambda r: self._checkpoint_loaded(r, Path(path)),
                         on_failure=self._failed)

    def _program_loaded(self, result: tuple[Any, ProgramView], path: Path | None) -> None:
        program, view = result
        self.session.set_program(program, path)
        self.status.setText(f"program {path.name if path else '(compiled, unsaved)'}: "
                            f"{view.channels} channels on {view.frames} frame(s)")
        self.set_view(view)
        log.info("program %s loaded", path or "(compiled)")

    def _checkpoint_loaded(self, result: tuple[Any, ProgramView], path: Path) -> None:
        self.student, view = result
        replaced = self.session.program is not None
        self.session.set_program(None)  # one active program: the checkpoint replaces it until compiled
        self.status.setText(f"checkpoint {checkpoint_label(path)}: {view.channels} channels "
                            "(compile it to run)"
                            + ("; the program loaded before is no longer active" if replaced else ""))
        if replaced:
            log.info("checkpoint %s replaces the active program: compile it to run", path.name)
        self.set_view(view)
        self._update_enabled()
        log.info("checkpoint %s loaded", path)

    def _failed(self, message: str) -> None:
        self.status.setText(f"failed: {message}")

    @Slot(list)
    def _show_fit(self, problems: list[str]) -> None:
        """Which program is active, and whether it fits the open bench (checked at load)."""
        program, path = self.session.program, self.session.program_path
        if program is None:
            self.active.setText("active program: none (open a program, or compile a checkpoint)")
        else:
            name = path.name if path is not None else "compiled, unsaved"
            bench = self.session.bench if self.session.connected else None
            where = f" on bench {bench.profile.name}" if bench is not None else " (no bench to check it on)"
            verdict = "does NOT fit" if problems else ("fits" if bench is not None else "")
            self.active.setText(f"active program: {name}, compiled for {getattr(program, 'profile', '?')}; "
                                f"{verdict}{where}")
        self.fit.setText("does not fit: " + "; ".join(problems) + " (ROIs hidden, Run refused)"
                         if problems else "")
        self.fit.setVisible(bool(problems))

    # -- compiling --------------------------------------------------------------------------------
    @Slot()
    def compile(self) -> None:
        """Compile the loaded student for the connected bench's profile (worker)."""
        if self.student is None:
            self.status.setText("open a checkpoint first")
            return
        bench = self.session.bench if self.session.connected else None
        if bench is None:
            self.status.setText("connect a bench first: a program is compiled for its profile")
            return
        folder = self.calibration.text().strip()
        count = self.calibration_count.value()
        student, profile, data = self.student, bench.profile, self.calibration_data
        if data is None and not folder:
            self.status.setText("choose a dataset folder for the calibration images (they set the "
                                "exposure)")
            return
        calibration = self.bench_calibration if self.through_calibration.isChecked() else None
        if self.through_calibration.isChecked() and calibration is None:
            self.status.setText("no calibration: load or run one in the Calibration dock first")
            return
        on_bench = calibration is not None and self.bench_readout.isChecked()

        def work(ctx: TaskContext) -> tuple[Any, ProgramView]:
            from labrig.deploy import compile_checkpoint
            from labrig.deploy.refine import RefineConfig

            program = compile_checkpoint(student, profile, data if data is not None else folder,
                                         calibration_images=count, progress=ctx.progress, cancel=ctx.cancel,
                                         calibration=calibration, refine=RefineConfig(bench_readout=on_bench),
                                         bench=bench)
            return program, program_view(program)

        how = " through the calibration" if calibration is not None else ""
        self.status.setText(f"compiling for {profile.name}{how} …"
                            + (" (measuring the readout on the bench)" if on_bench else ""))
        if on_bench:
            self.session.set_busy(True)  # the bench takes frames: the live view waits
        self.tasks.start("compile", work, on_success=lambda r: self._program_loaded(r, None),
                         on_failure=self._failed,
                         on_finished=(lambda: self.session.set_busy(False)) if on_bench else None)

    def set_bench_calibration(self, calibration: Any) -> None:
        """The Calibration dock's current calibration: what "through the bench's calibration" compiles for."""
        self.bench_calibration = calibration
        self._update_enabled()

    def set_calibration_images(self, data: Any, label: str = "") -> None:
        """Calibrate with in-memory images (a dataset or (N, H, W) in [0, 1]) instead of a folder."""
        self.calibration_data = data
        self.calibration.setText(label or getattr(data, "name", "") or "(in memory)")

    @Slot()
    def _save_dialog(self) -> None:
        if self.session.program is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save program", "program.h5", "Programs (*.h5)")
        if path:
            self.save_program(path)

    def save_program(self, path: str | Path) -> None:
        from labrig.deploy import save_program

        try:
            out = save_program(self.session.program, path)
        except Exception as exc:
            self.status.setText(f"saving failed: {exc}")
            log.error("saving the program to %s failed: %s", path, exc)
            return
        self.session.set_program(self.session.program, out)
        self.status.setText(f"saved {out}")

    def _update_enabled(self) -> None:
        busy = self.session.busy
        self.compile_button.setEnabled(self.student is not None and self.session.connected and not busy)
        self.through_calibration.setEnabled(self.bench_calibration is not None)
        if self.bench_calibration is None:
            self.through_calibration.setChecked(False)
        self.bench_readout.setEnabled(self.through_calibration.isChecked())
        self.save_button.setEnabled(self.session.program is not None)

    # -- drawing ----------------------------------------------------------------------------------
    def set_view(self, view: ProgramView) -> None:
        self.view_data = view
        self.summary.setRowCount(len(view.summary))
        for row, (key, value) in enumerate(view.summary):
            for col, text in enumerate((key, value)):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.summary.setItem(row, col, item)
        self.summary.resizeColumnToContents(0)
        self.channel.setRange(0, max(0, view.channels - 1))
        self._update_enabled()
        self.redraw()

    def redraw(self) -> None:
        view = self.view_data
        if view is None:
            return
        k = min(self.channel.value(), view.channels - 1)
        what = self.what.currentText()
        frame = view.frame_of(k)
        cyclic, gray = plots.cyclic_colormap(), plots.gray_colormap()
        if what.startswith("frame") and view.frame_gray is None:
            self.image.clear_image()
            self.image_info.setText("frame views need a compiled program")
        elif what == "mask magnitude":
            mag = np.abs(view.channel_masks[k])
            self.image.show_array(mag, (0.0, float(mag.max())), gray)
            self.image_info.setText(f"channel {k}: |H|, max {mag.max():.3g}")
        elif what == "mask phase":
            self.image.show_array(np.angle(view.channel_masks[k]), (-math.pi, math.pi), cyclic)
            self.image_info.setText(f"channel {k}: arg H (rad)")
        elif what == "kernel":
            ker = np.real(view.kernels[k])
            lim = float(np.abs(ker).max()) or 1.0
            self.image.show_array(ker, (-lim, lim), plots.diverging_colormap())
            self.image_info.setText(f"channel {k}: kernel {ker.shape[1]}×{ker.shape[0]}")
        elif what == "frame gray levels":
            levels = len(view.lut) if view.lut is not None else 256
            self.image.show_array(view.frame_gray[frame], (0, levels - 1), gray)
            self.image_info.setText(f"frame {frame} (channels {view.groups[frame]}): filter SLM gray levels")
        elif what == "frame mask magnitude" and view.frame_masks is not None:
            mag = np.abs(view.frame_masks[frame])
            self.image.show_array(mag, (0.0, 1.0), gray)
            self.image_info.setText(f"frame {frame}: |H| of the multiplexed mask (normalised)")
        elif what == "frame mask phase" and view.frame_masks is not None:
            self.image.show_array(np.angle(view.frame_masks[frame]), (-math.pi, math.pi), cyclic)
            self.image_info.setText(f"frame {frame}: arg H of the multiplexed mask (rad)")
        self._draw_tiles(view, k)

    def _draw_tiles(self, view: ProgramView, selected: int) -> None:
        plot = self.layout_plot
        for item in self._tile_items:
            plot.removeItem(item)
        self._tile_items = []
        if view.camera_shape is None or not view.rois:
            return
        rows, cols = view.camera_shape
        outline = pg.QtWidgets.QGraphicsRectItem(0, 0, cols, rows)
        outline.setPen(pg.mkPen("#808080"))
        plot.addItem(outline)
        self._tile_items.append(outline)
        group = view.groups[view.frame_of(selected)] if view.groups else list(range(len(view.rois)))
        for k, (top, left, bottom, right) in enumerate(view.rois):
            # the ROIs of one frame; with time multiplexing tile k of each frame shares them
            channel = group[k] if k < len(group) else k
            rect = pg.QtWidgets.QGraphicsRectItem(left, top, right - left, bottom - top)
            rect.setPen(SELECTED_PEN if channel == selected else TILE_PEN)
            label = pg.TextItem(str(channel), color="#1f5fbf", anchor=(0.5, 0.5))
            label.setPos((left + right) / 2, (top + bottom) / 2)
            for item in (rect, label):
                plot.addItem(item)
                self._tile_items.append(item)
        plot.autoRange()

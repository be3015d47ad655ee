"""The Run dock: run a dataset through the bench with progress and cancel, then look at
the outcome: accuracy, a confusion matrix and every image with its tiles and prediction.

The run itself is `labrig.deploy.run_and_report` (the engine of ``labrig run``) in a
worker thread: it arms the light, streams the images, writes the run file chunk by
chunk and makes the bench safe however it ends; Cancel sets the event it polls
between chunks. What comes back (`RunOutcome`: the result, partial after a fault,
the images, the confusion matrix) is only shown here. While it runs the session
is busy, so the live view and the pattern controls step aside.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labrig.gui import plots
from labrig.gui.runview import RunRecords, tile_strip
from labrig.gui.session import Session
from labrig.gui.workers import Job, TaskContext, TaskManager

__all__ = ["RunDock"]

log = logging.getLogger("labrig.gui")


#: what Cancel does, as the engine does it: the event is polled between chunks, and the
#: chunk on the devices plus the one being decoded (the pipeline) still finish and are saved
CANCEL_TEXT = ("stops at the next chunk boundary: the images already sent to the devices (at most two chunks) "
               "are measured and saved, then the light goes off; the run file can be resumed")


def fresh_path(path: Path) -> Path:
    """`path` if no file is there, else a new name beside it (``name-2.h5``, ``name-3.h5`` ...)."""
    if not path.exists():
        return path
    stem, _, tail = path.stem.rpartition("-")
    stem = stem if stem and tail.isdigit() else path.stem  # run-2.h5 is followed by run-3.h5
    n = 2
    while (candidate := path.with_name(f"{stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def _say(line: str) -> None:
    """A line about the devices' settings around a run (from the worker: logging is thread-safe)."""
    level = logging.WARNING if "NOT" in line else logging.INFO
    log.log(level, "%s", line)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


class RunDock(QDockWidget):
    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Run", parent)
        self.setObjectName("dock-run")
        self.session = session
        self.tasks = tasks
        self.dataset: Any = None
        self.job: Job | None = None
        self.result: Any = None
        self.records: RunRecords | None = None
        self.last_metrics: dict[str, Any] = {}
        self.outcome: Any = None  # the last labrig.deploy.RunOutcome
        self.failure: str | None = None  # why the last run failed (kept on screen until the next)
        #: the confusion cell (true, predicted) the browser is limited to, and its images
        self.cell_filter: tuple[int, int] | None = None
        self.filtered: np.ndarray = np.zeros(0, np.int64)

        # what to run
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("dataset folder (IDX, CIFAR or class folders)")
        self.data_path.setToolTip("the images to run through the program on the bench")
        browse_data = QPushButton("…")
        browse_data.setFixedWidth(28)
        self.split = QComboBox()
        self.split.addItems(["test", "train"])
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setPrefix("first ")
        self.limit.setValue(1000)
        self.limit.setToolTip("how many images of the split to run (0: all)")
        self.out_path = QLineEdit(self._default_out())
        self.out_path.setToolTip("the run file (.h5) that receives every frame and prediction")
        browse_out = QPushButton("…")
        browse_out.setFixedWidth(28)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setValue(64)
        self.batch.setPrefix("chunk ")
        self.batch.setToolTip("images per chunk: progress is saved and Cancel takes effect between chunks")
        self.resume = QCheckBox("resume")
        self.resume.setChecked(False)
        self.resume.setToolTip("continue the unfinished run file named here (same program and images);\n"
                               "unticked, every run writes a fresh file")
        self.twin = QCheckBox("compare with twin")
        self.twin.setToolTip("also run every image through the program's ideal digital twin: "
                             "the gap to it is what calibration and in-situ training must close")
        self.reregister = QSpinBox()
        self.reregister.setRange(0, 1_000_000)
        self.reregister.setSingleStep(100)
        self.reregister.setValue(0)
        self.reregister.setSpecialValueText("drift: off")
        self.reregister.setPrefix("re-register every ")
        self.reregister.setSuffix(" images")
        self.reregister.setToolTip("follow the bench's drift: register the frames against the program's twin every N\n"
                                   "images (sooner when the residual grows), from frames the run takes anyway\n"
                                   "(as labrig run --reregister-every N); 0: off")
        grid = QGridLayout()
        grid.addWidget(QLabel("Dataset"), 0, 0)
        grid.addWidget(self.data_path, 0, 1)
        grid.addWidget(browse_data, 0, 2)
        grid.addWidget(self.split, 0, 3)
        grid.addWidget(self.limit, 0, 4)
        grid.addWidget(QLabel("Run file"), 1, 0)
        grid.addWidget(self.out_path, 1, 1)
        grid.addWidget(browse_out, 1, 2)
        grid.addWidget(self.batch, 1, 3)
        grid.addWidget(self.resume, 1, 4)
        grid.addWidget(self.twin, 1, 5)
        grid.addWidget(self.reregister, 0, 5)
        grid.setColumnStretch(1, 1)

        # running
        self.run_button = QPushButton("Run")
        self.run_button.setStyleSheet("font-weight:bold")
        self.run_button.setToolTip("run the active program on these images; settings it changes are "
                                   "logged and put back after (the light stays off)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(CANCEL_TEXT)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m images")
        self.status = QLabel("load a program and connect a bench to run")
        self.status.setWordWrap(True)
        self.accuracy = QLabel("accuracy -")
        self.accuracy.setStyleSheet("font-size:15px; font-weight:bold")
        self.rates = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.accuracy)
        row.addWidget(self.rates)

        # outcome: confusion matrix | image browser
        self.confusion = QTableWidget(0, 0)
        self.confusion.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.confusion.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.confusion.setToolTip("click a cell to browse the images of that true and predicted class")
        for header, least in ((self.confusion.horizontalHeader(), 26), (self.confusion.verticalHeader(), 22)):
            # the matrix shares the dock's space: cells stretch to fit it and shrink down to
            # a readable minimum (a count, a line of text), beyond which the table scrolls
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            header.setMinimumSectionSize(least)
        self.confusion.setMinimumSize(160, 120)
        conf_box = QGroupBox("Confusion (rows: true, columns: predicted)")
        QVBoxLayout(conf_box).addWidget(self.confusion)
        self.filter_label = QLabel("")
        self.filter_label.setWordWrap(True)
        self.show_all = QPushButton("All images")
        self.show_all.setToolTip("browse every image again (not only one confusion cell's)")
        self.filter_label.hide()
        self.show_all.hide()
        self.index = QSpinBox()
        self.index.setRange(0, 0)
        self.errors_only = QCheckBox("errors only")
        self.index.setToolTip("which image of the run to show")
        self.errors_only.setToolTip("step only through misclassified images")
        prev_button, next_button = QPushButton("◀"), QPushButton("▶")
        self.verdict = QLabel("-")
        self.verdict.setStyleSheet("font-size:14px")
        self.image = plots.ColorImage()
        self.tiles = plots.ColorImage()
        nav = QHBoxLayout()
        nav.addWidget(QLabel("Image"))
        nav.addWidget(prev_button)
        nav.addWidget(self.index)
        nav.addWidget(next_button)
        nav.addWidget(self.errors_only)
        nav.addWidget(self.show_all)
        nav.addStretch(1)
        pics = QHBoxLayout()
        pics.addWidget(self.image, 1)
        pics.addWidget(self.tiles, 2)
        browse_box = QGroupBox("Images")
        blayout = QVBoxLayout(browse_box)
        blayout.addLayout(nav)
        blayout.addWidget(self.filter_label)
        blayout.addWidget(self.verdict)
        blayout.addLayout(pics, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(conf_box)
        split.addWidget(browse_box)
        split.setStretchFactor(1, 2)
        split.setSizes([440, 900])
        # the outcome takes the height the dock has, not what its pictures would like: a
        # preferred height here would make the dock's scroll area scroll the matrix off screen
        split.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.image.setMinimumSize(120, 100)
        self.tiles.setMinimumSize(160, 100)
        split.setMinimumHeight(160)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(grid)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self.setWidget(body)

        browse_data.clicked.connect(self._browse_data)
        browse_out.clicked.connect(self._browse_out)
        self.data_path.textEdited.connect(lambda _t: setattr(self, "dataset", None))
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.index.valueChanged.connect(self.show_image)
        self.confusion.cellClicked.connect(self.filter_cell)
        self.show_all.clicked.connect(self.clear_filter)
        prev_button.clicked.connect(lambda: self._step(-1))
        next_button.clicked.connect(lambda: self._step(1))
        session.bench_changed.connect(lambda _b: self._update_enabled())
        session.program_changed.connect(lambda _p: self._update_enabled())
        session.fit_changed.connect(lambda _p: self._update_enabled())
        self._update_enabled()

    @staticmethod
    def _default_out() -> str:
        return str(Path("runs") / f"console-{_dt.datetime.now():%Y%m%d-%H%M%S}.h5")

    # -- inputs -------------------------------------------------------------------------------------
    @Slot()
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if path:
            self.data_path.setText(path)
            self.dataset = None

    @Slot()
    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Run file", self.out_path.text(), "Runs (*.h5)")
        if path:
            self.out_path.setText(path)

    def set_dataset(self, dataset: Any, label: str = "") -> None:
        """Run an in-memory dataset (an `ImageDataset` or (images, labels)) instead of a folder."""
        self.dataset = dataset
        self.data_path.setText(label or getattr(dataset, "name", "") or "(in memory)")

    # -- running -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def _update_enabled(self) -> None:
        misfit = bool(self.session.misfits)
        ready = self.session.connected and self.session.program is not None and not misfit
        self.run_button.setEnabled(ready and not self.running)
        self.cancel_button.setEnabled(self.running)
        if not self.running and misfit:
            self.status.setText("cannot run: the program does not fit this bench: " + "; ".join(self.session.misfits))
        elif self.failure is not None:
            pass  # the failure stays in the status line until the next run
        elif not self.running and not ready and self.result is None:
            self.status.setText("load a program and connect a bench to run")
        elif not self.running and ready and self.result is None:
            self.status.setText("ready")

    @Slot()
    def start_run(self) -> None:
        """Run the program over the dataset in a worker; the bench is busy until it ends."""
        if self.running:
            return
        try:
            bench = self.session.require_bench()
            program = self.session.program
            if program is None:
                raise ValueError("load or compile a program first")
            if self.dataset is None and not self.data_path.text().strip():
                raise ValueError("choose a dataset folder to run")
            out = Path(self.out_path.text().strip() or self._default_out())
            out.parent.mkdir(parents=True, exist_ok=True)
            resume = self.resume.isChecked()
            resumed_at = self._resumable(out) if resume else 0
            if not resume and out.exists():  # a fresh file per run unless the operator resumes one
                fresh = fresh_path(out)
                log.info("run file %s exists and resume is off: this run writes %s", out, fresh)
                out = fresh
                self.out_path.setText(str(out))
        except Exception as exc:
            self.status.setText(f"cannot run: {exc}")
            log.error("cannot run: %s", exc)
            return
        limit = self.limit.value() or None
        batch, twin = self.batch.value(), self.twin.isChecked()
        every = self.reregister.value()
        self.clear_results()
        self.failure = None
        self.progress.setRange(0, max(limit or 0, resumed_at))
        self.progress.setValue(resumed_at)
        self.status.setText(f"running {program.profile} program on {bench.profile.name} → {out}"
                            + (f" (resuming after image {resumed_at})" if resumed_at else ""))
        self.session.set_busy(True)  # the live view lets go of the camera first

        # read the widgets here, in the UI thread; the worker only gets plain values
        data = self.dataset if self.dataset is not None else self.data_path.text().strip()
        split = self.split.currentText()

        def work(ctx: TaskContext) -> Any:
            from labrig.deploy import run_and_report
            from labrig.deploy.setpoints import kept_setpoints
            from labrig.deploy.track import DriftConfig

            with kept_setpoints(bench, _say):  # every setting the run changes is logged, and put back
                return run_and_report(bench, program, data, out, split=split, limit=limit, batch=batch,
                                      resume=resume, twin=twin, device="auto", progress=ctx.progress,
                                      cancel=ctx.cancel, drift=DriftConfig(every=every) if every else None)

        self.job = self.tasks.start("run", work, on_success=self._on_done, on_progress=self._on_progress,
                                    on_failure=self._on_failed, on_finished=self._on_finished)
        self._update_enabled()

    @staticmethod
    def _resumable(out: Path) -> int:
        """Images an existing run file already holds (0: none, or not readable: the engine says why)."""
        if not out.exists():
            return 0
        from labrig.deploy.runfile import read_run

        try:
            return int(read_run(out).get("done", 0))
        except Exception:
            return 0

    def clear_results(self) -> None:
        """Forget the last run's outcome on screen (a new run starts, or one failed)."""
        self.result, self.records, self.outcome, self.last_metrics = None, None, None, {}
        self.accuracy.setText("accuracy -")
        self.rates.setText("")
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.index.setRange(0, 0)
        self.image.clear_image()
        self.tiles.clear_image()
        self.verdict.setText("-")
        self.clear_filter()

    @Slot()
    def cancel_run(self) -> None:
        """Ask the run to stop at its next chunk boundary (`CANCEL_TEXT`); the file stays valid."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.setText("cancelling: " + CANCEL_TEXT + " …")
            log.info("run cancelled by the operator")

    def _on_progress(self, done: int, total: int, metrics: object) -> None:
        m = dict(metrics) if isinstance(metrics, dict) else {}
        frame = m.pop("last_frame", None)
        if frame is not None:  # the live view shows what the run sees (at its own bounded rate)
            self.session.run_frame.emit(frame)
        self.last_metrics = m
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.accuracy.setText(self._accuracy_text(m.get("accuracy"), m.get("twin_accuracy")))
        fps = m.get("frames_per_s")
        if fps:
            self.rates.setText(f"{fps:.0f} frames/s")

    def _on_done(self, outcome: Any) -> None:
        self.outcome = outcome
        result = self.result = outcome.result
        self.records = RunRecords(result, outcome.images, outcome.class_names)
        self.progress.setMaximum(max(1, result.total))
        self.progress.setValue(result.images)
        self.accuracy.setText(self._accuracy_text(result.accuracy, result.twin_accuracy))
        self.rates.setText(f"{result.frames_per_s:.0f} frames/s, {result.images_per_s:.0f} images/s")
        self.status.setText(f"run {result.status}: {result.images} of {result.total} images"
                            + (f"; {result.path}" if result.path else "")
                            + (f"; {result.error}" if result.error else ""))
        log.info("run %s: %d of %d images, accuracy %s", result.status, result.images, result.total,
                 _pct(result.accuracy))
        self.clear_filter()
        self._show_confusion()
        self.index.setRange(0, max(0, result.images - 1))
        self.show_image(self.index.value())
        if outcome.failure is not None:  # a device fault: the partial run is shown, the fault reported
            message = " ".join(str(outcome.failure).split())
            self.status.setText(f"run failed: {type(outcome.failure).__name__}: {message}")
            self.tasks.report("run", f"{type(outcome.failure).__name__}: {message}")

    @staticmethod
    def _accuracy_text(accuracy: float | None, twin: float | None) -> str:
        return f"accuracy {_pct(accuracy)}" + (f"  (twin {_pct(twin)})" if twin is not None else "")

    def _on_failed(self, message: str) -> None:
        self.clear_results()  # nothing of an earlier run stays on screen as if it were this one's
        self.failure = message
        self.status.setText(f"run failed: {message}")

    def _on_finished(self) -> None:
        self.session.set_busy(False)
        for role in ("input", "filter"):  # the Patterns dock shows what the SLMs hold now
            self.session.pattern_changed.emit(role)
        self._update_enabled()

    # -- outcome ----------------------------------------------------------------------------------
    def _show_confusion(self) -> None:
        records, outcome = self.records, self.outcome
        matrix = outcome.confusion() if outcome is not None else None
        if matrix is None or records is None:
            self.confusion.setRowCount(0)
            self.confusion.setColumnCount(0)
            return
        k = len(matrix)
        names = [records.class_name(i) for i in range(k)]
        self.confusion.setRowCount(k)
        self.confusion.setColumnCount(k)
        self.confusion.setHorizontalHeaderLabels(names)
        self.confusion.setVerticalHeaderLabels(names)
        peak = max(1, int(matrix.max()))
        for r in range(k):
            for c in range(k):
                n = int(matrix[r, c])
                cell = QTableWidgetItem(str(n) if n else "")
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                shade = int(255 - 180 * n / peak)
                colour = QColor(shade, shade, 255) if r == c else QColor(255, shade, shade)
                if n:
                    cell.setBackground(QBrush(colour))
                cell.setToolTip(f"true {names[r]}, predicted {names[c]}: {n} image{'s' * (n != 1)}"
                                + (" (click to browse them)" if n else ""))
                self.confusion.setItem(r, c, cell)

    @Slot(int, int)
    def filter_cell(self, true: int, predicted: int) -> None:
        """Limit the browser to the images of one confusion cell (true class, predicted class)
        and show the first of them; ◀ ▶ then step through those only."""
        records = self.records
        if records is None:
            return
        hits = records.matching(true, predicted)
        what = f"true {records.class_name(true)}, predicted {records.class_name(predicted)}"
        if not len(hits):
            self.status.setText(f"no image is {what}")
            return
        self.cell_filter, self.filtered = (true, predicted), hits
        self.errors_only.setEnabled(False)  # the cell says which images; errors-only would fight it
        self.show_all.show()
        self.filter_label.show()
        if self.index.value() in hits:
            self.show_image(self.index.value())
        else:
            self.index.setValue(int(hits[0]))  # -> show_image
        log.info("browsing the %d images %s", len(hits), what)

    @Slot()
    def clear_filter(self) -> None:
        """Browse every image again."""
        self.cell_filter, self.filtered = None, np.zeros(0, np.int64)
        self.errors_only.setEnabled(True)
        self.show_all.hide()
        self.filter_label.hide()
        self.confusion.clearSelection()

    def _filter_text(self, i: int) -> str:
        records, cell = self.records, self.cell_filter
        if records is None or cell is None:
            return ""
        what = f"true <b>{records.class_name(cell[0])}</b>, predicted <b>{records.class_name(cell[1])}</b>"
        where = np.flatnonzero(self.filtered == i)
        place = f"image {where[0] + 1} of {len(self.filtered)}" if len(where) else "this image is not one of them"
        return f"showing the {len(self.filtered)} images {what}: {place} (◀ ▶ step through them)"

    def _step(self, direction: int) -> None:
        records = self.records
        if records is None or records.count == 0:
            return
        i = self.index.value()
        if self.cell_filter is not None:  # the next (previous) image of the chosen cell
            hits = self.filtered
            k = (np.searchsorted(hits, i, side="right") if direction > 0
                 else np.searchsorted(hits, i, side="left") - 1)
            self.index.setValue(int(hits[k % len(hits)]))
            return
        for _ in range(records.count):
            i = (i + direction) % records.count
            if not self.errors_only.isChecked() or self._is_error(i):
                break
        self.index.setValue(i)

    def _is_error(self, i: int) -> bool:
        records = self.records
        if records is None or records.labels is None or i >= len(records.predictions):
            return False
        return bool(records.labels[i] >= 0 and records.labels[i] != records.predictions[i])

    @Slot(int)
    def show_image(self, i: int) -> None:
        records = self.records
        if records is None or records.count == 0:
            return
        try:
            rec = records.record(i)
        except Exception as exc:
            self.verdict.setText(f"image {i}: {exc}")
            return
        gray = plots.gray_colormap()
        if rec.image is not None:
            self.image.show_array(rec.image, (0.0, 1.0), gray)
        else:
            self.image.clear_image()
        if rec.tiles is not None:
            strip = tile_strip(rec.tiles)
            finite = strip[np.isfinite(strip)]
            self.tiles.show_array(strip, (float(finite.min()), float(finite.max())),
                                  plots.heat_colormap())
        else:
            self.tiles.clear_image()
        if self.cell_filter is not None:
            self.filter_label.setText(self._filter_text(i))
        truth, guess = records.class_name(rec.label), records.class_name(rec.prediction)
        mark = "" if rec.label is None else ("  ✔" if rec.label == rec.prediction else "  ✘")
        self.verdict.setText(f"image {i}: true <b>{truth}</b>, predicted <b>{guess}</b>{mark}"
                             f"   ({0 if rec.tiles is None else len(rec.tiles)} tiles, camera counts)")

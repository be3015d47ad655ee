"""The Fine-tune dock: in-situ (physics-aware) training of the loaded program on the bench.

The work is `labrig.hil.api.finetune` in a worker thread (the same engine as
``labrig finetune``): it arms the light, measures, checkpoints into the output
folder and makes the bench safe however it ends. The dock shows the loss per
step and the bench/twin accuracy against the bench frames used, the frames
spent, and offers pause (between steps), stop (the run checkpoints and can be
resumed) and save (the new program, with its lineage, also loaded into the
session so the Program dock shows it).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labrig.gui.session import Session
from labrig.gui.workers import Job, TaskContext, TaskManager

__all__ = ["FineTuneDock"]

log = logging.getLogger("labrig.gui")


class FineTuneDock(QDockWidget):
    #: a fine-tuned program was saved (its path): the Program dock shows it with its lineage
    program_saved = Signal(str)

    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Fine-tune", parent)
        self.setObjectName("dock-finetune")
        self.session, self.tasks = session, tasks
        self.job: Job | None = None
        self.pause_event = threading.Event()
        self.dataset: Any = None
        self.eval_dataset: Any = None
        self.result: Any = None
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.evals: list[dict[str, Any]] = []

        self.calibration = QLineEdit()
        self.calibration.setPlaceholderText("calibration file (cal.h5); empty: the nominal twin")
        browse_cal = QPushButton("…")
        browse_cal.setFixedWidth(28)
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("dataset folder (train split trains, test split evaluates)")
        self.mode = QComboBox()
        self.mode.addItems(["pat", "backend", "twin"])
        self.mode.setToolTip("pat: masks + back end, physics-aware; backend: back end on measured tiles; "
                             "twin: retrain through the calibrated twin only (control)")
        self.n_steps = self._spin(1, 1_000_000, 300, "steps ")
        self.batch = self._spin(1, 4096, 32, "batch ")
        self.budget = self._spin(0, 10_000_000, 30_000, "frames ")
        self.budget.setSpecialValueText("no budget")
        self.n_eval = self._spin(0, 100_000, 500, "evaluate on ")
        self.pretrain = self._spin(0, 1_000_000, 0, "pre-train ")
        self.pretrain.setToolTip("steps through the calibrated twin before the bench steps (no bench frames)")
        self.residual = self._spin(0, 100_000, 0, "residual images ")
        self.residual.setToolTip("images measured first to fit the twin's learned residual (0: none)")
        self.residual_refit_every = self._spin(0, 1_000_000, 0, "refit every ")
        self.residual_refit_every.setToolTip("steps between refits of the residual (0: once)")
        self.out_dir = QLineEdit(str(Path("runs") / f"finetune-{_dt.datetime.now():%Y%m%d-%H%M%S}"))
        grid = QGridLayout()
        grid.addWidget(QLabel("Calibration"), 0, 0)
        grid.addWidget(self.calibration, 0, 1)
        grid.addWidget(browse_cal, 0, 2)
        grid.addWidget(self.mode, 0, 3)
        grid.addWidget(QLabel("Dataset"), 1, 0)
        grid.addWidget(self.data_path, 1, 1)
        grid.addWidget(self.n_steps, 1, 3)
        grid.addWidget(QLabel("Output"), 2, 0)
        grid.addWidget(self.out_dir, 2, 1)
        grid.addWidget(self.batch, 2, 3)
        grid.addWidget(self.budget, 3, 3)
        grid.addWidget(self.n_eval, 3, 1)
        tuning = QHBoxLayout()
        for box in (self.pretrain, self.residual, self.residual_refit_every):
            tuning.addWidget(box)
        grid.addLayout(tuning, 4, 1, 1, 3)
        grid.setColumnStretch(1, 1)

        self.start_button = QPushButton("Start")
        self.start_button.setStyleSheet("font-weight:bold")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save program…")
        self.frames = QLabel("frames 0")
        self.status = QLabel("load a program and connect a bench")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        for w in (self.start_button, self.pause_button, self.stop_button, self.save_button):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.frames)

        self.loss_plot = pg.PlotWidget(title="loss per step")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("w"))
        self.acc_plot = pg.PlotWidget(title="accuracy (%) against bench frames")
        self.acc_plot.setLabel("bottom", "bench frames")
        self.acc_plot.addLegend()
        self.bench_curve = self.acc_plot.plot(pen=pg.mkPen("y", width=2), symbol="o", name="bench")
        self.twin_curve = self.acc_plot.plot(pen=pg.mkPen("c", style=pg.QtCore.Qt.PenStyle.DashLine),
                                             symbol="t", name="twin")
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.acc_plot, 1)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(grid)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(plots, 1)
        self.setWidget(body)

        browse_cal.clicked.connect(self._browse_calibration)
        self.start_button.clicked.connect(self.start)
        self.pause_button.toggled.connect(self.set_paused)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_dialog)
        session.bench_changed.connect(lambda _b: self._update_enabled())
        session.program_changed.connect(lambda _p: self._update_enabled())
        self._update_enabled()

    @staticmethod
    def _spin(lo: int, hi: int, value: int, prefix: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(lo, hi)
        box.setValue(value)
        box.setPrefix(prefix)
        return box

    @Slot()
    def _browse_calibration(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Calibration", "", "Calibrations (*.h5)")
        if path:
            self.calibration.setText(path)

    def set_dataset(self, train: Any, evaluate: Any = None) -> None:
        """Fine-tune on in-memory data (an `ImageDataset` or (images, labels)) instead of a folder."""
        self.dataset, self.eval_dataset = train, evaluate
        self.data_path.setText(getattr(train, "name", "") or "(in memory)")

    # -- running ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def _update_enabled(self) -> None:
        ready = self.session.program is not None and (self.session.connected or self.mode.currentText() == "twin")
        self.start_button.setEnabled(ready and not self.running)
        self.pause_button.setEnabled(self.running)
        self.stop_button.setEnabled(self.running)
        self.save_button.setEnabled(self.result is not None and not self.running)

    @Slot()
    def start(self) -> None:
        """Fine-tune the session's program in a worker (resumes the output folder's checkpoint)."""
        if self.running:
            return
        program = self.session.program
        try:
            if program is None or not hasattr(program, "filter"):
                raise ValueError("load a compiled program (not a checkpoint) first")
            bench = self.session.require_bench() if self.session.connected or self.mode.currentText() != "twin" else None
        except Exception as exc:
            self.status.setText(f"cannot start: {exc}")
            return
        from labrig.hil import FineTuneConfig

        cfg = FineTuneConfig(mode=self.mode.currentText(), steps=self.n_steps.value(), batch=self.batch.value(),
                             frames=self.budget.value() or None, eval_every=max(1, self.n_steps.value() // 10),
                             pretrain_steps=self.pretrain.value(), residual_images=self.residual.value(),
                             residual_refit_every=self.residual_refit_every.value())
        calibration = self.calibration.text().strip() or None
        out = Path(self.out_dir.text().strip())
        folder, train, evaluate, n_eval = self.data_path.text().strip(), self.dataset, self.eval_dataset, self.n_eval.value()
        parent_path = self.session.program_path
        self.steps, self.losses, self.evals, self.result = [], [], [], None
        self._redraw()
        self.pause_event.clear()
        self.pause_button.setChecked(False)
        self.session.set_busy(True)
        self.status.setText(f"fine-tuning ({cfg.mode}) → {out}")

        def work(ctx: TaskContext) -> Any:
            from labrig.hil.api import finetune

            data, held = train, evaluate
            if data is None:
                from labrig.data import load_dataset

                if not folder:
                    raise ValueError("choose a dataset folder")
                data = load_dataset(folder, split="train")
                held = load_dataset(folder, split="test") if n_eval else None
            return finetune(parent_path or program, calibration, data, out, eval_data=held if n_eval else None,
                            config=cfg, eval_limit=n_eval or None, progress=ctx.progress, cancel=ctx.cancel,
                            pause=self.pause_event, bench=bench)

        self.job = self.tasks.start("fine-tune", work, on_success=self._on_done, on_progress=self._on_progress,
                                    on_failure=self._on_failed, on_finished=self._on_finished)
        self._update_enabled()

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        """Hold between steps (the light stays armed); unpause to go on."""
        if paused:
            self.pause_event.set()
            self.status.setText("paused between steps")
        else:
            self.pause_event.clear()
            if self.running:
                self.status.setText("fine-tuning")

    @Slot()
    def stop(self) -> None:
        """Stop after the current step; the checkpoint lets a later Start resume."""
        if self.running:
            self.pause_event.clear()
            self.job.cancel()
            self.status.setText("stopping after this step …")

    def _on_progress(self, step: int, total: int, metrics: object) -> None:
        m = metrics if isinstance(metrics, dict) else {}
        if "loss" in m:
            self.steps.append(step)
            self.losses.append(float(m["loss"]))
        if "twin_accuracy" in m and (not self.evals or self.evals[-1].get("step") != m.get("step")):
            self.evals.append({k: m.get(k) for k in ("step", "frames", "bench_accuracy", "twin_accuracy")})
        self.frames.setText(f"frames {m.get('frames', 0)}  step {step}/{total}")
        self._redraw()

    def _redraw(self) -> None:
        self.loss_curve.setData(self.steps, self.losses)
        bench = [(e["frames"], 100 * e["bench_accuracy"]) for e in self.evals if e.get("bench_accuracy") is not None]
        twin = [(e["frames"], 100 * e["twin_accuracy"]) for e in self.evals if e.get("twin_accuracy") is not None]
        self.bench_curve.setData([b[0] for b in bench], [b[1] for b in bench])
        self.twin_curve.setData([t[0] for t in twin], [t[1] for t in twin])

    def _on_done(self, result: Any) -> None:
        self.result = result
        self.evals = [dict(e) for e in result.evals]
        self.steps = [h["step"] for h in result.history]
        self.losses = [h["loss"] for h in result.history]
        self._redraw()
        acc = result.bench_accuracy
        self.frames.setText(f"frames {result.frames} (+{result.eval_frames} to evaluate)")
        self.status.setText(f"fine-tune {result.status}: {result.steps} steps"
                            + (f", bench accuracy {100 * acc:.1f} %" if acc is not None else "")
                            + (f"; {result.error}" if result.error else "")
                            + f"; wrote {Path(self.out_dir.text()) / 'program.h5'}")
        log.info("fine-tune %s: %d steps, %d frames", result.status, result.steps, result.frames)

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"fine-tune failed: {message}")

    def _on_finished(self) -> None:
        self.session.set_busy(False)
        self._update_enabled()

    # -- saving -----------------------------------------------------------------------------------
    @Slot()
    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save fine-tuned program", "finetuned.h5", "Programs (*.h5)")
        if path:
            self.save(path)

    def save(self, path: str | Path) -> Path:
        """Write the fine-tuned program and load it into the session (lineage in its source)."""
        from labrig.deploy import save_program

        if self.result is None:
            raise ValueError("nothing fine-tuned yet")
        written = save_program(self.result.program, path)
        self.session.set_program(self.result.program, written)
        self.program_saved.emit(str(written))
        self.status.setText(f"saved {written}")
        return written

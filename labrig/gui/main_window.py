"""The console's main window: the docks, their remembered layout, errors, and a safe exit.

The window owns the `Session` (bench and program) and the `TaskManager` (worker
threads) and hands both to every dock. Any failure in a worker or in the live
stream arrives here through `TaskManager.task_failed` and becomes a non-modal
dialog (and a log entry), so the UI keeps running. Closing the window cancels
whatever runs, waits for it, and closes the bench made safe.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, Slot
from PySide6.QtGui import QAction, QCloseEvent, QShowEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QWidget

from labrig.gui.docks.calibration import CalibrationDock
from labrig.gui.docks.devices import DevicesDock
from labrig.gui.docks.finetune import FineTuneDock
from labrig.gui.docks.live import LiveDock
from labrig.gui.docks.log import LogDock
from labrig.gui.docks.patterns import PatternsDock
from labrig.gui.docks.program import ProgramDock
from labrig.gui.docks.run import RunDock
from labrig.gui.layout import fit_to_screen, scrollable
from labrig.gui.session import Session
from labrig.gui.workers import TaskManager
from labrig.logfile import LOG_NAME, default_log_dir

__all__ = ["MainWindow"]

log = logging.getLogger("labrig.gui")

#: seconds to wait for a cancelled run (or another job) when the window closes
CLOSE_WAIT_S = 30.0
#: bump when the set of docks changes, so an old saved layout is not restored onto new docks
LAYOUT_VERSION = 3


def log_file_path(settings: QSettings) -> Path:
    """The console's log file: beside its settings file when that is a file (on Windows the
    settings live in the registry), else in the per-user log folder."""
    name = settings.fileName()
    if settings.format() == QSettings.Format.IniFormat or (name and Path(name).parent.is_dir()):
        return Path(name).parent / LOG_NAME
    return default_log_dir() / LOG_NAME


class MainWindow(QMainWindow):
    def __init__(self, profile: str | Path | None = None, *, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("labrig console")
        fit_to_screen(self, QSize(1500, 950))
        self.setDockNestingEnabled(True)
        self.settings = settings if settings is not None else QSettings("labrig", "console")
        self.session = Session(profile, self)
        self.tasks = TaskManager(self)
        self.errors: list[tuple[str, str]] = []
        self._dialogs: list[QMessageBox] = []
        self._closed = False

        self.log_dock = LogDock(self)
        self.log_dock.install()
        self.log_dock.keep_file(log_file_path(self.settings))
        self.devices = DevicesDock(self.session, self.tasks, self)
        self.live = LiveDock(self.session, self.tasks, self)
        self.patterns = PatternsDock(self.session, self.tasks, self)
        self.program = ProgramDock(self.session, self.tasks, self)
        self.run = RunDock(self.session, self.tasks, self)
        self.calibration = CalibrationDock(self.session, self.tasks, self)
        self.finetune = FineTuneDock(self.session, self.tasks, self)
        self.finetune.program_saved.connect(self.program.open_program)
        self.calibration.calibration_changed.connect(self.program.set_bench_calibration)
        self.docks: list[QDockWidget] = [self.devices, self.live, self.patterns, self.program,
                                         self.calibration, self.run, self.finetune, self.log_dock]
        for dock in self.docks:  # contents scroll: the window fits 1366x768 and never grows by itself
            scrollable(dock)
        self._default_layout()
        self._default_state = self.saveState(LAYOUT_VERSION)
        self._menus()
        self.status = QLabel()
        self.statusBar().addPermanentWidget(self.status)

        self.tasks.task_failed.connect(self.show_error)
        self.tasks.jobs_changed.connect(self._update_status)
        self.session.bench_changed.connect(lambda _b: self._update_status())
        self.session.program_changed.connect(lambda _p: self._update_status())
        self._restore_layout()
        self._update_status()
        log.info("console ready (profile %s)", self.session.profile_ref)

    # -- layout ---------------------------------------------------------------------------------
    def _default_layout(self) -> None:
        """Devices | live view | patterns (tabbed with the program), run and log below."""
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.devices)
        self.splitDockWidget(self.devices, self.live, Qt.Orientation.Horizontal)
        self.splitDockWidget(self.live, self.patterns, Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.patterns, self.program)
        self.tabifyDockWidget(self.program, self.calibration)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.run)
        self.tabifyDockWidget(self.run, self.finetune)
        self.tabifyDockWidget(self.finetune, self.log_dock)
        self.live.raise_()
        self.patterns.raise_()
        self.run.raise_()
        self.resizeDocks([self.devices, self.live, self.patterns], [360, 640, 560],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.live, self.run], [560, 340], Qt.Orientation.Vertical)

    def _menus(self) -> None:
        bench = self.menuBar().addMenu("&Bench")
        safe = QAction("Make &safe", self)
        safe.setShortcut("Ctrl+Shift+S")
        safe.triggered.connect(self.devices._make_safe)
        bench.addAction(safe)
        quit_ = QAction("&Quit", self)
        quit_.setShortcut("Ctrl+Q")
        quit_.triggered.connect(self.close)
        bench.addAction(quit_)
        view = self.menuBar().addMenu("&View")
        for dock in self.docks:
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        reset = QAction("&Reset layout", self)
        reset.triggered.connect(self.reset_layout)
        view.addAction(reset)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        self._share_height = True  # no saved layout: the default one is fitted at the first show
        if isinstance(state, QByteArray | bytes):
            self._share_height = not self.restoreState(state, LAYOUT_VERSION)

    def showEvent(self, event: QShowEvent) -> None:
        """At the first show of the default layout, share the space out for the screen it is on
        (the top docks 55 % of the height, Run 45 %; Devices and Live view their controls' width):
        built at one size and shown at another (a 1366x768 screen), the run dock would otherwise
        keep too little to show its outcome. Not on later shows, and not over a layout the
        operator made."""
        super().showEvent(event)
        if getattr(self, "_share_height", False):
            self._share_height = False
            height = max(1, self.height() - self.menuBar().height() - self.statusBar().height())
            self.resizeDocks([self.live, self.run], [int(0.55 * height), int(0.45 * height)],
                             Qt.Orientation.Vertical)
            # across: the Devices and Live view docks get the width their controls need where
            # the screen allows (on 1366 px the program views scroll sideways instead of them)
            width = self.width()
            need = [dock.widget().widget().minimumSizeHint().width() + 20 for dock in (self.devices, self.live)]
            devices = max(int(0.23 * width), min(need[0], int(0.3 * width)))
            live = max(int(0.41 * width), min(need[1], int(0.45 * width)))
            self.resizeDocks([self.devices, self.live, self.patterns], [devices, live, width - devices - live],
                             Qt.Orientation.Horizontal)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()

    @Slot()
    def reset_layout(self) -> None:
        for dock in self.docks:
            dock.setFloating(False)
            dock.show()
        self.restoreState(self._default_state, LAYOUT_VERSION)

    # -- errors and status ------------------------------------------------------------------------
    @Slot(str, str, str)
    def show_error(self, name: str, message: str, tb: str) -> None:
        """A non-modal dialog: the operator sees it, and nothing waits for it to be closed."""
        self.errors.append((name, message))
        if self._closed:
            return
        box = QMessageBox(QMessageBox.Icon.Critical, f"labrig: {name} failed", message,
                          QMessageBox.StandardButton.Ok, self)
        if tb.strip():
            box.setDetailedText(tb)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._dialogs.remove(b) if b in self._dialogs else None)
        self._dialogs.append(box)
        box.show()
        self.statusBar().showMessage(f"{name} failed: {message}", 15000)

    @property
    def dialogs(self) -> list[QMessageBox]:
        return list(self._dialogs)

    def _update_status(self) -> None:
        bench = self.session.bench if self.session.connected else None
        parts = [f"bench: {bench.profile.name}" if bench is not None else "no bench"]
        program = self.session.program_path
        if program is not None:
            parts.append(f"program: {program.name}")
        jobs = [j.name for j in self.tasks.jobs]
        if jobs:
            parts.append("running: " + ", ".join(jobs))
        self.status.setText("   |   ".join(parts))

    # -- closing ----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop everything and leave the bench safe: cancel jobs (a run stops between
        images and keeps its file valid), wait, stop the stream, make safe and close."""
        if self._closed:
            return
        self._closed = True
        self.tasks.cancel_all()
        if not self.tasks.wait_all(CLOSE_WAIT_S):
            log.error("a task did not stop within %.0f s; making the bench safe anyway", CLOSE_WAIT_S)
        self.devices.discard_pending()
        stream_stopped = self.live.stop()
        try:
            self.session.disconnect()
        except Exception as exc:
            log.error("closing the bench: %s", exc)
        if not stream_stopped and not self.live.stop(CLOSE_WAIT_S):  # the closed camera ends it
            log.error("the camera stream did not stop; the bench is closed and safe regardless")
        for box in list(self._dialogs):
            box.close()
        self.save_layout()
        self.log_dock.uninstall()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

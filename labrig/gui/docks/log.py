"""The Log dock: the application's `logging` records, filterable by level and text.

A logging handler forwards records through a Qt signal, so records logged in
worker threads (a device error mid-run) reach the widget safely, queued into
the UI thread.
"""

from __future__ import annotations

import html
import logging
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labrig.logfile import FileLog

__all__ = ["LEVELS", "LogDock", "QtLogHandler"]

LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
_COLOURS = {logging.DEBUG: "#808080", logging.INFO: "#202020", logging.WARNING: "#b36b00",
            logging.ERROR: "#c00000", logging.CRITICAL: "#c00000"}
#: loggers the console listens to (the engine, the drivers, the simulator, the console)
LOGGERS = ("labrig", "drivers", "sim_backend", "calibration")
MAX_RECORDS = 5000


class _Bridge(QObject):
    record = Signal(int, str, str, float)


class QtLogHandler(logging.Handler):
    """A logging handler that emits each record as a Qt signal (thread-safe)."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bridge.record.emit(record.levelno, record.name, self.format(record), record.created)
        except RuntimeError:  # the widget is gone (window closed before the handler was removed)
            pass
        except Exception:
            self.handleError(record)


class LogDock(QDockWidget):
    """Shows records at or above the chosen level whose text contains the filter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Log", parent)
        self.setObjectName("dock-log")
        self.records: deque[tuple[int, str, str, float]] = deque(maxlen=MAX_RECORDS)

        self.level = QComboBox()
        self.level.addItems(list(LEVELS))
        self.level.setCurrentText("INFO")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter text (logger or message)")
        self.filter.setClearButtonEnabled(True)
        clear = QPushButton("Clear")
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_RECORDS)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)

        self.file_label = QLabel("log file: none")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setToolTip("every record shown here (and every safety event) is also "
                                   "kept in this rotating file")
        self.file_log: FileLog | None = None

        bar = QHBoxLayout()
        bar.addWidget(self.level)
        bar.addWidget(self.filter, 1)
        bar.addWidget(clear)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.view)
        layout.addWidget(self.file_label)
        self.setWidget(body)

        self.level.currentTextChanged.connect(self._refilter)
        self.filter.textChanged.connect(self._refilter)
        clear.clicked.connect(self.clear)

        self.handler = QtLogHandler()
        self.handler.bridge.record.connect(self.add_record, Qt.ConnectionType.QueuedConnection)
        self._loggers: list[tuple[logging.Logger, int]] = []

    # -- wiring into logging --------------------------------------------------------------------
    def install(self, level: int = logging.INFO) -> None:
        """Listen to the engine's loggers; they log at `level` or above while the console runs."""
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._loggers.append((logger, logger.level))
            if logger.getEffectiveLevel() > level:
                logger.setLevel(level)
            logger.addHandler(self.handler)

    def keep_file(self, path: str | Path, level: int = logging.INFO) -> Path | None:
        """Also write the records to a rotating file at `path` (shown under the log); a file
        that cannot be written is logged as an error and the console goes on without it."""
        self.close_file()
        try:
            self.file_log = FileLog(path, LOGGERS, level=level)
        except OSError as exc:
            logging.getLogger("labrig.gui").error("%s; records are not kept after closing", exc)
            self.file_label.setText("log file: none (cannot write it)")
            return None
        self.file_label.setText(f"log file: {self.file_log.path}")
        logging.getLogger("labrig.gui").info("log kept in %s", self.file_log.path)
        return self.file_log.path

    def close_file(self) -> None:
        if self.file_log is not None:
            self.file_log.close()
            self.file_log = None

    def uninstall(self) -> None:
        self.close_file()
        for logger, previous in self._loggers:
            logger.removeHandler(self.handler)
            logger.setLevel(previous)
        self._loggers.clear()

    # -- records ----------------------------------------------------------------------------------
    @Slot(int, str, str, float)
    def add_record(self, level: int, name: str, message: str, created: float) -> None:
        entry = (level, name, message, created)
        self.records.append(entry)
        if self._passes(entry):
            self.view.appendHtml(self._html(entry))

    def visible_text(self) -> str:
        return self.view.toPlainText()

    def clear(self) -> None:
        self.records.clear()
        self.view.clear()

    def _passes(self, entry: tuple[int, str, str, float]) -> bool:
        level, name, message, _ = entry
        if level < LEVELS[self.level.currentText()]:
            return False
        needle = self.filter.text().strip().lower()
        return not needle or needle in name.lower() or needle in message.lower()

    @staticmethod
    def _html(entry: tuple[int, str, str, float]) -> str:
        level, name, message, created = entry
        stamp = time.strftime("%H:%M:%S", time.localtime(created))
        colour = _COLOURS.get(level, "#202020")
        text = html.escape(message).replace("\n", "<br>&nbsp;&nbsp;")
        return (f'<span style="color:{colour}; white-space:pre">{stamp} '
                f"{logging.getLevelName(level):<7} {html.escape(name)}: {text}</span>")

    @Slot()
    def _refilter(self) -> None:
        self.view.clear()
        lines = [self._html(e) for e in self.records if self._passes(e)]
        if lines:
            self.view.appendHtml("<br>".join(lines))

"""Starting the console: the QApplication, the main window, and Ctrl+C in the terminal.

Kept apart from the window so tests and the benchmark build windows inside their
own QApplication, and `labrig gui` gets one process-wide set-up.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from labrig.gui import plots

__all__ = ["create_app", "run_console"]


def create_app(argv: list[str] | None = None) -> QApplication:
    """The process's QApplication (made once), named so QSettings finds the saved layout."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(sys.argv[:1] if argv is None else argv))
    app.setOrganizationName("labrig")
    app.setApplicationName("console")
    plots.configure()
    return app  # type: ignore[return-value]


def run_console(profile: str | Path | None = None, *, connect: bool = True) -> int:
    """Show the console on `profile` and run until the window closes; returns the exit code."""
    from labrig.gui.main_window import MainWindow

    app = create_app()
    window = MainWindow(profile)
    # Ctrl+C in the terminal closes the window the normal way (run cancelled, bench made
    # safe); the safety guard, installed when a bench connects, chains to this handler.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    ticker = QTimer()  # let Python see signals while Qt's C++ loop runs
    ticker.start(200)
    ticker.timeout.connect(lambda: None)
    window.show()
    if connect:
        window.devices.connect_bench()
    code = app.exec()
    window.shutdown()
    return int(code)

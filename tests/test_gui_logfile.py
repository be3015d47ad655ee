"""The Log dock keeps a rotating file beside the console's settings and shows where it is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QSettings

from labrig.gui.main_window import MainWindow
from labrig.logfile import LOG_NAME, SAFETY_LOGGER


def test_log_file_beside_settings_keeps_safety_events(qtbot, tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow("sim", settings=settings)
    qtbot.addWidget(window)
    path = tmp_path / LOG_NAME
    try:
        assert window.log_dock.file_log is not None
        assert window.log_dock.file_log.path == path.resolve()
        assert str(path.resolve()) in window.log_dock.file_label.text()
        logging.getLogger(SAFETY_LOGGER).debug("made safe: laser off")
        logging.getLogger("labrig.gui").info("bench connected")
    finally:
        window.close()
    text = path.read_text(encoding="utf-8")
    assert "made safe: laser off" in text and "bench connected" in text
    assert window.log_dock.file_log is None  # closed with the window

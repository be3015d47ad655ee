"""Console extras of issue 17: the log file, runs offered by name, tooltips, pause on reconnect."""

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


def test_program_dock_lists_runs_by_name_and_loads_the_picked_one(qtbot, tmp_path: Path) -> None:
    import json

    from model_helpers import student

    from labrig.distill.checkpoint import save_checkpoint

    folder = tmp_path / "exp" / "jobs" / "ac14e0f2aa11"
    folder.mkdir(parents=True)
    path = save_checkpoint(folder / "best.pt", student())
    (folder / "result.json").write_text(json.dumps({"name": "toy-student", "test_accuracy": 0.5}))
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow("sim", settings=settings)
    qtbot.addWidget(window)
    try:
        dock = window.program
        dock.show_runs(tmp_path / "exp")
        qtbot.waitUntil(lambda: dock.runs.count() == 1, timeout=10_000)
        assert dock.runs.itemText(0).startswith("toy-student, test 50.0 %")
        dock._run_picked(0)
        qtbot.waitUntil(lambda: dock.student is not None, timeout=30_000)
        assert "toy-student" in dock.status.text()
        assert dock.runs.itemData(0) == str(path)
    finally:
        window.close()


def test_main_controls_explain_themselves(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QAbstractButton

    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow("sim", settings=settings)
    qtbot.addWidget(window)
    try:
        silent = [f"{dock.objectName()}: {b.text()!r}"
                  for dock in (window.devices, window.live, window.run, window.program, window.patterns)
                  for b in dock.findChildren(QAbstractButton)
                  if b.isVisibleTo(dock) and b.text() not in ("…", "◀", "▶", "") and not b.toolTip()]
    finally:
        window.close()
    assert not silent, f"controls without a tooltip: {silent}"


def test_pause_is_cleared_on_connecting_another_bench(qtbot, tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow("sim", settings=settings)
    qtbot.addWidget(window)
    window.show()
    try:
        window.devices.profile.setCurrentText("sim")
        window.devices.connect_bench()
        qtbot.waitUntil(lambda: window.session.connected and window.live.streaming, timeout=30_000)
        first = window.session.bench
        window.live.pause_button.setChecked(True)
        window.devices.profile.setCurrentText("sim-wide")
        window.devices.connect_bench()
        qtbot.waitUntil(lambda: window.session.connected and window.session.bench is not first,
                        timeout=30_000)
        assert window.session.bench.profile.name == "sim-wide"
        assert not window.live.pause_button.isChecked()  # a frozen frame of the old bench is gone
        qtbot.waitUntil(lambda: window.live.streaming, timeout=10_000)
    finally:
        window.close()

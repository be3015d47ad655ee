"""The console's Calibration dock, offscreen: run a routine in a worker, see its state and plot,
a failure and a cancel leave the file alone and the bench safe, ROIs reach the live view."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from cal_fakes import REGISTRY
from cal_helpers import small_profile, small_truth
from PySide6.QtCore import QSettings

from calibration import session as cal_session
from labrig.gui.main_window import MainWindow

pytestmark = pytest.mark.gui

WAIT_MS = 60_000


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, cls in REGISTRY.items():
        if name != "interrupted":
            monkeypatch.setitem(cal_session.ROUTINES, name, cls)
    profile = small_profile(tmp_path, small_truth(8))
    w = MainWindow(profile, settings=QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    w.devices.connect_bench()
    qtbot.waitUntil(lambda: w.session.connected, timeout=WAIT_MS)
    yield w
    w.close()


def _idle(qtbot, dock) -> None:
    qtbot.waitUntil(lambda: not dock.running and not dock.session.busy, timeout=WAIT_MS)


def test_run_fail_cancel_and_rois(qtbot, window: MainWindow, tmp_path: Path) -> None:
    dock = window.calibration
    out = tmp_path / "cal.h5"
    dock.path.setText(str(out))
    assert dock.state_of("spot") == "not run"

    dock.start(["spot"])  # `offset` comes first: `spot` needs it
    _idle(qtbot, dock)
    assert dock.state_of("offset") == "fresh" and dock.state_of("spot") == "fresh"
    assert list(dock.calibration.routines) == ["offset", "spot"] and out.exists()
    assert window.live.rois and window.live.rois[0][2] > window.live.rois[0][0]  # the input's image
    dock.table.selectRow([n for n, *_ in dock.states()].index("offset"))
    assert dock.figure.axes  # the routine's plot was drawn

    before = out.read_bytes()
    dock.start(["broken"])
    _idle(qtbot, dock)
    assert dock.state_of("broken") == "failed" and "write failed" in dock.status.text()
    assert out.read_bytes() == before
    assert not window.session.bench.guard.armed

    dock.start(["slow"])
    qtbot.waitUntil(lambda: dock.running_routine == "slow", timeout=WAIT_MS)
    dock.cancel()
    _idle(qtbot, dock)
    assert dock.state_of("slow") == "failed" and "cancelled" in dock.status.text()
    assert out.read_bytes() == before and not window.session.bench.guard.armed
    assert dock.state_of("spot") == "fresh"  # the good results are still shown

"""The calibration's ROIs reach the live view through the same bench-fit check as a program's
tiles: a calibration measured on another bench (other optics, another camera size) or an ROI off
the camera is hidden, with the reason beside the picture."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from labrig.deploy.fit import geometry_misfits
from labrig.deploy.program import geometry_to_dict
from labrig.geometry import geometry_from_profile
from labrig.gui.docks.live import LiveDock
from labrig.gui.session import Session
from labrig.gui.workers import TaskManager

pytestmark = pytest.mark.gui


@pytest.fixture
def live(qtbot):
    session = Session("sim")
    session.attach(session.open_bench("sim"))
    dock = LiveDock(session, TaskManager())
    dock.stop()
    qtbot.addWidget(dock)
    yield dock
    dock.stop()
    dock.close()
    session.disconnect()


def _geometry(session: Session) -> dict:
    return geometry_to_dict(geometry_from_profile(session.bench.profile.root))


def test_a_fitting_calibration_draws_its_roi(live: LiveDock) -> None:
    session = live.session
    session.set_calibration_rois([(40, 50, 200, 210)], _geometry(session))
    assert session.calibration_misfits == []
    assert live.rois == [(40, 50, 200, 210)] and live.roi_labels == ["input"]
    assert live.fit_label.isHidden()


def test_a_calibration_of_another_bench_is_hidden_with_why(live: LiveDock) -> None:
    session = live.session
    other = _geometry(session)
    other["wavelength_m"] = other["wavelength_m"] * 1.1
    other["camera"]["resolution"] = [r * 2 for r in other["camera"]["resolution"]]
    session.set_calibration_rois([(40, 50, 200, 210)], other)
    assert live.rois == []
    text = live.fit_label.text()
    assert not live.fit_label.isHidden() and "calibration ROI hidden" in text
    assert "wavelength_m" in text and "camera.resolution" in text and "the calibration is for" in text

    # the same ROI off this bench's camera (a calibration of a bigger camera), with its own geometry
    rows, cols = session.bench.camera.resolution
    session.set_calibration_rois([(0, 0, rows + 10, cols)], _geometry(session))
    assert live.rois == [] and "outside this bench's" in live.fit_label.text()

    # a calibration without a recorded geometry cannot be checked: hidden too
    session.set_calibration_rois([(40, 50, 200, 210)], None)
    assert live.rois == [] and "records no bench geometry (recalibrate)" in live.fit_label.text()


def test_reconnecting_rechecks_the_calibration(live: LiveDock) -> None:
    session = live.session
    session.set_calibration_rois([(40, 50, 200, 210)], _geometry(session))
    assert live.rois
    session.disconnect()  # no bench: nothing to check against, drawn as before
    assert session.calibration_misfits == []


def test_the_program_messages_are_unchanged(live: LiveDock) -> None:
    """The program check and the calibration's share one comparison (no second copy of it)."""
    g = _geometry(live.session)
    assert geometry_misfits(g, live.session.bench) == []
    changed = copy.deepcopy(g)
    changed["focal1_m"] = g["focal1_m"] * 2
    (line,) = geometry_misfits(changed, live.session.bench)
    assert line.startswith("optics focal1_m: the program is for ")

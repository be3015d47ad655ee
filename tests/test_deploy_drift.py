"""Drift during a run (labrig.deploy.track): a bench whose image drifts loses accuracy on fixed
ROIs; re-registering the frames against the program's twin during the run keeps it, from the
frames the run takes anyway."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import held_out, train_set, trained_student
from hil_helpers import small_profile

from labrig.bench import Bench
from labrig.deploy import Program, compile_program, run_and_report
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.deploy.track import DriftConfig, DriftTracker
from labrig.deploy.twin import ProgramTwin

pytest.importorskip("calibration.reregister")

BIG = {"filter_px": 128, "input_px": 32}
#: how far the image moves over the whole run (camera px): far enough to ruin fixed ROIs
TRAVEL_PX = np.array([2.4, -1.2])


@functools.lru_cache(maxsize=1)
def _program() -> Program:
    where = Path(tempfile.mkdtemp(prefix="drift-"))
    student = trained_student()
    with torch.no_grad():
        return compile_program(student, small_profile(where, name="ideal", **BIG), train_set(),
                               classes=train_set().classes)


#: `sim`'s modelled truth (which `sim-ideal` keeps, switched off) set to the ideal bench
IDEAL_TRUTH = """\
input_shift_px = [0.0, 0.0]
input_rotation_deg = 0.0
filter_shift_px = [0.0, 0.0]
camera_shift_px = [0.0, 0.0]
camera_rotation_deg = 0.0
camera_scale = 1.0
zernike_rad = { defocus = 0.0, astig_oblique = 0.0, astig_vertical = 0.0, coma_vertical = 0.0, coma_horizontal = 0.0, spherical = 0.0 }
slm_lut_gamma = 1.0
slm_max_phase_rad = 6.283185307179586
slm_crosstalk_px = 0.0
illumination_waist_m = 1.0e3
illumination_center_m = [0.0, 0.0]
input_contrast = 1.0e12
camera_gain_error = 1.0
camera_offset_error_dn = 0.0
hot_pixel_fraction = 0.0
"""


def _drifting(tmp_path: Path, program: Program, images: int, travel: np.ndarray = TRAVEL_PX) -> Path:
    """The program's bench, ideal but for an image that moves `travel` px over `images` images."""
    seconds = images * sum(program.readout.exposure_s)
    rate = [float(v) for v in travel / seconds]
    return small_profile(tmp_path, name="drifting", truth=f"enabled = true\nnoise = false\n{IDEAL_TRUTH}"
                         f"drift_px_per_s = [{rate[0]!r}, {rate[1]!r}]", **BIG)


def _run(profile: Path, program: Program, tmp_path: Path, name: str, drift: DriftConfig | None) -> dict:
    with Bench.open(profile) as bench:
        run_and_report(bench, program, held_out(), tmp_path / f"{name}.h5", report=tmp_path / f"{name}.json",
                       batch=16, twin=True, drift=drift)
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_a_drifting_bench_degrades_a_run_and_reregistration_keeps_it(tmp_path: Path) -> None:
    program = _program()
    n = len(held_out())
    profile = _drifting(tmp_path, program, n)
    fixed = _run(profile, program, tmp_path, "fixed", None)
    tracked = _run(profile, program, tmp_path, "tracked", DriftConfig(every=32, sample=4))
    # the twin's accuracy is the bench's without drift (the bench is otherwise ideal)
    ideal = fixed["twin_accuracy"]
    assert fixed["twin_tile_rel_error"] > 0.2 and fixed["accuracy"] < ideal - 0.08, fixed
    assert tracked["twin_tile_rel_error"] < 0.5 * fixed["twin_tile_rel_error"], (tracked, fixed)
    assert tracked["accuracy"] >= ideal - 0.03, (tracked["accuracy"], ideal)
    events = tracked["drift"]
    assert fixed["drift"] is None and len(events) >= n // 32 and all(e["kind"] == "reregister" for e in events)
    assert events[0]["image"] == 0  # the first chunk of a session registers at once
    # the image sits where the drift put it at the last re-registration (the image moves by
    # -1/scale px per px of camera shift; scale 1 here, so by the drift's own amount)
    last = events[-1]
    np.testing.assert_allclose(last["displacement_px"], -TRAVEL_PX * last["image"] / n, atol=0.15)


def test_the_tracker_moves_frames_back_and_refuses_a_jump() -> None:
    program = _program()
    twin = ProgramTwin(program)
    gray = encode_images(program.input, ImageSource(held_out(), program.input.image_shape).batch(0, 4))
    expected = twin.frames(gray)
    from calibration.reregister import shifted

    moved = np.clip(np.rint(shifted(expected, np.array([0.7, -0.4]))), 0, None).astype(np.uint16)
    tracker = DriftTracker(twin.frames, DriftConfig(every=100, sample=2, step_px=0.25))
    event = tracker.observe(0, gray, moved)
    assert event is not None and event["kind"] == "reregister"
    np.testing.assert_allclose(tracker.displacement, [0.7, -0.4], atol=0.03)
    assert tracker.interval == 50  # it moved more than step_px: the next check comes sooner
    back = tracker.correct(moved)
    assert back.dtype == np.uint16
    error_back, error_moved = np.linalg.norm(back - expected), np.linalg.norm(moved - expected.astype(float))
    assert error_back < 0.3 * error_moved, (error_back, error_moved)
    assert tracker.observe(4, gray, moved) is None  # not due yet
    jumped = np.clip(np.rint(shifted(expected, np.array([5.0, 0.0]))), 0, None).astype(np.uint16)
    refused = tracker.update(jumped[:2], expected[:2])
    assert refused["kind"] == "refused" and "recalibrate" in refused["message"]
    np.testing.assert_allclose(tracker.displacement, [0.7, -0.4], atol=0.03)  # kept the last registration


def test_drift_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="every"):
        DriftConfig(every=-1)
    with pytest.raises(ValueError, match="residual_growth"):
        DriftConfig(residual_growth=1.0)


def test_the_console_run_follows_drift_through_the_same_engine(qtbot, tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from PySide6.QtCore import QSettings

    from labrig.deploy import save_program
    from labrig.gui.main_window import MainWindow

    program = _program()
    n = 64
    profile = _drifting(tmp_path, program, n)
    program_file = save_program(program, tmp_path / "p.h5")
    w = MainWindow(profile, settings=QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    try:
        w.devices.connect_bench()
        qtbot.waitUntil(lambda: w.session.connected, timeout=30_000)
        w.live.stop()  # its frames would move the clock (and the image) too
        w.program.open_program(program_file)
        qtbot.waitUntil(lambda: w.session.program is not None, timeout=30_000)
        w.run.set_dataset(held_out(), "held out")
        w.run.out_path.setText(str(tmp_path / "run.h5"))
        w.run.batch.setValue(16)
        w.run.limit.setValue(n)
        w.run.reregister.setValue(16)
        w.run.start_run()
        qtbot.waitUntil(lambda: not w.run.running and w.run.result is not None, timeout=120_000)
        result = w.run.result
    finally:
        w.close()
    assert result.status == "complete" and result.drift and len(result.drift) == n // 16
    assert all(e["kind"] == "reregister" for e in result.drift)
    assert np.hypot(*result.drift[-1]["displacement_px"]) > 0.5  # it followed the image as it moved

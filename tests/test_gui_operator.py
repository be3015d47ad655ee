"""The console as an operator lives in it (issue 17), offscreen: it fits small screens and
never resizes itself, setpoints apply only what is meant, one program is active and its
bench fit is checked at load, runs explain what they change and use a fresh file."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from model_helpers import student, toy_dataset
from PySide6.QtCore import QSettings, QSize, Qt

from labrig.gui.main_window import MainWindow
from labrig.gui.setpoint import SetpointEdit

pytestmark = pytest.mark.gui

CONNECT_MS = 30_000
RUN_MS = 60_000


@pytest.fixture(scope="module")
def program_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy student compiled for the `sim` bench (once per module)."""
    import torch

    from labrig.deploy import compile_program, save_program

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        program = compile_program(student(), "sim", toy_dataset(64))
    finally:
        torch.set_num_threads(threads)
    return save_program(program, tmp_path_factory.mktemp("program") / "toy.h5")


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    w = MainWindow("sim", settings=settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def _connect(qtbot, w: MainWindow) -> None:
    w.devices.connect_bench()
    qtbot.waitUntil(lambda: w.session.connected, timeout=CONNECT_MS)


def _load_program(qtbot, w: MainWindow, path: Path) -> None:
    w.program.open_program(path)
    qtbot.waitUntil(lambda: w.session.program is not None, timeout=CONNECT_MS)


def _type(qtbot, box: SetpointEdit, text: str, commit: bool = True) -> None:
    """Type into the box key by key, as an operator does; Enter commits."""
    box.edit.setFocus()
    box.edit.selectAll()
    qtbot.keyClicks(box.edit, text)
    if commit:
        qtbot.keyClick(box.edit, Qt.Key.Key_Return)


# -- 1. fits 1366x768 and never resizes itself ----------------------------------------------------------


def test_fits_small_screens_and_does_not_resize_itself(qtbot, window: MainWindow, program_file: Path,
                                                       tmp_path: Path) -> None:
    w = window
    for size in (QSize(1920, 1080), QSize(1366, 768)):
        hint = w.minimumSizeHint()
        assert hint.width() <= size.width() and hint.height() <= size.height(), hint
    w.resize(1366, 768)
    qtbot.wait(50)
    assert w.size() == QSize(1366, 768)
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    qtbot.wait(50)
    assert w.size() == QSize(1366, 768)
    w.run.set_dataset(toy_dataset(32), "toy")
    w.run.out_path.setText(str(tmp_path / "run.h5"))
    w.run.batch.setValue(16)
    w.run.start_run()
    for dock in (w.finetune, w.log_dock, w.run, w.program, w.calibration, w.patterns):
        dock.raise_()
        qtbot.wait(20)
        assert w.size() == QSize(1366, 768), dock.objectName()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    qtbot.wait(50)
    assert w.size() == QSize(1366, 768)
    assert w.minimumSizeHint().height() <= 768


# -- 2. setpoints: applied on Enter, refused (not clipped) out of range ------------------------------------


def test_out_of_range_power_is_refused_not_clipped(qtbot, window: MainWindow) -> None:
    w = window
    _connect(qtbot, w)
    laser = w.session.bench.laser
    before = laser.power_w
    applied: list[float] = []
    w.devices.power.valueChanged.connect(applied.append)
    _type(qtbot, w.devices.power, "99999", commit=False)
    assert applied == [] and laser.power_w == before  # nothing per keystroke
    qtbot.keyClick(w.devices.power.edit, Qt.Key.Key_Return)
    assert applied == [] and laser.power_w == before  # refused, not clipped to 9 or 50
    refusal = w.devices.power.refusal.text()
    hi = laser.power_bounds_w[1] * 1e3
    assert "99999" in refusal and "refused" in refusal and f"{hi:g}" in refusal
    assert w.devices.power.value() == pytest.approx(before * 1e3)
    # a value in range is applied once, on Enter, and the refusal goes away
    target = 0.5 * hi
    _type(qtbot, w.devices.power, f"{target:g}")
    assert laser.power_w == pytest.approx(target / 1e3) and applied == [pytest.approx(target)]
    assert w.devices.power.refusal.text() == ""


def test_exposure_applies_once_and_refuses_zero(qtbot, window: MainWindow) -> None:
    w = window
    _connect(qtbot, w)
    cam = w.session.bench.camera
    seen: list[float] = []
    w.devices.exposure.valueChanged.connect(seen.append)
    before = cam.exposure_s
    _type(qtbot, w.devices.exposure, "0")
    assert seen == [] and cam.exposure_s == before and "refused" in w.devices.exposure.refusal.text()
    lo, hi = (b * 1e3 for b in cam.exposure_bounds_s)
    target = min(hi, max(lo, 2.5))
    _type(qtbot, w.devices.exposure, f"{target:g}")
    assert seen == [pytest.approx(target)]  # not 2, then 2.5: one value, when committed
    assert cam.exposure_s == pytest.approx(target / 1e3)
    w.devices.exposure.edit.clearFocus()  # focus-out after Enter applies nothing again
    w.devices.exposure.commit()
    assert len(seen) == 1


# -- 3. one active program, its bench fit checked at load ------------------------------------------------


def test_program_of_another_bench_hides_its_rois_and_says_why(qtbot, tmp_path: Path,
                                                               program_file: Path) -> None:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    w = MainWindow("sim-wide", settings=settings)
    qtbot.addWidget(w)
    w.show()
    try:
        _connect(qtbot, w)
        assert w.session.bench.profile.name == "sim-wide"
        _load_program(qtbot, w, program_file)  # compiled for `sim`
        assert w.session.misfits  # checked at load, not at Run
        assert w.live.rois == [] and not w.live.tiles.isVisible()
        assert w.live.fit_label.isVisible() and "does not fit" in w.live.fit_label.text()
        assert w.session.misfits[0] in w.program.fit.text()
        assert not w.run.run_button.isEnabled() and "does not fit" in w.run.status.text()
    finally:
        w.close()


def test_checkpoint_replaces_the_active_program_and_its_rois(qtbot, window: MainWindow,
                                                             program_file: Path, tmp_path: Path) -> None:
    from labrig.distill.checkpoint import save_checkpoint

    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    assert w.session.misfits == [] and w.live.rois and "fits" in w.program.active.text()
    w.program.open_checkpoint(save_checkpoint(tmp_path / "student.pt", student()))
    qtbot.waitUntil(lambda: w.program.student is not None, timeout=CONNECT_MS)
    assert w.session.program is None and w.live.rois == []
    assert not w.run.run_button.isEnabled() and "none" in w.program.active.text()


# -- 4. runs that explain themselves --------------------------------------------------------------------


def _logged(qtbot, w: MainWindow, text: str) -> None:
    qtbot.waitUntil(lambda: text in w.log_dock.visible_text(), timeout=5000)


def _run(qtbot, w: MainWindow, out: Path, n: int, batch: int = 16, resume: bool = False) -> None:
    w.run.set_dataset(toy_dataset(n), "toy")
    w.run.out_path.setText(str(out))
    w.run.batch.setValue(batch)
    w.run.limit.setValue(0)
    w.run.resume.setChecked(resume)
    w.run.start_run()
    assert w.run.running


def test_runs_restore_settings_use_fresh_files_and_clear_on_failure(qtbot, window: MainWindow,
                                                                     program_file: Path,
                                                                     tmp_path: Path) -> None:
    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    bench = w.session.bench
    program = w.session.program
    # settings unlike the program's, and light on: the run changes them and must say so
    exposure = 0.5 * program.readout.exposure_s[0] if program.readout.exposure_s[0] > 2e-4 else 1e-3
    power = 0.5 * (program.readout.laser_power_w or bench.laser.power_bounds_w[1])
    _type(qtbot, w.devices.exposure, f"{exposure * 1e3:g}")
    _type(qtbot, w.devices.power, f"{power * 1e3:g}")
    exposure, power = bench.camera.exposure_s, bench.laser.power_w
    w.devices.arm_button.click()
    filter_before = bench.filter.pattern
    out = tmp_path / "run.h5"
    _run(qtbot, w, out, 32)
    qtbot.waitUntil(lambda: not w.run.running and w.run.result is not None, timeout=RUN_MS)
    first = w.run.result
    assert first.status == "complete" and first.path == out
    # what the run changed is logged, and put back; the light is left off and the log says so
    assert bench.camera.exposure_s == pytest.approx(exposure)
    assert bench.laser.power_w == pytest.approx(power)
    assert (bench.filter.pattern == filter_before).all()
    _logged(qtbot, w, "the run changed camera exposure")
    _logged(qtbot, w, "restored camera exposure")
    _logged(qtbot, w, "light NOT restored")
    assert not bench.laser.enabled and not bench.shutter.shutter_open
    # Run again: a fresh file, all images measured again (not the old results)
    _run(qtbot, w, out, 32)
    qtbot.waitUntil(lambda: not w.run.running and w.run.result is not None, timeout=RUN_MS)
    second = w.run.result
    assert second.path != out and second.path.is_file() and out.is_file()
    assert second.session_images == 32 and second.frames > 0
    assert w.run.out_path.text() == str(second.path)
    # a run that fails leaves no stale results on screen
    assert w.run.confusion.rowCount() > 0
    w.run.dataset = None
    w.run.data_path.setText(str(tmp_path / "no-such-dataset"))
    w.run.start_run()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    assert w.run.result is None and w.run.confusion.rowCount() == 0
    assert w.run.accuracy.text() == "accuracy -" and "run failed" in w.run.status.text()


def test_resumed_run_progress_starts_where_the_file_is(qtbot, window: MainWindow, program_file: Path,
                                                       tmp_path: Path) -> None:
    from labrig.deploy.runfile import read_run

    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    out = tmp_path / "long.h5"
    _run(qtbot, w, out, 320, batch=8)
    qtbot.waitUntil(lambda: w.run.progress.value() > 0, timeout=RUN_MS)
    w.run.cancel_button.click()
    assert "at most two chunks" in w.run.status.text()  # the wording says what Cancel does
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    done = read_run(out)["done"]
    assert 0 < done < 320 and w.run.result.status == "cancelled"
    _run(qtbot, w, out, 320, batch=8, resume=True)
    assert w.run.progress.value() == done and w.run.progress.maximum() >= done
    assert f"resuming after image {done}" in w.run.status.text()
    w.run.cancel_run()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    assert w.run.result.path == out and w.run.result.images >= done


# -- 5. the live view: bounded rate, no work while paused, the run's frames during a run ----------------


def test_live_view_is_bounded_paused_idle_and_shows_the_run(qtbot, window: MainWindow,
                                                            program_file: Path, tmp_path: Path) -> None:
    from labrig.gui.docks.live import RUN_VIEW_HZ

    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    qtbot.waitUntil(lambda: w.live.streaming and w.live.display_rate.count >= 2, timeout=CONNECT_MS)
    # the grab rate follows the exposure (a frame cannot come faster than it is exposed)
    _type(qtbot, w.devices.exposure, "250")
    stream = w.live.stream.stream
    qtbot.wait(300)
    n0 = stream.camera_rate.count
    qtbot.wait(1000)
    assert stream.camera_rate.count - n0 <= 5  # <= 4 frames/s at 250 ms, with slack
    # paused: the camera is not read at all
    w.live.pause_button.setChecked(True)
    qtbot.wait(400)
    n1 = stream.camera_rate.count
    qtbot.wait(600)
    assert stream.camera_rate.count == n1
    w.live.pause_button.setChecked(False)
    _type(qtbot, w.devices.exposure, "1")
    # during a run the view shows the run's own frames, at a bounded rate
    assert w.live.view.on_screen()
    before = w.live.view.image_item.image.copy()  # the last streamed picture
    shown: list[float] = []
    pictures: list[np.ndarray] = []

    def seen(t: float) -> None:
        if w.session.busy:
            shown.append(t)
            pictures.append(w.live.view.image_item.image.copy())

    w.live.frame_shown.connect(seen)
    _run(qtbot, w, tmp_path / "run.h5", 96, batch=8)
    assert not w.live.streaming  # the run owns the camera
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    assert w.run.result.status == "complete"
    assert len(shown) >= 1  # the picture moved while the run owned the camera ...
    assert any(not np.array_equal(p, before) for p in pictures)  # ... drawn, not only counted
    assert all(b - a >= 0.99 / RUN_VIEW_HZ for a, b in pairwise(shown))


def test_make_safe_during_a_run_stops_it(qtbot, window: MainWindow, program_file: Path,
                                         tmp_path: Path) -> None:
    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    _run(qtbot, w, tmp_path / "run.h5", 640, batch=8)
    qtbot.waitUntil(lambda: w.run.progress.value() > 0, timeout=RUN_MS)
    assert w.devices.safe_button.isEnabled()  # never disabled, also during a run
    w.devices.safe_button.click()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    result = w.run.result
    assert result is not None and result.status != "complete" and result.images < 640
    assert not w.session.bench.laser.enabled and not w.session.bench.shutter.shutter_open
    assert "run failed" in w.run.status.text()

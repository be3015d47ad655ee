"""The operator console, offscreen (pytest-qt): opens on the simulated bench, connects,
streams, loads and compiles programs, runs and cancels a dataset, survives a camera
timeout, and closes safely in the middle of a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from model_helpers import student, toy_dataset
from PySide6.QtCore import QSettings

from labrig.gui.docks.program import VIEWS
from labrig.gui.main_window import MainWindow

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


def _window(qtbot, tmp_path: Path, profile: str | Path = "sim") -> MainWindow:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow(profile, settings=settings)
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[MainWindow]:
    w = _window(qtbot, tmp_path)
    yield w
    w.close()


def _connect(qtbot, w: MainWindow) -> None:
    w.devices.connect_bench()
    qtbot.waitUntil(lambda: w.session.connected, timeout=CONNECT_MS)


def _load_program(qtbot, w: MainWindow, path: Path) -> None:
    w.program.open_program(path)
    qtbot.waitUntil(lambda: w.session.program is not None, timeout=CONNECT_MS)


def _logged(qtbot, w: MainWindow, text: str) -> None:
    """Wait for `text` in the Log dock (records arrive through a queued signal)."""
    qtbot.waitUntil(lambda: text in w.log_dock.visible_text(), timeout=5000)


def _start_run(qtbot, w: MainWindow, n: int, tmp_path: Path, batch: int = 64) -> Path:
    out = tmp_path / "run.h5"
    w.run.set_dataset(toy_dataset(n), "toy")
    w.run.out_path.setText(str(out))
    w.run.batch.setValue(batch)
    w.run.limit.setValue(0)
    w.run.start_run()
    assert w.run.running and w.session.busy
    return out


def test_opens_connects_and_streams(qtbot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    assert w.devices.indicator.text() == "NO BENCH"
    _connect(qtbot, w)
    qtbot.waitUntil(lambda: w.live.display_rate.count >= 3, timeout=CONNECT_MS)
    assert w.live.frame is not None and w.live.frame.shape == (256, 256)
    # devices: identity and settings of every role, light shown safe
    roles = {w.devices.tree.topLevelItem(i).text(0) for i in range(w.devices.tree.topLevelItemCount())}
    assert roles == {"laser", "shutter", "input", "filter", "camera"}
    assert w.devices.indicator.text().startswith("SAFE")
    # light on through the guard, and off again
    w.devices.arm_button.click()
    assert w.session.bench.shutter.shutter_open and w.session.bench.laser.enabled
    assert w.devices.indicator.text().startswith("LIGHT ON")
    w.devices.safe_button.click()
    assert not w.session.bench.shutter.shutter_open and not w.session.bench.laser.enabled
    assert w.devices.indicator.text().startswith("SAFE")
    # a setting out of range is refused next to the control, and logged
    w.devices._set_exposure(5_000.0)  # 5 s > the 1 s the sim camera allows
    assert "exposure" in w.devices.camera_error.text()
    _logged(qtbot, w, "exposure_s 5.0 is outside")
    w.devices.refresh()  # the box shows what the camera holds again
    assert w.devices.exposure.value() == pytest.approx(w.session.bench.camera.exposure_s * 1e3)
    # pause freezes the picture; snapshot saves the frame on screen
    w.live.pause_button.setChecked(True)
    shown = w.live.display_rate.count
    qtbot.wait(300)
    assert w.live.display_rate.count == shown
    saved = w.live.snapshot(tmp_path / "frame.npy")
    assert saved is not None and np.array_equal(np.load(saved), w.live.frame)
    # disconnecting while streaming: the stream lets go first, nothing is reported
    w.live.pause_button.setChecked(False)
    bench = w.session.bench
    w.devices.disconnect_bench()
    assert bench.closed and not w.live.streaming and w.devices.indicator.text() == "NO BENCH"
    qtbot.wait(100)
    assert not w.errors


def test_patterns_and_log_filter(qtbot, window: MainWindow) -> None:
    w = window
    _connect(qtbot, w)
    dock = w.patterns
    dock.target.setCurrentIndex(dock.target.findData("filter"))
    dock.kind.setCurrentText("grating")
    dock.params["period_px"].setValue(4)
    dock.show_test_pattern()
    assert dock.error_label.text() == ""
    shown = w.session.bench.filter.pattern
    assert len(np.unique(shown)) > 2 and np.array_equal(dock.panels["filter"].gray, shown)
    dock.panels["filter"].mode.setCurrentText("gray levels")  # redraw either way without error
    dock.target.setCurrentIndex(dock.target.findData("input"))
    dock.kind.setCurrentText("spot")
    dock.show_test_pattern()
    assert w.session.bench.input.pattern.max() == 255
    # the log shows both; the level and text filters hide what does not match
    log = w.log_dock
    _logged(qtbot, w, "sim input SLM shows")
    assert "sim filter SLM shows" in log.visible_text()
    log.filter.setText("input SLM")
    assert "sim input SLM shows" in log.visible_text()
    assert "filter SLM" not in log.visible_text()
    log.filter.setText("")
    log.level.setCurrentText("ERROR")
    assert "shows a new" not in log.visible_text()


def test_loads_a_program_and_draws_its_tiles(qtbot, window: MainWindow, program_file: Path) -> None:
    w = window
    _connect(qtbot, w)
    # a worker's exception (here a missing file) reaches the operator as a dialog
    w.program.open_program(program_file.parent / "missing.h5")
    qtbot.waitUntil(lambda: bool(w.errors), timeout=CONNECT_MS)
    assert w.errors[0][0] == "load program missing.h5" and "does not exist" in w.errors[0][1]
    assert w.dialogs and "failed" in w.program.status.text()
    _load_program(qtbot, w, program_file)
    rois = [tuple(r) for r in w.session.program.readout.rois]
    assert w.live.rois == rois and w.live.tiles.rowCount() == len(rois)
    view = w.program.view_data
    assert view is not None and view.kind == "program" and view.channels == 4
    for what in VIEWS:  # every view draws for every channel
        w.program.what.setCurrentText(what)
        for k in range(view.channels):
            w.program.channel.setValue(k)
    assert w.program.image_info.text().startswith("frame")
    assert w.run.run_button.isEnabled()


def test_checkpoint_compiles_from_the_gui(qtbot, window: MainWindow, tmp_path: Path) -> None:
    from labrig.distill.checkpoint import save_checkpoint

    w = window
    path = save_checkpoint(tmp_path / "student.pt", student())
    w.program.open_checkpoint(path)
    qtbot.waitUntil(lambda: w.program.student is not None, timeout=CONNECT_MS)
    assert w.program.view_data.kind == "checkpoint" and not w.program.compile_button.isEnabled()
    _connect(qtbot, w)
    w.program.set_calibration_images(toy_dataset(32), "toy")
    w.program.compile()
    qtbot.waitUntil(lambda: w.session.program is not None, timeout=RUN_MS)
    assert w.program.view_data.kind == "program"
    assert w.session.program.source.get("checkpoint") == str(path)
    w.program.save_program(tmp_path / "compiled.h5")
    assert (tmp_path / "compiled.h5").is_file() and w.session.program_path == tmp_path / "compiled.h5"


def test_runs_a_small_dataset_to_completion(qtbot, window: MainWindow, program_file: Path,
                                            tmp_path: Path) -> None:
    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    qtbot.waitUntil(lambda: w.live.streaming, timeout=CONNECT_MS)
    out = _start_run(qtbot, w, 48, tmp_path, batch=16)
    assert not w.live.streaming  # the run owns the camera
    qtbot.waitUntil(lambda: not w.run.running and w.run.result is not None, timeout=RUN_MS)
    result = w.run.result
    assert result.status == "complete" and result.images == 48 and result.path == out
    assert w.run.progress.value() == 48 and "accuracy" in w.run.accuracy.text()
    k = w.session.program.backend.num_classes
    counts = sum(int(w.run.confusion.item(r, c).text() or 0) for r in range(k) for c in range(k))
    assert counts == 48
    w.run.index.setValue(5)
    assert w.run.verdict.text().startswith("image 5: true")
    w.run.errors_only.setChecked(True)
    w.run._step(1)
    # the bench is safe again and the live view back
    assert not w.session.bench.shutter.shutter_open and not w.session.bench.laser.enabled
    qtbot.waitUntil(lambda: w.live.streaming and not w.session.busy, timeout=CONNECT_MS)


def test_cancels_a_run_midway(qtbot, window: MainWindow, program_file: Path, tmp_path: Path) -> None:
    from labrig.deploy.runfile import read_run

    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    out = _start_run(qtbot, w, 640, tmp_path, batch=8)
    qtbot.waitUntil(lambda: w.run.progress.value() > 0, timeout=RUN_MS)
    w.run.cancel_button.click()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    result = w.run.result
    assert result.status == "cancelled" and 0 < result.images < 640
    assert not w.session.bench.shutter.shutter_open
    stored = read_run(out)  # the run file is valid and says how far it got
    assert stored["status"] == "cancelled" and stored["done"] == result.images


def test_camera_timeout_is_reported_without_hanging(qtbot, tmp_path: Path) -> None:
    profile = tmp_path / "faulty.toml"
    profile.write_text('[bench]\nname = "faulty"\nextends = "sim-ideal"\n\n'
                       "[faults]\nframe_timeout_prob = 1.0\n")
    w = _window(qtbot, tmp_path, profile)
    try:
        _connect(qtbot, w)  # the live view starts on connect; its first grab times out
        qtbot.waitUntil(lambda: bool(w.errors), timeout=CONNECT_MS)
        name, message = w.errors[0]
        assert name == "live view" and "DeviceTimeout" in message
        assert w.dialogs and "no frame within" in w.dialogs[0].text()
        assert "camera stopped" in w.live.error_label.text()
        _logged(qtbot, w, "live view failed")
        qtbot.waitUntil(lambda: not w.live.streaming, timeout=CONNECT_MS)
        # the UI is alive: the light still switches and the bench is still connected
        w.devices.arm_button.click()
        assert w.devices.indicator.text().startswith("LIGHT ON")
        w.devices.safe_button.click()
        assert w.devices.indicator.text().startswith("SAFE")
    finally:
        w.close()
    assert not w.dialogs


def test_dropped_frames_do_not_stop_the_stream(qtbot, tmp_path: Path) -> None:
    profile = tmp_path / "lossy.toml"
    profile.write_text('[bench]\nname = "lossy"\nextends = "sim-ideal"\n\n'
                       "[faults]\ndropped_frame_prob = 0.5\n")
    w = _window(qtbot, tmp_path, profile)
    try:
        _connect(qtbot, w)
        qtbot.waitUntil(lambda: w.live.display_rate.count >= 5, timeout=CONNECT_MS)
        assert w.live.stream.stream.skipped > 0 and w.live.streaming and not w.errors
    finally:
        w.close()


def test_closing_during_a_run_stops_it_safely(qtbot, tmp_path: Path, program_file: Path) -> None:
    from labrig.deploy.runfile import read_run

    w = _window(qtbot, tmp_path)
    _connect(qtbot, w)
    bench = w.session.bench
    _load_program(qtbot, w, program_file)
    out = _start_run(qtbot, w, 640, tmp_path, batch=8)
    qtbot.waitUntil(lambda: w.run.progress.value() > 0, timeout=RUN_MS)
    w.close()
    assert not w.run.running and bench.closed and w.session.bench is None
    assert not bench.shutter.shutter_open and not bench.laser.enabled
    stored = read_run(out)
    assert stored["status"] == "cancelled" and 0 < stored["done"] < 640


def test_layout_is_remembered(qtbot, tmp_path: Path) -> None:
    first = _window(qtbot, tmp_path)
    first.log_dock.hide()
    first.close()
    second = _window(qtbot, tmp_path)
    try:
        assert second.log_dock.isHidden() and not second.live.isHidden()
        second.reset_layout()
        assert not second.log_dock.isHidden()
    finally:
        second.close()


def test_make_safe_during_a_run_stops_it_and_records_no_dark_frame(qtbot, window: MainWindow, program_file: Path,
                                                                      tmp_path: Path) -> None:
    """Issue 16: the light went off under a run and the run went on storing dark frames."""
    from labrig.deploy.runfile import read_run

    w = window
    _connect(qtbot, w)
    _load_program(qtbot, w, program_file)
    out = _start_run(qtbot, w, 640, tmp_path, batch=8)
    qtbot.waitUntil(lambda: w.run.progress.value() > 0, timeout=RUN_MS)
    assert w.devices.safe_button.isEnabled()
    w.devices.safe_button.click()
    qtbot.waitUntil(lambda: not w.run.running, timeout=RUN_MS)
    result = w.run.result
    assert result.status == "light-off" and 0 < result.images < 640 and result.not_measured
    assert "made safe during the run" in w.run.status.text()
    world = w.session.bench.camera.world
    assert not world.laser_enabled and not world.shutter_open
    stored = read_run(out)
    assert stored["status"] == "light-off" and stored["done"] == result.images


def test_checkpoint_compiles_through_the_calibration_with_the_readout_from_the_bench(
        qtbot, window: MainWindow, tmp_path: Path) -> None:
    from calibration.base import RoutineResult
    from calibration.store import Calibration, save_calibration
    from labrig.distill.checkpoint import save_checkpoint

    w = window
    w.program.open_checkpoint(save_checkpoint(tmp_path / "student.pt", student()))
    qtbot.waitUntil(lambda: w.program.student is not None, timeout=CONNECT_MS)
    _connect(qtbot, w)
    assert not w.program.through_calibration.isEnabled()  # no calibration loaded yet
    bench = w.session.bench
    truth = bench.shared["sim.world"].truth.imperfections  # a stand-in for measured values (the test knows them)
    values = {k: v.tolist() for k, v in truth.tensors().items() if v is not None and k != "hot_pixels_e_per_s"}
    cal_path = tmp_path / "cal.h5"
    save_calibration(Calibration.empty(bench).with_result(RoutineResult("truth", values, 0.0, "rad", 0),
                                                          duration_s=0.0), cal_path)
    w.calibration.load(cal_path)
    assert w.program.through_calibration.isEnabled() and not w.program.bench_readout.isEnabled()
    w.program.through_calibration.setChecked(True)
    w.program.bench_readout.setChecked(True)
    w.program.set_calibration_images(toy_dataset(32), "toy")
    w.program.compile()
    assert w.session.busy  # the bench takes the readout's frames: the live view waits
    qtbot.waitUntil(lambda: w.session.program is not None, timeout=RUN_MS)
    qtbot.waitUntil(lambda: not w.session.busy, timeout=RUN_MS)
    lineage = w.session.program.source["calibration"]
    assert lineage["readout_correction"]["tiles"] == "bench" and lineage["readout_correction"]["frames"] > 0
    assert lineage["refine"]["steps"] > 0

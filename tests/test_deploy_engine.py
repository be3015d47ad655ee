"""One engine under both faces: `labrig compile` and the console's Model dock write the same
program from the same checkpoint and bench; a run's outcome carries its confusion matrix."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import write_idx_split
from deploy_helpers import held_out, program, train_set, trained_student

from labrig.bench import Bench
from labrig.cli import main
from labrig.deploy import Cancelled, compile_checkpoint, load_program, run_and_report
from labrig.distill.checkpoint import save_checkpoint


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "toy"
    write_idx_split(data, train_set().images[:, 0].numpy(), train_set().labels.numpy().astype("u1"), "train")
    model = save_checkpoint(tmp_path / "student.pt", trained_student(), metrics={"accuracy": 0.8})
    return {"data": data, "model": model, "dir": tmp_path}


def _h5_contents(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every attribute (the JSON metadata parsed) and every dataset of an HDF5 file."""
    import h5py

    attrs: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        def visit(name: str, obj: Any) -> None:
            for key, value in obj.attrs.items():
                attrs[f"{name}@{key}"] = value
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]
        visit("/", h5)
        h5.visititems(visit)
    meta = json.loads(attrs.pop("/@meta"))
    attrs.update({f"meta.{k}": v for k, v in meta.items()})
    return attrs, arrays


@pytest.mark.gui
def test_cli_and_console_compile_the_same_program(files: dict[str, Path], qtbot, tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from PySide6.QtCore import QSettings

    from labrig.gui.main_window import MainWindow

    cli = tmp_path / "cli.h5"
    assert main(["compile", "--model", str(files["model"]), "--profile", "sim-ideal", "--out", str(cli),
                 "--data", str(files["data"]), "--calibration-images", "64"]) == 0

    w = MainWindow("sim-ideal", settings=QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    try:
        w.devices.connect_bench()
        qtbot.waitUntil(lambda: w.session.connected, timeout=30_000)
        w.program.open_checkpoint(files["model"])
        qtbot.waitUntil(lambda: w.program.student is not None, timeout=30_000)
        w.program.calibration.setText(str(files["data"]))
        w.program.calibration_count.setValue(64)
        w.program.compile()
        qtbot.waitUntil(lambda: w.session.program is not None, timeout=60_000)
        console = tmp_path / "console.h5"
        w.program.save_program(console)
    finally:
        w.close()

    (a_attrs, a_arrays), (b_attrs, b_arrays) = _h5_contents(cli), _h5_contents(console)
    for attrs in (a_attrs, b_attrs):  # the time written, and the hash that covers it
        assert attrs.pop("meta.created") and attrs.pop("/@program_hash")
    assert a_attrs == b_attrs
    assert list(a_attrs["meta.backend/classes"]) == [str(c) for c in train_set().classes]  # the console kept them
    assert a_attrs["meta.source"]["metrics"] == {"accuracy": 0.8}
    assert sorted(a_arrays) == sorted(b_arrays) and len(a_arrays) > 5
    for name, value in a_arrays.items():
        np.testing.assert_array_equal(value, b_arrays[name], err_msg=name)
    same = [dataclasses.replace(load_program(p), created="") for p in (cli, console)]
    assert same[0].digest() == same[1].digest()


def test_compile_reports_progress_and_can_be_cancelled(files: dict[str, Path]) -> None:
    seen: list[tuple[int, int, str]] = []
    program = compile_checkpoint(files["model"], "sim-ideal", train_set(), calibration_images=16,
                                 progress=lambda d, t, info: seen.append((d, t, info["stage"])))
    assert [s[0] for s in seen] == [0, 1, 2, 3] and seen[-1] == (3, 3, "compiled")
    assert program.source["checkpoint"] == str(files["model"]) and program.backend.classes
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="cancelled"):
        compile_checkpoint(files["model"], "sim-ideal", train_set(), cancel=stop)


def test_run_outcome_holds_report_and_confusion(tmp_path: Path) -> None:
    data = held_out()
    with Bench.open("sim-ideal") as bench:
        outcome = run_and_report(bench, program(), data, tmp_path / "r.h5", report=tmp_path / "r.json", limit=40)
    assert outcome.failure is None and outcome.result.images == 40 and len(outcome.images) == 40
    assert json.loads((tmp_path / "r.json").read_text())["images"] == 40
    cm = outcome.confusion()
    assert cm.shape == (outcome.num_classes,) * 2 and cm.sum() == 40
    assert np.trace(cm) == round(outcome.result.accuracy * 40)
    labels = data.labels[:40].numpy()
    assert (cm.sum(axis=1) == np.bincount(labels, minlength=outcome.num_classes)).all()  # rows: true class


@pytest.mark.gui
def test_console_run_shows_a_partial_run_and_reports_the_fault(qtbot, tmp_path: Path) -> None:
    """A disconnect mid-run that does not come back (the acquirer reopens a camera that
    returns): the Run dock shows the images measured (result, confusion, browser) and
    reports the fault once, as the CLI prints the partial report and fails."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from deploy_helpers import fault_profile
    from PySide6.QtCore import QSettings

    from labrig.deploy import save_program
    from labrig.gui.main_window import MainWindow

    profile = fault_profile(tmp_path, "disconnect_after_frames = 100\ndisconnect_permanent = true")
    program_file = save_program(program(), tmp_path / "p.h5")
    w = MainWindow(profile, settings=QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    try:
        w.devices.connect_bench()
        qtbot.waitUntil(lambda: w.session.connected, timeout=30_000)
        w.live.stop()  # its frames count towards the disconnect too
        w.program.open_program(program_file)
        qtbot.waitUntil(lambda: w.session.program is not None, timeout=30_000)
        w.run.set_dataset(held_out(), "held out")
        w.run.out_path.setText(str(tmp_path / "run.h5"))
        w.run.batch.setValue(16)
        w.run.limit.setValue(0)
        w.run.start_run()
        qtbot.waitUntil(lambda: not w.run.running and w.run.result is not None, timeout=60_000)
        result = w.run.result
        assert result.status == "fault" and 16 <= result.images < 160
        assert w.run.status.text().startswith("run failed: RunAborted")
        assert w.errors[0][0] == "run" and "DeviceDisconnected" in w.errors[0][1]
        assert w.run.confusion.rowCount() == 10 and w.run.records.count == result.images
        assert not w.session.bench.shutter.shutter_open
    finally:
        w.close()

"""The Fine-tune dock (offscreen): fine-tunes the loaded program on a small bench, draws
the loss and accuracy curves, counts frames, pauses, stops, and saves the new program."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from model_helpers import toy_dataset
from test_hil import _program, _real

from labrig.deploy import load_program
from labrig.gui.docks.finetune import FineTuneDock
from labrig.gui.program_info import program_view
from labrig.gui.session import Session
from labrig.gui.workers import TaskManager

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(qtbot, tmp_path: Path):
    session, tasks = Session(_real(tmp_path)), TaskManager()
    session.attach(session.open_bench())
    session.set_program(_program())
    widget = FineTuneDock(session, tasks)
    qtbot.addWidget(widget)
    widget.set_dataset(toy_dataset(64, seed=1), toy_dataset(16, seed=5))
    widget.out_dir.setText(str(tmp_path / "ft"))
    widget.batch.setValue(8)
    widget.n_eval.setValue(16)
    yield widget
    tasks.wait_all(30)
    session.disconnect()


def test_finetunes_draws_curves_and_saves(qtbot, dock: FineTuneDock, tmp_path: Path) -> None:
    dock.mode.setCurrentText("backend")
    dock.n_steps.setValue(4)
    dock.start()
    assert dock.running and dock.session.busy
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert dock.result is not None and dock.result.status == "complete", dock.status.text()
    assert len(dock.losses) == 4 and dock.bench_curve.getData()[0] is not None
    assert len(dock.bench_curve.getData()[0]) >= 2  # before and after
    assert "frames 40" in dock.frames.text()  # 4 steps x 8 + the exposure probe of 8
    assert not dock.session.busy and not dock.session.bench.guard.armed
    saved = dock.save(tmp_path / "new.h5")
    assert load_program(saved).source["finetune"]["mode"] == "backend"
    assert dock.session.program is dock.result.program
    rows = dict(program_view(dock.result.program).summary)  # what the Program dock lists
    assert rows["fine-tuned"].startswith("backend (complete), 4 steps, 40 bench frames")
    assert rows["calibration"] == "none (nominal twin)"


def test_pause_and_stop(qtbot, dock: FineTuneDock) -> None:
    dock.mode.setCurrentText("pat")
    dock.n_steps.setValue(500)
    dock.start()
    qtbot.waitUntil(lambda: len(dock.losses) >= 1, timeout=120_000)
    dock.pause_button.setChecked(True)
    qtbot.wait(600)
    paused_at = len(dock.losses)
    qtbot.wait(600)
    assert len(dock.losses) <= paused_at + 1 and dock.running
    dock.stop()
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert dock.result.status == "cancelled" and dock.result.steps < 500
    assert (Path(dock.out_dir.text()) / "checkpoint.pt").exists()


def test_pretraining_and_the_twin_residual_from_the_dock(qtbot, dock: FineTuneDock) -> None:
    dock.mode.setCurrentText("pat")
    dock.n_steps.setValue(2)
    dock.pretrain.setValue(2)
    dock.residual.setValue(16)
    dock.start()
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    result = dock.result
    assert result is not None and result.status == "complete", dock.status.text()
    assert result.steps == 4 and len(dock.losses) == 4
    assert result.frames == 8 + 16 + 2 * 8  # probe, residual images, bench steps; none while pre-training
    lineage = result.program.source["finetune"]
    assert lineage["config"]["pretrain_steps"] == 2 and lineage["residual_fit"]["images"] == 16

"""The Run dock's confusion matrix: a click on a cell limits the image browser to that cell's
images, and the matrix fits its dock (no class clipped off) whatever the number of classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from labrig.deploy import RunOutcome
from labrig.deploy.result import RunResult
from labrig.gui.docks.run import RunDock
from labrig.gui.runview import RunRecords
from labrig.gui.session import Session
from labrig.gui.workers import TaskManager

pytestmark = pytest.mark.gui

CLASSES = tuple(f"class-{k}" for k in range(10))


def _outcome(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...] = CLASSES) -> RunOutcome:
    n = len(labels)
    rng = np.random.default_rng(0)
    result = RunResult(
        status="complete", path=None, program_hash="x", profile="sim", device="sim", images=n, total=n,
        session_images=n, frames=n, frames_per_image=1, accuracy=float(np.mean(labels == predictions)),
        twin_accuracy=None, twin_tile_rel_error=None, twin_tile_rel_error_max=None, frames_per_s=1.0,
        images_per_s=1.0, timing={}, predictions=predictions, labels=labels,
        tiles=rng.integers(0, 4000, (n, 4, 5, 5)).astype(np.uint16))
    return RunOutcome(result=result, images=rng.random((n, 8, 8), dtype=np.float32),
                      num_classes=len(classes), class_names=classes)


@pytest.fixture
def dock(qtbot):
    d = RunDock(Session(), TaskManager())
    qtbot.addWidget(d)
    d.resize(900, 500)
    d.show()
    yield d
    d.close()


def test_matching_lists_one_cells_images() -> None:
    labels = np.array([0, 1, 1, 2, 1, -1])
    preds = np.array([0, 2, 1, 2, 2, 2])
    records = RunRecords(_outcome(labels, preds).result)
    assert records.matching(1, 2).tolist() == [1, 4]
    assert records.matching(2, 2).tolist() == [3]  # the unlabelled image 5 is no one's
    assert records.matching(0, 1).tolist() == []


def test_a_cell_click_filters_the_browser(qtbot, dock: RunDock) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 10, 200))
    preds[[17, 42, 150]], labels[[17, 42, 150]] = 9, 3  # three images of class 3 taken for a 9
    dock._on_done(_outcome(labels, preds))
    expected = np.flatnonzero((labels == 3) & (preds == 9))
    assert dock.confusion.item(3, 9).text() == str(len(expected))

    # a real click on the cell (3, 9)
    table = dock.confusion
    rect = table.visualItemRect(table.item(3, 9))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert dock.cell_filter == (3, 9) and dock.filtered.tolist() == expected.tolist()
    assert dock.index.value() == expected[0]
    assert "true <b>class-3</b>, predicted <b>class-9</b>" in dock.verdict.text()
    assert dock.show_all.isVisible() and f"{len(expected)} images" in dock.filter_label.text()

    # ▶ walks through that cell's images only, and wraps round
    seen = [dock.index.value()]
    for _ in range(len(expected)):
        dock._step(1)
        seen.append(dock.index.value())
    assert seen == [*expected.tolist(), expected[0]]
    dock._step(-1)
    assert dock.index.value() == expected[-1]
    for i in seen:
        rec = dock.records.record(i)
        assert (rec.label, rec.prediction) == (3, 9)

    # an empty cell changes nothing; "All images" browses everything again
    empty = next((r, c) for r in range(10) for c in range(10) if not dock.records.matching(r, c).size)
    dock.filter_cell(*empty)
    assert dock.cell_filter == (3, 9) and "no image is" in dock.status.text()
    dock.show_all.click()
    assert dock.cell_filter is None and not dock.show_all.isVisible()
    before = dock.index.value()
    dock._step(1)
    assert dock.index.value() == before + 1


@pytest.mark.parametrize("classes", [10, 40])
def test_the_matrix_fits_its_dock(qtbot, dock: RunDock, classes: int) -> None:
    """Ten classes fit whole in the dock's share; many more scroll instead of being cut off."""
    names = tuple(f"c{k}" for k in range(classes))
    labels = np.arange(400) % classes
    dock._on_done(_outcome(labels, labels.copy(), names))
    table = dock.confusion
    qtbot.waitUntil(lambda: table.viewport().width() > 0)
    width = sum(table.columnWidth(c) for c in range(classes))
    height = sum(table.rowHeight(r) for r in range(classes))
    bar = table.horizontalScrollBar()
    if classes == 10:
        assert width <= table.viewport().width() and height <= table.viewport().height()
        assert bar.maximum() == 0  # nothing hidden, nothing to scroll
        assert min(table.columnWidth(c) for c in range(classes)) >= 26
    else:
        assert bar.maximum() > 0  # the rest is reachable
        assert min(table.columnWidth(c) for c in range(classes)) >= 26  # each count readable


def test_a_new_run_drops_the_filter(dock: RunDock, tmp_path: Path) -> None:
    labels = np.array([0, 1, 1, 0])
    dock._on_done(_outcome(labels, np.array([0, 0, 1, 0]), ("a", "b")))
    dock.filter_cell(1, 0)
    assert dock.cell_filter == (1, 0)
    dock._on_done(_outcome(labels, labels.copy(), ("a", "b")))
    assert dock.cell_filter is None and dock.errors_only.isEnabled()

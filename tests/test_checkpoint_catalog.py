"""Checkpoints offered by their run's name and scores, not by the hash of their folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labrig.experiments.catalog import checkpoint_label, list_checkpoints


def _run(root: Path, key: str, result: dict | None, mtime: float) -> Path:
    folder = root / "jobs" / key
    folder.mkdir(parents=True)
    ckpt = folder / "best.pt"
    ckpt.write_bytes(b"not read here")
    if result is not None:
        (folder / "result.json").write_text(json.dumps(result))
    os.utime(ckpt, (mtime, mtime))
    return ckpt


def test_runs_are_named_with_their_scores_newest_first(tmp_path: Path) -> None:
    old = _run(tmp_path, "ac14e0f2aa", {"name": "student-kd", "test_accuracy": 0.8712,
                                         "val_accuracy": 0.88, "epochs_run": 12}, 1_000_000)
    new = _run(tmp_path, "b7d9c3e1bb", {"name": "student-ce", "test_accuracy": 0.85}, 2_000_000)
    bare = _run(tmp_path, "0badc0ffee", None, 1_500_000)
    entries = list_checkpoints(tmp_path)
    assert [e.path for e in entries] == [new, bare, old]
    assert entries[2].label.startswith("student-kd, test 87.1 %, val 88.0 %, 12 epochs")
    assert "(ac14e0f2/best.pt)" in entries[2].label
    assert entries[0].label.startswith("student-ce, test 85.0 %,")
    assert "no result.json" in checkpoint_label(bare)


def test_not_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not a folder of runs"):
        list_checkpoints(tmp_path / "missing")

"""Finished training runs an operator can pick from, named by what they are, not by their hash.

A job's folder is named by the hash of its settings (`jobs.Job.key`), so a
checkpoint path like ``jobs/ac14…/best.pt`` says nothing to someone choosing
one. Beside the checkpoint, the job's ``result.json`` holds its name and
scores; `checkpoint_label` reads them into one line and `list_checkpoints`
finds every run's checkpoint under an experiment folder, newest first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labrig.distill.trainer import BEST
from labrig.experiments.jobs import RESULT

__all__ = ["CheckpointEntry", "checkpoint_label", "list_checkpoints", "run_result"]


@dataclass(frozen=True)
class CheckpointEntry:
    path: Path
    label: str
    modified: float


def run_result(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``result.json`` beside `checkpoint`, or None when there is none or it is unreadable."""
    path = Path(checkpoint).parent / RESULT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else "-"


def checkpoint_label(checkpoint: str | Path) -> str:
    """One line telling a checkpoint apart: its run's name, scores and date, then its file."""
    path = Path(checkpoint)
    result = run_result(path)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)) if path.exists() else "?"
    where = f"{path.parent.name[:8]}/{path.name}"
    if result is None:
        return f"{where} (no {RESULT}: an unfinished run or not a job), {stamp}"
    parts = [str(result.get("name") or "unnamed run"), f"test {_pct(result.get('test_accuracy'))}"]
    if result.get("val_accuracy") is not None:
        parts.append(f"val {_pct(result.get('val_accuracy'))}")
    if result.get("epochs_run") is not None:
        parts.append(f"{result['epochs_run']} epochs")
    return ", ".join(parts) + f", {stamp} ({where})"


def list_checkpoints(folder: str | Path) -> list[CheckpointEntry]:
    """Every ``best.pt`` under `folder` (an experiment output or a jobs folder), newest first."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of runs")
    entries = [CheckpointEntry(p, checkpoint_label(p), p.stat().st_mtime)
               for p in root.rglob(BEST) if p.is_file()]
    return sorted(entries, key=lambda e: e.modified, reverse=True)

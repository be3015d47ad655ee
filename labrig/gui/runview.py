"""What the Run dock shows about a run, from a `RunResult` and its run file. No Qt.

The per-image browser reads what `run_program` stored: predictions and labels
from the result, raw tile counts from the run file (or from the result for runs
kept in memory), the input images from the dataset that was run, so nothing is
recomputed here. The confusion matrix is the engine's (`RunOutcome.confusion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageRecord", "RunRecords", "tile_strip"]


@dataclass
class ImageRecord:
    index: int
    image: np.ndarray | None
    """(H, W) in [0, 1], as shown on the input modulator (before encoding)."""
    tiles: np.ndarray | None
    """(T, th, tw) raw camera counts of each tile."""
    label: int | None
    prediction: int | None


class RunRecords:
    """Per-image access to a finished (or stopped) run: image, tiles, label, prediction."""

    def __init__(self, result: Any, images: Any = None, classes: tuple[str, ...] | list[str] = ()) -> None:
        self.result = result
        self.images = images
        self.classes = tuple(classes)
        self.count = int(getattr(result, "images", 0))
        self.predictions = np.asarray(getattr(result, "predictions", np.zeros(0)), dtype=np.int64)
        labels = getattr(result, "labels", None)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.path: Path | None = getattr(result, "path", None)
        self._tiles = getattr(result, "tiles", None)

    def class_name(self, k: int | None) -> str:
        if k is None or k < 0:
            return "?"
        return self.classes[k] if k < len(self.classes) else str(k)

    def matching(self, true: int, predicted: int) -> np.ndarray:
        """Indices of the images of true class `true` predicted as `predicted`, in run order:
        the images behind one cell of the confusion matrix (none when labels are unknown)."""
        if self.labels is None:
            return np.zeros(0, np.int64)
        n = min(self.count, len(self.labels), len(self.predictions))
        hit = (self.labels[:n] == true) & (self.predictions[:n] == predicted)
        return np.flatnonzero(hit)

    def record(self, i: int) -> ImageRecord:
        if not 0 <= i < self.count:
            raise IndexError(f"image {i} is outside the {self.count} images of this run")
        label = None if self.labels is None or i >= len(self.labels) or self.labels[i] < 0 \
            else int(self.labels[i])
        prediction = int(self.predictions[i]) if i < len(self.predictions) else None
        return ImageRecord(i, self._image(i), self._tiles_of(i), label, prediction)

    def _image(self, i: int) -> np.ndarray | None:
        if self.images is None:
            return None
        if hasattr(self.images, "batch"):  # labrig.deploy.images.ImageSource
            return np.asarray(self.images.batch(i, i + 1)[0])
        return np.asarray(self.images[i])

    def _tiles_of(self, i: int) -> np.ndarray | None:
        if self._tiles is not None:
            return np.asarray(self._tiles[i])
        if self.path is None or not Path(self.path).is_file():
            return None
        import h5py

        with h5py.File(self.path, "r") as h5:
            return np.asarray(h5["tiles"][i]) if "tiles" in h5 and i < h5["tiles"].shape[0] else None


def tile_strip(tiles: np.ndarray, gap: int = 2) -> np.ndarray:
    """Tiles (T, th, tw) side by side in one float image, NaN gaps between them (drawn blank)."""
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim != 3 or tiles.shape[0] == 0:
        return np.zeros((1, 1), np.float32)
    t, th, tw = tiles.shape
    out = np.full((th, t * tw + (t - 1) * gap), np.nan, np.float32)
    for k in range(t):
        out[:, k * (tw + gap) : k * (tw + gap) + tw] = tiles[k]
    return out

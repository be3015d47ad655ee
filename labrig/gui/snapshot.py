"""Saving the frame the live view shows, in the same formats as ``labrig bench snap``.

`Bench.snap` grabs a fresh frame and makes the bench safe afterwards; the console
instead saves the frame on screen, without touching the light, through the same
writers (so an HDF5 snapshot carries the same profile and device metadata).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from drivers.errors import ConfigError
from labrig.bench import Bench
from labrig.bench.bench import SNAP_FORMATS, _write_h5, _write_npy, _write_png
from labrig.io import atomic_write

__all__ = ["SNAP_FORMATS", "save_frame"]


def save_frame(path: str | Path, frame: np.ndarray, bench: Bench | None) -> Path:
    """Write `frame` atomically to `path` (.npy, .png, .h5); HDF5 and PNG need the bench
    for their metadata, .npy does not."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SNAP_FORMATS:
        raise ConfigError(f"{path}: unsupported frame format {suffix or '(none)'!r}; "
                          f"use {', '.join(SNAP_FORMATS)}")
    writer = {".npy": _write_npy, ".png": _write_png}.get(suffix, _write_h5)
    if bench is None and writer is not _write_npy:
        raise ConfigError(f"{path}: {suffix} snapshots need a connected bench; use .npy")
    when = _dt.datetime.now(_dt.timezone.utc)
    atomic_write(path, lambda tmp: writer(tmp, np.asarray(frame), bench, when))  # type: ignore[arg-type]
    return path

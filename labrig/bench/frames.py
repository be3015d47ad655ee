"""Camera frames to files: ``.npy``, ``.png`` (8- or 16-bit gray, raw counts) and
``.h5``/``.hdf5`` (dataset ``frame`` with the profile, devices and time).

One writer for `Bench.snap` and for the console's "save the frame on screen",
so a snapshot carries the same metadata whichever saved it. Writes are atomic.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from drivers.base import Camera
from drivers.errors import ConfigError
from labrig.io import atomic_write, json_default
from labrig.profiles import Profile

__all__ = ["SNAP_FORMATS", "FrameOrigin", "check_frame_path", "save_frame"]


class FrameOrigin(Protocol):
    """What a frame file records about where the frame came from (a `Bench` is one)."""

    @property
    def profile(self) -> Profile: ...

    @property
    def camera(self) -> Camera: ...

    def describe(self) -> dict[str, Any]: ...


SNAP_FORMATS = (".npy", ".png", ".h5", ".hdf5")


def check_frame_path(path: str | Path, bench: FrameOrigin | None = None) -> Path:
    """`path` if its format is known and can be written (PNG and HDF5 need the bench for
    their metadata); a clear error otherwise, before any light is switched on."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SNAP_FORMATS:
        raise ConfigError(f"{path}: unsupported frame format {suffix or '(none)'!r}; use {', '.join(SNAP_FORMATS)}")
    if bench is None and suffix != ".npy":
        raise ConfigError(f"{path}: {suffix} snapshots need a connected bench; use .npy")
    return path


def save_frame(path: str | Path, frame: np.ndarray, bench: FrameOrigin | None = None,
               when: _dt.datetime | None = None) -> Path:
    """Write `frame` atomically to `path`, in the format its suffix names."""
    path = check_frame_path(path, bench)
    when = when or _dt.datetime.now(_dt.timezone.utc)
    writer = {".npy": _write_npy, ".png": _write_png}.get(path.suffix.lower(), _write_h5)
    atomic_write(path, lambda tmp: writer(tmp, np.asarray(frame), bench, when))  # type: ignore[arg-type]
    return path


def _write_npy(tmp: Path, frame: np.ndarray, bench: FrameOrigin | None, when: _dt.datetime) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, frame)


def _write_png(tmp: Path, frame: np.ndarray, bench: FrameOrigin, when: _dt.datetime) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    bit_depth = bench.camera.bit_depth
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    info = np.iinfo(dtype)
    data = np.clip(frame, info.min, info.max).astype(dtype)
    meta = PngInfo()
    meta.add_text("labrig.profile", bench.profile.name)
    meta.add_text("labrig.bit_depth", str(bit_depth))
    meta.add_text("labrig.time", when.isoformat())
    Image.fromarray(data).save(tmp, format="PNG", pnginfo=meta)


def _write_h5(tmp: Path, frame: np.ndarray, bench: FrameOrigin, when: _dt.datetime) -> None:
    import h5py

    import labrig

    with h5py.File(tmp, "w") as h5:
        h5.create_dataset("frame", data=frame)
        h5.attrs["profile"] = bench.profile.name
        h5.attrs["profile_source"] = bench.profile.source
        h5.attrs["profile_toml"] = bench.profile.to_toml_snapshot()
        h5.attrs["camera_settings"] = json.dumps(bench.camera.settings(), default=json_default)
        h5.attrs["camera_identity"] = json.dumps(bench.camera.identity(), default=json_default)
        h5.attrs["devices"] = json.dumps(bench.describe()["devices"], default=json_default)
        h5.attrs["time"] = when.isoformat()
        h5.attrs["labrig_version"] = labrig.__version__

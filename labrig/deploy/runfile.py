"""Run files: one HDF5 file per run, written image chunk by image chunk, resumable.

Layout (all per-image datasets grow along axis 0, in image order)::

    labels (N,)                 -1 where unknown; written at creation
    predictions (n,)  logits (n, classes)
    tiles (n, T, th, tw)        only with save_tiles (default): raw tile DN as cut from the frames (attrs: dark_dn, scale:
                                signal = (DN - dark_dn[c]) * scale[c])
    frames (n, F, H, W)         only with save_frames
    twin/{predictions, tiles, err2, ref2}   only when compared with the twin
    done (1,)                   images whose data is complete: written after the data
    sessions/NNNN               one group per run session: profile, every device's
                                settings, start and end, status, timing

After each chunk the file is flushed, so a run stopped by Ctrl-C, a device
fault or a crash leaves a readable file whose first `done` images are valid;
resuming truncates anything past `done` and goes on from there.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import labrig
from labrig.deploy.errors import RunFileError
from labrig.io import atomic_write, json_default

__all__ = ["RUN_FORMAT", "RUN_SCHEMA", "Chunk", "MemorySink", "RunFile", "read_run"]

RUN_FORMAT = "labrig-run"
RUN_SCHEMA = 1
PER_IMAGE = ("predictions", "logits", "tiles", "frames", "twin/predictions", "twin/tiles", "twin/err2", "twin/ref2")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Chunk:
    """What the host made of consecutive images [start, start + len)."""

    start: int
    predictions: np.ndarray
    logits: np.ndarray
    tiles: np.ndarray
    frames: np.ndarray | None = None
    twin_predictions: np.ndarray | None = None
    twin_tiles: np.ndarray | None = None
    twin_err2: np.ndarray | None = None
    twin_ref2: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray | None]:
        return {"predictions": self.predictions, "logits": self.logits, "tiles": self.tiles,
                "frames": self.frames, "twin/predictions": self.twin_predictions,
                "twin/tiles": self.twin_tiles, "twin/err2": self.twin_err2, "twin/ref2": self.twin_ref2}


@dataclass(frozen=True)
class RunLayout:
    """Shapes of one run's per-image data."""

    total: int
    classes: int
    tiles: tuple[int, ...]  # (T, th, tw)
    frames: tuple[int, ...]  # (F, H, W)
    frame_dtype: str
    save_frames: bool
    twin: bool
    save_tiles: bool = True


class MemorySink:
    """Keeps a run in memory (no file): for quick `Bench.run` calls."""

    path = None

    def __init__(self, layout: RunLayout, labels: np.ndarray) -> None:
        self.layout, self.labels, self.done = layout, labels, 0
        self._parts: dict[str, list[np.ndarray]] = {}

    def begin_session(self, info: dict[str, Any]) -> None:
        self.session = dict(info)

    def append(self, chunk: Chunk) -> None:
        for name, a in chunk.arrays().items():
            if a is not None and (name != "tiles" or self.layout.save_tiles):
                self._parts.setdefault(name, []).append(a)
        self.done += len(chunk.predictions)

    def read(self, name: str) -> np.ndarray | None:
        parts = self._parts.get(name)
        return np.concatenate(parts) if parts else None

    def finish(self, status: str, error: str | None, stats: dict[str, Any]) -> None:
        self.session.update(status=status, error=error, **stats)

    def close(self) -> None:
        """Nothing to release."""


class RunFile:
    """An open run file being appended to (see the module docstring)."""

    def __init__(self, path: Path, h5: Any, layout: RunLayout, labels: np.ndarray) -> None:
        self.path, self._h5, self.layout, self.labels = path, h5, layout, labels
        self.done = int(h5["done"][0])
        self._session: Any = None

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, layout: RunLayout, labels: np.ndarray, identity: dict[str, str],
             resume: bool = True) -> RunFile:
        """Create the file, or (with `resume`) reopen an unfinished one made by the same
        program for the same images; `identity` holds ``program_hash`` and ``data_digest``."""
        import h5py

        path = Path(path)
        if not (resume and path.exists()):
            atomic_write(path, lambda tmp: _create(tmp, layout, labels, identity))
        try:
            h5 = h5py.File(path, "a")
        except OSError as exc:
            raise RunFileError(f"run file {path} cannot be opened (corrupt or truncated?): {exc}; "
                               "use another output path or start again without resuming") from exc
        try:
            stored = _check(h5, path, identity)
            layout = RunLayout(**{**stored, "total": layout.total})
            run = cls(path, h5, layout, h5["labels"][()])
            run._truncate()
        except BaseException:
            h5.close()
            raise
        return run

    def _truncate(self) -> None:
        """Drop anything past `done` (a chunk cut short by a crash)."""
        for name in PER_IMAGE:
            if name in self._h5 and self._h5[name].shape[0] != self.done:
                self._h5[name].resize(self.done, axis=0)

    # -- writing --------------------------------------------------------------------------------
    def begin_session(self, info: dict[str, Any]) -> None:
        sessions = self._h5.require_group("sessions")
        group = sessions.create_group(f"{len(sessions):04d}")
        group.attrs["start"] = self.done
        group.attrs["started"] = _now()
        group.attrs["labrig_version"] = labrig.__version__
        for key, value in info.items():
            group.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value, default=json_default)
        self._session = group
        self._h5.attrs["status"] = "running"
        self._h5.flush()

    def append(self, chunk: Chunk) -> None:
        if chunk.start != self.done:
            raise RunFileError(f"run file {self.path}: chunk at image {chunk.start}, expected {self.done}")
        n = len(chunk.predictions)
        for name, a in chunk.arrays().items():
            if a is None or name not in self._h5:
                continue
            ds = self._h5[name]
            ds.resize(self.done + n, axis=0)
            ds[self.done : self.done + n] = a
        self.done += n
        self._h5["done"][0] = self.done  # last: the data above is complete
        self._h5.flush()

    def read(self, name: str) -> np.ndarray | None:
        return self._h5[name][: self.done] if name in self._h5 else None

    def finish(self, status: str, error: str | None, stats: dict[str, Any]) -> None:
        """Record how the session ended and close the file."""
        try:
            if self._session is not None:
                self._session.attrs["ended"] = _now()
                self._session.attrs["status"] = status
                self._session.attrs["error"] = error or ""
                self._session.attrs["done"] = self.done
                for key, value in stats.items():
                    self._session.attrs[key] = json.dumps(value, default=json_default) if isinstance(
                        value, dict | list | tuple) else value
            self._h5.attrs["status"] = "complete" if self.done >= self.layout.total else status
            self._h5.attrs["error"] = error or ""
            self._h5.flush()
        finally:
            self._h5.close()

    def close(self) -> None:
        """Close the file if still open (after a failure before `finish`); safe to call twice."""
        if self._h5.id.valid:
            self._h5.close()


def _create(tmp: Path, layout: RunLayout, labels: np.ndarray, identity: dict[str, str]) -> None:
    import h5py

    n = layout.total
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = RUN_FORMAT
        h5.attrs["schema_version"] = RUN_SCHEMA
        h5.attrs["created"] = _now()
        h5.attrs["labrig_version"] = labrig.__version__
        h5.attrs["status"] = "created"
        h5.attrs["layout"] = json.dumps({k: v for k, v in layout.__dict__.items() if k != "total"})
        h5.attrs["total"] = n
        for key, value in identity.items():
            h5.attrs[key] = value
        h5.create_dataset("labels", data=labels.astype(np.int64))
        h5.create_dataset("done", data=np.zeros(1, np.int64))

        def grow(name: str, shape: tuple[int, ...], dtype: Any, chunk: int) -> None:
            h5.create_dataset(name, shape=(0, *shape), maxshape=(max(n, 1), *shape), dtype=dtype,
                              chunks=(max(1, min(chunk, n)), *shape))

        grow("predictions", (), np.int64, 4096)
        grow("logits", (layout.classes,), np.float32, 1024)
        if layout.save_tiles:
            grow("tiles", layout.tiles, np.uint16, 16)
        if layout.save_frames:
            grow("frames", layout.frames, layout.frame_dtype, 1)
        if layout.twin:
            grow("twin/predictions", (), np.int64, 4096)
            grow("twin/tiles", layout.tiles, np.uint16, 16)
            grow("twin/err2", (), np.float64, 4096)
            grow("twin/ref2", (), np.float64, 4096)


def _check(h5: Any, path: Path, identity: dict[str, str]) -> dict[str, Any]:
    """The stored layout, after checking this is a resumable run of the same program and images."""
    if h5.attrs.get("format") != RUN_FORMAT:
        raise RunFileError(f"{path} is not a labrig run file; use another output path")
    if int(h5.attrs.get("schema_version", -1)) != RUN_SCHEMA:
        raise RunFileError(f"run file {path} has schema version {h5.attrs.get('schema_version')}; "
                           f"this labrig writes {RUN_SCHEMA}: use another output path")
    for key, what in (("program_hash", "program"), ("data_digest", "images")):
        if str(h5.attrs.get(key, "")) != identity.get(key, ""):
            raise RunFileError(f"run file {path} was made with other {what} (its {key} differs): "
                               "use another output path, or start again without resuming")
    try:
        stored = json.loads(h5.attrs["layout"])
        stored["tiles"], stored["frames"] = tuple(stored["tiles"]), tuple(stored["frames"])
        return stored
    except (KeyError, ValueError) as exc:
        raise RunFileError(f"run file {path} is corrupt: {exc}") from exc


def read_run(path: str | Path) -> dict[str, Any]:
    """A run file's state: status, counts, predictions, labels, twin predictions, sessions."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != RUN_FORMAT:
                raise RunFileError(f"{path} is not a labrig run file")
            done = int(h5["done"][0])
            out: dict[str, Any] = {
                "path": str(path), "status": str(h5.attrs.get("status", "")), "error": str(h5.attrs.get("error", "")),
                "done": done, "total": int(h5.attrs["total"]),
                "program_hash": str(h5.attrs.get("program_hash", "")),
                "labels": h5["labels"][:done], "predictions": h5["predictions"][:done],
                "twin_predictions": h5["twin/predictions"][:done] if "twin/predictions" in h5 else None,
                "sessions": [dict(g.attrs) for _, g in sorted(h5.get("sessions", {}).items())],
            }
    except OSError as exc:
        raise RunFileError(f"run file {path} cannot be read (corrupt or truncated?): {exc}") from exc
    return out

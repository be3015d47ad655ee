"""Run files: one HDF5 file per run, written image chunk by image chunk, resumable.

Layout (all per-image datasets grow along axis 0, in image order)::

    labels (N,)                 -1 where unknown; written at creation
    predictions (n,)  logits (n, classes)
    tiles (n, T, th, tw)        only with save_tiles (default): raw tile DN as cut from the frames (attrs: dark_dn, scale:
                                signal = (DN - dark_dn[c]) * scale[c])
    frames (n, F, H, W)         only with save_frames
    twin/{predictions, tiles, err2, ref2}   only when compared with the twin
    done (1,)                   images whose data is complete: written after the data
    journal (JOURNAL_BYTES,)    uint8, zero-padded UTF-8 JSON rewritten in place: the run's status
                                and error, and one entry per run session (profile, every
                                device's settings, start and end, status, timing)

After each chunk the file is flushed, so a run stopped by Ctrl-C, a device
fault or a crash leaves a readable file whose first `done` images are valid;
resuming truncates anything past `done` and goes on from there.

One writer at a time: an open run file holds an exclusive lock on
``<file>.lock`` (`labrig.filelock`), and a second run into it is refused with a
message naming the holder.

A full disk must not cost the images measured so far. HDF5 cannot survive a
failed write of its own metadata (the file no longer opens), so a new run file
reserves the space of every image at creation: the per-image datasets have
their full length from the start, filled with zeros (``done`` says how many are
valid), and a run that does not fit is refused before any light goes on. What
changes later (status, sessions) lives in the fixed-size ``journal`` dataset,
not in attributes or groups, so that no write after creation asks HDF5 for new
space: appending a chunk or recording a session only overwrites bytes the file
already owns, and a disk that another program fills mid-run cannot stop the
run. Any `OSError` while writing still stops the run cleanly: a `RunFileError`
after which nothing more is written, the file valid up to the last whole chunk.
(Schema 1 files, which kept sessions as groups, are read but not resumed.)
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import labrig
from labrig.deploy.errors import RunFileError
from labrig.filelock import FileLock, LockHeld, describe_holder
from labrig.io import atomic_write, check_writable_target, json_default

__all__ = ["RUN_FORMAT", "RUN_SCHEMA", "Chunk", "MemorySink", "RunFile", "read_run"]

RUN_FORMAT = "labrig-run"
RUN_SCHEMA = 2
log = logging.getLogger(__name__)

#: free space asked for beyond the file's reserved bytes when it is created (HDF5's own metadata)
SPACE_MARGIN = 1 << 20
#: the journal's fixed size; older sessions' bulky entries are dropped if it would overflow
JOURNAL_BYTES = 1 << 20
#: session entries that may be dropped from older sessions when the journal is full
BULKY = ("profile_toml", "devices", "devices_end", "drift", "faults")
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

    def __init__(self, path: Path, h5: Any, layout: RunLayout, labels: np.ndarray, lock: FileLock | None = None) -> None:
        self.path, self._h5, self.layout, self.labels = path, h5, layout, labels
        self.done = int(h5["done"][0])
        self._journal: dict[str, Any] = _read_journal(h5)
        self._session: dict[str, Any] | None = None
        self._lock = lock
        self.write_error: str | None = None

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, layout: RunLayout, labels: np.ndarray, identity: dict[str, str],
             resume: bool = True) -> RunFile:
        """Create the file, or (with `resume`) reopen an unfinished one made by the same
        program for the same images; `identity` holds ``program_hash`` and ``data_digest``.
        The file is locked against a second writer until `finish` or `close`."""
        import h5py

        path = check_writable_target(path)
        lock = lock_run_file(path)
        try:
            if not (resume and path.exists()):
                check_space(path, layout)
                atomic_write(path, lambda tmp: _create(tmp, layout, labels, identity))
            try:
                h5 = h5py.File(path, "a")
            except OSError as exc:
                raise RunFileError(f"run file {path} cannot be opened (corrupt or truncated?): {exc}; "
                                   "use another output path, or start it again with --no-resume") from exc
            try:
                stored = _check(h5, path, identity)
                layout = RunLayout(**{**stored, "total": layout.total})
                run = cls(path, h5, layout, h5["labels"][()], lock)
                run._truncate()
            except BaseException:
                h5.close()
                raise
        except BaseException:
            lock.release()
            raise
        return run

    def _truncate(self) -> None:
        """Drop anything past `done` (a chunk cut short by a crash) in a file that grows; in one
        with its space reserved the rows past `done` are simply written again."""
        for name in PER_IMAGE:
            if name in self._h5:
                ds = self._h5[name]
                if ds.shape[0] != self.done and ds.maxshape[0] != ds.shape[0]:
                    ds.resize(self.done, axis=0)

    # -- writing --------------------------------------------------------------------------------
    def begin_session(self, info: dict[str, Any]) -> None:
        session = {"start": self.done, "started": _now(), "labrig_version": labrig.__version__,
                   **json.loads(json.dumps(info, default=json_default))}
        self._journal["sessions"].append(session)
        self._session = session
        self._journal["status"] = "running"
        try:
            self._write_journal()
            self._h5.flush()
        except OSError as exc:
            self._failed(exc)

    def _write_journal(self) -> None:
        """Rewrite the journal in place (no new space); older sessions are trimmed if it would overflow."""
        data = _encode_journal(self._journal)
        buf = np.zeros(self._h5["journal"].shape[0], np.uint8)
        buf[: len(data)] = np.frombuffer(data, np.uint8)
        self._h5["journal"][:] = buf

    def append(self, chunk: Chunk) -> None:
        """Write one chunk, `done` last; a failed write raises `RunFileError` and ends all writing."""
        if self.write_error is not None:
            raise RunFileError(f"run file {self.path}: no more writes after a failed one ({self.write_error})")
        if chunk.start != self.done:
            raise RunFileError(f"run file {self.path}: chunk at image {chunk.start}, expected {self.done}")
        n = len(chunk.predictions)
        arrays = {name: a for name, a in chunk.arrays().items() if a is not None and name in self._h5}
        try:
            for name, a in arrays.items():
                ds = self._h5[name]
                if ds.shape[0] < self.done + n:  # a file from before the space was reserved
                    ds.resize(self.done + n, axis=0)
                ds[self.done : self.done + n] = a
            self._h5["done"][0] = self.done + n  # last: the data above is complete
            self._h5.flush()
        except OSError as exc:
            self._failed(exc)
        self.done += n

    def _failed(self, exc: OSError) -> None:
        self.write_error = f"{type(exc).__name__}: {exc}"
        full = " (the disk is full)" if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else ""
        raise RunFileError(f"writing run file {self.path} failed{full}: {exc}; the file holds the first {self.done} "
                           "images: fix the cause and run again to resume") from exc

    def read(self, name: str) -> np.ndarray | None:
        return self._h5[name][: self.done] if name in self._h5 else None

    def finish(self, status: str, error: str | None, stats: dict[str, Any]) -> None:
        """Record how the session ended and close the file. The journal is rewritten in place,
        so this is tried even after a failed write; the images stay valid to `done` either way."""
        try:
            if self._session is not None:
                self._session.update(ended=_now(), status=status, error=error or "", done=self.done,
                                     **json.loads(json.dumps(stats, default=json_default)))
            self._journal["status"] = "complete" if self.done >= self.layout.total else status
            self._journal["error"] = error or ""
            self._write_journal()
            self._h5.flush()
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            log.error("run file %s: recording the session's end failed (%s); its %d images are kept",
                      self.path, exc, self.done)
        finally:
            self.close()

    def close(self) -> None:
        """Close the file if still open (after a failure before `finish`) and drop the lock;
        safe to call twice."""
        try:
            if self._h5.id.valid:
                try:
                    self._h5.close()
                except OSError:
                    if self.write_error is None:
                        raise
        finally:
            if self._lock is not None:
                self._lock.release()


def lock_run_file(path: Path) -> FileLock:
    """The run file's lock, held; `RunFileError` naming the holder if another run has it."""
    try:
        return FileLock(path.with_name(path.name + ".lock"), what=f"labrig run writing {path.name}").acquire()
    except LockHeld as exc:
        raise RunFileError(f"run file {path} is in use by {describe_holder(exc.holder)}: wait for that run to end "
                           "(or stop it), or write to another --out") from exc


def _per_image(layout: RunLayout) -> dict[str, tuple[tuple[int, ...], Any, int]]:
    """Every per-image dataset: its item shape, dtype and chunk length (images)."""
    out: dict[str, tuple[tuple[int, ...], Any, int]] = {
        "predictions": ((), np.int64, 4096), "logits": ((layout.classes,), np.float32, 1024)}
    if layout.save_tiles:
        out["tiles"] = (layout.tiles, np.uint16, 16)
    if layout.save_frames:
        out["frames"] = (layout.frames, np.dtype(layout.frame_dtype), 1)
    if layout.twin:
        out.update({"twin/predictions": ((), np.int64, 4096), "twin/tiles": (layout.tiles, np.uint16, 16),
                    "twin/err2": ((), np.float64, 4096), "twin/ref2": ((), np.float64, 4096)})
    return out


def run_file_bytes(layout: RunLayout) -> int:
    """The space a run file of `layout` reserves (its per-image data; metadata comes on top)."""
    return sum(layout.total * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
               for shape, dtype, _ in _per_image(layout).values())


def check_space(path: Path, layout: RunLayout) -> None:
    """Refuse a run whose file would not fit on its disk, before any light goes on."""
    need = run_file_bytes(layout) + JOURNAL_BYTES + SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise RunFileError(f"run file {path}: {layout.total} images need {need / 1e6:.1f} MB and the disk has "
                           f"{free / 1e6:.1f} MB free: free some space, write elsewhere (--out), run fewer images "
                           "(--limit) or keep less (--no-tiles)")


def _create(tmp: Path, layout: RunLayout, labels: np.ndarray, identity: dict[str, str]) -> None:
    import h5py

    n = layout.total
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = RUN_FORMAT
        h5.attrs["schema_version"] = RUN_SCHEMA
        h5.attrs["created"] = _now()
        h5.attrs["labrig_version"] = labrig.__version__
        h5.attrs["layout"] = json.dumps({k: v for k, v in layout.__dict__.items() if k != "total"})
        h5.attrs["total"] = n
        for key, value in identity.items():
            h5.attrs[key] = value
        h5.create_dataset("labels", data=labels.astype(np.int64))
        h5.create_dataset("done", data=np.zeros(1, np.int64))
        journal = np.zeros(JOURNAL_BYTES, np.uint8)
        data = _encode_journal({"status": "created", "error": "", "sessions": []})
        journal[: len(data)] = np.frombuffer(data, np.uint8)
        h5.create_dataset("journal", data=journal)  # contiguous, allocated now: rewritten in place
        for name, (shape, dtype, chunk) in _per_image(layout).items():
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # the space is the file's from the start:
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)  # written (zeros), not a sparse promise
            h5.create_dataset(name, shape=(n, *shape), dtype=dtype, chunks=(max(1, min(chunk, n)), *shape),
                              dcpl=dcpl)


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
            journal = _read_journal(h5)
            out: dict[str, Any] = {
                "path": str(path), "error": journal["error"], "done": done,
                "status": "complete" if done >= int(h5.attrs["total"]) else journal["status"],
                "total": int(h5.attrs["total"]),
                "program_hash": str(h5.attrs.get("program_hash", "")),
                "labels": h5["labels"][:done], "predictions": h5["predictions"][:done],
                "twin_predictions": h5["twin/predictions"][:done] if "twin/predictions" in h5 else None,
                "sessions": journal["sessions"],
            }
    except OSError as exc:
        raise RunFileError(f"run file {path} cannot be read (corrupt or truncated?): {exc}") from exc
    return out


def _encode_journal(journal: dict[str, Any]) -> bytes:
    """The journal as bytes that fit `JOURNAL_BYTES`: older sessions lose their bulky entries
    (marked ``trimmed``) until it fits, the current one last."""
    data = json.dumps(journal, default=json_default).encode()
    for session in journal["sessions"]:
        if len(data) < JOURNAL_BYTES:
            break
        for key in BULKY:
            if session.pop(key, None) is not None:
                session["trimmed"] = True
        data = json.dumps(journal, default=json_default).encode()
    if len(data) >= JOURNAL_BYTES:
        raise RunFileError(f"a run file's journal cannot hold {len(journal['sessions'])} sessions in "
                           f"{JOURNAL_BYTES} bytes: start the run in a new file")
    return data


def _read_journal(h5: Any) -> dict[str, Any]:
    """The run's status, error and sessions: from the journal, or (schema 1) attributes and groups."""
    if "journal" not in h5:
        sessions = [{k: _maybe_json(v) for k, v in g.attrs.items()} for _, g in sorted(h5.get("sessions", {}).items())]
        return {"status": str(h5.attrs.get("status", "")), "error": str(h5.attrs.get("error", "")),
                "sessions": sessions}
    raw = h5["journal"][()].tobytes().rstrip(b"\0")
    try:
        journal = json.loads(raw.decode())
        return {"status": str(journal["status"]), "error": str(journal.get("error", "")),
                "sessions": list(journal.get("sessions", []))}
    except (ValueError, KeyError, TypeError) as exc:
        raise RunFileError(f"run file {h5.filename}: its journal is corrupt ({exc})") from exc


def _maybe_json(value: Any) -> Any:
    """A schema-1 session attribute: dicts and lists were stored as JSON strings."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value.item() if isinstance(value, np.generic) else value

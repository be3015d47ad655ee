"""File helpers shared by everything that writes artifacts (frames, calibrations, runs).

Writes are atomic: the data goes to a temporary file in the same directory and
is renamed over the target only once complete, so a crash or a full disk never
leaves a truncated calibration or run file where a good one is expected.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "check_writable_target", "json_default"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once: os.umask is process-wide and not thread-safe


def check_writable_target(path: str | os.PathLike[str]) -> Path:
    """`path` if it is a new path or an existing regular file (a symlink counts as its target,
    which is returned); anything else (a device node, a pipe, a socket, a directory) would be
    replaced by a rename, so it is refused with an `IsADirectoryError` / `FileExistsError`."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    raise FileExistsError(f"{path} is {kind}, not a regular file: refusing to replace it (choose a file path)")


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` to write the content, then rename it to `path`.

    The temporary file sits next to `path` and keeps its suffix (so libraries
    that pick a format from the extension, or append one, behave); it is removed
    if `writer` raises. The target's directory must exist; the target must be new
    or a regular file (`check_writable_target`). Returns `path`.
    """
    path = check_writable_target(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:  # the bytes are on disk before the rename makes them visible
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None and str(path) not in str(exc):
            raise type(exc)(exc.errno, f"writing {path} failed: {exc.strerror or exc}") from exc
        raise
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, paths, the rest as str.

    Device settings and identities carry numpy values; run files store them as JSON.
    """
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)

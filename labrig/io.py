"""File helpers shared by everything that writes artifacts (frames, calibrations, runs).

Writes are atomic: the data goes to a temporary file in the same directory and
is renamed over the target only once complete, so a crash or a full disk never
leaves a truncated calibration or run file where a good one is expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "json_default"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once: os.umask is process-wide and not thread-safe


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` to write the content, then rename it to `path`.

    The temporary file sits next to `path` and keeps its suffix (so libraries
    that pick a format from the extension, or append one, behave); it is removed
    if `writer` raises. The target's directory must exist. Returns `path`.
    """
    path = Path(path)
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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
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

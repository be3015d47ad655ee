"""An exclusive, non-blocking file lock that names its holder, on POSIX and Windows.

Two writers of one artifact (two runs into one run file, two workers on one job)
must never both proceed: the second gets `LockHeld`, whose message says who holds
the lock (pid, host, what, since when). The lock is the operating system's
(``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it dies with its process:
a run killed with SIGKILL leaves no stale lock behind, only a lock file that the
next holder takes over.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from drivers.errors import LabrigError

__all__ = ["FileLock", "LockHeld", "describe_holder"]

#: the holder's description starts after this byte; the first byte is the one locked on Windows
_INFO_AT = 1


class LockHeld(LabrigError):
    """Someone else holds the lock; `holder` is what they wrote about themselves."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:  # past the locked byte: Windows refuses to read a locked range
            fh.seek(_INFO_AT)
            text = fh.read(4096).decode("utf-8", "replace").strip()
        holder = json.loads(text) if text else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (it wrote nothing about itself)"
    what = f" ({holder['what']})" if holder.get("what") else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{what}, since {holder.get('since', '?')}"


class FileLock:
    """``with FileLock(path, what="labrig run"): ...``, or `acquire()` / `release()`."""

    def __init__(self, path: str | os.PathLike[str], what: str = "") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float | None = 0.0, poll_s: float = 0.2) -> FileLock:
        """Take the lock, waiting up to `wait_s` seconds (None: as long as it takes), or raise
        `LockHeld` naming the holder."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            deadline = None if wait_s is None else time.monotonic() + wait_s
            while not _try_lock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _read_holder(self.path)
                    raise LockHeld(f"{self.path} is locked by {describe_holder(holder)}", holder)
                time.sleep(poll_s)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                    "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, _INFO_AT)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b" " + json.dumps(info).encode() + b"\n")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go (safe to call twice). The lock file stays: removing it would race the next holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

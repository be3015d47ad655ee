"""A lasting record of what the console did: a rotating log file.

The Log dock shows the last few thousand records and forgets them when the
window closes; an operator investigating a burnt sample or a tripped interlock
needs what happened last week. This module owns the file (where it lives, how
it rotates, which records it keeps) so any front end can attach it; it knows
nothing of Qt.

Safety events (the ``labrig.bench.safety`` logger: light made safe, guards
armed, failures to close a shutter) are written at every level, whatever
threshold the rest of the file uses.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "LOG_DIR_ENV",
    "LOG_NAME",
    "SAFETY_LOGGER",
    "FileLog",
    "default_log_dir",
]

LOG_DIR_ENV = "LABRIG_LOG_DIR"
LOG_NAME = "labrig-console.log"
SAFETY_LOGGER = "labrig.bench.safety"
MAX_BYTES = 2_000_000
BACKUPS = 5
_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"


def default_log_dir(environ: dict[str, str] | None = None) -> Path:
    """``$LABRIG_LOG_DIR``, else the platform's per-user folder for logs/state."""
    env = os.environ if environ is None else environ
    if env.get(LOG_DIR_ENV):
        return Path(env[LOG_DIR_ENV]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "labrig" / "logs"
    if sys.platform == "darwin":
        return home / "Library" / "Logs" / "labrig"
    return Path(env.get("XDG_STATE_HOME") or home / ".local" / "state") / "labrig"


class _Threshold(logging.Filter):
    """Passes records at or above `level`, and every safety record."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        safety = record.name == SAFETY_LOGGER or record.name.startswith(SAFETY_LOGGER + ".")
        return safety or record.levelno >= self.level


class FileLog:
    """A rotating log file attached to some loggers; `close` detaches it and restores levels."""

    def __init__(self, path: str | Path, loggers: Iterable[str], *, level: int = logging.INFO,
                 max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=False)
        except OSError as exc:
            raise OSError(f"cannot write the log file {self.path}: {exc}") from exc
        self.handler.setLevel(logging.DEBUG)
        self.handler.addFilter(_Threshold(level))
        self.handler.setFormatter(logging.Formatter(_FORMAT))
        self._attached: list[tuple[logging.Logger, int]] = []
        for name in loggers:
            self._attach(logging.getLogger(name), level)
        # safety records reach the file at every level: the safety logger itself must let them out
        self._attach(logging.getLogger(SAFETY_LOGGER), logging.DEBUG, handler=False)

    def _attach(self, logger: logging.Logger, level: int, *, handler: bool = True) -> None:
        self._attached.append((logger, logger.level))
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
        if handler:
            logger.addHandler(self.handler)

    def close(self) -> None:
        """Detach from every logger (levels restored, in reverse) and close the file."""
        for logger, previous in reversed(self._attached):
            logger.removeHandler(self.handler)
            logger.setLevel(previous)
        self._attached.clear()
        self.handler.close()

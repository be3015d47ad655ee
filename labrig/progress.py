"""How a long job reports progress and learns it should stop: the two arguments every
engine function (compile, run, calibrate, fine-tune) takes, whichever face calls it.

`progress(done, total, info)` is called from the job's own thread after each step;
`info` is a dict of what the step measured (accuracy so far, a stage name). `cancel`
is a `threading.Event` (the console's Cancel button sets it) or a callable that
returns True once the operator asked to stop; the job polls it between steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Cancel", "Progress", "is_cancelled"]

Progress = Callable[[int, int, dict[str, Any]], None]
Cancel = Callable[[], bool] | threading.Event


def is_cancelled(cancel: Cancel | None) -> bool:
    """Whether `cancel` (None: never) says stop."""
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())

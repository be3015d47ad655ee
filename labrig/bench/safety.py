"""Laser safety: one place that knows how to make a bench safe and how to arm it.

Safe means laser emission off and the beam shutter closed. `make_safe` tries
both even if one fails, because a half-safe bench is the dangerous case. The
guard also makes the bench safe when the process exits or is told to stop
(atexit, SIGTERM, SIGINT), so a crashed script does not leave a laser on.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from drivers.base import LaserController, Shutter
from drivers.errors import SafetyError

__all__ = ["SafetyGuard"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class SafetyGuard:
    """Keeps a shutter and a laser (either may be None) safe, and arms them on request.

    With `install` (the default) it registers an atexit hook and SIGTERM/SIGINT
    handlers that call `make_safe()` and then chain to the handlers that were
    there before; `release()` removes them again.
    """

    def __init__(
        self,
        shutter: Shutter | None = None,
        laser: LaserController | None = None,
        *,
        install: bool = True,
    ) -> None:
        self.shutter = shutter
        self.laser = laser
        self._armed = False
        self._safe_count = 0
        self.last_safe_reason = ""
        self._installed = False
        self._previous: dict[int, _Handler] = {}
        if install:
            self.install()

    @property
    def armed(self) -> bool:
        """True between a successful `arm()` and the next `make_safe()`."""
        return self._armed

    @property
    def safe_count(self) -> int:
        """How often `make_safe` has been called: a run notes it when it arms and stops as
        soon as it changes, whoever made the bench safe (a button, a signal, another thread)."""
        return self._safe_count

    def light_on(self) -> bool:
        """True while armed and the devices report the laser emitting and the shutter open."""
        if not self._armed:
            return False
        if self.laser is not None and not self.laser.enabled:
            return False
        return not (self.shutter is not None and not self.shutter.shutter_open)

    # -- the two states -----------------------------------------------------------------------
    def make_safe(self, reason: str = "make safe requested") -> None:
        """Laser off, then shutter closed; both are attempted, failures reported together.
        `reason` is kept (`last_safe_reason`) so a run stopped by it can say why."""
        self._armed = False
        self._safe_count += 1
        self.last_safe_reason = reason
        errors: list[tuple[str, BaseException]] = []
        if self.laser is not None:
            try:
                self.laser.disable()
            except Exception as exc:
                errors.append((f"disabling laser {self.laser.name}", exc))
        if self.shutter is not None:
            try:
                self.shutter.close_shutter()
            except Exception as exc:
                errors.append((f"closing shutter {self.shutter.name}", exc))
        if errors:
            summary = "; ".join(f"{what} failed: {type(e).__name__}: {e}" for what, e in errors)
            raise SafetyError(f"could not make the bench safe: {summary}") from errors[0][1]

    def arm(self) -> None:
        """Light on: shutter confirmed closed, interlock checked, laser enabled, shutter opened.

        Any failure on the way makes the bench safe again before the error propagates.
        """
        self._reclaim_signals()
        try:
            if self.shutter is not None:
                if not self.shutter.is_open:
                    raise SafetyError(f"shutter {self.shutter.name} is not connected; cannot arm")
                self.shutter.close_shutter()
                if self.shutter.shutter_open or not self.shutter.confirm_closed():
                    raise SafetyError(f"shutter {self.shutter.name} did not confirm closed")
            if self.laser is not None:
                if not self.laser.is_open:
                    raise SafetyError(f"laser {self.laser.name} is not connected; cannot arm")
                if not self.laser.interlock_ok():
                    raise SafetyError(f"laser {self.laser.name}: interlock is open; not enabling")
                self.laser.enable()
            if self.shutter is not None:
                self.shutter.open_shutter()
        except BaseException as exc:
            try:
                self.make_safe()
            except SafetyError as safe_exc:
                _add_note(exc, f"and then: {safe_exc}")
            raise
        self._armed = True

    # -- process hooks -----------------------------------------------------------------------
    def install(self) -> None:
        """Register the atexit hook and (from the main thread) the signal handlers."""
        if self._installed:
            return
        self._installed = True
        atexit.register(self._on_exit)
        if threading.current_thread() is not threading.main_thread():
            log.warning("SafetyGuard created off the main thread: no SIGTERM/SIGINT handlers, "
                        "only the atexit hook")
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def release(self) -> None:
        """Undo `install()`: restore the previous signal handlers, drop the atexit hook."""
        if not self._installed:
            return
        self._installed = False
        atexit.unregister(self._on_exit)
        for signum, previous in list(self._previous.items()):
            # someone installed a handler over ours: leave theirs, ours becomes a pass-through
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
                del self._previous[signum]

    def _reclaim_signals(self) -> None:
        """Before the light goes on, put our handlers back if a library replaced them since
        `install()` (harvesters does so for SIGINT when it opens a camera); theirs is chained."""
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            current = signal.getsignal(signum)
            if current != self._on_signal:
                log.warning("signal %d handler was replaced by %r; reinstalling the safety handler",
                            signum, current)
                self._previous[signum] = current
                signal.signal(signum, self._on_signal)

    def _on_exit(self) -> None:
        try:
            self.make_safe("the process is exiting")
        except Exception:
            log.exception("labrig: making the bench safe at exit failed")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._installed:
            try:
                self.make_safe(f"signal {signal.Signals(signum).name} received")
            except Exception:
                log.exception("labrig: making the bench safe on signal %d failed", signum)
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL or a handler not set from Python: do what the default would do
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _add_note(exc: BaseException, note: str) -> None:
    add = getattr(exc, "add_note", None)
    if add is not None:  # Python >= 3.11
        add(note)

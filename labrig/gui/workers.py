"""Long work off the UI thread: tasks with progress and cancel, and the camera stream.

Everything that can take longer than a frame (opening a bench, loading or
compiling a program, a dataset run, every camera grab) runs in a `QThread`.
Results, progress and errors come back as queued signals, so the UI never
blocks on a device and an exception in a worker becomes a `failed` signal (the
main window turns it into a dialog and a log entry) instead of a dead thread.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from labrig.gui.framestats import RateMeter

__all__ = ["FrameStream", "Job", "LiveStream", "TaskContext", "TaskManager"]

log = logging.getLogger("labrig.gui")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TaskContext:
    """What a task function gets: a cancel flag to poll and a progress callback."""

    def __init__(self, emit: Callable[[int, int, object], None], cancel: threading.Event) -> None:
        self._emit = emit
        self.cancel = cancel

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def progress(self, done: int, total: int, metrics: object = None) -> None:
        """Report progress; safe from the worker thread (the signal is queued)."""
        self._emit(int(done), int(total), metrics)


class _Task(QObject):
    """Runs `fn(context)` once in the thread it was moved to."""

    progress = Signal(int, int, object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, fn: Callable[[TaskContext], Any], cancel: threading.Event) -> None:
        super().__init__()
        self._fn = fn
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(TaskContext(self.progress.emit, self._cancel))
        except Exception as exc:  # every failure must reach the operator, not kill the thread
            self.failed.emit(_describe(exc), traceback.format_exc())
        else:
            self.succeeded.emit(result)
        finally:
            self.finished.emit()


class Job(QObject):
    """One task in its own QThread; lives in the UI thread and relays the task's signals,
    so callbacks passed to `TaskManager.start` always run in the UI thread."""

    progress = Signal(int, int, object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, name: str, fn: Callable[[TaskContext], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.cancel_event = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(f"labrig-{name}")
        self._task = _Task(fn, self.cancel_event)
        self._task.moveToThread(self._thread)
        self._thread.started.connect(self._task.run)
        self._task.progress.connect(self._on_progress)
        self._task.succeeded.connect(self._on_succeeded)
        self._task.failed.connect(self._on_failed)
        # direct: quit() is thread-safe, and a queued quit would wait for the UI thread,
        # which may itself be waiting for this thread to end (closing the window)
        self._task.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)

    def start(self) -> Job:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the task to stop; it checks `context.cancelled` between steps."""
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the thread has ended; True if it did within `timeout_s`."""
        if self._done.is_set():
            return True
        ended = self._thread.wait() if timeout_s is None else self._thread.wait(int(timeout_s * 1000))
        if ended:
            self._done.set()  # now, not when the queued `finished` is handled
        return ended

    @Slot(int, int, object)
    def _on_progress(self, done: int, total: int, metrics: object) -> None:
        self.progress.emit(done, total, metrics)

    @Slot(object)
    def _on_succeeded(self, result: object) -> None:
        self.result = result
        self.succeeded.emit(result)

    @Slot(str, str)
    def _on_failed(self, message: str, tb: str) -> None:
        self.error = message
        self.failed.emit(message, tb)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._thread.wait()  # `finished` comes just before the thread really ends
        self._done.set()
        self.finished.emit()


class TaskManager(QObject):
    """Starts jobs, keeps them alive while they run, and reports every failure once."""

    #: (task name, one-line message, traceback): the main window shows it
    task_failed = Signal(str, str, str)
    #: a job started or ended (the status bar shows what runs)
    jobs_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []

    def start(
        self,
        name: str,
        fn: Callable[[TaskContext], Any],
        *,
        on_success: Callable[[Any], None] | None = None,
        on_progress: Callable[[int, int, object], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> Job:
        """Run `fn(context)` in a worker thread; the callbacks run in the UI thread."""
        job = Job(name, fn, self)
        if on_progress is not None:
            job.progress.connect(on_progress)
        if on_success is not None:
            job.succeeded.connect(on_success)
        if on_failure is not None:
            job.failed.connect(lambda message, _tb: on_failure(message))
        job.failed.connect(lambda message, tb: self.report(name, message, tb))
        job.finished.connect(lambda: self._forget(job))
        if on_finished is not None:
            job.finished.connect(on_finished)
        self._jobs.append(job)
        log.info("%s: started", name)
        job.start()
        self.jobs_changed.emit()
        return job

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()

    def wait_all(self, timeout_s: float = 30.0) -> bool:
        """Wait for every running job (after `cancel_all`, when closing); True if all ended."""
        deadline = time.monotonic() + timeout_s
        ok = True
        for job in list(self._jobs):
            ok &= job.wait(max(0.0, deadline - time.monotonic()))
        return ok

    def report(self, name: str, message: str, tb: str = "") -> None:
        """Log a failure and tell the operator (also for failures outside jobs: the stream)."""
        log.error("%s failed: %s", name, message)
        if tb.strip():
            log.debug("%s traceback:\n%s", name, tb.rstrip())
        self.task_failed.emit(name, message, tb)

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
            self.jobs_changed.emit()


# -- the camera stream ---------------------------------------------------------------------------


class FrameStream(QObject):
    """Grabs frames in a loop in its own thread and keeps only the newest.

    The UI is told with `frame_ready` only when it has taken the previous frame,
    so a slow display drops frames instead of queueing them (and their memory);
    `camera_rate` is what the camera delivers, the display counts its own.
    `period()` (seconds) bounds the grab rate: the thread sleeps out the rest of each
    period instead of grabbing frames nobody can see (a simulated camera would
    otherwise spin a core). Paused, it grabs nothing and waits.
    """

    frame_ready = Signal()
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, grab: Callable[[], np.ndarray],
                 skip: tuple[type[BaseException], ...] = (),
                 period: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._grab = grab
        self._skip = skip
        self._period = period
        self._stop = threading.Event()
        self._active = threading.Event()
        self._active.set()
        self._lock = threading.Lock()
        self._latest: tuple[np.ndarray, float] | None = None
        self._pending = False
        self.camera_rate = RateMeter()
        self.dropped = 0
        self.skipped = 0

    def stop(self) -> None:
        self._stop.set()
        self._active.set()  # wake a paused loop so that it can end

    def set_paused(self, paused: bool) -> None:
        """Paused: no grabs at all (the thread blocks) until unpaused or stopped."""
        if paused:
            self._active.clear()
        else:
            self._active.set()

    @property
    def paused(self) -> bool:
        return not self._active.is_set()

    def take(self) -> tuple[np.ndarray, float] | None:
        """The newest frame and its time (perf_counter), or None; re-arms `frame_ready`."""
        with self._lock:
            latest, self._latest = self._latest, None
            self._pending = False
        return latest

    @Slot()
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._active.is_set():
                    self._active.wait()
                    continue
                t0 = time.perf_counter()
                try:
                    frame = self._grab()
                except self._skip:  # e.g. a dropped frame: the next one may well arrive
                    self.skipped += 1
                    continue
                now = time.perf_counter()
                self.camera_rate.tick(now)
                with self._lock:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = (frame, now)
                    notify = not self._pending
                    self._pending = True
                if notify:
                    self.frame_ready.emit()
                if self._period is not None:  # sleep out the period (a stop wakes it at once)
                    rest = self._period() - (time.perf_counter() - t0)
                    if rest > 0:
                        self._stop.wait(rest)
        except Exception as exc:
            self.failed.emit(_describe(exc), traceback.format_exc())
        finally:
            self.finished.emit()


class LiveStream(QObject):
    """Starts and stops one `FrameStream` thread; `frame_ready` and `failed` are relayed
    to the UI thread, `stopped` says the thread has ended (by request or by an error)."""

    frame_ready = Signal()
    failed = Signal(str, str)
    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._stream: FrameStream | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    @property
    def stream(self) -> FrameStream | None:
        return self._stream

    def start(self, grab: Callable[[], np.ndarray],
              skip: tuple[type[BaseException], ...] = (),
              period: Callable[[], float] | None = None) -> None:
        """Stream frames from `grab()`, at most one per `period()` seconds; an exception of a
        `skip` type loses one frame, any other stops the stream and is reported through `failed`."""
        self.stop()
        thread = QThread()
        thread.setObjectName("labrig-live")
        stream = FrameStream(grab, skip, period)
        stream.moveToThread(thread)
        thread.started.connect(stream.run)
        stream.frame_ready.connect(self._on_frame_ready)
        stream.failed.connect(self._on_failed)
        stream.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._stream = thread, stream
        thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the stream and wait for its thread (a grab in flight ends within its
        timeout); True if no thread is left running."""
        thread, stream = self._thread, self._stream
        if thread is None or stream is None:
            return True
        stream.stop()
        ok = thread.wait(int(timeout_s * 1000))
        if ok:
            self._release()
        else:
            log.warning("live stream did not stop within %.1f s", timeout_s)
        return ok

    def take(self) -> tuple[np.ndarray, float] | None:
        return None if self._stream is None else self._stream.take()

    def set_paused(self, paused: bool) -> None:
        if self._stream is not None:
            self._stream.set_paused(paused)

    def _release(self) -> None:
        was = self._thread is not None
        self._thread = None
        self._stream = None
        if was:
            self.stopped.emit()

    @Slot()
    def _on_frame_ready(self) -> None:
        if self.sender() is self._stream:
            self.frame_ready.emit()

    @Slot(str, str)
    def _on_failed(self, message: str, tb: str) -> None:
        self.failed.emit(message, tb)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread = self._thread
        if thread is not None and self.sender() is thread:
            thread.wait()  # `finished` comes just before the thread really ends; then drop it
            self._release()

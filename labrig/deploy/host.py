"""The host half of the run pipeline: tiles -> back end -> run file, on its own thread.

While the main thread has the camera integrate chunk i, this thread reads out
chunk i-1 (cut, dark, scale), runs the back end on the chosen torch device,
optionally asks the twin what it expected, and appends everything to the run
file. A bounded queue keeps at most two chunks in flight, so a slow host
holds the bench back instead of piling frames up in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np
import torch

from labrig.deploy.backend import build_backend
from labrig.deploy.program import Program
from labrig.deploy.readout import TileReader
from labrig.deploy.runfile import Chunk
from labrig.deploy.twin import ProgramTwin

__all__ = ["Host"]

_STOP = object()


def _uint16(dn: np.ndarray) -> np.ndarray:
    if dn.dtype == np.uint16:
        return dn
    return np.clip(np.rint(dn), 0, np.iinfo(np.uint16).max).astype(np.uint16)


class Host:
    """Processes chunks of frames in order; `start()` runs it on a thread, `process()` inline."""

    def __init__(self, program: Program, sink: Any, device: torch.device, *, twin: bool, save_frames: bool) -> None:
        self.program, self.sink, self.device = program, sink, device
        self.reader = TileReader(program)
        self.backend = build_backend(program.backend, device)
        # float32, as the simulated bench renders: the reference costs half a float64 one and
        # differs from it by the ADC's rounding (at most 1 DN)
        self.twin = ProgramTwin(program, dtype=torch.float32) if twin else None
        self.save_frames = save_frames
        self.busy_s = 0.0
        self.twin_s = 0.0
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._abandon = False
        self._lock = threading.Lock()
        labels = np.asarray(sink.labels)
        done = sink.done
        previous = sink.read("predictions")
        twin_previous = sink.read("twin/predictions")
        known = labels[:done] >= 0
        self.done = done
        self.labelled = int(known.sum())
        self.correct = int((previous[known] == labels[:done][known]).sum()) if previous is not None else 0
        self.twin_correct = (int((twin_previous[known] == labels[:done][known]).sum())
                             if twin_previous is not None else 0)

    # -- threading ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="labrig-run-host", daemon=True)
        self._thread.start()

    def submit(self, start: int, input_gray: np.ndarray, frames: np.ndarray) -> None:
        """Queue a chunk (blocks while two are waiting); re-raises a failure of the host thread."""
        self.raise_if_failed()
        if self._thread is None:
            self._handle(start, input_gray, frames)
        else:
            self._queue.put((start, input_gray, frames))

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Finish every queued chunk and stop the thread (safe to call twice). A second
        Ctrl-C while waiting drops the queued chunks but still waits for the one in hand,
        so the run file is never closed under a write."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self._abandon = True
            self._thread.join()
            raise
        finally:
            self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self.error is None and not self._abandon:
                try:
                    self._handle(*item)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    # -- the work ---------------------------------------------------------------------------------
    def _handle(self, start: int, input_gray: np.ndarray, frames: np.ndarray) -> None:
        t = time.perf_counter()
        chunk = self.process(start, input_gray, frames)
        self.sink.append(chunk)
        labels = np.asarray(self.sink.labels[start : start + len(frames)])
        known = labels >= 0
        with self._lock:
            self.done = start + len(frames)
            self.labelled += int(known.sum())
            self.correct += int((chunk.predictions[known] == labels[known]).sum())
            if chunk.twin_predictions is not None:
                self.twin_correct += int((chunk.twin_predictions[known] == labels[known]).sum())
        self.busy_s += time.perf_counter() - t

    @torch.inference_mode()
    def _classify(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(signal.astype(np.float32)).to(self.device)
        logits = self.backend(x).float().cpu().numpy()
        return logits.argmax(1).astype(np.int64), logits

    def process(self, start: int, input_gray: np.ndarray, frames: np.ndarray) -> Chunk:
        """One chunk: cut and scale the tiles, classify, compare with the twin if asked."""
        raw = self.reader.cut(frames)
        signal = self.reader.signal(raw)
        predictions, logits = self._classify(signal)
        chunk = Chunk(start, predictions, logits, _uint16(raw), frames if self.save_frames else None)
        if self.twin is not None:
            t = time.perf_counter()
            twin_raw = self.reader.cut(self.twin.frames(input_gray))
            expected = self.reader.signal(twin_raw)
            chunk.twin_predictions, _ = self._classify(expected)
            chunk.twin_tiles = _uint16(twin_raw)
            chunk.twin_err2 = np.square((signal - expected).astype(np.float64)).sum(axis=(1, 2, 3))
            chunk.twin_ref2 = np.square(expected.astype(np.float64)).sum(axis=(1, 2, 3))
            self.twin_s += time.perf_counter() - t
        return chunk

    def metrics(self) -> dict[str, Any]:
        """Running counts for progress reports (thread-safe snapshot)."""
        with self._lock:
            acc = self.correct / self.labelled if self.labelled else None
            twin = self.twin_correct / self.labelled if self.labelled and self.twin is not None else None
            return {"done": self.done, "accuracy": acc, "twin_accuracy": twin}

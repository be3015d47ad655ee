"""Frames from a bench for a chunk of input patterns, with the time spent in devices.

Per chunk and per frame group: show that group's filter pattern, set its
exposure, then show each input and grab (or hand the whole chunk to a camera
with a batched path, as the simulated one has). Filter and exposure change
only when the group does, so a spatially multiplexed program touches the
filter SLM once per run.

Faults: a timeout, a dropped frame or an SLM write error is retried (up to
`retries` times in a row on the same frame); the frames a batched grab
delivered before its fault are kept. A disconnected camera is reopened (up to
`reconnects` times, waiting longer each time) and the chunk goes on where it
stopped. Anything else ends the run; the images completed before it are
handed back on the exception (`exc.partial`) so the run file keeps them.

Light: a frame taken without light is never data. Before and after each chunk
the bench's safety guard must still be armed since the run armed it (nobody
made the bench safe: a button, a signal, another thread) and the laser and
shutter must report on; and a chunk whose tiles all sit at the dark level is
refused. Either raises `LightOff`, and the chunk in flight is not recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from drivers.base import BatchCamera
from drivers.errors import TRANSIENT_ERRORS, DeviceDisconnected, DeviceError, completed_frames
from labrig.bench import Bench
from labrig.deploy.errors import LightOff, ProgramMismatch
from labrig.deploy.program import Program
from labrig.deploy.readout import TileReader

__all__ = ["DARK_MARGIN", "Acquirer"]

log = logging.getLogger(__name__)

#: a tile is "at the dark level" when its mean is within this fraction of the camera's range
#: (at least 2 DN) of the program's dark level; a lit tile of a compiled program sits far above
DARK_MARGIN = 0.01
#: only input images whose brightest pixel reaches this fraction of full scale are expected to light a tile
_BRIGHT_INPUT = 0.25


class Acquirer:
    """Drives the input modulator, filter SLM and camera for one program."""

    def __init__(self, bench: Bench, program: Program, *, timeout_s: float = 1.0, retries: int = 2,
                 batched: bool | None = None, reconnects: int = 3, reconnect_wait_s: float = 0.5) -> None:
        self.bench, self.program = bench, program
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        self.reconnects, self.reconnect_wait_s = int(reconnects), float(reconnect_wait_s)
        camera = bench.camera
        capable = isinstance(camera, BatchCamera)
        if batched and not capable:
            raise ProgramMismatch(f"batched acquisition: the camera {camera.name} is not a BatchCamera",
                                  ["batched acquisition needs a BatchCamera"])
        self.batched = capable if batched is None else bool(batched)
        if not self.batched and bench.input is None:
            raise ProgramMismatch("this bench has no input modulator to show images on",
                                  ["input modulator: this bench has none to show images on"])
        self.rois = [tuple(int(v) for v in r) for r in program.readout.rois]
        self.dtype = np.dtype(np.uint8 if camera.bit_depth <= 8 else np.uint16)
        self.reader = TileReader(program)
        self.device_s = 0.0
        self.frames = 0
        self.retried = 0
        self.reconnected = 0
        self.faults: dict[str, int] = {}
        self._group: int | None = None
        self._at = 0  # the next image of the chunk to grab
        self._light_token: int | None = None

    # -- light --------------------------------------------------------------------------------------
    @property
    def has_light(self) -> bool:
        return self.bench.laser is not None or self.bench.shutter is not None

    def light_armed(self) -> None:
        """Call right after the guard armed the light: from now on, any make-safe ends the run."""
        self._light_token = self.bench.guard.safe_count

    def check_light(self, what: str) -> None:
        """Raise `LightOff` unless the light is still on as the run armed it."""
        if not self.has_light:
            return
        guard = self.bench.guard
        if self._light_token is not None and guard.safe_count != self._light_token:
            raise LightOff(f"the bench was made safe during the run ({guard.last_safe_reason}); {what} "
                           "not recorded")
        if not guard.light_on():
            raise LightOff(f"the light is off (laser or shutter reports off); {what} not recorded")

    def check_lit(self, input_gray: np.ndarray, frames: np.ndarray, what: str) -> None:
        """Raise `LightOff` when every bright input of the chunk left its tiles at the dark level
        (the 99th percentile of each tile, so that a few hot pixels do not pass for light)."""
        if not self.has_light or not len(frames):
            return
        full_gray = 2 ** int(self.program.constraints.input_bit_depth) - 1
        bright = input_gray.reshape(len(input_gray), -1).max(axis=1) >= _BRIGHT_INPUT * full_gray
        if not bright.any():
            return  # nothing here is expected to light a tile: no verdict
        tiles = self.reader.cut(frames[bright]).astype(np.float32)
        tiles = tiles.reshape(*tiles.shape[:2], -1)
        dark = self.reader.dark.reshape(1, -1).astype(np.float32)
        excess = float((np.percentile(tiles, 99, axis=2) - dark).max())
        margin = max(2.0, DARK_MARGIN * (float(self.bench.camera.max_value) - float(np.max(dark))))
        if excess < margin:
            raise LightOff(f"{what}: every tile sits at the dark level (at most {excess:.1f} DN above it, a lit "
                           f"tile is > {margin:.1f}): frames taken without light are not data")

    # -- devices ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Laser power and camera gain as compiled (exposure and filter follow the frame group)."""
        t = time.perf_counter()
        ro = self.program.readout
        if self.bench.laser is not None:
            self.bench.laser.power_w = ro.laser_power_w
        self.bench.camera.gain = ro.gain
        self._select(0)
        self.device_s += time.perf_counter() - t

    def _select(self, group: int) -> None:
        if group == self._group:
            return
        self._retry(lambda: self.bench.filter.show(self.program.filter.gray[group]))
        self.bench.camera.exposure_s = self.program.readout.exposure_s[group]
        self._group = group

    def acquire(self, input_gray: np.ndarray, what: str = "the chunk in flight") -> np.ndarray:
        """(B, rows, cols) input gray levels -> (B, F, H, W) frames, lit (see the module docstring).

        On a fault that ends the run the exception carries ``partial``: the frames of the
        images completed before it (all frame groups), checked lit as a whole chunk is; they
        count in `frames` only once the caller keeps them (`keep_partial`)."""
        cam = self.bench.camera
        n, groups = len(input_gray), self.program.frames
        frames = np.empty((n, groups, *cam.resolution), dtype=self.dtype)
        self.check_light(what)
        t = time.perf_counter()
        group = 0
        try:
            for group in range(groups):
                self._select(group)
                self._at = 0
                while self._at < n:
                    self._at = self._grab_from(input_gray, frames, group, self._at)
                self.frames += n
        except DeviceError as exc:
            complete = self._at if group == groups - 1 else 0  # an image is complete once its last group is
            exc.partial = self._partial(input_gray[:complete], frames[:complete], what)  # type: ignore[attr-defined]
            raise
        finally:
            self.device_s += time.perf_counter() - t
        self.check_light(what)
        self.check_lit(input_gray, frames, what)
        return frames

    def keep_partial(self, partial: np.ndarray) -> None:
        """The caller kept a fault's partial frames as data: count them."""
        self.frames += len(partial) * self.program.frames

    def _partial(self, gray: np.ndarray, frames: np.ndarray, what: str) -> np.ndarray | None:
        if not len(frames):
            return None
        try:
            self.check_light(what)
            self.check_lit(gray, frames, what)
        except LightOff:
            return None
        return frames

    def _grab_from(self, input_gray: np.ndarray, frames: np.ndarray, group: int, i: int) -> int:
        """Grab frames from image `i` on (all of them batched, one otherwise), surviving the
        faults that can be survived; returns the next image still to grab."""
        failures = 0
        while True:
            try:
                camera = self.bench.camera
                if self.batched and isinstance(camera, BatchCamera):
                    # the program reads its ROIs only: noise need not be simulated elsewhere
                    frames[i:, group] = camera.grab_batch(input_gray[i:], rois=self.rois, timeout_s=self.timeout_s)
                    return len(input_gray)
                modulator = self.bench.input
                assert modulator is not None  # checked in __init__
                self._retry(lambda pattern=input_gray[i], show=modulator.show: show(pattern))  # waits the settle time
                frames[i, group] = self.bench.camera.grab(self.timeout_s)
                return i + 1
            except TRANSIENT_ERRORS as exc:
                i, failures = self._keep(exc, frames, group, i, failures)
                self._at = i
                self._count(exc)
                if failures > self.retries:
                    raise
                self.retried += 1
                log.warning("%s; retrying (%d of %d)", exc, failures, self.retries)
            except DeviceDisconnected as exc:
                i, failures = self._keep(exc, frames, group, i, failures)
                self._at = i
                self._count(exc)
                self._reconnect(exc)
                if not self.batched:
                    return i

    @staticmethod
    def _keep(exc: BaseException, frames: np.ndarray, group: int, i: int, failures: int) -> tuple[int, int]:
        """Keep what a batched grab delivered before `exc`; a frame that moved resets the count."""
        done = completed_frames(exc)
        if done is not None and len(done):
            frames[i : i + len(done), group] = done
            return i + len(done), 1
        return i, failures + 1

    def _count(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.faults[name] = self.faults.get(name, 0) + 1

    def _retry(self, action: Callable[[], object]) -> None:
        """`action()` again after a transient error (an SLM write), up to `retries` times."""
        for attempt in range(self.retries + 1):
            try:
                action()
                return
            except TRANSIENT_ERRORS as exc:
                self._count(exc)
                if attempt == self.retries:
                    raise
                self.retried += 1
                log.warning("%s; retrying (%d of %d)", exc, attempt + 1, self.retries)

    def _reconnect(self, exc: DeviceDisconnected) -> None:
        """Reopen the camera (waiting 1, 2, 4 ... x `reconnect_wait_s`) and restore its settings."""
        cam, last = self.bench.camera, exc
        for attempt in range(self.reconnects):
            time.sleep(self.reconnect_wait_s * 2**attempt)
            try:
                cam.close()
                cam.open()
                cam.gain = self.program.readout.gain
                group, self._group = self._group, None
                self._select(0 if group is None else group)
                self.reconnected += 1
                log.warning("%s; camera reopened (attempt %d of %d)", exc, attempt + 1, self.reconnects)
                return
            except DeviceError as again:
                last = again
                log.warning("reopening the camera failed (attempt %d of %d): %s", attempt + 1, self.reconnects, again)
        if last is not exc:
            raise DeviceDisconnected(f"{exc}; reopening it {self.reconnects} times failed: {last}") from last
        raise exc

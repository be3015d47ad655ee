"""Frames from a bench for a chunk of input patterns, with the time spent in devices.

Per chunk and per frame group: show that group's filter pattern, set its
exposure, then show each input and grab (or hand the whole chunk to a camera
with a batched path, as the simulated one has). Filter and exposure change
only when the group does, so a spatially multiplexed program touches the
filter SLM once per run. Timeouts and dropped frames are retried; anything
else (a disconnect, an SLM write error) ends the run.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from drivers.base import BatchCamera
from drivers.errors import DeviceTimeout, FrameDropped
from labrig.bench import Bench
from labrig.deploy.errors import ProgramMismatch
from labrig.deploy.program import Program

__all__ = ["Acquirer"]

log = logging.getLogger(__name__)


class Acquirer:
    """Drives the input modulator, filter SLM and camera for one program."""

    def __init__(self, bench: Bench, program: Program, *, timeout_s: float = 1.0, retries: int = 2,
                 batched: bool | None = None) -> None:
        self.bench, self.program = bench, program
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        camera = bench.camera
        capable = isinstance(camera, BatchCamera)
        if batched and not capable:
            raise ProgramMismatch(f"batched acquisition: the camera {camera.name} is not a BatchCamera",
                                  ["batched acquisition needs a BatchCamera"])
        self.batched = capable if batched is None else bool(batched)
        if not self.batched and bench.input is None:
            raise ProgramMismatch("this bench has no input modulator to show images on",
                                  ["input modulator: this bench has none to show images on"])
        self.dtype = np.dtype(np.uint8 if camera.bit_depth <= 8 else np.uint16)
        self.device_s = 0.0
        self.frames = 0
        self.retried = 0
        self._group: int | None = None
        self.rois = [tuple(int(v) for v in r) for r in program.readout.rois]

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
        self.bench.filter.show(self.program.filter.gray[group])
        self.bench.camera.exposure_s = self.program.readout.exposure_s[group]
        self._group = group

    def acquire(self, input_gray: np.ndarray) -> np.ndarray:
        """(B, rows, cols) input gray levels -> (B, F, H, W) frames."""
        cam = self.bench.camera
        frames = np.empty((len(input_gray), self.program.frames, *cam.resolution), dtype=self.dtype)
        t = time.perf_counter()
        try:
            for group in range(self.program.frames):
                self._select(group)
                if self.batched and isinstance(cam, BatchCamera):
                    # the program reads its ROIs only: noise need not be simulated elsewhere
                    frames[:, group] = cam.grab_batch(input_gray, rois=self.rois)
                else:
                    modulator = self.bench.input
                    assert modulator is not None  # checked in __init__
                    for i, pattern in enumerate(input_gray):
                        modulator.show(pattern)  # waits the modulator's settle time
                        frames[i, group] = self._grab()
                self.frames += len(input_gray)
        finally:
            self.device_s += time.perf_counter() - t
        return frames

    def _grab(self) -> np.ndarray:
        for attempt in range(self.retries + 1):
            try:
                return self.bench.camera.grab(self.timeout_s)
            except (DeviceTimeout, FrameDropped) as exc:
                if attempt == self.retries:
                    raise
                self.retried += 1
                log.warning("%s; retrying (%d of %d)", exc, attempt + 1, self.retries)
        raise AssertionError("unreachable")

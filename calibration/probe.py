"""Taking calibration frames: light on, patterns shown, every frame checked and counted.

A `Probe` is the only way a routine touches the bench. It arms the light
through the bench's safety guard and makes the bench safe on leaving (error,
cancel or not); it refuses a frame taken with the light off under it (the
guard disarmed, or the frame at the dark level) and a saturated frame; it
retries a timed-out frame a few times, then names the routine in the error;
it counts every frame, because frames are what a real bench charges for.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from calibration.base import (
    CalibrationCancelled,
    CalibrationError,
    Cancel,
    Progress,
    never_cancel,
    no_progress,
)
from drivers.base import BatchCamera
from drivers.errors import DeviceError, DeviceTimeout, FrameDropped, SafetyError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from labrig.bench.bench import Bench

log = logging.getLogger(__name__)

#: a lit frame must rise this many dark-noise standard deviations above the dark level somewhere
LIGHT_SIGMAS = 8.0
#: fraction of pixels at full scale beyond which a frame is saturated
SATURATED_FRACTION = 1e-4
#: a clip below full scale: at least this many pixels on the top value, this many times the density
#: per DN of the `CLIP_BAND_DN` values below it
CLIP_MIN_PIXELS, CLIP_PILE_RATIO, CLIP_BAND_DN = 4, 3.0, 8


def clip_level(frame: np.ndarray, max_dn: float) -> float:
    """Where this frame clips: the ADC's full scale, or lower when the sensor's full well fills
    first. Read from the frame itself (a camera's spec is not its sensor): clipped pixels pile
    up on one value, several times as many as a noisy tail puts on each value just below it.
    Only the top half of the range is suspected (a dim frame's few equal maxima are noise)."""
    values = np.asarray(frame).ravel()
    top = float(values.max())
    if top >= max_dn:
        return float(max_dn)
    if top < 0.5 * max_dn:
        return float(max_dn)
    pile = int(np.count_nonzero(values == top))
    below = int(np.count_nonzero((values >= top - CLIP_BAND_DN) & (values < top))) / CLIP_BAND_DN
    if pile >= max(CLIP_MIN_PIXELS, SATURATED_FRACTION * values.size) and pile >= CLIP_PILE_RATIO * max(below, 1.0):
        return top
    return float(max_dn)


class Probe:
    """Frames for one routine: ``with Probe(bench, "lut") as probe: probe.grab()``."""

    def __init__(self, bench: Bench, routine: str, *, progress: Progress | None = None,
                 cancel: Cancel | None = None, timeout_s: float = 1.0, retries: int = 2) -> None:
        self.bench = bench
        self.routine = routine
        self.progress = progress or no_progress
        self.cancel = cancel or never_cancel
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        self.frames = 0
        self._lit = False
        self._dark: dict[float, tuple[np.ndarray, float]] = {}

    # -- light ------------------------------------------------------------------------------------
    def __enter__(self) -> Probe:
        self.light_on()
        return self

    def __exit__(self, *exc: object) -> None:
        self.light_off()

    def light_on(self) -> None:
        if self.bench.laser is not None or self.bench.shutter is not None:
            try:
                self.bench.guard.arm()
            except SafetyError as exc:  # interlock open, shutter stuck: the guard made it safe
                raise CalibrationError(self.routine, f"cannot turn the light on: {exc}") from exc
        self._lit = True

    def light_off(self) -> None:
        self._lit = False
        self.bench.make_safe()

    @contextmanager
    def dark(self) -> Iterator[None]:
        """Light off for dark frames, back on after (if it was on)."""
        was_lit = self._lit
        self.light_off()
        try:
            yield
        finally:
            if was_lit:
                self.light_on()

    def _check_light_state(self) -> None:
        guard = self.bench.guard
        has_light = self.bench.laser is not None or self.bench.shutter is not None
        if self._lit and has_light and not guard.armed:
            raise CalibrationError(self.routine, "the light went off during the measurement (made safe); "
                                                 "no frame taken in the dark is used")

    # -- patterns and settings ---------------------------------------------------------------------
    def show_filter(self, gray: np.ndarray) -> None:
        self._step()
        self.bench.filter.show(np.asarray(gray))

    def show_input(self, gray: np.ndarray) -> None:
        self._step()
        if self.bench.input is None:
            raise CalibrationError(self.routine, "the bench has no input modulator")
        self.bench.input.show(np.asarray(gray))

    def set_exposure(self, exposure_s: float) -> None:
        self.bench.camera.exposure_s = exposure_s

    # -- frames -------------------------------------------------------------------------------------
    def _step(self) -> None:
        if self.cancel():
            raise CalibrationCancelled(self.routine)

    def grab_frames(self, n: int = 1, *, check: bool = True, lit_pixels: int | None = None) -> np.ndarray:
        """`n` raw frames (n, H, W) of what the modulators show now (`lit_pixels`: see `check_frames`)."""
        out = []
        for _ in range(n):
            self._step()
            self._check_light_state()
            out.append(self._grab_one())
            self._check_light_state()
        frames = np.stack(out)
        if check and self._lit:
            self.check_frames(frames, lit_pixels=lit_pixels)
        return frames

    def grab(self, n: int = 1, *, check: bool = True, lit_pixels: int | None = None) -> np.ndarray:
        """Mean of `n` frames (float64 DN)."""
        return self.grab_frames(n, check=check, lit_pixels=lit_pixels).astype(np.float64).mean(axis=0)

    def grab_inputs(self, input_grays: np.ndarray, *, check: bool = True, lit_pixels: int | None = None) -> np.ndarray:
        """One frame (B, H, W) per input pattern, through the camera's batched grab when it has one."""
        patterns = np.asarray(input_grays)
        self._step()
        self._check_light_state()
        camera = self.bench.camera
        if isinstance(camera, BatchCamera):
            try:
                frames = np.asarray(camera.grab_batch(patterns))
            except DeviceError as exc:
                raise CalibrationError(self.routine, f"camera failed: {exc}") from exc
            self.frames += len(patterns)
        else:
            frames = np.empty((len(patterns), *camera.resolution), dtype=np.float64)
            for i, p in enumerate(patterns):
                self.show_input(p)
                frames[i] = self._grab_one()
        self._check_light_state()
        if check and self._lit:
            self.check_frames(frames, lit_pixels=lit_pixels)
        return frames

    def _grab_one(self) -> np.ndarray:
        for attempt in range(self.retries + 1):
            try:
                frame = self.bench.camera.grab(self.timeout_s)
                self.frames += 1
                return frame
            except (DeviceTimeout, FrameDropped) as exc:
                self.frames += 1
                if attempt == self.retries:
                    raise CalibrationError(self.routine, f"camera: {exc} (after {self.retries} retries)") from exc
                log.warning("%s: %s; retrying", self.routine, exc)
            except DeviceError as exc:
                raise CalibrationError(self.routine, f"camera failed: {exc}") from exc
        raise AssertionError("unreachable")

    # -- checks ---------------------------------------------------------------------------------------
    def dark_reference(self, n: int = 4) -> tuple[np.ndarray, float]:
        """Mean dark frame and its temporal noise (DN) at the current exposure, taken once."""
        exposure = float(self.bench.camera.exposure_s)
        if exposure not in self._dark:
            self.dark_frames(n)
        return self._dark[exposure]

    def dark_frames(self, n: int = 4) -> np.ndarray:
        """`n` (>= 2) raw dark frames at the current exposure; they also become its dark reference."""
        with self.dark():
            frames = self.grab_frames(max(n, 2), check=False)
        f = frames.astype(np.float64)
        self.remember_dark(float(self.bench.camera.exposure_s), f.mean(axis=0),
                           float(np.sqrt(0.5) * np.std(f[1] - f[0])))
        return frames

    def remember_dark(self, exposure_s: float, mean: np.ndarray, noise: float) -> None:
        """Use a dark level a routine measured or modelled (e.g. from a dark-current fit) at `exposure_s`,
        so checking frames there costs no dark frames."""
        self._dark[float(exposure_s)] = (np.asarray(mean, dtype=np.float64), max(float(noise), 0.5))

    def check_frames(self, frames: np.ndarray, *, lit_pixels: int | None = None,
                     allow_saturated: bool = False) -> None:
        """Refuse saturated frames and frames at the dark level (light off, wrong pattern).

        A frame is lit when its `lit_pixels`-th brightest pixel (default: 0.1 % of the
        frame) rises `LIGHT_SIGMAS` dark-noise sigmas above the dark reference; pass a
        small count for patterns that light only a small spot. `allow_saturated`: a
        routine that masks saturated pixels itself (photon transfer) takes them.
        """
        cam = self.bench.camera
        flat = frames.reshape(len(frames), -1) if frames.ndim == 3 else frames.reshape(1, -1)
        if not allow_saturated:
            levels = np.array([clip_level(f, cam.max_value) for f in flat])
            saturated = (flat >= levels[:, None]).mean(axis=1)
            if np.any(saturated > SATURATED_FRACTION):
                worst = int(np.argmax(saturated))
                raise CalibrationError(
                    self.routine,
                    f"{float(saturated[worst]) * 100:.3g} % of the pixels are saturated (at {levels[worst]:g} DN"
                    f"{'' if levels[worst] >= cam.max_value else ', the sensor clips below the ADC full scale'}) "
                    f"at exposure {cam.exposure_s:g} s: lower the exposure or the laser power",
                )
        dark, noise = self.dark_reference()
        signal = flat.astype(np.float64) - dark.reshape(1, -1)
        if lit_pixels is None:
            peak = np.percentile(signal, 99.9, axis=1)
        else:
            k = int(np.clip(lit_pixels, 1, signal.shape[1]))
            peak = np.partition(signal, signal.shape[1] - k, axis=1)[:, signal.shape[1] - k]
        if np.any(peak < LIGHT_SIGMAS * noise):
            raise CalibrationError(
                self.routine,
                f"frame at the dark level (peak {float(peak.min()):.3g} DN above dark, dark noise {noise:.3g} DN): "
                "the shutter is closed, the laser is off, or nothing is shown",
            )

"""Shared pieces of the photometric routines (camera, SLM LUT, crosstalk, illumination).

Patterns they show (a small bright patch on the input, binary gratings and a
diffuser on the filter SLM), an exposure search, window sums around spots on
the camera, and the twin's frames for the same patterns, so a routine can
compare what the bench shows with what the twin (at the current estimates)
predicts instead of trusting a closed form.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from calibration.base import CalibrationError

if TYPE_CHECKING:
    from calibration.probe import Probe
    from drivers.base import Camera
    from labrig.optics.system import Twin


@contextmanager
def kept_exposure(camera: Camera) -> Iterator[None]:
    """Restore the camera's exposure (the one in use) after a routine changed it."""
    before = camera.exposure_s
    try:
        yield
    finally:
        camera.exposure_s = before


def clamp_exposure(camera: Camera, exposure_s: float) -> float:
    lo, hi = camera.exposure_bounds_s
    return float(min(max(exposure_s, lo), hi))


def top_signal(signal: np.ndarray, count: int) -> float:
    """The `count`-th brightest value of a dark-subtracted frame."""
    flat = signal.ravel()
    k = int(np.clip(count, 1, flat.size))
    return float(np.partition(flat, flat.size - k)[flat.size - k])


def saturation_level(frames: np.ndarray, max_dn: int, min_pixels: int = 3) -> float:
    """The level where pixels pile up: the ADC's full scale, or lower when the sensor's full
    well clips first (then several pixels share exactly the frames' maximum)."""
    top = float(frames.max())
    if top >= max_dn:
        return float(max_dn)
    return top if int((frames == top).sum()) >= min_pixels else float(max_dn)


def find_exposure(probe: Probe, dark_dn: np.ndarray, *, target: float, count: int,
                  tries: int = 4) -> float:
    """Set the exposure so that the `count`-th brightest pixel of what is shown now sits at
    `target` x the camera's range above `dark_dn`; returns it. Search frames are not data
    (one per try, unchecked; the dark level moves little with exposure)."""
    camera = probe.bench.camera
    full = camera.max_value - float(np.median(dark_dn))
    for _ in range(tries):
        frame = probe.grab_frames(1, check=False)[0].astype(np.float64)
        peak = top_signal(frame - dark_dn, count)
        exposure = camera.exposure_s
        saturated = saturation_level(frame, camera.max_value, max(3, count))
        if np.sum(frame >= saturated) >= count:  # saturated: step down hard
            new = exposure / 8
        elif peak <= 0:
            new = exposure * 100
        else:
            new = exposure * float(np.clip(target * full / peak, 1 / 100, 100))
        new = clamp_exposure(camera, new)
        if abs(new / exposure - 1) < 0.15 and peak > 0:
            return exposure
        if new == exposure:  # at a bound
            break
        camera.exposure_s = new
    return camera.exposure_s


# -- patterns -------------------------------------------------------------------------------------


def patch(shape: tuple[int, int], size: int, gray: int) -> np.ndarray:
    """A small bright square (`size` px) at the centre of an otherwise dark input pattern."""
    out = np.zeros(shape, dtype=np.int64)
    r0, c0 = shape[0] // 2 - size // 2, shape[1] // 2 - size // 2
    out[r0:r0 + size, c0:c0 + size] = gray
    return out


def stripes(shape: tuple[int, int], period: int, duty: int | None = None) -> np.ndarray:
    """Boolean vertical stripes (varying along columns): True on the first `duty`
    (default period // 2) columns of each period."""
    duty = period // 2 if duty is None else duty
    cols = np.arange(shape[1]) % period < duty
    return np.broadcast_to(cols[None, :], shape).copy()


def binary_grating(shape: tuple[int, int], period: int, gray_a: int, gray_b: int) -> np.ndarray:
    """Gray levels of a binary grating: `gray_b` on the stripes, `gray_a` between."""
    return np.where(stripes(shape, period), gray_b, gray_a).astype(np.int64)


# -- spots ----------------------------------------------------------------------------------------


def centroid(signal: np.ndarray, centre: tuple[float, float], radius: float) -> tuple[float, float]:
    """Intensity centroid of `signal` (dark-subtracted) within `radius` of `centre`."""
    rr, cc = np.indices(signal.shape, dtype=np.float64)
    win = ((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) <= radius**2
    w = np.where(win, np.clip(signal, 0, None), 0.0)
    total = w.sum()
    if total <= 0:
        return centre
    return float((w * rr).sum() / total), float((w * cc).sum() / total)


def brightest(signal: np.ndarray, smooth: int = 1) -> tuple[float, float]:
    """Position of the brightest (box-smoothed) spot of a frame."""
    s = signal.astype(np.float64)
    if smooth > 0:
        k = 2 * smooth + 1
        pad = np.pad(s, smooth, mode="edge")
        s = sum(pad[i:i + s.shape[0], j:j + s.shape[1]] for i in range(k) for j in range(k)) / k**2
    r, c = np.unravel_index(int(np.argmax(s)), s.shape)
    return centroid(signal, (float(r), float(c)), 2.5 * (smooth + 1))


def window_sums(signal: np.ndarray, centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    """Sum of `signal` (..., H, W) in a disc of `radius` around each centre -> (..., len(centres))."""
    h, w = signal.shape[-2:]
    rr, cc = np.indices((h, w), dtype=np.float64)
    masks = np.stack([((rr - r) ** 2 + (cc - c) ** 2) <= radius**2 for r, c in centres])
    return np.tensordot(signal, masks.astype(np.float64), axes=([-2, -1], [1, 2]))


def order_offset_px(twin: Twin, period: int) -> float:
    """Camera pixels between the zero and first order of a grating of `period` filter pixels:
    lambda f2 / (period * pitch) on the camera."""
    g = twin.geometry
    return g.wavelength_m * g.focal2_m / (period * g.filter.pitch_m) / g.camera.pitch_m


# -- the twin -------------------------------------------------------------------------------------


def twin_frames_from_phase(twin: Twin, input_gray: np.ndarray, phases: torch.Tensor, *, exposure_s: float,
                           laser_power_w: float = 1.0) -> torch.Tensor:
    """Noise-free twin camera frames (DN above the twin's black level, unclipped) for an input
    pattern and filter phase patterns (B, N, N), with the twin's crosstalk and shift but no LUT."""
    imp = twin.imperfections
    with torch.no_grad():
        t = twin.filter_slm.transmission_from_phase(phases.to(twin.dtype), imp.slm_crosstalk_px, imp.filter_shift_px)
        amplitude = twin.input_amplitude(torch.as_tensor(input_gray))
        power = twin.camera_power(twin.output_power(amplitude, t, laser_power_w))
        return twin.camera.mean_electrons(power, exposure_s) - twin.camera.spec.dark_current_e_per_s * exposure_s


def require(condition: bool, routine: str, message: str) -> None:
    if not condition:
        raise CalibrationError(routine, message)


# -- zero-order measurements (SLM LUT, crosstalk) ---------------------------------------------------


class ZeroOrder:
    """The zero order of filter patterns, relative to a flat filter, on the bench and in the twin.

    The input shows a small bright patch, whose spectrum lights the whole filter
    SLM; the camera sees the patch's image (the zero order) plus whatever the
    pattern diffracts away from it. The zero order's light, summed in a disc
    around the patch image and divided by that of a flat filter (gray 0
    everywhere), is the squared modulus of the pattern's mean transmission: it
    does not depend on where the orders land, on the filter's lateral shift or on
    the camera's geometry, and the twin computes the same ratio for any phase
    pattern. `measure` shows gray levels and returns ratios; `model` returns the
    twin's ratios for phase patterns (radians).
    """

    def __init__(self, probe: Probe, twin: Twin, *, patch_px: int = 2, radius_px: float = 3.0,
                 target: float = 0.5) -> None:
        self.probe, self.twin = probe, twin
        geo = twin.geometry
        self.shape = tuple(geo.filter.resolution)
        self.radius = float(radius_px)
        self.input_gray = patch(geo.input.resolution, patch_px, geo.input.levels - 1)
        self.lit_pixels = max(2, patch_px)
        probe.show_input(self.input_gray)
        probe.show_filter(np.zeros(self.shape, dtype=np.int64))
        dark, _ = probe.dark_reference()
        find_exposure(probe, dark, target=target, count=self.lit_pixels)
        self.dark, _ = probe.dark_reference()
        self.saturation = probe.bench.camera.max_value
        flat = probe.grab(2, lit_pixels=self.lit_pixels) - self.dark
        self.centre = brightest(flat)
        self.flat = float(window_sums(flat, [self.centre], self.radius)[0])
        require(self.flat > 0, probe.routine, "no light in the zero order of a flat filter")
        self.frames_flat = [self.flat]
        self._twin_flat: dict[int, tuple[tuple[float, float], float]] = {}

    def measure(self, grays: np.ndarray, progress: str = "") -> np.ndarray:
        """Zero-order ratios of filter patterns (B, N, N) of gray levels, one frame each."""
        out = np.empty(len(grays))
        for i, g in enumerate(grays):
            self.probe.show_filter(g)
            out[i] = self._zero_order(self.grab()) / self.flat
            if progress:
                self.probe.progress(self.probe.frames, 0, progress)
        return out

    def remeasure_flat(self) -> float:
        """A flat frame again (the light may drift): returns the new/old ratio, and uses the mean."""
        self.probe.show_filter(np.zeros(self.shape, dtype=np.int64))
        value = self._zero_order(self.grab())
        drift = value / self.frames_flat[0]
        self.frames_flat.append(value)
        return drift

    def grab(self) -> np.ndarray:
        """One checked frame (light on; saturation is refused only in the zero order's window,
        which is all that is measured: a diffraction order elsewhere may clip)."""
        from calibration.probe import clip_level

        frame = self.probe.grab_frames(1, check=False)
        self.probe.check_frames(frame, lit_pixels=self.lit_pixels, allow_saturated=True)
        signal = frame[0].astype(np.float64)
        level = min(self.saturation, clip_level(frame[0], self.saturation))
        inside = window_sums((signal >= level).astype(np.float64), [self.centre], self.radius)[0]
        require(inside == 0, self.probe.routine, "the zero order saturates the camera: lower the laser power")
        return signal - self.dark

    def _zero_order(self, signal: np.ndarray) -> float:
        return float(window_sums(signal, [self.centre], self.radius)[0])

    def model(self, phases: torch.Tensor, twin: Twin | None = None, chunk: int = 16) -> np.ndarray:
        """The twin's zero-order ratios for phase patterns (B, N, N) (radians, no LUT)."""
        twin = twin or self.twin
        if id(twin) not in self._twin_flat:  # a flat filter's frame: crosstalk and LUT do not change it
            flat = twin_frames_from_phase(twin, self.input_gray, torch.zeros((1, *self.shape)), exposure_s=1.0)[0]
            flat_np = flat.cpu().numpy()
            centre = brightest(flat_np)
            self._twin_flat[id(twin)] = (centre, float(window_sums(flat_np, [centre], self.radius)[0]))
        centre, flat_sum = self._twin_flat[id(twin)]
        out = []
        for start in range(0, len(phases), chunk):
            frames = twin_frames_from_phase(twin, self.input_gray, phases[start:start + chunk], exposure_s=1.0)
            out.append(window_sums(frames.cpu().numpy(), [centre], self.radius) / flat_sum)
        return np.concatenate(out)[:, 0] if out else np.zeros(0)

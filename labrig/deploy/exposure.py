"""Exposure per frame: the brightest calibration tile uses the bit depth without saturating.

The usable signal is the smaller of the full well and the ADC range above the
offset; the brightest tile pixel the twin predicts over the calibration
images is put at `fill` of it (the margin is for test images brighter than
any calibration image). Clipped to the camera's exposure range, with a note.
"""

from __future__ import annotations

import math

import numpy as np

from labrig.optics.specs import BenchGeometry

__all__ = ["choose_exposures"]


def usable_electrons(geometry: BenchGeometry, gain: float) -> float:
    """Electrons a pixel can collect before the full well or the ADC saturates."""
    cam = geometry.camera
    return min(cam.full_well_e, (cam.max_dn - cam.offset_dn) / (cam.conversion_dn_per_e * gain))


def choose_exposures(
    peak_power_w: np.ndarray, geometry: BenchGeometry, gain: float, fill: float,
    bounds_s: tuple[float, float] | None = None,
) -> tuple[tuple[float, ...], str]:
    """One exposure per frame for the brightest tile pixel's power on each frame; and a note."""
    if not 0 < fill <= 1:
        raise ValueError(f"exposure fill must be in (0, 1], got {fill}")
    cam = geometry.camera
    target = fill * usable_electrons(geometry, gain)
    exposures, notes = [], []
    for f, power in enumerate(np.asarray(peak_power_w, dtype=np.float64).ravel()):
        rate = power * cam.quantum_efficiency / geometry.photon_energy_j + cam.dark_current_e_per_s
        exposure = target / rate if rate > 0 else math.inf
        if bounds_s is not None:
            lo, hi = bounds_s
            if exposure > hi:
                notes.append(f"frame {f}: {exposure:.3g} s wanted, the camera's maximum {hi:g} s used "
                             "(too little light: raise the laser power or the gain)")
            elif exposure < lo:
                notes.append(f"frame {f}: {exposure:.3g} s wanted, the camera's minimum {lo:g} s used "
                             "(too much light: the brightest tiles will saturate; lower the laser power)")
            exposure = min(max(exposure, lo), hi)
        if not math.isfinite(exposure):
            raise ValueError(f"frame {f}: no light on any tile and no exposure bound to fall back on")
        exposures.append(float(exposure))
    note = "; ".join(notes) or (f"brightest calibration tile pixel at {fill:.0%} of "
                               f"{target / fill:.0f} usable electrons on every frame")
    return tuple(exposures), note

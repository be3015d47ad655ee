"""Test patterns for a bench's modulators: grating, spot, lens, uniform.

Each generator is a small pure function returning the *wanted response* on a
pixel grid: phase in radians for a phase SLM, intensity transmission in [0, 1]
for an amplitude modulator. `to_gray` turns that into gray levels through the
SLM's own LUT, so the same pattern is right on any device (and after a LUT
calibration). The console's Patterns dock and scripts both call `make_pattern`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from labrig.optics.quantize import nearest_gray_level

__all__ = [
    "PATTERN_KINDS",
    "grating",
    "lens",
    "make_pattern",
    "spot",
    "to_gray",
    "uniform",
]

#: the kinds `make_pattern` knows, in the order a menu lists them
PATTERN_KINDS: tuple[str, ...] = ("grating", "spot", "lens", "uniform")

TWO_PI = 2 * math.pi


def _coords(shape: tuple[int, int], center: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets (pixels) from `center` (default: the middle of the grid)."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"pattern shape must be positive, got {shape}")
    cy, cx = ((rows - 1) / 2, (cols - 1) / 2) if center is None else center
    y = np.arange(rows, dtype=np.float64)[:, None] - cy
    x = np.arange(cols, dtype=np.float64)[None, :] - cx
    return y, x


def grating(shape: tuple[int, int], period_px: float, angle_deg: float = 0.0,
            *, modulation: str = "phase") -> np.ndarray:
    """A blazed phase ramp (phase SLM: deflects light by one order) or a sinusoidal
    amplitude grating, with fringes `period_px` apart, the wave vector `angle_deg`
    from the column axis."""
    if period_px <= 0:
        raise ValueError(f"grating period must be > 0 pixels, got {period_px}")
    y, x = _coords(shape)
    a = math.radians(angle_deg)
    phase = TWO_PI * (x * math.cos(a) + y * math.sin(a)) / period_px
    return _as_response(phase, modulation)


def lens(shape: tuple[int, int], focal_m: float, wavelength_m: float, pitch_m: float,
         *, modulation: str = "phase") -> np.ndarray:
    """A thin lens exp(-i pi r^2 / (lambda f)) (wrapped phase), or its Fresnel zone plate
    for an amplitude modulator; shifts the focus along the axis by about `focal_m`."""
    if focal_m == 0 or wavelength_m <= 0 or pitch_m <= 0:
        raise ValueError("lens needs a non-zero focal length and positive wavelength and pitch")
    y, x = _coords(shape)
    r2 = (x * x + y * y) * pitch_m * pitch_m
    phase = -math.pi * r2 / (wavelength_m * focal_m)
    return _as_response(phase, modulation)


def spot(shape: tuple[int, int], radius_px: float, center: tuple[float, float] | None = None,
         *, modulation: str = "amplitude", value: float | None = None) -> np.ndarray:
    """A bright disk (amplitude: transmission `value`, default 1, on 0) or a phase disk
    (phase: `value` radians, default pi, on 0): a point source or a phase step."""
    if radius_px <= 0:
        raise ValueError(f"spot radius must be > 0 pixels, got {radius_px}")
    y, x = _coords(shape, center)
    inside = (x * x + y * y) <= radius_px * radius_px
    level = (math.pi if modulation == "phase" else 1.0) if value is None else float(value)
    return np.where(inside, level, 0.0)


def uniform(shape: tuple[int, int], value: float) -> np.ndarray:
    """The same response everywhere (phase in rad, or transmission in [0, 1])."""
    _coords(shape)
    return np.full((int(shape[0]), int(shape[1])), float(value))


def _as_response(phase: np.ndarray, modulation: str) -> np.ndarray:
    if modulation == "phase":
        return np.remainder(phase, TWO_PI)
    if modulation == "amplitude":
        return 0.5 * (1.0 + np.cos(phase))
    raise ValueError(f"modulation must be 'phase' or 'amplitude', got {modulation!r}")


def to_gray(response: np.ndarray, lut: np.ndarray, modulation: str) -> np.ndarray:
    """Gray levels whose LUT response is nearest to `response`: circularly (mod 2 pi)
    for phase, plainly for amplitude. The dtype fits the LUT (uint8 up to 256 levels)."""
    lut = np.asarray(lut, dtype=np.float64)
    response = np.asarray(response, dtype=np.float64)
    if modulation == "phase":
        gray = nearest_gray_level(torch.from_numpy(response), torch.from_numpy(lut)).numpy()
    elif modulation == "amplitude":
        order = np.argsort(lut, kind="stable")
        ordered = lut[order]
        hi = np.clip(np.searchsorted(ordered, response), 0, len(lut) - 1)
        lo = np.clip(hi - 1, 0, len(lut) - 1)
        pick_lo = np.abs(response - ordered[lo]) <= np.abs(ordered[hi] - response)
        gray = order[np.where(pick_lo, lo, hi)]
    else:
        raise ValueError(f"modulation must be 'phase' or 'amplitude', got {modulation!r}")
    return gray.astype(np.uint8 if len(lut) <= 256 else np.uint16)


def make_pattern(kind: str, shape: tuple[int, int], lut: np.ndarray, modulation: str,
                 params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Gray levels of one test pattern for an SLM with this shape, LUT and modulation.

    `params` by kind: grating ``period_px``, ``angle_deg``; spot ``radius_px``,
    ``value``; lens ``focal_m``, ``wavelength_m``, ``pitch_m``; uniform ``value``
    (phase in rad or transmission). Missing keys take sensible defaults.
    """
    p = dict(params or {})
    if kind == "grating":
        response = grating(shape, float(p.get("period_px", 8.0)), float(p.get("angle_deg", 0.0)),
                           modulation=modulation)
    elif kind == "spot":
        value = p.get("value")
        response = spot(shape, float(p.get("radius_px", max(1.0, min(shape) / 16))),
                        modulation=modulation, value=None if value is None else float(value))
    elif kind == "lens":
        response = lens(shape, float(p.get("focal_m", 1.0)), float(p.get("wavelength_m", 532e-9)),
                        float(p.get("pitch_m", 8e-6)), modulation=modulation)
    elif kind == "uniform":
        default = 0.0 if modulation == "phase" else 1.0
        response = uniform(shape, float(p.get("value", default)))
    else:
        raise ValueError(f"unknown test pattern {kind!r}; expected one of {', '.join(PATTERN_KINDS)}")
    return to_gray(response, lut, modulation)

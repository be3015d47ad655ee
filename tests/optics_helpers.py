"""Small bench geometries whose expectations are exact, and direct (non-FFT)
references for the optics tests.

`bench()` picks f1 so that the input modulator's pitch equals the input-grid
pitch (f1 = N p d_in / wavelength) and the camera pitch as a chosen ratio of
the output-grid pitch, so a modulator pixel is one grid sample and a camera
pixel is a known fraction of an output sample.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.signal import convolve2d

from labrig.optics import BenchGeometry, CameraSpec, ModulatorSpec

WAVELENGTH_M = 633e-9
SLM_PITCH_M = 8e-6
INPUT_PITCH_M = 12e-6


def bench(
    n_slm: int = 48,
    input_res: tuple[int, int] = (9, 7),
    *,
    f2_over_f1: float = 1.0,
    camera_pitch_ratio: float = 1.0,
    camera_res: tuple[int, int] | None = None,
    illumination: str = "coherent",
    filter_fill: float = 1.0,
    input_pitch_m: float = INPUT_PITCH_M,
    **camera_kw,
) -> BenchGeometry:
    """A bench with an N x N filter SLM; camera pitch = `camera_pitch_ratio` x the
    output-grid pitch, camera resolution covering the output grid unless given."""
    f1 = n_slm * SLM_PITCH_M * input_pitch_m / WAVELENGTH_M
    f2 = f1 * f2_over_f1
    out_pitch = WAVELENGTH_M * f2 / (n_slm * SLM_PITCH_M)
    if camera_res is None:
        m = _covering_pixels(n_slm, camera_pitch_ratio)
        camera_res = (m, m)
    camera = CameraSpec(resolution=camera_res, pitch_m=out_pitch * camera_pitch_ratio, **camera_kw)
    return BenchGeometry(
        wavelength_m=WAVELENGTH_M,
        focal1_m=f1,
        focal2_m=f2,
        input=ModulatorSpec(input_res, input_pitch_m, bit_depth=8, modulation="amplitude"),
        filter=ModulatorSpec((n_slm, n_slm), SLM_PITCH_M, bit_depth=8, fill_factor=filter_fill),
        camera=camera,
        illumination=illumination,
    )


def _covering_pixels(n: int, ratio: float) -> int:
    """Fewest centred camera pixels of pitch `ratio` (in output samples) covering
    the n-sample output grid [-(n//2 + 1/2), n - n//2 - 1/2] (index m//2 on the axis)."""
    m = max(1, math.floor(n / ratio))
    while not (
        (m // 2 + 0.5) * ratio >= n // 2 + 0.5 - 1e-9 and (m - m // 2 - 0.5) * ratio >= n - n // 2 - 0.5 - 1e-9
    ):
        m += 1
    return m


def direct_conv(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution by direct summation (scipy, no FFT)."""
    return convolve2d(x, h, mode="full")


def output_plane(y: np.ndarray, n: tuple[int, int], k: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Where a 4f bench puts the full convolution y of an n-image (centred, index
    n//2 on the axis) with a k-kernel (index k//2 on the axis): before the second
    lens y[m] sits at m - (n//2 + k//2) samples from the axis; the 4f inversion
    sends it to -(m - n//2 - k//2). Written out directly, without library helpers."""
    out = np.zeros(grid, dtype=y.dtype)
    for m0 in range(y.shape[0]):
        r = grid[0] // 2 - (m0 - n[0] // 2 - k[0] // 2)
        for m1 in range(y.shape[1]):
            c = grid[1] // 2 - (m1 - n[1] // 2 - k[1] // 2)
            out[r, c] = y[m0, m1]
    return out


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """max |a - b| / max |b|."""
    a = torch.as_tensor(np.asarray(a) if isinstance(a, np.ndarray) else a).double()
    b = torch.as_tensor(np.asarray(b) if isinstance(b, np.ndarray) else b).double()
    return float((a - b).abs().max() / b.abs().max())


def centroid_m(power: torch.Tensor, pitch_m: float) -> tuple[float, float]:
    """Intensity centroid (row, col) in metres from the axis of a centred plane."""
    p = power.double()
    rows = (torch.arange(p.shape[-2], dtype=torch.float64) - p.shape[-2] // 2) * pitch_m
    cols = (torch.arange(p.shape[-1], dtype=torch.float64) - p.shape[-1] // 2) * pitch_m
    total = p.sum()
    return float((p.sum(-1) * rows).sum() / total), float((p.sum(-2) * cols).sum() / total)

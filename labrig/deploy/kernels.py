"""Compile a fixed kernel bank (the demo's front end) into one filter pattern, a tile layout and camera ROIs.

The kernels' masks get one grating each (spatial multiplexing), are summed,
normalised to a passive filter, double-phase encoded for the phase-only SLM and
quantised to gray levels through the SLM's (nominal or calibrated) LUT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labrig.optics.encoding import double_phase, normalise_mask
from labrig.optics.multiplex import TileLayout, multiplexed_mask, plan_tiles
from labrig.optics.quantize import nearest_gray_level
from labrig.optics.specs import BenchGeometry


@dataclass(frozen=True)
class CompiledFrontEnd:
    """What the bench needs to compute K channels in one frame."""

    filter_gray: np.ndarray
    layout: TileLayout
    rois: tuple[tuple[int, int, int, int], ...]
    input_shape: tuple[int, int]
    mask_peak: float
    """|H| of the strongest mask frequency before normalisation (the optical scale)."""


def compile_kernels(
    kernels: torch.Tensor,
    geometry: BenchGeometry,
    input_shape: tuple[int, int],
    slm_lut: np.ndarray,
    *,
    gap: int = 2,
) -> CompiledFrontEnd:
    """Filter pattern and layout for kernels (K, k, k) acting on `input_shape` images."""
    if geometry.filter.modulation != "phase":
        raise ValueError("only phase-only filter SLMs are compiled so far (double-phase encoding)")
    kernels = kernels.to(torch.float64) if not torch.is_complex(kernels) else kernels.to(torch.complex128)
    tile = (input_shape[0] + kernels.shape[-2] - 1, input_shape[1] + kernels.shape[-1] - 1)
    in_samples = _input_samples(geometry, input_shape)
    layout = plan_tiles(
        kernels.shape[0], geometry.filter.resolution, tile, input_shape=in_samples, gap=gap,
        avoid_zero_order=geometry.filter.fill_factor < 1, avoid_residual=True,
    )
    mask, peak = normalise_mask(multiplexed_mask(kernels, layout))
    phase = double_phase(mask)
    gray = nearest_gray_level(phase, torch.as_tensor(slm_lut, dtype=torch.float64)).numpy()
    dtype = np.uint8 if geometry.filter.bit_depth <= 8 else np.uint16
    rois = tuple(layout.camera_rois(geometry.output_grid, geometry.camera.pitch_m, geometry.camera.resolution))
    return CompiledFrontEnd(gray.astype(dtype), layout, rois, tuple(input_shape), float(peak.max()))


def _input_samples(geometry: BenchGeometry, input_shape: tuple[int, int]) -> tuple[int, int]:
    """Size of the input image in simulation samples (for the zero-order zone)."""
    grid = geometry.input_grid
    return tuple(
        int(np.ceil(n * geometry.input.pitch_m / grid.pitch_m[d])) for d, n in enumerate(input_shape)
    )


def place_inputs(images: np.ndarray, modulator_shape: tuple[int, int], gray_for_amplitude) -> np.ndarray:
    """Centre images (B, n, n) in [0, 1] (field amplitude) on the input modulator as gray levels."""
    images = np.asarray(images, dtype=np.float64)
    b, h, w = images.shape
    if h > modulator_shape[0] or w > modulator_shape[1]:
        raise ValueError(f"{h}x{w} images do not fit the {modulator_shape} input modulator")
    gray = gray_for_amplitude(torch.from_numpy(images)).numpy()
    out = np.zeros((b, *modulator_shape), dtype=np.uint8)
    top, left = modulator_shape[0] // 2 - h // 2, modulator_shape[1] // 2 - w // 2
    out[:, top : top + h, left : left + w] = gray
    return out


def read_tiles(frames: np.ndarray, compiled: CompiledFrontEnd, offset_dn: float = 0.0) -> np.ndarray:
    """Camera frames (B, H, W) -> tiles (B, K, th, tw) in DN above `offset_dn`,
    un-inverted so each reads like the convolution it computed."""
    frames = np.asarray(frames, dtype=np.float64) - offset_dn
    tiles = np.stack([frames[:, r[0] : r[2], r[1] : r[3]] for r in compiled.rois], axis=1)
    return np.ascontiguousarray(tiles[..., ::-1, ::-1])  # as TileLayout.extract: the tile is point-reflected

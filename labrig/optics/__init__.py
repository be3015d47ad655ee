"""Differentiable physics of a 4f optical bench (torch; no I/O, no devices).

Small composable pieces: `Grid` and `Field`, `FourierLens`, the modulators,
the `CameraModel`, multiplexing, and `Twin`, which composes them with a set of
`Imperfections`. Training, the mask compiler and the simulated bench all use
this one model.
"""

from labrig.optics.camera import CameraModel
from labrig.optics.conv import (
    fourier_conv2d,
    full_conv_offset,
    kernel_to_mask,
    linear_phase,
    mask_to_kernel,
)
from labrig.optics.encoding import amplitude_only, double_phase, normalise_mask
from labrig.optics.field import Field
from labrig.optics.grid import Grid, crop_centered, invert_centered, padded_size, place_centered
from labrig.optics.imperfections import Imperfections, gamma_phase_lut, ideal_phase_lut
from labrig.optics.lens import FourierLens, centered_fft2, centered_ifft2
from labrig.optics.modulators import FilterSLM, Illumination, InputModulator
from labrig.optics.multiplex import (
    LayoutError,
    TileLayout,
    fast_size_for_tiles,
    multiplexed_mask,
    plan_tiles,
    time_multiplex_groups,
)
from labrig.optics.quantize import nearest_gray_level, quantize_phase
from labrig.optics.specs import BenchGeometry, CameraSpec, ModulatorSpec
from labrig.optics.system import Twin, incoherent_output

__all__ = [
    "BenchGeometry",
    "CameraModel",
    "CameraSpec",
    "Field",
    "FilterSLM",
    "FourierLens",
    "Grid",
    "Illumination",
    "Imperfections",
    "InputModulator",
    "LayoutError",
    "ModulatorSpec",
    "TileLayout",
    "Twin",
    "amplitude_only",
    "centered_fft2",
    "centered_ifft2",
    "crop_centered",
    "double_phase",
    "fast_size_for_tiles",
    "fourier_conv2d",
    "full_conv_offset",
    "gamma_phase_lut",
    "ideal_phase_lut",
    "incoherent_output",
    "invert_centered",
    "kernel_to_mask",
    "linear_phase",
    "mask_to_kernel",
    "multiplexed_mask",
    "nearest_gray_level",
    "normalise_mask",
    "padded_size",
    "place_centered",
    "plan_tiles",
    "quantize_phase",
    "time_multiplex_groups",
]

"""The input modulator and the filter SLM as optical elements."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labrig.optics.field import Field
from labrig.optics.grid import Grid
from labrig.optics.quantize import lut_lookup, quantize_phase
from labrig.optics.resample import AxisOverlap, affine_warp, is_identity_warp, rotated_window
from labrig.optics.specs import ModulatorSpec


class InputModulator(nn.Module):
    """Amplitude modulator (LCoS between polarisers, DMD) in the input plane.

    Each pixel transmits intensity T(g) = LUT[g] (floored at 1/contrast), so the
    field is sqrt(irradiance * T) over the pixel's active area; the pixels are
    projected onto the simulation grid by exact area overlap, which handles any
    pitch ratio, fill factor and lateral shift.
    """

    def __init__(self, spec: ModulatorSpec, grid: Grid, lut: torch.Tensor | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.grid = grid
        levels = spec.levels
        if lut is None:
            lut = torch.arange(levels, dtype=torch.float64) / (levels - 1)
        self.register_buffer("lut", torch.as_tensor(lut, dtype=torch.float64))

    def transmission(self, gray: torch.Tensor, contrast: torch.Tensor | float = math.inf) -> torch.Tensor:
        """Intensity transmission of gray levels (int: exact, float: interpolated)."""
        t = lut_lookup(gray, self.lut.to(gray.dtype if gray.is_floating_point() else self.lut.dtype))
        floor = 1.0 / torch.as_tensor(contrast, dtype=t.dtype, device=t.device)
        return floor + (1 - floor) * t

    def gray_for_amplitude(self, amplitude: torch.Tensor) -> torch.Tensor:
        """Nearest gray levels whose field amplitude sqrt(T) matches `amplitude` in [0, 1]."""
        target = amplitude.clamp(0, 1).square().contiguous()
        lut = self.lut.to(target.dtype)
        idx = torch.searchsorted(lut, target).clamp(1, len(lut) - 1)
        lower_closer = (target - lut[idx - 1]) < (lut[idx] - target)
        return torch.where(lower_closer, idx - 1, idx)

    def _overlaps(self, shift_px: torch.Tensor, dtype, device) -> tuple[AxisOverlap, AxisOverlap]:
        lin_fill = math.sqrt(self.spec.fill_factor)
        p = self.spec.pitch_m
        shift_m = shift_px.to(dtype) * p
        return tuple(
            AxisOverlap(
                self.spec.resolution[d], p, self.grid.shape[d], self.grid.pitch_m[d],
                src_fill=lin_fill, dst_origin=-shift_m[d], dtype=dtype, device=device,
            )
            for d in (0, 1)
        )

    def field_from_amplitude(
        self,
        amplitude: torch.Tensor,
        irradiance_w_m2: torch.Tensor | float,
        wavelength_m: float,
        shift_px: torch.Tensor | None = None,
        rotation_rad: torch.Tensor | float = 0.0,
    ) -> Field:
        """Field on the simulation grid for per-pixel field amplitudes (..., rows, cols)."""
        window, offset = self.field_window(amplitude, irradiance_w_m2, shift_px, rotation_rad)
        return Field(self.place_window(window, offset), self.grid, wavelength_m)

    def place_window(self, window: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
        """A window of the grid at (top, left) `offset`, zero-padded to the whole grid."""
        (top, left), (h, w), (rows, cols) = offset, window.shape[-2:], self.grid.shape
        return F.pad(window, (left, cols - left - w, top, rows - top - h))

    def field_window(
        self,
        amplitude: torch.Tensor,
        irradiance_w_m2: torch.Tensor | float,
        shift_px: torch.Tensor | None = None,
        rotation_rad: torch.Tensor | float = 0.0,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """The field's non-zero window of the simulation grid and its (top, left) there.

        The modulator covers a small part of the grid (a 64-pixel modulator on a
        256-sample grid): resampling, rotating and lighting only that window,
        and transforming only its rows (`Twin.output_power_window`), costs what
        the light does, not what the grid does. Equal to the full-grid field.
        """
        if tuple(amplitude.shape[-2:]) != self.spec.resolution:
            raise ValueError(
                f"input pattern {tuple(amplitude.shape[-2:])} does not match the modulator's {self.spec.resolution}"
            )
        real = amplitude.real.dtype if torch.is_complex(amplitude) else amplitude.dtype
        shift = torch.zeros(2, dtype=real) if shift_px is None else shift_px
        oy, ox = self._overlaps(shift, real, amplitude.device)
        (top, bottom), (left, right) = oy.support(), ox.support()
        if not is_identity_warp((0.0, 0.0), rotation_rad, 1.0):
            centre = (self.grid.shape[0] // 2, self.grid.shape[1] // 2)
            top, left, bottom, right = rotated_window(
                (top, left, bottom, right), self.grid.shape, float(torch.as_tensor(rotation_rad).detach()), centre
            )
        u = amplitude * torch.sqrt(torch.as_tensor(irradiance_w_m2, dtype=real, device=amplitude.device))
        a = oy.apply(ox.apply(u, -1, window=(left, right)), -2, window=(top, bottom))
        a = a / math.sqrt(self.grid.sample_area_m2)
        if not is_identity_warp((0.0, 0.0), rotation_rad, 1.0):
            centre = (self.grid.shape[0] // 2 - top, self.grid.shape[1] // 2 - left)
            a = affine_warp(a, (0.0, 0.0), rotation_rad, 1.0, centre)
        return a, (top, left)


class Illumination(nn.Module):
    """Amplitude profile of the beam on the input plane: a Gaussian of 1/e^2
    intensity radius `waist` centred at `centre` (flat when the waist is inf)."""

    def forward(self, field: Field, waist_m: torch.Tensor, centre_m: torch.Tensor) -> Field:
        profile = self.profile(field.grid, waist_m, centre_m, field.data.real.dtype, field.data.device)
        return field if profile is None else field.with_data(field.data * profile)

    @staticmethod
    def is_flat(waist_m: torch.Tensor) -> bool:
        return not waist_m.requires_grad and math.isinf(float(waist_m))

    def profile(
        self, grid: Grid, waist_m: torch.Tensor, centre_m: torch.Tensor, dtype: torch.dtype, device=None,
        window: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor | None:
        """The amplitude factor over `grid` (or its (top, left, rows, cols) `window`);
        None for a flat beam."""
        if self.is_flat(waist_m):
            return None
        y, x = grid.axis(0, dtype, device), grid.axis(1, dtype, device)
        if window is not None:
            top, left, h, w = window
            y, x = y[top : top + h], x[left : left + w]
        c = centre_m.to(dtype)
        w2 = waist_m.to(dtype).square()
        # separable: exp(-(y^2 + x^2) / w^2) as an outer product of two vectors
        return torch.exp(-(y - c[0]).square() / w2)[:, None] * torch.exp(-(x - c[1]).square() / w2)[None, :]


def gaussian_blur(x: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur over the last two dims (edge-replicated)."""
    sigma = sigma_px.to(x.dtype)
    radius = max(1, math.ceil(3 * float(sigma.detach())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma).square())
    k = k / k.sum()
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, *x.shape[-2:])
    y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(*lead, *x.shape[-2:])


class FilterSLM(nn.Module):
    """The SLM in the Fourier plane; its pixels are the simulation grid.

    Phase SLM: gray g -> phase LUT[g]; fringing (pixel crosstalk) smooths the
    phase profile; the transmission is exp(i phase) over the active area and 1
    (unmodulated light) over the dead space between pixels. Amplitude SLM:
    field transmission sqrt(LUT[g]). A lateral shift of the SLM moves the
    pattern against the optical axis.
    """

    def __init__(self, spec: ModulatorSpec, grid: Grid) -> None:
        super().__init__()
        if tuple(grid.shape) != tuple(spec.resolution):
            raise ValueError(f"filter grid {grid.shape} must equal the SLM resolution {spec.resolution}")
        self.spec = spec
        self.grid = grid

    def response(self, gray: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        """Phase (rad) or intensity transmission shown for gray levels."""
        if tuple(gray.shape[-2:]) != self.spec.resolution:
            raise ValueError(
                f"filter pattern {tuple(gray.shape[-2:])} does not match the SLM's {self.spec.resolution}"
            )
        return lut_lookup(gray, lut)

    def transmission_from_phase(
        self,
        phase: torch.Tensor,
        crosstalk_px: torch.Tensor | None = None,
        shift_px: torch.Tensor | None = None,
        lut: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Complex transmission for a displayed phase; with `lut`, the phase is first
        quantised to the SLM's levels (straight-through gradient)."""
        if lut is not None:
            phase = quantize_phase(phase, lut.to(phase.dtype))
        if crosstalk_px is not None and (crosstalk_px.requires_grad or float(crosstalk_px) > 0):
            phase = gaussian_blur(phase, crosstalk_px)
        t = torch.polar(torch.ones_like(phase), phase)
        return self._finish(t, shift_px)

    def transmission_from_intensity(self, intensity: torch.Tensor, shift_px: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.sqrt(intensity.clamp_min(0))
        return self._finish(torch.complex(t, torch.zeros_like(t)), shift_px)

    def _finish(self, t: torch.Tensor, shift_px: torch.Tensor | None) -> torch.Tensor:
        ff = self.spec.fill_factor
        if ff < 1:
            t = ff * t + (1 - ff)
        if shift_px is not None and not is_identity_warp(shift_px, 0.0, 1.0):
            t = affine_warp(t, shift_px, 0.0, 1.0)
        return t

    def forward(self, field: Field, transmission: torch.Tensor) -> Field:
        return field.with_data(field.data * transmission)

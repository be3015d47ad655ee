"""The camera: area integration onto pixels, then photons -> electrons -> DN.

Detection is a square law: the camera sees power, never the field, which is
the first nonlinearity of a coherent optical network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from labrig.optics.grid import Grid
from labrig.optics.resample import AxisOverlap, affine_warp, is_identity_warp
from labrig.optics.specs import CameraSpec

PixelRect = tuple[int, int, int, int]
"""A camera rectangle: top, left, bottom (exclusive), right (exclusive), in pixels."""


class CameraModel(nn.Module):
    """Integrates output-plane power onto camera pixels and converts it to DN.

    The camera is centred on the optical axis; `shift_px`, `rotation_rad` and
    `scale` describe its misalignment against the output plane (scale > 1:
    the image looks smaller on the camera).
    """

    def __init__(self, spec: CameraSpec, output_grid: Grid, photon_energy_j: float) -> None:
        super().__init__()
        self.spec = spec
        self.output_grid = output_grid
        self.photon_energy_j = float(photon_energy_j)

    def integrate(
        self,
        power: torch.Tensor,
        shift_px: torch.Tensor | None = None,
        rotation_rad: torch.Tensor | float = 0.0,
        scale: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """Power per camera pixel (W) from power per output-grid sample (..., N, N)."""
        dtype, device = power.dtype, power.device
        if not is_identity_warp((0.0, 0.0), rotation_rad, 1.0):
            power = affine_warp(power, (0.0, 0.0), -torch.as_tensor(rotation_rad), 1.0)
        shift = torch.zeros(2, dtype=dtype, device=device) if shift_px is None else shift_px.to(dtype)
        lin_fill = math.sqrt(self.spec.fill_factor)
        p = self.spec.pitch_m
        axes = []
        for d in (0, 1):
            d_src = self.output_grid.pitch_m[d]
            ov = AxisOverlap(
                self.output_grid.shape[d], d_src, self.spec.resolution[d], p,
                dst_fill=lin_fill, dst_origin=shift[d] * p, dst_scale=scale, dtype=dtype, device=device,
            )
            axes.append((ov, ov.weight / d_src))
        (oy, wy), (ox, wx) = axes
        return oy.apply(ox.apply(power, -1, wx), -2, wy)

    def mean_electrons(
        self, power_w: torch.Tensor, exposure_s: float, hot_pixels_e_per_s: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Expected photo-electrons plus dark electrons per pixel."""
        e = power_w * (self.spec.quantum_efficiency * exposure_s / self.photon_energy_j)
        e = e + self.spec.dark_current_e_per_s * exposure_s
        if hot_pixels_e_per_s is not None:
            e = e + hot_pixels_e_per_s.to(e.dtype) * exposure_s  # exposure may be a tensor (per image)
        return e

    def to_dn(
        self, electrons: torch.Tensor, gain: float, gain_error: torch.Tensor | float = 1.0,
        offset_error_dn: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        """Full-well clip, conversion, gain and offset, ADC saturation (no rounding)."""
        scale = self.spec.conversion_dn_per_e * gain * gain_error
        offset = self.spec.offset_dn + offset_error_dn
        if torch.is_grad_enabled():
            e = torch.clamp(electrons, max=self.spec.full_well_e)
            return (e * scale + offset).clamp(0, self.spec.max_dn)
        # the same arithmetic in place (the simulated bench renders without gradients)
        e = torch.clamp(electrons, max=self.spec.full_well_e)
        return e.mul_(scale).add_(offset).clamp_(0, self.spec.max_dn)

    def sample_electrons(
        self, mean_e: torch.Tensor, generator: torch.Generator | None = None,
        region: Sequence[PixelRect] | None = None,
    ) -> torch.Tensor:
        """Shot noise (exact Poisson counts) plus read noise (Gaussian, in electrons).

        `region`: the camera rectangles (top, left, bottom, right) a caller reads;
        noise is drawn there only and every other pixel keeps its mean (so its DN
        is the noise-free reading). None: the whole frame (a live view, a dark frame).
        """
        if region is not None:
            # every rectangle's pixels in one contiguous gather: one draw, one scatter
            index = region_index(region, tuple(mean_e.shape[-2:]), mean_e.device)
            flat = mean_e.flatten(-2)
            noisy = self.sample_electrons(flat.index_select(-1, index), generator)
            return flat.index_copy(-1, index, noisy).view(mean_e.shape)
        e = sample_poisson(mean_e.clamp_min(0), generator)
        read = torch.randn(mean_e.shape, generator=generator, dtype=mean_e.dtype, device=mean_e.device)
        return e.add_(read, alpha=self.spec.read_noise_e)

    def binned_electrons(
        self, mean_e: torch.Tensor, factor: int, *, mode: BinningMode = "charge", noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Electrons per binned pixel when the camera sums `factor`×`factor` pixels itself.

        Each pixel saturates on its own (full well), then the block's charge is summed.
        Shot noise is that of the summed charge (a sum of Poissons is Poisson). Read
        noise: ``charge`` binning (CCD, some CMOS) reads the summed charge once, so
        one read noise per binned pixel; ``digital`` binning (most CMOS: the sum after
        the ADC) reads every pixel, so factor² read noises add in quadrature. Rows and
        columns that do not fill a block are dropped, as cameras do.
        """
        summed = bin_sum(torch.clamp(mean_e, max=self.spec.full_well_e), factor)
        if not noise:
            return summed
        e = sample_poisson(summed.clamp_min(0), generator)
        reads = 1 if mode == "charge" else factor * factor
        read = torch.randn(summed.shape, generator=generator, dtype=summed.dtype, device=summed.device)
        return e.add_(read, alpha=self.spec.read_noise_e * math.sqrt(reads))

    def binned_snr(self, signal_e: float, factor: int, mode: BinningMode = "charge",
                   dark_e: float = 0.0) -> float:
        """Signal-to-noise ratio of one binned pixel for `signal_e` photo-electrons (and
        `dark_e` dark electrons) per camera pixel: shot noise plus read noise."""
        n = factor * factor
        reads = 1 if mode == "charge" else n
        signal = n * signal_e
        return signal / math.sqrt(n * (signal_e + dark_e) + reads * self.spec.read_noise_e**2)

    @staticmethod
    def quantize(dn: torch.Tensor) -> torch.Tensor:
        """Round to integer DN with a straight-through gradient."""
        if not dn.requires_grad:
            return torch.round(dn)  # the same values, without the gradient's two extra passes
        return dn + (torch.round(dn) - dn).detach()


BinningMode = Literal["charge", "digital"]
"""Where a camera sums a binned block: before the read-out (one read) or after the ADC."""


def bin_sum(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Sum of each `factor`×`factor` block of the last two axes (incomplete blocks dropped)."""
    if factor < 1:
        raise ValueError(f"binning factor must be >= 1, got {factor}")
    if factor == 1:
        return x
    rows, cols = x.shape[-2] // factor, x.shape[-1] // factor
    if rows < 1 or cols < 1:
        raise ValueError(f"binning {factor}x{factor} leaves no pixel of a {tuple(x.shape[-2:])} frame")
    x = x[..., : rows * factor, : cols * factor]
    return x.reshape(*x.shape[:-2], rows, factor, cols, factor).sum(dim=(-3, -1))


def binned_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """Pixels a `factor`×`factor`-binned read-out of a `size` window delivers."""
    return size[0] // factor, size[1] // factor


def region_index(region: Sequence[PixelRect], shape: tuple[int, int], device=None) -> torch.Tensor:
    """Flat indices (row * cols + col) of the pixels inside any of the rectangles, each once."""
    inside = torch.zeros(shape, dtype=torch.bool)
    for top, left, bottom, right in region:
        inside[max(top, 0) : bottom, max(left, 0) : right] = True
    return torch.nonzero(inside.flatten()).squeeze(1).to(device)


def sample_poisson(mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact Poisson counts for non-negative means (any size; no normal shortcut)."""
    return torch.poisson(mean, generator=generator)

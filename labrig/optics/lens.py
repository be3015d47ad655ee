"""Thin lenses between front and back focal planes: an optical Fourier transform."""

from __future__ import annotations

import torch
from torch import nn

from labrig.optics.field import Field


def centered_fft2(x: torch.Tensor) -> torch.Tensor:
    """Unitary 2-D DFT of a centred array (axis at n // 2 in and out)."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.fft2(x, norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def centered_ifft2(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `centered_fft2`."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.ifft2(x, norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


class FourierLens(nn.Module):
    """Front focal plane -> back focal plane of a lens of focal length `focal_m`.

    U(x_F) is the unitary DFT of u with x_F = wavelength * focal * f_x, so power
    is conserved (Parseval). The constant phase 1/(i wavelength f) is dropped:
    no intensity depends on it. Two lenses in a row invert the image.
    """

    def __init__(self, focal_m: float) -> None:
        super().__init__()
        if focal_m <= 0:
            raise ValueError(f"focal_m must be > 0, got {focal_m}")
        self.focal_m = float(focal_m)

    def forward(self, field: Field) -> Field:
        grid = field.grid.fourier(field.wavelength_m, self.focal_m)
        return field.with_data(centered_fft2(field.data), grid)

    def extra_repr(self) -> str:
        return f"focal_m={self.focal_m:g}"

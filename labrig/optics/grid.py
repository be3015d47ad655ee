"""Sampling grids: the one place where plane sizes, pitches and padding are stated.

Conventions used throughout `labrig.optics`:

* Arrays are *centred*: index ``n // 2`` of each axis is the optical axis (x = 0).
* A lens maps a plane of ``n`` samples at pitch ``d`` to a plane of ``n`` samples
  at pitch ``wavelength * focal / (n * d)`` (the Fourier-transform scaling).
* Linear (not circular) convolution of an ``n``-sample image with a ``k``-sample
  kernel needs at least ``n + k - 1`` samples; `padded_size` gives that size
  rounded up to an FFT-friendly one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def linear_conv_size(n: int, k: int) -> int:
    """Samples of a full linear convolution of n and k samples."""
    return n + k - 1


def _is_smooth(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def fast_size(n: int) -> int:
    """Smallest integer >= n whose prime factors are all <= 7 (fast FFT sizes)."""
    while not _is_smooth(n):
        n += 1
    return n


def padded_size(n: int, k: int) -> int:
    """Grid size for an aliasing-free linear convolution of n and k samples."""
    return fast_size(linear_conv_size(n, k))


@dataclass(frozen=True)
class Grid:
    """A centred 2-D sampling grid: ``shape`` (rows, cols) at ``pitch_m`` (dy, dx)."""

    shape: tuple[int, int]
    pitch_m: tuple[float, float]

    def __post_init__(self) -> None:
        if any(int(s) <= 0 for s in self.shape) or any(p <= 0 for p in self.pitch_m):
            raise ValueError(f"grid shape {self.shape} and pitch {self.pitch_m} must be positive")

    @property
    def extent_m(self) -> tuple[float, float]:
        return (self.shape[0] * self.pitch_m[0], self.shape[1] * self.pitch_m[1])

    @property
    def sample_area_m2(self) -> float:
        return self.pitch_m[0] * self.pitch_m[1]

    def axis(self, dim: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Sample centres along one axis, in metres, zero at index n // 2."""
        n = self.shape[dim]
        return (torch.arange(n, dtype=dtype, device=device) - n // 2) * self.pitch_m[dim]

    def mesh(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, x) coordinate arrays of shape `shape`."""
        y = self.axis(0, dtype, device)
        x = self.axis(1, dtype, device)
        return torch.meshgrid(y, x, indexing="ij")

    def fourier(self, wavelength_m: float, focal_m: float) -> Grid:
        """The grid a lens of focal length `focal_m` maps this plane onto."""
        return Grid(
            self.shape,
            tuple(wavelength_m * focal_m / (n * d) for n, d in zip(self.shape, self.pitch_m, strict=True)),
        )


def place_centered(x: torch.Tensor, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-pad the last two dims of `x` into `shape` so that x's centre sample
    (index n // 2) lands on the grid's centre plus `offset` samples."""
    h, w = x.shape[-2:]
    top = shape[0] // 2 - h // 2 + offset[0]
    left = shape[1] // 2 - w // 2 + offset[1]
    if top < 0 or left < 0 or top + h > shape[0] or left + w > shape[1]:
        raise ValueError(f"a {h}x{w} array at offset {offset} does not fit in a {shape} grid")
    out = x.new_zeros((*x.shape[:-2], *shape))
    out[..., top : top + h, left : left + w] = x
    return out


def crop_centered(x: torch.Tensor, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Inverse of `place_centered`: the `shape` window centred at centre + `offset`."""
    h, w = shape
    top = x.shape[-2] // 2 - h // 2 + offset[0]
    left = x.shape[-1] // 2 - w // 2 + offset[1]
    if top < 0 or left < 0 or top + h > x.shape[-2] or left + w > x.shape[-1]:
        raise ValueError(f"a {shape} window at offset {offset} is outside a {tuple(x.shape[-2:])} grid")
    return x[..., top : top + h, left : left + w]


def invert_centered(x: torch.Tensor) -> torch.Tensor:
    """Point reflection through the optical axis: sample at +r goes to -r.

    This is what a 4f system does to an image (magnification -f2/f1).
    """
    out = torch.flip(x, dims=(-2, -1))
    shifts = tuple(1 if n % 2 == 0 else 0 for n in x.shape[-2:])
    if any(shifts):
        out = torch.roll(out, shifts=shifts, dims=(-2, -1))
    return out

"""A sampled complex field: the thing that travels between optical elements."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from labrig.optics.grid import Grid


@dataclass(frozen=True)
class Field:
    """Complex field samples on a centred grid.

    ``data`` (..., rows, cols) is in sqrt(W) per sample: ``|data|**2`` is the
    power carried by each sample, so a power-conserving element keeps
    ``power().sum()``. Leading dims are batch / channel dims.
    """

    data: torch.Tensor
    grid: Grid
    wavelength_m: float

    def __post_init__(self) -> None:
        if tuple(self.data.shape[-2:]) != tuple(self.grid.shape):
            raise ValueError(f"field data {tuple(self.data.shape[-2:])} does not match grid {self.grid.shape}")

    def power(self) -> torch.Tensor:
        """Power per sample (W)."""
        if not torch.is_complex(self.data):  # e.g. the input field of a real amplitude pattern
            return self.data.square()
        return self.data.real.square() + self.data.imag.square()

    def total_power(self) -> torch.Tensor:
        return self.power().sum(dim=(-2, -1))

    def intensity(self) -> torch.Tensor:
        """Irradiance (W/m^2) per sample."""
        return self.power() / self.grid.sample_area_m2

    def with_data(self, data: torch.Tensor, grid: Grid | None = None) -> Field:
        return replace(self, data=data, grid=grid or self.grid)

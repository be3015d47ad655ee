"""Low-order aberrations as a phase over the Fourier plane (Zernike, Noll normalisation).

Lens aberrations and a filter SLM or camera that sits off the focal plane
(defocus) all add a phase across the Fourier plane; the pupil radius is half
the filter SLM's smaller side.
"""

from __future__ import annotations

import math

import torch

from labrig.optics.grid import Grid

#: Noll-normalised Zernike terms (n >= 2) in a fixed order: the names used in
#: profiles and the index of each coefficient in `Imperfections.zernike_rad`.
ZERNIKE_NAMES: tuple[str, ...] = (
    "defocus",          # Z4
    "astig_oblique",    # Z5
    "astig_vertical",   # Z6
    "coma_vertical",    # Z7
    "coma_horizontal",  # Z8
    "spherical",        # Z11
)


def zernike_basis(rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The terms of `ZERNIKE_NAMES` evaluated at (rho, theta): shape (6, *rho.shape)."""
    r2 = rho * rho
    return torch.stack(
        (
            math.sqrt(3) * (2 * r2 - 1),
            math.sqrt(6) * r2 * torch.sin(2 * theta),
            math.sqrt(6) * r2 * torch.cos(2 * theta),
            math.sqrt(8) * (3 * r2 * rho - 2 * rho) * torch.sin(theta),
            math.sqrt(8) * (3 * r2 * rho - 2 * rho) * torch.cos(theta),
            math.sqrt(5) * (6 * r2 * r2 - 6 * r2 + 1),
        )
    )


def pupil_coordinates(grid: Grid, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised polar coordinates over a Fourier-plane grid (rho = 1 at the edge
    of the inscribed circle)."""
    y, x = grid.mesh(dtype, device)
    radius = 0.5 * min(grid.extent_m)
    return torch.sqrt(x * x + y * y) / radius, torch.atan2(y, x)


def zernike_phase(coefficients_rad: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Phase (radians) sum_j c_j Z_j over the grid; differentiable in the coefficients."""
    rho, theta = pupil_coordinates(grid, coefficients_rad.dtype, coefficients_rad.device)
    return torch.einsum("j,jyx->yx", coefficients_rad, zernike_basis(rho, theta))


def zernike_from_names(values: dict[str, float], dtype=torch.float64) -> torch.Tensor:
    """Coefficient vector from a {name: radians} mapping; unknown names are an error."""
    unknown = sorted(set(values) - set(ZERNIKE_NAMES))
    if unknown:
        raise ValueError(f"unknown Zernike term(s) {unknown}; known: {', '.join(ZERNIKE_NAMES)}")
    return torch.tensor([float(values.get(n, 0.0)) for n in ZERNIKE_NAMES], dtype=dtype)

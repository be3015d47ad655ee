"""Showing a complex Fourier mask on a phase-only or amplitude-only SLM."""

from __future__ import annotations

import torch

_EPS = 1e-7


def normalise_mask(mask: torch.Tensor, peak: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale a mask so max |H| = 1 (a passive filter); returns (mask, scale used).

    The scale is per mask over its last two dims unless `peak` is given.
    """
    if peak is None:
        peak = mask.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(mask.real.dtype).tiny)
    peak = torch.as_tensor(peak, dtype=mask.real.dtype, device=mask.device)
    return mask / peak, peak


def checkerboard(shape: tuple[int, int], device=None) -> torch.Tensor:
    """True on pixels with even (row + col)."""
    r = torch.arange(shape[0], device=device)[:, None]
    c = torch.arange(shape[1], device=device)[None, :]
    return (r + c) % 2 == 0


def double_phase(mask: torch.Tensor) -> torch.Tensor:
    """Double-phase (checkerboard) encoding of a passive mask (|H| <= 1) as a phase.

    A e^{i phi} = (e^{i(phi + acos A)} + e^{i(phi - acos A)}) / 2: neighbouring
    pixels take the two phases, so the local average is the wanted mask and the
    error term is modulated by the checkerboard, which moves it half a grid (N/2
    in both axes) away from the tile it belongs to: tiles kept in the central
    half of the output plane (`plan_tiles(avoid_residual=True)`) stay clear.
    """
    amplitude = mask.abs().clamp(max=1 - _EPS)
    phi = torch.angle(mask)
    delta = torch.acos(amplitude)
    board = checkerboard(tuple(mask.shape[-2:]), mask.device)
    return torch.where(board, phi + delta, phi - delta)


def amplitude_only(mask: torch.Tensor) -> torch.Tensor:
    """Field transmission an amplitude-only SLM can show: |H| (the phase is lost)."""
    return mask.abs().clamp(max=1.0)

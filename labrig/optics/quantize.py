"""Gray-level quantisation through an SLM's look-up table, with a straight-through gradient.

The documented surrogate: the forward pass shows the nearest LUT phase (mod
2 pi); the backward pass treats the quantiser as the identity on the wrapped
phase, d(shown)/d(wanted) = 1. `QuantizePhase` implements exactly that, so a
gradcheck of the twin with quantisation replaced by the identity checks the
gradient the STE uses (tests/test_optics_gradcheck.py).
"""

from __future__ import annotations

import math

import torch

TWO_PI = 2 * math.pi


def wrap_phase(phase: torch.Tensor) -> torch.Tensor:
    """Phase in [0, 2 pi)."""
    return torch.remainder(phase, TWO_PI)


def nearest_gray_level(phase: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Gray level whose LUT phase is circularly nearest to `phase` (long tensor)."""
    lut = lut.to(phase.dtype if phase.is_floating_point() else torch.float64)
    wrapped_lut = wrap_phase(lut)
    order = torch.argsort(wrapped_lut)
    sorted_lut = wrapped_lut[order]
    p = wrap_phase(phase.detach()).contiguous()
    hi = torch.searchsorted(sorted_lut, p).clamp(max=len(lut) - 1)
    lo = (hi - 1) % len(lut)
    cand = torch.stack((lo, hi, torch.zeros_like(hi), torch.full_like(hi, len(lut) - 1)), dim=-1)
    diff = torch.remainder(p[..., None] - sorted_lut[cand] + math.pi, TWO_PI) - math.pi
    best = torch.gather(cand, -1, diff.abs().argmin(dim=-1, keepdim=True)).squeeze(-1)
    return order[best]


class QuantizePhase(torch.autograd.Function):
    """Forward: the LUT phase nearest to the wanted one. Backward: identity (STE)."""

    @staticmethod
    def forward(ctx, phase: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        levels = nearest_gray_level(phase, lut)
        shown = lut.to(phase.dtype)[levels]
        # keep the value congruent with `phase` so exp(i.) is what the SLM shows
        return phase + (torch.remainder(shown - phase + math.pi, TWO_PI) - math.pi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def quantize_phase(phase: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return QuantizePhase.apply(phase, lut)


def lut_lookup(gray: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Response of integer gray levels, or linear interpolation for float ones.

    Gradients flow to `lut` (so calibration can fit it) and, for float input,
    to the gray level through the LUT's slope.
    """
    if not gray.is_floating_point():
        return lut[gray.long()]
    g = gray.clamp(0, len(lut) - 1)
    lo = torch.floor(g.detach()).long().clamp(max=len(lut) - 2)
    frac = g - lo.to(g.dtype)
    return lut[lo] * (1 - frac) + lut[lo + 1] * frac


def quantize_to_lut(phase: torch.Tensor, lut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gray levels, shown phase): the nearest level's LUT value itself (what the SLM shows,
    not a congruent phase: fringing blurs the shown values), straight-through gradient."""
    levels = nearest_gray_level(phase, lut)
    shown = lut.to(phase.dtype)[levels]
    return levels, phase + (shown - phase).detach()

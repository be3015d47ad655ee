"""Physics-aware training's one trick as a `torch.autograd.Function`.

Forward: the bench. The filter phase is quantised to gray levels through the
calibrated LUT (what the SLM can show), shown, a batch of frames is measured
and cut into tiles. Backward: the calibrated twin's vector-Jacobian product at
the same phase and inputs (Wright et al., Nature 601, 2022): the twin is
recomputed there, differentiated, and its tiles are compared with the
measured ones on the way (the residual that tells the trainer the bench has
drifted away from its calibration). The quantiser's gradient is the
straight-through one of `labrig.optics.quantize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labrig.hil.measure import BenchMeter
from labrig.hil.twin_tiles import TwinTiles
from labrig.optics.quantize import nearest_gray_level

__all__ = ["BenchTiles", "Residuals", "filter_gray"]


def filter_gray(phase: torch.Tensor, lut: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """The gray levels that show `phase` best through `lut` (F, N, N): the same choice the
    twin's straight-through quantiser makes (same dtype), so bench and twin show one pattern."""
    return nearest_gray_level(phase.detach(), lut.detach().to(phase.dtype)).cpu().numpy().astype(dtype)


@dataclass
class Residuals:
    """Measured-vs-twin tile error of every backward pass (relative RMS), for drift detection."""

    values: list[float] = field(default_factory=list)

    def add(self, measured: torch.Tensor, twin: torch.Tensor) -> None:
        ref = twin.square().sum().clamp_min(torch.finfo(twin.dtype).tiny)
        self.values.append(float(torch.sqrt((measured - twin).square().sum() / ref)))


class BenchTiles(torch.autograd.Function):
    """tiles = BenchTiles.apply(phase, input_gray, meter, twin_tiles, lut, residuals)."""

    @staticmethod
    def forward(ctx: Any, phase: torch.Tensor, input_gray: torch.Tensor, meter: BenchMeter,
                twin_tiles: TwinTiles, lut: torch.Tensor, residuals: Residuals | None = None) -> torch.Tensor:
        gray = filter_gray(phase, lut, meter.program.filter.gray.dtype)
        raw = torch.from_numpy(meter.measure(gray, input_gray.cpu().numpy()))
        measured = twin_tiles.signal(raw.to(device=phase.device, dtype=twin_tiles.twin.dtype))
        ctx.save_for_backward(phase, input_gray, measured)
        ctx.twin_tiles, ctx.residuals = twin_tiles, residuals
        return measured.to(phase.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        phase, input_gray, measured = ctx.saved_tensors
        with torch.enable_grad():
            p = phase.detach().requires_grad_(True)
            predicted = ctx.twin_tiles(p, input_gray)
            (grad_phase,) = torch.autograd.grad(predicted, p, grad.to(predicted.dtype))
        if ctx.residuals is not None:
            ctx.residuals.add(measured, predicted.detach())
        return grad_phase.to(phase.dtype), None, None, None, None, None

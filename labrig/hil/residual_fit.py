"""Fit the twin's learned residual (`labrig.optics.residual`) to frames the bench took.

Why: physics-aware training's backward pass is only as good as the twin, and
the twin a calibration leaves still misses whatever has no name (on `sim`, a
relative tile error of ~0.2). A few hundred frames of the program's own masks
on training images, which the fine-tune needs anyway, are enough to fit a
smooth Fourier-plane factor and output-plane gain by least squares through the
differentiable twin. The same tiles the back end reads are compared (the
program's ROIs, dark level included, noise-free twin against measured DN), a
quarter of the images is held back, and the fit is kept only when their error
goes down: it can never make the twin worse on frames it did not see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from labrig.hil.twin_tiles import TwinTiles
from labrig.optics.residual import TwinResidual

__all__ = ["ResidualFit", "fit_residual", "tile_error"]


@dataclass(frozen=True)
class ResidualFit:
    kept: bool
    held_error_before: float
    held_error_after: float
    fit_error_before: float
    fit_error_after: float
    images: int
    iterations: int

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(filter phase (F, N, N) shown, input gray (B, rows, cols), measured raw tiles (B, T, th, tw))."""


def tile_error(twin_tiles: TwinTiles, batches: Sequence[Batch]) -> float:
    """||twin - measured|| / ||measured - dark|| over raw tile DN of all `batches`."""
    num = den = 0.0
    dark = torch.as_tensor(twin_tiles.readout.dark_dn, dtype=torch.float64).max()
    with torch.no_grad():
        for phase, inputs, measured in batches:
            predicted = twin_tiles.raw(phase, inputs).to(torch.float64)
            measured = measured.to(torch.float64)
            num += float((predicted - measured).square().sum())
            den += float((measured - dark).square().sum())
    return (num / max(den, 1e-300)) ** 0.5


def fit_residual(twin_tiles: TwinTiles, batches: Sequence[Batch], *, residual: TwinResidual | None = None,
                 iterations: int = 120, lr: float = 0.03, held: int | None = None,
                 cancel: Callable[[], bool] | None = None) -> tuple[TwinResidual, ResidualFit]:
    """Fit (a copy of) `residual` (default: a fresh one) on measured `batches`, each with the filter
    phase it was taken with (masks that differ constrain the residual better); the last `held`
    batches (default a quarter) are held back. The fit is attached to the twin only when they
    agree better; it is returned with the figures either way."""
    if len(batches) < 2:
        raise ValueError("fitting the twin residual needs at least two measured batches (one is held back)")
    twin = twin_tiles.twin
    held = max(1, round(len(batches) / 4)) if held is None else held
    if not 1 <= held < len(batches):
        raise ValueError(f"hold back between 1 and {len(batches) - 1} batches, not {held}")
    batches = [(ph.detach(), x, m) for ph, x, m in batches]
    fit, check = batches[:-held], batches[-held:]
    previous = twin.residual
    candidate = TwinResidual(dtype=twin.dtype) if residual is None else residual.clone(twin.dtype, trainable=True)
    candidate.to(twin.device)
    before_held, before_fit = tile_error(twin_tiles, check), tile_error(twin_tiles, fit)
    twin.residual = candidate
    dark = torch.as_tensor(twin_tiles.readout.dark_dn, dtype=twin.dtype).max()
    scale = [float((m.to(twin.dtype) - dark).square().mean()) for _, _, m in fit]
    opt = torch.optim.Adam(candidate.parameters(), lr=lr)
    done = 0
    try:
        for done in range(1, iterations + 1):
            if cancel is not None and cancel():
                break
            k = (done - 1) % len(fit)
            phase, inputs, measured = fit[k]
            opt.zero_grad()
            predicted = twin_tiles.raw(phase, inputs)
            loss = (predicted - measured.to(predicted.dtype)).square().mean() / max(scale[k], 1e-12)
            if not torch.isfinite(loss):
                raise FloatingPointError("the twin residual's fit loss is not finite")
            loss.backward()
            opt.step()
        after_held, after_fit = tile_error(twin_tiles, check), tile_error(twin_tiles, fit)
    except BaseException:
        twin.residual = previous
        raise
    kept = after_held < before_held
    if not kept:
        twin.residual = previous
    candidate.requires_grad_(False)
    n_images = sum(len(x) for _, x, _ in batches)
    return candidate, ResidualFit(kept, before_held, after_held, before_fit, after_fit, n_images, done)

"""Filter SLM phase LUT: the phase of every gray level, from the zero order of binary gratings.

The input shows a small bright patch (its spectrum lights the whole filter SLM)
and the filter a binary grating of gray levels a | b whose diffraction orders
land clear of the zero order on the camera (offset lambda f2 / period; the
period is short, 16 px on `sim`, so that the SLM's own smooth flatness error is
nearly constant over a period). The zero order keeps |(e^{i phi_a} + e^{i phi_b}) / 2|^2 =
cos^2((phi_b - phi_a) / 2) of a flat filter's light for an ideal SLM
(`photometry.ZeroOrder`), which names a phase step only up to its sign and is
blind to it near 0 and pi. So two sweeps: every measured gray level against
gray 0 (phase 0 by convention: the twin's phase of the dead space between
pixels), then against a reference gray r whose phase the first sweep puts near
pi / 2. Together they give cos and sin of each phase: no sign ambiguity, the
same sensitivity everywhere, unwrapped past 2 pi by continuity over the levels.

Closed forms are biased here (fringing smooths the steps, the dead space adds
unmodulated light, both differently at each phase), so the ratios are fitted
through the twin at the current estimates (its crosstalk included, so this
runs after the crosstalk routine): the twin's zero-order ratio as a function
of phase, per sweep, then each level's phase by least squares.

Frames: 4 dark, 1-4 to find the exposure, 2 flat, then two sweeps of one frame
per measured level (every `step`-th gray level and the last; 33 levels for an
8-bit SLM at the default step 8), 1 flat at the end: about 76. The levels in
between are interpolated (monotone cubic): an LCoS response is smooth in gray.

Products: the measured LUT over all gray levels and the inverse LUT the
compiler uses (the gray level for each of `levels` equally spaced phases in
[0, 2 pi)).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import Cancel, Progress, Routine, RoutineResult
from calibration.crosstalk import long_period
from calibration.photometry import (
    ZeroOrder,
    binary_grating,
    kept_exposure,
    order_offset_px,
    require,
    stripes,
)
from calibration.probe import Probe
from labrig.optics.quantize import nearest_gray_level

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: phases (rad) at which the twin computes its zero-order curves, and the finer grid (cubic
#: interpolation) on which each level's phase is searched
TWIN_GRID = np.arange(-0.6, 4 * math.pi + 0.6, 0.2)
PHASE_GRID = np.arange(-0.5, 4 * math.pi + 0.1, 0.02)
#: camera pixels between the zero and the first order of the LUT's gratings
LUT_CLEARANCE_PX = 16.0
#: misfit of a level's zero-order ratios (fraction of the flat's) within which two phase
#: branches count as equally good, and continuity over the levels decides
BRANCH_TOLERANCE = 0.03
#: largest RMS misfit of the zero-order ratios (fraction of the flat filter's zero order)
RESIDUAL_LIMIT = 0.03


class SlmLutRoutine(Routine):
    name = "slm_lut"
    title = "Filter SLM phase LUT from binary gratings"
    estimates = ("slm_lut",)
    after = ("camera", "crosstalk")
    frames_hint = 76

    def __init__(self, step: int = 8, patch_px: int = 2, period: int | None = None) -> None:
        self.step = step
        self.patch_px = patch_px
        self.period = period

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        geo = twin.geometry
        require(geo.filter.modulation == "phase", self.name, "needs a phase SLM in the Fourier plane")
        levels = geo.filter.levels
        grays = np.unique(np.r_[np.arange(0, levels, self.step), levels - 1])
        shape = tuple(geo.filter.resolution)
        period = self.period or lut_period(twin)
        radius = min(3.0, 0.4 * order_offset_px(twin, period))
        work = copy.deepcopy(twin).to(torch.float32)  # the curves need no float64
        mask = torch.as_tensor(stripes(shape, period), dtype=work.dtype)
        with Probe(bench, self.name, progress=progress, cancel=cancel) as p, kept_exposure(bench.camera):
            zero = ZeroOrder(p, twin, patch_px=self.patch_px, radius_px=radius)
            curve0 = fine(zero.model(torch.as_tensor(TWIN_GRID, dtype=work.dtype)[:, None, None] * mask, work))
            r0 = zero.measure(np.stack([binary_grating(shape, period, 0, g) for g in grays]), "LUT sweep 1/2")
            ref = reference_level(grays, r0, PHASE_GRID, curve0)
            r1 = zero.measure(np.stack([binary_grating(shape, period, ref, g) for g in grays]), "LUT sweep 2/2")
            drift = zero.remeasure_flat()
            frames = p.frames
        require(abs(drift - 1) < 0.1, self.name, f"the light changed by {100 * (drift - 1):+.0f} % during the "
                                                  "measurement")
        ref_index = int(np.searchsorted(grays, ref))

        def curve1(phi_ref: float) -> np.ndarray:
            phases = torch.as_tensor(TWIN_GRID, dtype=work.dtype)[:, None, None]
            return fine(zero.model(phi_ref + (phases - phi_ref) * mask, work))

        phi = unwrap_levels(r0, None, PHASE_GRID, curve0, None)
        for _ in range(2):  # the reference's phase is one of the unknowns: iterate
            c1 = curve1(float(phi[ref_index]))
            phi = unwrap_levels(r0, r1, PHASE_GRID, curve0, c1)
        model0 = np.interp(phi, PHASE_GRID, curve0)
        model1 = np.interp(phi, PHASE_GRID, c1)
        resid = np.r_[r0 - model0, r1 - model1]
        residual = float(np.sqrt(np.mean(resid**2)))
        require(residual <= RESIDUAL_LIMIT, self.name,
                f"zero-order ratios misfit by {residual:.3g} RMS (> {RESIDUAL_LIMIT}): the gratings do not follow "
                "the twin")
        lut = interpolate_lut(grays, phi, levels)
        inverse = nearest_gray_level(torch.as_tensor(2 * math.pi * np.arange(levels) / levels),
                                     torch.as_tensor(lut)).numpy()
        notes = (f"{len(grays)} levels x 2 sweeps, period {period} px, reference gray {ref} "
                 f"({phi[ref_index]:.3f} rad); phase range {lut[-1] - lut[0]:.3f} rad")
        return RoutineResult(
            self.name, {"slm_lut": lut}, residual, "zero-order ratio RMS misfit", frames,
            products={"lut_rad": lut, "inverse_lut": inverse, "measured_grays": grays, "measured_phase_rad": phi,
                      "reference_gray": ref},
            plot={"grays": grays, "phase": phi, "lut": lut, "r0": r0, "r1": r1, "model0": model0, "model1": model1},
            notes=notes)

    def plot(self, result: RoutineResult, ax: Any) -> None:
        d = result.plot
        ax.plot(np.arange(len(d["lut"])), d["lut"], "-", label="LUT (interpolated)")
        ax.plot(d["grays"], d["phase"], "o", ms=3, label="measured")
        ax.set_xlabel("gray level")
        ax.set_ylabel("phase (rad)")
        ax.set_title(f"filter SLM LUT (misfit {result.residual:.2g})")
        ax.legend(fontsize="small")


def lut_period(twin: Twin) -> int:
    """The grating period: the shortest even one (>= 6 px) whose first order lands `LUT_CLEARANCE_PX`
    from the zero order. Short, because a smooth phase error across the SLM (its flatness) must
    be nearly constant over a period for the zero order to measure the step alone; the crosstalk
    that short periods feel is in the twin by now."""
    return max(6, long_period(twin, LUT_CLEARANCE_PX, largest=32) // 2 * 2)


def fine(curve: np.ndarray) -> np.ndarray:
    """A twin curve on `TWIN_GRID`, cubic-interpolated onto `PHASE_GRID`."""
    from scipy.interpolate import CubicSpline

    return CubicSpline(TWIN_GRID, curve)(PHASE_GRID)


def reference_level(grays: np.ndarray, r0: np.ndarray, grid: np.ndarray, curve0: np.ndarray) -> int:
    """The first measured gray level whose zero order (against gray 0) has fallen to the
    twin's value at a pi/2 step: its phase is near pi / 2, where the second sweep is in
    quadrature with the first."""
    target = float(np.interp(math.pi / 2, grid, curve0))
    below = np.nonzero(r0[1:] <= target)[0]
    index = 1 + (int(below[0]) if below.size else int(np.argmin(r0[1:])))
    return int(grays[index])


def unwrap_levels(r0: np.ndarray, r1: np.ndarray | None, grid: np.ndarray, curve0: np.ndarray,
                  curve1: np.ndarray | None) -> np.ndarray:
    """Each level's phase: the grid phase that fits its ratios best among the near-best ones,
    the one closest to the previous level's (gray 0 is phase 0), refined parabolically."""
    out = np.zeros(len(r0))
    prev, step = 0.0, 0.0
    for i in range(1, len(r0)):
        cost = (curve0 - r0[i]) ** 2
        if r1 is not None and curve1 is not None:
            cost = cost + (curve1 - r1[i]) ** 2
        # local minima of the cost along the grid; among those that fit to within the noise
        # (phases 2 pi apart fit almost equally), the one that continues from the previous level
        interior = np.nonzero((cost[1:-1] <= cost[:-2]) & (cost[1:-1] <= cost[2:]))[0] + 1
        candidates = interior if interior.size else np.array([int(np.argmin(cost))])
        good = candidates[cost[candidates] <= 4 * max(cost[candidates].min(), BRANCH_TOLERANCE**2)]
        expected = prev + step
        j = int(good[np.argmin(np.abs(grid[good] - expected) + 10 * np.clip(prev - 0.3 - grid[good], 0, None))])
        phase = grid[j]
        if 0 < j < len(grid) - 1:  # parabola through the three samples around the minimum
            a, b, c = cost[j - 1], cost[j], cost[j + 1]
            den = a - 2 * b + c
            if den > 0:
                phase += 0.5 * (a - c) / den * (grid[1] - grid[0])
        out[i] = phase
        step = float(np.clip(phase - prev, 0.0, 1.0)) if i > 1 else 0.0
        prev = phase
    return out


def interpolate_lut(grays: np.ndarray, phases: np.ndarray, levels: int) -> np.ndarray:
    """Phase of every gray level from the measured ones (monotone cubic where monotone)."""
    from scipy.interpolate import PchipInterpolator

    all_levels = np.arange(levels, dtype=np.float64)
    if np.all(np.diff(phases) > 0):
        return PchipInterpolator(grays.astype(np.float64), phases)(all_levels)
    return np.interp(all_levels, grays.astype(np.float64), phases)

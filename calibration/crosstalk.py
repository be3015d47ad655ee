"""SLM pixel crosstalk (fringing): how the zero order of binary gratings fills back in as the period shrinks.

Fringing smooths the phase across pixel borders. A binary grating of phase
step D sends light out of the zero order, leaving a fraction cos^2(D/2) of it
for an ideal SLM at any period; fringing smooths the step, the more so the
shorter the period, so at periods of 2, 3, 4 and 8 px the zero order keeps
more and more light. The zero order's share (`photometry.ZeroOrder`: its
light around the patch image, over a flat filter's) does not depend on where
the orders land, on the filter SLM's lateral shift or on the camera geometry.

The step D is a nuisance: it comes from the LUT, which is calibrated after this
routine (it needs the crosstalk). So the gray level shown is the one whose
phase the current LUT puts nearest 2 pi / 3 (where the zero order is most
sensitive to both), the long-period grating pins D, and the crosstalk width
and D are fitted together through the twin (its own blur, dead space between
pixels and camera integration), by least squares.

Frames: 4 dark, 1-4 to find the exposure, 2 flat, one per period (2, 3, 4, 8
and a long one whose orders clear the zero order on the camera), 1 flat at the
end to check the light did not drift: about 14.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import Cancel, Progress, Routine, RoutineResult
from calibration.photometry import (
    ZeroOrder,
    binary_grating,
    kept_exposure,
    order_offset_px,
    require,
    stripes,
)
from calibration.probe import Probe

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: the phase step whose zero order is most informative about both the step and the fringing
STEP_RAD = 2 * math.pi / 3
#: camera pixels between the zero order and the first order of the long grating
ORDER_CLEARANCE_PX = 8.0
#: largest RMS misfit of the zero-order ratios (fraction of the flat filter's zero order)
RESIDUAL_LIMIT = 0.03
#: the fringing width is searched in [0, MAX_CROSSTALK_PX]
MAX_CROSSTALK_PX = 2.0


def long_period(twin: Twin, clearance_px: float = ORDER_CLEARANCE_PX, largest: int = 32) -> int:
    """The longest even grating period (<= `largest`) whose first order lies `clearance_px`
    camera pixels from the zero order."""
    period = largest
    while period > 4 and order_offset_px(twin, period) < clearance_px:
        period -= 2
    return period


def gray_for_phase(lut: np.ndarray, phase: float) -> int:
    """The gray level whose phase above gray 0 is nearest `phase` (LUT unwrapped from gray 0)."""
    return int(np.argmin(np.abs((lut - lut[0]) - phase)))


class CrosstalkRoutine(Routine):
    name = "crosstalk"
    title = "SLM pixel crosstalk (fringing) from zero order vs grating period"
    estimates = ("slm_crosstalk_px",)
    after = ("camera",)
    frames_hint = 16

    def __init__(self, periods: tuple[int, ...] = (2, 3, 4, 8), patch_px: int = 2) -> None:
        self.periods = periods
        self.patch_px = patch_px

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        geo = twin.geometry
        require(geo.filter.modulation == "phase", self.name, "needs a phase SLM in the Fourier plane")
        lut = twin.imperfections.slm_lut.detach().cpu().numpy()
        gray = gray_for_phase(lut, STEP_RAD)
        require(gray > 0, self.name, "the current LUT gives no gray level with a usable phase step")
        step0 = float(lut[gray] - lut[0])
        p_long = long_period(twin)
        periods = sorted(set(self.periods) | {p_long})
        shape = tuple(geo.filter.resolution)
        radius = min(3.0, 0.4 * order_offset_px(twin, max(periods)))
        with Probe(bench, self.name, progress=progress, cancel=cancel) as p, kept_exposure(bench.camera):
            zero = ZeroOrder(p, twin, patch_px=self.patch_px, radius_px=radius)
            grays = np.stack([binary_grating(shape, period, 0, gray) for period in periods])
            measured = zero.measure(grays, "gratings")
            drift = zero.remeasure_flat()
            frames = p.frames
        require(abs(drift - 1) < 0.1, self.name, f"the light changed by {100 * (drift - 1):+.0f} % during the "
                                                  "measurement")
        fit = fit_crosstalk(twin, zero, periods, measured, step0)
        require(fit.residual <= RESIDUAL_LIMIT, self.name,
                f"zero-order ratios misfit by {fit.residual:.3g} RMS (> {RESIDUAL_LIMIT}): the fringing model "
                "does not explain the gratings")
        plot = {"periods": np.asarray(periods), "measured": measured, "model": fit.model,
                "curve_sigmas": np.asarray(list(fit.curves)), "curves": np.stack(list(fit.curves.values()))}
        notes = (f"crosstalk {fit.sigma:.3f} +- {fit.sigma_se:.3f} px; phase step at gray {gray}: "
                 f"{fit.step:.3f} rad (current LUT: {step0:.3f})")
        return RoutineResult(self.name, {"slm_crosstalk_px": fit.sigma}, fit.residual,
                             "zero-order ratio RMS misfit", frames,
                             products={"crosstalk_se_px": fit.sigma_se, "gray": gray, "phase_step_rad": fit.step,
                                       "periods": periods, "zero_order_ratio": measured},
                             plot=plot, notes=notes)

    def plot(self, result: RoutineResult, ax: Any) -> None:
        d = result.plot
        ax.plot(d["periods"], d["measured"], "o", label="measured")
        ax.plot(d["periods"], d["model"], "-", label=f"twin, {result.values['slm_crosstalk_px']:.3f} px")
        for sigma, curve in zip(np.atleast_1d(d["curve_sigmas"]), np.atleast_2d(d["curves"]), strict=True):
            ax.plot(d["periods"], curve, ":", lw=1, label=f"twin, {float(sigma):.2f} px")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("grating period (SLM px)")
        ax.set_ylabel("zero order / flat")
        ax.set_title("SLM crosstalk")
        ax.legend(fontsize="small")


class CrosstalkFit:
    def __init__(self, sigma: float, sigma_se: float, step: float, residual: float, model: np.ndarray,
                 curves: dict[float, np.ndarray]) -> None:
        self.sigma, self.sigma_se, self.step = sigma, sigma_se, step
        self.residual, self.model, self.curves = residual, model, curves


def fit_crosstalk(twin: Twin, zero: ZeroOrder, periods: list[int], measured: np.ndarray,
                  step0: float) -> CrosstalkFit:
    """Least squares of (crosstalk width, phase step) through a copy of the twin."""
    from scipy.optimize import least_squares

    work = copy.deepcopy(twin)
    shape = zero.shape
    masks = torch.as_tensor(np.stack([stripes(shape, period) for period in periods]), dtype=work.dtype)

    def model(sigma: float, step: float) -> np.ndarray:
        with torch.no_grad():
            work.imperfections.slm_crosstalk_px.fill_(max(sigma, 0.0))
        return zero.model(masks * step, work)

    def residuals(x: np.ndarray) -> np.ndarray:
        return model(float(x[0]), float(x[1])) - measured

    starts = [(s, step0) for s in (0.3, 0.9)]
    best = None
    for start in starts:
        sol = least_squares(residuals, np.array(start), bounds=([0.0, 0.2], [MAX_CROSSTALK_PX, 2 * math.pi - 0.2]),
                            x_scale=[0.1, 0.1], diff_step=1e-3)
        if best is None or sol.cost < best.cost:
            best = sol
    sigma, step = float(best.x[0]), float(best.x[1])
    resid = best.fun
    dof = max(len(measured) - 2, 1)
    s2 = float(np.sum(resid**2) / dof)
    jac = best.jac
    try:
        cov = np.linalg.inv(jac.T @ jac) * max(s2, 1e-8)
        sigma_se = float(np.sqrt(max(cov[0, 0], 0.0)))
    except np.linalg.LinAlgError:
        sigma_se = float("inf")
    curves = {s: model(s, step) for s in (max(sigma - 0.1, 0.0), sigma + 0.1)}
    fitted = model(sigma, step)
    return CrosstalkFit(sigma, sigma_se, step, float(np.sqrt(np.mean(resid**2))), fitted, curves)

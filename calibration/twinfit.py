"""Shared tools of the geometric routines: patterns, light levels, spot positions, and
least squares of twin parameters against camera frames.

The geometric routines (fourier, registration, aberrations, global_fit, reregister)
all compare what the camera saw with what the twin predicts for the same
patterns. The comparison is made on dark-subtracted frames against the twin's
camera *power* times one free factor per frame (solved in closed form), so a
geometric fit neither needs nor absorbs the photometric calibration (camera
gain, laser power, its fluctuation from frame to frame).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from calibration.base import CalibrationError
from calibration.photometry import centroid, find_exposure
from calibration.probe import Probe
from labrig.optics.imperfections import BY_NAME, Imperfections
from labrig.optics.quantize import nearest_gray_level
from labrig.optics.system import Twin

#: brightest pixel of a calibration frame, as a fraction of the camera's full scale
TARGET_FILL = 0.6
#: normalisation of each fitted parameter (a step of one of these is "a lot")
PARAM_SCALES: dict[str, float] = {
    "input_shift_px": 0.3,
    "input_rotation_rad": 3e-3,
    "filter_shift_px": 0.3,
    "camera_shift_px": 0.3,
    "camera_rotation_rad": 3e-3,
    "camera_scale": 1e-3,
    "zernike_rad": 0.1,
    "slm_crosstalk_px": 0.1,
    "illumination_center_m": 2e-5,
    "illumination_waist_m": 2e-4,
    "input_contrast": 100.0,
    "pupil_nuisance_rad": 0.1,
    "pupil_apodisation": 0.1,
    "output_envelope": 0.1,
}


def beam_nuisance(twin: Twin) -> tuple[str, ...]:
    """The illumination and contrast parameters to fit alongside the geometry when no estimate of
    them is in `twin` yet (they set the markers' relative brightness): finite starts are put in
    (a beam twice the modulator wide, centred; contrast 300) and their names returned."""
    imp = twin.imperfections
    names: list[str] = []
    if math.isinf(float(imp.illumination_waist_m)):
        g = twin.geometry
        imp.illumination_waist_m.data = torch.tensor(2.0 * g.input.resolution[0] * g.input.pitch_m, dtype=torch.float64)
        names += ["illumination_waist_m", "illumination_center_m"]
    if math.isinf(float(imp.input_contrast)):
        imp.input_contrast.data = torch.tensor(300.0, dtype=torch.float64)
        names.append("input_contrast")
    return tuple(names)


# -- the twin ---------------------------------------------------------------------------------------
def working_twin(twin: Twin, dtype: torch.dtype = torch.float64) -> Twin:
    """A float64 copy of `twin` with its current estimates, for fitting (the caller's twin is untouched)."""
    imp = twin.imperfections
    values = {name: p.detach().clone().to(torch.float64) for name, p in imp.named_parameters()
              if name in BY_NAME}  # the twin's own, not a fit's nuisance terms
    hot = imp.hot_pixels_e_per_s
    if hot is not None:
        values["hot_pixels_e_per_s"] = hot.detach().clone()
    work = Twin(twin.geometry, Imperfections(twin.geometry, dtype=torch.float64, **values), dtype=dtype)
    if twin.residual is not None:  # a learned residual stays as it is (frozen): the fit is of the named terms
        work.residual = twin.residual.clone(dtype)
    return work


def camera_power(twin: Twin, input_gray: np.ndarray | torch.Tensor, filter_gray: np.ndarray | torch.Tensor,
                 laser_power_w: float = 1.0) -> torch.Tensor:
    """Power per camera pixel for input patterns (B, n, n) or (n, n) through one filter pattern."""
    inp = torch.as_tensor(np.asarray(input_gray).astype(np.int64))
    filt = torch.as_tensor(np.asarray(filter_gray).astype(np.int64))
    amp = twin.input_amplitude(inp)
    return twin.camera_power(twin.output_power(amp, twin.filter_transmission(filt), laser_power_w))


# -- patterns ---------------------------------------------------------------------------------------
def filter_gray(twin: Twin, phase: np.ndarray) -> np.ndarray:
    """Gray levels that show `phase` (rad) on the filter SLM through the twin's current LUT estimate."""
    if twin.geometry.filter.modulation != "phase":
        raise ValueError("the geometric routines need a phase filter SLM")
    lut = twin.imperfections.slm_lut.detach().to(torch.float64)
    gray = nearest_gray_level(torch.from_numpy(np.asarray(phase, dtype=np.float64)), lut).numpy()
    return gray.astype(np.uint8 if twin.geometry.filter.levels <= 256 else np.uint16)


def grating_phase(shape: tuple[int, int], k: tuple[float, float]) -> np.ndarray:
    """Blazed grating that moves the output by `k` output-grid samples (rows, cols):
    k cycles across the SLM, so it repeats exactly over the aperture."""
    r = np.arange(shape[0])[:, None] / shape[0]
    c = np.arange(shape[1])[None, :] / shape[1]
    return 2 * math.pi * np.remainder(k[0] * r + k[1] * c, 1.0)


def lens_phase(shape: tuple[int, int], strength: float) -> np.ndarray:
    """A lens a (r^2 + c^2) about the SLM's centre pixel (N // 2, the optical axis of a
    centred SLM), wrapped; `strength` a in rad / px^2."""
    r = np.arange(shape[0])[:, None] - shape[0] // 2
    c = np.arange(shape[1])[None, :] - shape[1] // 2
    return np.remainder(strength * (r * r + c * c), 2 * math.pi)


def input_levels(twin: Twin) -> int:
    return twin.geometry.input.levels


def input_dtype(twin: Twin) -> type:
    return np.uint8 if input_levels(twin) <= 256 else np.uint16


# -- light levels -----------------------------------------------------------------------------------
def expose(probe: Probe, lit_pixels: int) -> float:
    """Set the exposure for what is shown now (`photometry.find_exposure`: its `lit_pixels`-th
    brightest pixel at `TARGET_FILL` of full scale); returns it."""
    dark, _ = probe.dark_reference()
    return find_exposure(probe, dark, target=TARGET_FILL, count=lit_pixels)


def lit(probe: Probe, n: int = 1, lit_pixels: int | None = None) -> np.ndarray:
    """Dark-subtracted mean of `n` checked frames (DN) of what is shown now."""
    dark, _ = probe.dark_reference()
    return probe.grab(n, lit_pixels=lit_pixels) - dark


def noise_weights(probe: Probe, signal: np.ndarray, spec_conversion: float) -> np.ndarray:
    """1 / sigma per pixel: shot noise (spec conversion DN/e- times the camera gain) and dark noise."""
    _, dark_noise = probe.dark_reference()
    gain = float(getattr(probe.bench.camera, "gain", 1.0))
    var = spec_conversion * gain * np.clip(signal, 0, None) + dark_noise**2
    return 1.0 / np.sqrt(var)


# -- spots ------------------------------------------------------------------------------------------
def spot_centroid(img: np.ndarray, around: Sequence[float], radius: float) -> np.ndarray:
    """`photometry.centroid` re-centred on its own result (three passes): (row, col)."""
    c = (float(around[0]), float(around[1]))
    for _ in range(3):
        c = centroid(img, c, radius)
    return np.array(c)


def peak_near(img: np.ndarray, around: Sequence[float], radius: float) -> np.ndarray:
    """Row, col of the brightest pixel within `radius` of `around`."""
    rows, cols = np.indices(img.shape)
    sel = (rows - around[0]) ** 2 + (cols - around[1]) ** 2 <= radius**2
    masked = np.where(sel, img, -np.inf)
    return np.array(np.unravel_index(int(np.argmax(masked)), img.shape), dtype=np.float64)


# -- least squares through the twin ---------------------------------------------------------------
@dataclass
class FitReport:
    values: dict[str, torch.Tensor]
    chi2_start: float
    chi2: float
    dof: int
    amplitudes: np.ndarray
    iterations: int

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / max(self.dof, 1)


def fit_twin(
    twin: Twin,
    names: Sequence[str],
    render: Callable[[Twin], torch.Tensor],
    measured: np.ndarray,
    weights: np.ndarray,
    *,
    iterations: int = 60,
    scales: dict[str, float] | None = None,
    per_frame_amplitude: bool = True,
) -> FitReport:
    """Least squares of the twin parameters `names` so that ``a_f * render(twin)[f]``
    matches `measured[f]` (weighted by `weights`), with the factor a_f of each frame
    solved in closed form (one factor for all frames if not `per_frame_amplitude`).

    `twin` is a `working_twin` and is left holding the fitted values. L-BFGS on
    normalised offsets (`PARAM_SCALES`) keeps px, radians and scale comparable.
    """
    scales = {**PARAM_SCALES, **(scales or {})}
    imp = twin.imperfections
    params = {n: getattr(imp, n) for n in names}
    start = {n: p.detach().clone() for n, p in params.items()}
    offsets = {n: torch.zeros_like(p, requires_grad=True) for n, p in params.items()}
    meas = torch.as_tensor(measured, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)

    def residual_sq() -> tuple[torch.Tensor, torch.Tensor]:
        values = {n: start[n] + offsets[n] * scales.get(n, 1.0) for n in names}
        saved = {n: getattr(imp, n) for n in names}
        try:
            for n in names:  # plain tensors carrying the graph stand in for the Parameters
                imp._parameters[n] = values[n]
            pred = render(twin)
        finally:
            for n in names:
                imp._parameters[n] = saved[n]
        return _projected(pred, meas, w, per_frame_amplitude)

    with torch.no_grad():
        chi2_start, _ = residual_sq()
    opt = torch.optim.LBFGS(list(offsets.values()), lr=1.0, max_iter=iterations, tolerance_grad=1e-10,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    count = [0]
    best = [float(chi2_start), {n: o.detach().clone() for n, o in offsets.items()}]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        try:
            loss, _ = residual_sq()
        except (ValueError, RuntimeError):  # a line-search step to NaN / nowhere: the worst value, so it backs off
            loss = torch.tensor(math.inf, dtype=torch.float64)
        if not loss.requires_grad:  # a step left the parameters nowhere (image off the camera): flat there
            loss = loss + 0.0 * sum(o.sum() for o in offsets.values())
        loss.backward()
        count[0] += 1
        value = float(loss.detach())
        if math.isfinite(value) and value < best[0]:
            best[0], best[1] = value, {n: o.detach().clone() for n, o in offsets.items()}
        return loss

    opt.step(closure)
    with torch.no_grad():
        try:
            chi2_end = float(residual_sq()[0])
        except (ValueError, RuntimeError):
            chi2_end = math.inf
        if not (math.isfinite(chi2_end) and chi2_end <= best[0]):  # a line search that ran away
            for n, o in offsets.items():
                o.copy_(best[1][n])
        chi2, amps = residual_sq()
        fitted = {n: (start[n] + offsets[n] * scales.get(n, 1.0)).detach() for n in names}
        for n in names:
            params[n].data = fitted[n].clone()
    dof = int(np.count_nonzero(np.asarray(weights) * np.ones_like(measured))) - sum(
        int(v.numel()) for v in fitted.values()) - int(amps.numel())
    return FitReport(fitted, float(chi2_start), float(chi2), dof, amps.numpy(), count[0])


def _projected(pred: torch.Tensor, meas: torch.Tensor, w: torch.Tensor,
               per_frame: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted residual after the best factors: one per frame, or one per component when
    `pred` has a component axis (F, J, ...) more than `meas` (F, ...); one overall if not `per_frame`."""
    mw = meas * w
    if pred.ndim == meas.ndim + 1:  # components: meas[f] ~ sum_j a[f, j] pred[f, j]
        pw = (pred * w.unsqueeze(1)).flatten(2)
        m = mw.flatten(1)
        gram = pw @ pw.transpose(1, 2)
        rhs = (pw @ m.unsqueeze(-1)).squeeze(-1)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype) * 1e-12 * gram.diagonal(dim1=1, dim2=2).amax(-1)[:, None, None]
        a = torch.linalg.solve(gram + eye, rhs)
        fit = (a.unsqueeze(-1) * pw).sum(1)
        return ((m - fit) ** 2).sum(), a.detach().reshape(-1)
    pw = pred * w
    dims = tuple(range(1, pred.ndim))
    if per_frame:
        a = (pw * mw).sum(dims) / (pw * pw).sum(dims).clamp_min(1e-300)
        a_b = a.reshape(-1, *([1] * (pred.ndim - 1)))
    else:
        a = (pw * mw).sum() / (pw * pw).sum().clamp_min(1e-300)
        a_b = a
    return ((mw - a_b * pw) ** 2).sum(), a.detach().reshape(-1)


def check_finite(routine: str, report: FitReport) -> None:
    for name, v in report.values.items():
        if not bool(torch.all(torch.isfinite(v))):
            raise CalibrationError(routine, f"the fit did not converge ({name} = {v.tolist()})")
    if not math.isfinite(report.chi2):
        raise CalibrationError(routine, "the fit did not converge (residual is not finite)")

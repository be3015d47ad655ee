"""Fast re-registration: follow the camera's drift against the tiles during a long run.

A bench drifts (thermal, mechanical): after minutes the images sit a fraction of a
pixel away from where the calibration put them, and tiles cut at the calibrated
ROIs lose signal to their neighbours. `measure_shift` finds the displacement of
frames the bench took against the frames the twin expects for the same inputs
and masks (Gauss-Newton on the image gradient, sub-pixel, a few FFTs); `reregister`
moves the twin's camera shift by it. A runner or in-situ training calls them every
N images on frames it takes anyway (no extra frames); the `Reregister` routine
does the same on the registration markers for a quick standalone check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult, no_progress
from calibration.probe import Probe
from calibration.registration import marker_patterns
from calibration.twinfit import camera_power, expose, filter_gray, lit

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: a measured displacement beyond this (camera px) is not drift but a misregistration or wrong frames
MAX_DRIFT_PX = 3.0


def shifted(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    """`img` (..., H, W) moved by d (rows, cols) px: Fourier shift (edges wrap, so keep light off them)."""
    h, w = img.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    ramp = np.exp(-2j * math.pi * (fy * d[0] + fx * d[1]))
    return np.fft.irfft2(np.fft.rfft2(img) * ramp, s=(h, w))


def measure_shift(measured: np.ndarray, expected: np.ndarray, *, iterations: int = 4) -> tuple[np.ndarray, float]:
    """Displacement (rows, cols; camera px) of `measured` against `expected` and the relative
    residual ||m - a E(x - d)|| / ||m|| after it.

    Both are dark-subtracted frames (H, W) or stacks (B, H, W) of the same patterns; one
    brightness factor per frame is fitted (laser power and exposure need not match).
    """
    m = np.asarray(measured, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if m.shape != e.shape:
        raise ValueError(f"measured frames {m.shape} and expected frames {e.shape} differ in shape")
    if m.ndim == 2:
        m, e = m[None], e[None]
    d = np.zeros(2)
    resid = math.inf
    for _ in range(iterations):
        es = shifted(e, d)
        gy, gx = np.gradient(es, axis=(-2, -1))
        a = (m * es).sum(axis=(1, 2)) / np.maximum((es * es).sum(axis=(1, 2)), 1e-300)
        r = m - a[:, None, None] * es
        # m ~ a E(x - d - dd) = a E - a grad E . dd
        jy, jx = -a[:, None, None] * gy, -a[:, None, None] * gx
        jtj = np.array([[(jy * jy).sum(), (jy * jx).sum()], [(jx * jy).sum(), (jx * jx).sum()]])
        jtr = np.array([(jy * r).sum(), (jx * r).sum()])
        if not np.all(np.isfinite(jtj)) or abs(np.linalg.det(jtj)) < 1e-300:
            raise ValueError("the expected frames have no structure to register against")
        dd = np.linalg.solve(jtj, jtr)
        d = d + dd
        resid = float(np.linalg.norm(r) / max(np.linalg.norm(m), 1e-300))
        if np.abs(dd).max() < 1e-4:
            break
    return d, resid


@dataclass
class Reregistration:
    """One re-registration: the image displacement found, the camera shift before and after."""

    displacement_px: np.ndarray
    camera_shift_before: np.ndarray
    camera_shift_after: np.ndarray
    residual: float


def reregister(twin: Twin, measured: np.ndarray, expected: np.ndarray, *,
               max_drift_px: float = MAX_DRIFT_PX) -> Reregistration:
    """Move `twin`'s camera shift so its frames follow the bench's `measured` frames.

    `expected`: the twin's frames (dark-subtracted DN, or power: any scale) for the same
    inputs and masks, rendered with the twin as it is now. The image moves by -1/scale
    px per px of camera shift (the twin's camera model), so the shift changes by
    -displacement * scale. Raises `ValueError` when the frames moved more than
    `max_drift_px` (not drift: the wrong frames, or a bench knocked out of alignment).
    """
    d, resid = measure_shift(measured, expected)
    if float(np.hypot(*d)) > max_drift_px:
        raise ValueError(f"the frames moved {float(np.hypot(*d)):.3g} px against the twin (more than "
                         f"{max_drift_px} px of drift): recalibrate the registration")
    imp = twin.imperfections
    before = imp.camera_shift_px.detach().cpu().numpy().copy()
    scale = float(imp.camera_scale)
    with torch.no_grad():
        imp.camera_shift_px -= torch.as_tensor(d * scale, dtype=imp.camera_shift_px.dtype,
                                               device=imp.camera_shift_px.device)
    return Reregistration(d, before, imp.camera_shift_px.detach().cpu().numpy().copy(), resid)


class Reregister(Routine):
    """The registration markers once more: the camera shift now (a drift check, two frames)."""

    name = "reregister"
    title = "Re-registration: camera shift now"
    estimates = ("camera_shift_px",)
    after = ("registration",)
    #: not run by `calibrate all`: on the full-size `sim` it moved the registration's camera shift
    #: (0.02 / 0.02 px off the truth) by 0.72 / 0.28 px, comparing the markers with a twin whose
    #: Zernike terms are 0.2-0.3 rad off (the shift estimate absorbs the PSF's misfit); run it by
    #: name, or from a runner, against frames the calibrated twin predicts well
    in_all = False
    frames_hint = 2 + 4 + 3

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        progress = progress or no_progress
        geo = twin.geometry
        markers = marker_patterns(twin).max(axis=0)
        flat = filter_gray(twin, np.zeros(geo.filter.resolution))
        lit_px = 4
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.show_filter(flat)
            probe.show_input(markers)
            expose(probe, lit_px)
            measured = lit(probe, 2, lit_pixels=lit_px)
            frames = probe.frames
        with torch.no_grad():
            expected = camera_power(twin, markers, flat).double().cpu().numpy()
        work_shift = twin.imperfections.camera_shift_px.detach().clone()
        try:
            rr = reregister(twin, measured, expected)
            for _ in range(2):  # the twin's own shift model, not the Fourier shift, has the last word
                with torch.no_grad():
                    expected = camera_power(twin, markers, flat).double().cpu().numpy()
                rr2 = reregister(twin, measured, expected)
                rr = Reregistration(rr.displacement_px + rr2.displacement_px, rr.camera_shift_before,
                                    rr2.camera_shift_after, rr2.residual)
        except ValueError as exc:
            raise CalibrationError(self.name, str(exc)) from exc
        finally:
            new = twin.imperfections.camera_shift_px.detach().clone()
            twin.imperfections.camera_shift_px.data = work_shift  # the session writes the result
        progress(1, 1, "done")
        return RoutineResult(
            routine=self.name, values={"camera_shift_px": new.tolist()},
            residual=rr.residual, residual_unit="relative RMS",
            frames=frames,
            plot={"before": rr.camera_shift_before, "after": rr.camera_shift_after},
            notes=f"image moved {np.round(rr.displacement_px, 4).tolist()} px since the registration",
        )

    def plot(self, result: RoutineResult, ax: Any) -> None:
        b, a = np.asarray(result.plot["before"]), np.asarray(result.plot["after"])
        ax.plot([b[1]], [b[0]], "o", label="before")
        ax.plot([a[1]], [a[0]], "x", label="now")
        ax.annotate("", xy=(a[1], a[0]), xytext=(b[1], b[0]), arrowprops={"arrowstyle": "->"})
        ax.set_xlabel("camera shift col (px)")
        ax.set_ylabel("camera shift row (px)")
        ax.set_title(result.notes, fontsize=7)
        ax.legend(fontsize=7)

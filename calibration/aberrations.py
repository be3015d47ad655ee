"""Aberrations: the twin's Zernike terms (defocus, astigmatism, coma, spherical) by phase diversity.

Point sources (the registration markers: single input pixels) light the whole
Fourier plane evenly, so their images are the bench's point-spread function. One
frame through a flat filter cannot tell the sign of an even aberration, nor a
pupil phase from a blur; known extra phases shown on the filter SLM (+-defocus)
make each term change the images differently (astigmatism and coma diversity
frames as well did no better on small benches with the unmodelled effects on). All five
frames are fitted at once through the differentiable twin: the six Zernike
coefficients, with the geometry the images also depend on (camera shift, input
shift and rotation, filter SLM shift) as nuisance parameters that the
registration routine measures better afterwards.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult, no_progress
from calibration.nuisance import APODISATION, PUPIL_MODES, nuisance_values, with_nuisance
from calibration.probe import Probe
from calibration.registration import (
    best_start,
    centroid_start,
    fit_markers,
    input_to_camera_px,
    marker_patterns,
)
from calibration.twinfit import (
    _projected,
    beam_nuisance,
    camera_power,
    check_finite,
    expose,
    filter_gray,
    fit_twin,
    lit,
    noise_weights,
    working_twin,
)
from labrig.optics.aberrations import ZERNIKE_NAMES, zernike_phase

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: coefficient (rad) of the diversity phases shown on the filter SLM
DIVERSITY_RAD = 1.5
#: the diversity terms: (Zernike index, sign); the first frame has none
DIVERSITIES: tuple[tuple[int, float], ...] = ((0, 1.0), (0, -1.0))
#: largest reduced chi^2 of the fit
CHI2_LIMIT = 50.0
#: above this reduced chi^2 the twin's own terms do not explain the frames: the pupil's terms beyond
#: them are fitted as nuisance (`calibration.nuisance`); below it they would only add freedom (on a
#: small bench without unmodelled effects a named-only chi^2 of 1.5-1.9 took them, and astigmatism
#: then moved 0.056 rad off; the full-size `sim` reads 2.7-21 without them)
NUISANCE_CHI2 = 2.0
#: the coarse search's step from zero along each Zernike term (rad) and its iterations per start
START_STEP_RAD = 0.5
START_ITERATIONS = 8
#: the filter shift may move this far (px) in the search: beyond, it is trading against the terms (on a
#: drawn truth it ran 1.7-2 px off and the registration never brought it back); registration measures it
FILTER_STEP_LIMIT_PX = 0.5
#: the coarse grid of (defocus, spherical) that seeds a second centre of the search (rad)
COARSE_DEFOCUS_RAD = tuple(np.round(np.arange(-2.0, 2.001, 0.25), 3))
COARSE_SPHERICAL_RAD = (-0.6, -0.3, 0.0, 0.3, 0.6)
#: input shifts (px) the rescan tries along each axis (an aligned bench is within a pixel), and how
#: many of the best of each direction it refits
RESCAN_PX = tuple(np.round(np.arange(-1.2, 1.201, 0.1), 3))
RESCAN_FITS = 2
#: the Zernike search: one fit from the marker fit's pupil, or the multi-start search (`Aberrations`)
SEARCHES = ("single", "multi")
#: rounds of (rescan, multi-start) at most
RESCAN_ROUNDS = 3
#: relative chi^2 within which a twin with the input a whole pixel nearer the axis is preferred
WHOLE_PIXEL_TIE = 0.02
GEOMETRY = ("input_shift_px", "input_rotation_rad", "camera_shift_px")
#: the twin's parameters the final fit moves
NAMED_FIT = ("zernike_rad", *GEOMETRY, "filter_shift_px")


def zernike_starts(n_terms: int, step: float = START_STEP_RAD) -> list[torch.Tensor]:
    """Zero and +-`step` along each term: the starts of the coarse search."""
    starts = [torch.zeros(n_terms, dtype=torch.float64)]
    for i in range(n_terms):
        for sign in (1.0, -1.0):
            c = torch.zeros(n_terms, dtype=torch.float64)
            c[i] = sign * step
            starts.append(c)
    return starts


def coarse_even(work: Twin, render: Any, measured: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """The best (defocus, spherical) of a coarse grid, the other terms held: the start of the
    multi-start search when the pupil is far from flat. Large defocus trades against spherical
    (a +-0.5 rad start from zero found a minimum 1.9 rad off a -1.2 rad defocus)."""
    imp = work.imperfections
    z0 = imp.zernike_rad.detach().clone()
    meas, w = torch.as_tensor(measured), torch.as_tensor(weights)
    best = (math.inf, z0)
    for d in COARSE_DEFOCUS_RAD:
        for sph in COARSE_SPHERICAL_RAD:
            c = z0.clone()
            c[0], c[5] = d, sph
            imp.zernike_rad.data = c
            with torch.no_grad():
                chi2 = float(_projected(render(work), meas, w, True)[0])
            if chi2 < best[0]:
                best = (chi2, c)
    imp.zernike_rad.data = z0
    return best[1]


def multi_start(work: Twin, render: Any, measured: np.ndarray, weights: np.ndarray) -> Any:
    """The Zernike terms (with the filter SLM's shift, which moves the diversity phases across
    the pupil and so mimics tilt-like terms) fitted briefly from each of `zernike_starts` around
    the current values and around the best point of `coarse_even`, then to convergence from the
    best: PSF fits have local minima (a fit from zero alone stuck 0.5-1 rad off on drawn truths
    whose terms were all under 0.25 rad)."""
    imp = work.imperfections
    names = ("zernike_rad", "filter_shift_px")
    z0, f0 = imp.zernike_rad.detach().clone(), imp.filter_shift_px.detach().clone()
    centres = [z0]
    coarse = coarse_even(work, render, measured, weights)
    if float((coarse - z0).abs().max()) > START_STEP_RAD / 2:
        centres.append(coarse)
    best: tuple[float, torch.Tensor, torch.Tensor] = (math.inf, z0, f0)
    for centre in centres:
        for c in zernike_starts(len(z0)):
            imp.zernike_rad.data, imp.filter_shift_px.data = centre + c, f0.clone()
            report = fit_twin(work, names, render, measured, weights, iterations=START_ITERATIONS)
            moved = float((imp.filter_shift_px.detach() - f0).abs().max())
            if math.isfinite(report.chi2) and report.chi2 < best[0] and moved <= FILTER_STEP_LIMIT_PX:
                best = (report.chi2, imp.zernike_rad.detach().clone(), imp.filter_shift_px.detach().clone())
    imp.zernike_rad.data, imp.filter_shift_px.data = best[1], best[2]
    report = fit_twin(work, names, render, measured, weights, iterations=25)
    if float((imp.filter_shift_px.detach() - f0).abs().max()) > FILTER_STEP_LIMIT_PX:  # ran off: terms alone
        imp.zernike_rad.data, imp.filter_shift_px.data = best[1], f0.clone()
        report = fit_twin(work, ("zernike_rad",), render, measured, weights, iterations=25)
    return report


def rescan_input_shift(work: Twin, render: Any, measured: np.ndarray, weights: np.ndarray) -> bool:
    """Scan the input shift along each axis over RESCAN_PX (the image kept in place by the camera
    shift moved the other way, as `fit_markers`' valley scan does, and the image moved with it) on
    all frames, and refit from the best point if it beats the
    current one. The marker fit chose the shift with a flat pupil, and a whole input pixel traded
    against the camera shift changes the frames little: a wrong start there held the fit 0.6-1 px
    off and bent the Zernike terms by up to 1 rad. True if it moved."""
    imp = work.imperfections
    meas, w = torch.as_tensor(measured), torch.as_tensor(weights)
    m = input_to_camera_px(work)
    moved = False
    current = fit_twin(work, (*GEOMETRY, "filter_shift_px"), render, measured, weights,
                       iterations=START_ITERATIONS).chi2
    for axis in (0, 1):
        kept = {n: getattr(imp, n).detach().clone() for n in (*GEOMETRY, "zernike_rad", "filter_shift_px")}
        s0, c0 = kept["input_shift_px"], kept["camera_shift_px"]
        scan = []
        for target in RESCAN_PX:
            d = torch.zeros(2, dtype=torch.float64)
            d[axis] = float(target) - float(s0[axis])
            if abs(float(d[axis])) < 0.15:
                continue
            for sign in (-1.0, 1.0):  # along the valley, and across it (the image moved as well)
                imp.input_shift_px.data, imp.camera_shift_px.data = s0 + d, c0 + sign * m * d
                with torch.no_grad():
                    scan.append((float(_projected(render(work), meas, w, True)[0]), sign * m * d, d, sign))
        tried = [t for sign in (-1.0, 1.0)  # the best few of each direction
                 for t in sorted((t for t in scan if t[3] == sign), key=lambda t: t[0])[:RESCAN_FITS]]
        for chi2, dc, d, _ in tried:
            for n, v in kept.items():
                getattr(imp, n).data = v.clone()
            imp.input_shift_px.data, imp.camera_shift_px.data = s0 + d, c0 + dc
            chi2 = fit_twin(work, (*GEOMETRY, "filter_shift_px"), render, measured, weights,
                            iterations=START_ITERATIONS).chi2
            if chi2 < current:
                current, moved = chi2, True
                kept = {n: getattr(imp, n).detach().clone() for n in kept}
        for n, v in kept.items():
            getattr(imp, n).data = v.clone()
    # a whole input pixel traded against the camera shift is all but invisible (the same frames to
    # within noise): of such twins, the one with the input nearest the axis
    whole = torch.round(imp.input_shift_px.detach())
    if bool(whole.abs().max() > 0):
        kept = {n: getattr(imp, n).detach().clone() for n in (*GEOMETRY, "zernike_rad", "filter_shift_px")}
        imp.input_shift_px.data = kept["input_shift_px"] - whole
        imp.camera_shift_px.data = kept["camera_shift_px"] + m * whole
        chi2 = fit_twin(work, (*GEOMETRY, "filter_shift_px"), render, measured, weights,
                        iterations=START_ITERATIONS).chi2
        if chi2 > current * (1 + WHOLE_PIXEL_TIE):
            for n, v in kept.items():
                getattr(imp, n).data = v.clone()
    return moved


def diversity_phases(twin: Twin) -> np.ndarray:
    """(F, N, N) phases shown on the filter: flat, then each diversity term."""
    grid = twin.geometry.fourier_grid
    out = [np.zeros(twin.geometry.filter.resolution)]
    for index, sign in DIVERSITIES:
        c = torch.zeros(len(ZERNIKE_NAMES), dtype=torch.float64)
        c[index] = sign * DIVERSITY_RAD
        out.append(zernike_phase(c, grid).numpy())
    return np.stack(out)


class Aberrations(Routine):
    """Phase diversity on point sources: the Zernike coefficients of the Fourier-plane phase."""

    name = "aberrations"
    title = "Aberrations: Zernike terms by phase diversity"
    estimates = ("zernike_rad",)
    after = ("fourier", "slm_lut")
    frames_hint = 5 * 2 + 4 + 4

    def __init__(self, search: str = "single") -> None:
        """`search="multi"`: the multi-start search and input-shift rescan (`multi_start`,
        `rescan_input_shift`), for a bench whose plain fit sticks in a local minimum (large
        aberrations; drawn truth 2 stuck 0.3-1 rad off). Same frames, about 7x the CPU (263 s
        against 38 s for `calibrate all` on `sim`, over the 3-minute budget), and with the
        unmodelled pupil of `sim` no better, so not the default."""
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, not {search!r}")
        self.search = search

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        progress = progress or no_progress
        geo = twin.geometry
        if geo.filter.modulation != "phase":
            raise CalibrationError(self.name, "needs a phase filter SLM (diversity phases)")
        work = working_twin(twin)
        markers = marker_patterns(twin)
        shown = markers.max(axis=0)
        grays = np.stack([filter_gray(twin, p) for p in diversity_phases(twin)])
        lit_px = max(2, len(markers) // 2)
        conversion = geo.camera.conversion_dn_per_e
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.show_input(shown)
            exposures = []
            for g in grays[:3]:  # flat and +-defocus: the brightest of the set is among them
                probe.show_filter(g)
                exposures.append(expose(probe, lit_px))
            probe.set_exposure(min(exposures))
            imgs = []
            for i, g in enumerate(grays):
                progress(i, len(grays) + 1, f"diversity frame {i + 1}/{len(grays)}")
                probe.show_filter(g)
                imgs.append(lit(probe, 2, lit_pixels=lit_px))
            measured = np.stack(imgs)
            weights = np.stack([noise_weights(probe, m, conversion) for m in measured])
            frames = probe.frames
        progress(len(grays), len(grays) + 1, "fitting")

        def render_flat(t: Twin) -> torch.Tensor:
            return camera_power(t, shown, grays[0]).unsqueeze(0)

        def render_all(t: Twin) -> torch.Tensor:
            return torch.stack([camera_power(t, shown, g) for g in grays])

        # the geometry from the flat frame first (as registration does), then everything at once,
        # with the pupil's terms beyond the twin's set as nuisance (`calibration.nuisance`): without
        # them the named terms bend to mimic an SLM's flatness error or trefoil
        nuisance = beam_nuisance(work)  # before the illumination routine: fitted, not reported
        centroid_start(work, markers, grays[0], measured[0])
        best_start(work, render_flat, measured[0], weights[0])
        fit_markers(work, GEOMETRY, render_flat, measured[0], weights[0], nuisance)
        if self.search == "multi":
            start = multi_start(work, render_all, measured, weights)
            # the input shift's sub-pixel start was chosen with a flat pupil: with the terms now roughly
            # known, choose it again on all frames (a wrong start there held the fit 0.5-1 px off)
            for _ in range(RESCAN_ROUNDS):  # the terms and the shift bend each other (coma moves the spots)
                if not rescan_input_shift(work, render_all, measured, weights):
                    break
                start = multi_start(work, render_all, measured, weights)
        else:
            start = fit_twin(work, ("zernike_rad",), render_all, measured, weights, iterations=25)
        report = fit_twin(work, ("zernike_rad", *GEOMETRY, "filter_shift_px", *nuisance), render_all, measured,
                          weights, iterations=30)
        with_nuisance(work)  # radial orders up to 6: more freedom (order 10) found worse minima on small benches
        terms = ""
        if report.reduced_chi2 > NUISANCE_CHI2:  # converged, or only slow? one more pass decides
            report = fit_twin(work, ("zernike_rad", *GEOMETRY, "filter_shift_px", *nuisance), render_all, measured,
                              weights, iterations=20)
        named_chi2 = report.reduced_chi2
        if named_chi2 > NUISANCE_CHI2:  # the frames show more than the twin's terms explain
            fit_twin(work, ("zernike_rad", PUPIL_MODES, APODISATION), render_all, measured, weights, iterations=30)
            report = fit_twin(work, ("zernike_rad", PUPIL_MODES, APODISATION, *GEOMETRY, "filter_shift_px",
                                     *nuisance), render_all, measured, weights, iterations=30)
            terms = (f" {named_chi2:.3g}; with {len(getattr(work.imperfections, PUPIL_MODES))} pupil terms beyond "
                     "the twin's as nuisance")
            # or was the named-only fit stuck? From where the nuisance fit led, without the nuisance terms:
            # if the twin's own terms now explain the frames, they are the answer (a bench without
            # unmodelled effects: the nuisance terms would only absorb noise and bend the named ones)
            nuisance_state = {n: getattr(work.imperfections, n).detach().clone()
                              for n in (*NAMED_FIT, PUPIL_MODES, APODISATION, *nuisance)}
            for n in (PUPIL_MODES, APODISATION):
                getattr(work.imperfections, n).data.zero_()
            refit = fit_twin(work, ("zernike_rad", *GEOMETRY, "filter_shift_px", *nuisance), render_all, measured,
                             weights, iterations=20)
            if refit.reduced_chi2 <= NUISANCE_CHI2:
                report, terms = refit, f" {named_chi2:.3g}, {refit.reduced_chi2:.3g} refitted from the nuisance fit"
            else:
                for n, v in nuisance_state.items():
                    getattr(work.imperfections, n).data = v
        check_finite(self.name, report)
        if report.reduced_chi2 > CHI2_LIMIT:
            raise CalibrationError(self.name, f"the twin does not explain the diversity frames (reduced chi^2 "
                                              f"{report.reduced_chi2:.3g} > {CHI2_LIMIT})")
        zernike = work.imperfections.zernike_rad.detach()
        with torch.no_grad():
            fitted = (render_all(work) * torch.as_tensor(report.amplitudes)[:, None, None]).numpy()
        progress(len(grays) + 1, len(grays) + 1, "done")
        return RoutineResult(
            routine=self.name,
            values={"zernike_rad": zernike.tolist()},
            residual=float(math.sqrt(report.reduced_chi2)), residual_unit="noise sigma (RMS)",
            frames=frames,
            products=nuisance_values(work),
            plot={"names": list(ZERNIKE_NAMES), "zernike": zernike.numpy(), "measured": measured[0],
                  "fitted": fitted[0]},
            notes=f"reduced chi^2 {start.reduced_chi2:.3g} (Zernike alone) -> {report.reduced_chi2:.3g} "
                  f"(with the geometry{terms}); diversity {DIVERSITY_RAD} rad",
        )

    def plot(self, result: RoutineResult, ax: Any) -> None:
        names, z = result.plot["names"], np.asarray(result.plot["zernike"])
        ax.bar(range(len(z)), z, color="C0")
        ax.set_xticks(range(len(z)))
        ax.set_xticklabels(names, rotation=30, fontsize=7)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("coefficient (rad)")
        ax.set_title(f"Zernike terms (residual {result.residual:.3g} sigma)", fontsize=8)

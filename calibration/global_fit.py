"""The global twin fit: every geometric and optical parameter at once, on frames like a deployment's.

Each routine fits its few parameters on patterns chosen to isolate them; what is
left are the couplings (a coma tilt against a camera shift, crosstalk against the
LUT's reach, the illumination against the input's placement). This routine shows
smooth random input images through a multiplexed filter mask (four tiles, each a
grating plus a random smooth phase, as a compiled program puts channels on the
camera) and fits all the parameters below through the differentiable twin,
starting from the routines' estimates. Held-back images, never fitted, give the
quality figure that matters: the bench-vs-twin tile error, for the uncalibrated
(ideal) twin, the routines' estimates and the fitted twin.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult, no_progress
from calibration.nuisance import (
    APODISATION,
    OUTPUT_ENVELOPE,
    PUPIL_MODES,
    carried,
    nuisance_values,
    with_nuisance,
)
from calibration.probe import Probe
from calibration.twinfit import (
    camera_power,
    check_finite,
    expose,
    filter_gray,
    fit_twin,
    input_dtype,
    noise_weights,
    working_twin,
)
from labrig.optics.system import Twin

if TYPE_CHECKING:
    from labrig.bench.bench import Bench

#: the parameters the global fit moves. Not the photometric ones (LUT, gain, offset), and not the
#: input's shift and rotation: on smooth images they trade against the camera shift along a valley
#: (on the full-size `sim` the fit walked 0.86 px along it), which the registration's point
#: sources pin down and these frames do not
FITTED: tuple[str, ...] = (
    "filter_shift_px", "camera_shift_px", "zernike_rad", "slm_crosstalk_px", "illumination_center_m",
)
#: the camera's rotation and scale are not moved: the Fourier routine's grating spots measure them
#: whatever the optics do to the spots' shape, while these frames let them absorb what the twin
#: lacks (on `sim` the fit took the scale 0.34 % and the rotation 0.04 deg away, for the output
#: plane's envelope); the bench's terms beyond the twin (`calibration.nuisance`) are fitted
#: alongside, and the held-back error is reported with them (what a richer twin would reach) and
#: without them (what the calibrated twin, which the compiler uses, predicts)
#: the bench's terms beyond the twin, fitted alongside (`calibration.nuisance`), never reported as the twin's
NUISANCE: tuple[str, ...] = (PUPIL_MODES, APODISATION, OUTPUT_ENVELOPE)
#: probe images fitted, and held back
FIT_IMAGES, HELD_IMAGES = 6, 4
#: a fit whose held-back error grew by more than this factor over the start is refused
WORSE_LIMIT = 1.5
#: seed of the probe images and the mask's random phases (the same probes every run)
SEED = 1234


def smooth_random(rng: np.random.Generator, shape: tuple[int, int], correlation_px: float) -> np.ndarray:
    """A smooth random field (Gaussian-filtered white noise), zero mean, unit RMS."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    field = np.fft.ifft2(np.fft.fft2(white) * np.exp(-2 * (math.pi * correlation_px) ** 2 * (fy**2 + fx**2))).real
    return field / max(float(field.std()), 1e-12)


def probe_images(twin: Twin, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n, n) gray levels: smooth random images with dark patches (edges, structure)."""
    n = twin.geometry.input.resolution
    top = twin.geometry.input.levels - 1
    out = []
    for _ in range(count):
        img = np.clip(0.5 + 0.35 * smooth_random(rng, n, max(1.0, min(n) / 10)), 0, 1)
        out.append(np.round(top * img))
    return np.stack(out).astype(input_dtype(twin))


def probe_mask(twin: Twin, rng: np.random.Generator) -> np.ndarray:
    """Phase of a four-tile multiplexed mask: gratings to (+-K, +-K) output samples, each with a
    random smooth phase (a kernel); the phase of their sum, as a phase-only SLM shows it."""
    geo = twin.geometry
    n_f = geo.filter.resolution
    ratio = geo.output_grid.pitch_m[0] / geo.camera.pitch_m
    k = int(min(min(n_f) // 4, 0.27 * min(geo.camera.resolution) / ratio))
    r = np.arange(n_f[0])[:, None] / n_f[0]
    c = np.arange(n_f[1])[None, :] / n_f[1]
    total = np.zeros(n_f, dtype=np.complex128)
    for sy in (-1, 1):
        for sx in (-1, 1):
            phase = 2 * math.pi * (sy * k * r + sx * k * c) + 1.5 * smooth_random(rng, n_f, min(n_f) / 16)
            total += np.exp(1j * phase)
    return np.angle(total)


def tile_error(measured: np.ndarray, predicted: np.ndarray) -> float:
    """||bench - a twin|| / ||bench|| over all frames, with one brightness factor a for all of them
    (the twin's absolute power is the photometric routines' business, not this figure's)."""
    a = float((measured * predicted).sum() / max(float((predicted * predicted).sum()), 1e-300))
    return float(np.linalg.norm(measured - a * predicted) / max(float(np.linalg.norm(measured)), 1e-300))


class GlobalFit(Routine):
    """All twin parameters at once through the twin, on random images through a multiplexed mask."""

    name = "global_fit"
    title = "Global twin fit"
    estimates = FITTED
    after = ("fourier", "aberrations", "registration")
    frames_hint = FIT_IMAGES + HELD_IMAGES + 4 + 3

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        progress = progress or no_progress
        geo = twin.geometry
        if geo.filter.modulation != "phase":
            raise CalibrationError(self.name, "needs a phase filter SLM")
        rng = np.random.default_rng(SEED)
        images = probe_images(twin, FIT_IMAGES + HELD_IMAGES, rng)
        mask = filter_gray(twin, probe_mask(twin, rng))
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.show_filter(mask)
            probe.show_input(images[0])
            expose(probe, 50)
            probe.set_exposure(0.7 * float(bench.camera.exposure_s))  # other images may be brighter
            progress(0, 3, "probe frames")
            dark, _ = probe.dark_reference()
            frames = probe.grab_inputs(images).astype(np.float64) - dark[None]
            weights = np.stack([noise_weights(probe, f, geo.camera.conversion_dn_per_e) for f in frames])
            count = probe.frames
        fit_m, held_m = frames[:FIT_IMAGES], frames[FIT_IMAGES:]
        fit_w = weights[:FIT_IMAGES]
        fit_in, held_in = images[:FIT_IMAGES], images[FIT_IMAGES:]
        progress(1, 3, "fitting")
        work = with_nuisance(working_twin(twin), carried(twin))
        if math.isinf(float(work.imperfections.illumination_waist_m)):
            fitted = tuple(n for n in FITTED if n != "illumination_center_m")  # no beam profile to place
        else:
            fitted = FITTED

        def render(t: Twin, inputs: np.ndarray = fit_in) -> torch.Tensor:
            return camera_power(t, inputs, mask)

        def held_error(t: Twin) -> float:
            with torch.no_grad():
                return tile_error(held_m, render(t, held_in).numpy())

        ideal = held_error(working_twin(Twin(geo)))
        start = held_error(working_twin(twin))
        start_nuisance = held_error(work)
        report = fit_twin(work, (*fitted, *NUISANCE), render, fit_m, fit_w, iterations=40)
        check_finite(self.name, report)
        with_terms = held_error(work)
        named = working_twin(work)  # the fitted named parameters alone: the calibrated twin
        final = held_error(named)
        if final > WORSE_LIMIT * start:
            raise CalibrationError(self.name, f"the fit made the held-back images worse ({start:.3g} -> {final:.3g}): "
                                              "the routines' estimates or the probe frames are bad")
        terms = nuisance_values(work)
        work = named
        kept = final >= start  # no better on images it never saw: keep the routines' estimates
        if kept:
            work, final = working_twin(twin), start
        values = {n: getattr(work.imperfections, n).detach().tolist() for n in fitted}
        with torch.no_grad():
            pred = render(work, held_in[:1]).numpy()[0]
            pred_start = render(working_twin(twin), held_in[:1]).numpy()[0]
        a = float((held_m[0] * pred).sum() / (pred * pred).sum())
        a0 = float((held_m[0] * pred_start).sum() / (pred_start * pred_start).sum())
        progress(3, 3, "done")
        return RoutineResult(
            routine=self.name, values=values,
            residual=final, residual_unit="held-back tile error (relative)",
            frames=count,
            products={**terms, "held_error_ideal": ideal, "held_error_start": start,
                      "held_error_final": final, "held_error_start_with_nuisance": start_nuisance,
                      "held_error_with_nuisance": with_terms,
                      "reduced_chi2_start": report.chi2_start / max(report.dof, 1),
                      "reduced_chi2": report.reduced_chi2},
            plot={"before": held_m[0] - a0 * pred_start, "after": held_m[0] - a * pred,
                  "errors": [ideal, start, final]},
            notes=f"held-back tile error: ideal twin {ideal:.3g}, routines' estimates {start:.3g}, "
                  f"fitted {final:.3g} ({ideal / max(final, 1e-12):.3g}x down; with the nuisance terms beyond the "
                  f"twin {with_terms:.3g}, {ideal / max(with_terms, 1e-12):.3g}x); reduced chi^2 "
                  f"{report.chi2_start / max(report.dof, 1):.3g} -> {report.reduced_chi2:.3g}"
                  + ("; the fit did not improve the held-back images: the routines' estimates kept" if kept else ""),
        )

    def plot(self, result: RoutineResult, ax: Any) -> None:
        before, after = np.asarray(result.plot["before"]), np.asarray(result.plot["after"])
        lim = float(np.abs(before).max()) or 1.0
        ax.imshow(np.hstack([before, after]), cmap="RdBu_r", vmin=-lim, vmax=lim)
        e = result.plot["errors"]
        ax.set_title(f"held-back frame, bench - twin: routines' estimates | fitted\n"
                     f"tile error ideal {e[0]:.3g}, start {e[1]:.3g}, fitted {e[2]:.3g}", fontsize=7)
        ax.set_axis_off()

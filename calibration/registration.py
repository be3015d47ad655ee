"""Input modulator <-> camera registration, and the filter SLM's shift against the optical axis.

Markers (single input pixels at the centre and near the corners) imaged through a
flat filter pin the input's shift and rotation composed with the camera's shift;
the camera's rotation and scale come from the Fourier routine (gratings move the
image by known amounts whatever the input does), so the markers' rotation left
over is the input's. A whole-pixel shift of the input and the opposite camera
shift give identical frames (every frame of a 4f bench is shift-invariant), so
only the fractional part of the input shift is observable - through how a shifted
input pixel spreads over the simulation grid versus how a shifted camera pixel
integrates the output: the fit starts at zero input shift and finds the fraction
in (-0.5, 0.5) px, the combined translation (what tiles need) is exact either way.

The filter SLM's shift moves every mask against the spectrum; a lens phase
a r^2 shown off the axis by d adds a tilt 2 a d, so a smooth blob imaged through
+a and -a moves by +-a N d / pi samples: two frames fitted through the twin.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult, no_progress
from calibration.nuisance import carried, with_nuisance
from calibration.probe import Probe
from calibration.twinfit import (
    _projected,
    beam_nuisance,
    camera_power,
    check_finite,
    expose,
    filter_gray,
    fit_twin,
    input_dtype,
    lens_phase,
    lit,
    noise_weights,
    spot_centroid,
    working_twin,
)

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: image shift (output samples) per filter-SLM pixel of shift that the lens patterns give
LENS_GAIN = 0.5
#: fractional input shifts (px) tried as the fit's start (none on the flat spot at zero)
START_FRACTIONS = (-0.45, -0.3, -0.15, 0.15, 0.3, 0.45)
#: input shifts (px) scanned along the input/camera valley after the marker fit
VALLEY_SCAN = tuple(np.round(np.arange(-0.5, 0.501, 0.05), 3))
#: largest reduced chi^2 (noise-weighted residual) of a registration fit
CHI2_LIMIT = 50.0


def marker_positions(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """A sparse grid of single pixels over the whole input modulator (every `spacing` px,
    so each marker's image stands alone; the corners give the rotation its lever arm)."""
    spacing = max(4, min(shape) // 8)
    rows = range(spacing // 2, shape[0], spacing)
    cols = range(spacing // 2, shape[1], spacing)
    return [(r, c) for r in rows for c in cols]


def marker_patterns(twin: Twin) -> np.ndarray:
    """(J, n, n) input patterns: one marker pixel each (their sum is what is shown)."""
    geo = twin.geometry
    pos = marker_positions(geo.input.resolution)
    out = np.zeros((len(pos), *geo.input.resolution), dtype=input_dtype(twin))
    for j, (r, c) in enumerate(pos):
        out[j, r, c] = geo.input.levels - 1
    return out


def blob_pattern(twin: Twin) -> np.ndarray:
    """A smooth (raised-cosine) disc over half the input: its spectrum stays near the axis."""
    geo = twin.geometry
    n = geo.input.resolution
    r = np.hypot(*(np.indices(n) - np.array([n[0] // 2, n[1] // 2])[:, None, None]))
    radius = 0.25 * min(n)
    amp = np.where(r < radius, 0.5 * (1 + np.cos(np.pi * r / radius)), 0.0)
    return np.round((geo.input.levels - 1) * amp**2).astype(input_dtype(twin))


def lens_strength(twin: Twin) -> float:
    """a (rad / px^2) of the lens patterns: LENS_GAIN samples of image shift per px of filter shift."""
    return LENS_GAIN * math.pi / min(twin.geometry.filter.resolution)


def centroid_shift(measured: np.ndarray, predicted: np.ndarray, around: list[np.ndarray], radius: float) -> np.ndarray:
    """Mean (row, col) displacement of measured spot centroids from the predicted ones."""
    d = [spot_centroid(measured, a, radius) - spot_centroid(predicted, a, radius) for a in around]
    return np.mean(d, axis=0)


def _centroids(img: np.ndarray, singles: np.ndarray, radius: float) -> np.ndarray:
    around = [np.array(np.unravel_index(np.argmax(p), p.shape), dtype=float) for p in singles]
    return np.concatenate([spot_centroid(img, a, radius) for a in around])


def gauss_newton(params: list[tuple[torch.Tensor, float]], model: Any, target: np.ndarray,
                 iterations: int = 4, tol: float = 0.01) -> None:
    """Move `params` (tensors, finite-difference step) so `model()` (features) meets `target`:
    Gauss-Newton with derivatives taken through the twin, so no sign convention is assumed."""
    for _ in range(iterations):
        pred = model()
        cols = []
        for p, h in params:
            for i in range(p.numel()):
                p.data.view(-1)[i] += h
                cols.append((model() - pred) / h)
                p.data.view(-1)[i] -= h
        delta, *_ = np.linalg.lstsq(np.stack(cols, axis=1), target - pred, rcond=None)
        k = 0
        for p, _ in params:
            p.data += torch.as_tensor(delta[k:k + p.numel()], dtype=p.dtype).reshape(p.shape)
            k += p.numel()
        if np.all(np.abs(delta) < tol * np.repeat([step for _, step in params], [p.numel() for p, _ in params])):
            break


def centroid_start(work: Twin, markers: np.ndarray, flat: np.ndarray, measured: np.ndarray) -> None:
    """Marker centroids matched over (camera shift, input rotation): a start for the frame fit.
    The windows follow the predicted markers from round to round."""
    imp = work.imperfections
    radius = 2.5 * max(1.0, input_to_camera_px(work))
    for _ in range(3):
        with torch.no_grad():
            singles = camera_power(work, markers, flat).numpy()
        around = [np.array(np.unravel_index(np.argmax(p), p.shape), dtype=float) for p in singles]
        meas = np.concatenate([spot_centroid(measured, a, radius) for a in around])

        def model(around: list[np.ndarray] = around) -> np.ndarray:
            with torch.no_grad():
                img = camera_power(work, markers.max(axis=0), flat).numpy()
            return np.concatenate([spot_centroid(img, a, radius) for a in around])

        gauss_newton([(imp.camera_shift_px, 0.2), (imp.input_rotation_rad, 2e-3)], model, meas, iterations=2)


def lens_start(work: Twin, blob: np.ndarray, lenses: np.ndarray, measured: np.ndarray) -> None:
    """The lens frames' centroids matched over the filter shift: a start for their frame fit."""
    def cents(imgs: np.ndarray) -> np.ndarray:
        out = []
        for img in imgs:
            rows, cols = np.indices(img.shape)
            w = np.clip(img, 0, None)
            out += [(w * rows).sum() / w.sum(), (w * cols).sum() / w.sum()]
        return np.array(out)

    def model() -> np.ndarray:
        with torch.no_grad():
            return cents(np.stack([camera_power(work, blob, g).numpy() for g in lenses]))

    gauss_newton([(work.imperfections.filter_shift_px, 0.2)], model, cents(measured))


def input_to_camera_px(twin: Twin) -> float:
    """Camera pixels per input-modulator pixel (|magnification| x pitch ratio / camera scale)."""
    g = twin.geometry
    return g.input.pitch_m * g.focal2_m / g.focal1_m / g.camera.pitch_m / float(twin.imperfections.camera_scale)


def best_start(work: Twin, render: Any, measured: np.ndarray, weights: np.ndarray) -> None:
    """Move `work`'s input shift to the best of START_FRACTIONS x START_FRACTIONS (px), keeping the
    image in place with the same camera shift (both move it alike): the start of the fit."""
    imp = work.imperfections
    s0, c0 = imp.input_shift_px.detach().clone(), imp.camera_shift_px.detach().clone()
    m = input_to_camera_px(work)
    meas, w = torch.as_tensor(measured[None]), torch.as_tensor(weights[None])
    best = (math.inf, s0, c0)
    for dy in START_FRACTIONS:
        for dx in START_FRACTIONS:
            d = torch.tensor([dy, dx], dtype=torch.float64) - (s0 - torch.round(s0))
            imp.input_shift_px.data, imp.camera_shift_px.data = s0 + d, c0 + m * d
            with torch.no_grad():
                chi2, _ = _projected(render(work), meas, w, True)
            if float(chi2) < best[0]:
                best = (float(chi2), s0 + d, c0 + m * d)
    imp.input_shift_px.data, imp.camera_shift_px.data = best[1], best[2]


def fit_markers(work: Twin, geometry: tuple[str, ...], render: Any, measured: np.ndarray,
                weights: np.ndarray, nuisance: tuple[str, ...] = ()) -> Any:
    """The marker frame fit, then a scan along each axis of the valley of the fit's landscape
    (input shift up, camera shift down: found empirically the flattest direction, where the
    pixel structure ripples the landscape and the fit stops short): the best point of the scan
    is fitted again, and kept if better."""
    imp = work.imperfections
    names = (*geometry, *nuisance)
    fit_twin(work, names[1:], render, measured[None], weights[None], iterations=20)
    report = fit_twin(work, names, render, measured[None], weights[None], iterations=40)
    m = input_to_camera_px(work)
    meas, w = torch.as_tensor(measured[None]), torch.as_tensor(weights[None])
    for axis in (0, 1):
        s0, c0 = imp.input_shift_px.detach().clone(), imp.camera_shift_px.detach().clone()
        best = (math.inf, 0.0)  # the best point off the fitted one: a second start
        for target in VALLEY_SCAN:
            if abs(target - float(s0[axis])) < 0.075:
                continue
            d = torch.zeros(2, dtype=torch.float64)
            d[axis] = target - float(s0[axis])
            imp.input_shift_px.data, imp.camera_shift_px.data = s0 + d, c0 - m * d
            with torch.no_grad():
                chi2 = float(_projected(render(work), meas, w, True)[0])
            if chi2 < best[0]:
                best = (chi2, float(d[axis]))
        imp.input_shift_px.data, imp.camera_shift_px.data = s0, c0
        if best[1] == 0.0:
            continue
        kept = {n: getattr(imp, n).detach().clone() for n in names}
        d = torch.zeros(2, dtype=torch.float64)
        d[axis] = best[1]
        imp.input_shift_px.data += d
        imp.camera_shift_px.data -= m * d
        other = fit_twin(work, names, render, measured[None], weights[None], iterations=40)
        if other.chi2 < report.chi2:
            report = other
        else:
            for n in names:
                getattr(imp, n).data = kept[n]
    return report


class Registration(Routine):
    """Markers and lens patterns: input shift and rotation, camera shift, filter SLM shift."""

    name = "registration"
    title = "Registration: input modulator -> camera, filter SLM shift"
    estimates = ("input_shift_px", "input_rotation_rad", "camera_shift_px", "filter_shift_px")
    after = ("fourier", "slm_lut", "aberrations")  # marker images need the PSF: aberrations first
    frames_hint = 2 + 2 + 8 + 6

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        progress = progress or no_progress
        geo = twin.geometry
        if geo.filter.modulation != "phase":
            raise CalibrationError(self.name, "needs a phase filter SLM (lens patterns)")
        # the pupil's terms beyond the twin's set, as the aberrations routine found them, held fixed:
        # the marker images' shape (what splits the input shift from the camera's) depends on them
        work = with_nuisance(working_twin(twin), carried(twin))
        n_f = geo.filter.resolution
        flat = filter_gray(twin, np.zeros(n_f))
        markers = marker_patterns(twin)
        shown = markers.max(axis=0)
        blob = blob_pattern(twin)
        a = lens_strength(twin)
        lenses = np.stack([filter_gray(twin, lens_phase(n_f, s * a)) for s in (1.0, -1.0)])
        conversion = geo.camera.conversion_dn_per_e
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            progress(0, 3, "markers")
            probe.show_filter(flat)
            probe.show_input(shown)
            expose(probe, max(2, len(markers) // 2))
            marker_img = lit(probe, 2, lit_pixels=max(2, len(markers) // 2))
            marker_w = noise_weights(probe, marker_img, conversion)
            progress(1, 3, "lens patterns")
            probe.show_input(blob)
            exposures = []
            for g in lenses:  # one exposure for both: the brighter must not saturate
                probe.show_filter(g)
                exposures.append(expose(probe, 16))
            probe.set_exposure(min(exposures))
            lens_imgs = []
            for g in lenses:
                probe.show_filter(g)
                lens_imgs.append(lit(probe, 1, lit_pixels=16))
            lens_img = np.stack(lens_imgs)
            lens_w = np.stack([noise_weights(probe, m, conversion) for m in lens_img])
            frames = probe.frames
        progress(2, 3, "fitting")

        def render_markers(t: Twin) -> torch.Tensor:
            return camera_power(t, shown, flat).unsqueeze(0)

        # a start inside the fit's reach: marker centroids matched by Gauss-Newton on the camera
        # shift and the input rotation (derivatives by the twin itself, so no sign convention here)
        centroid_start(work, markers, flat, marker_img)
        names = ("input_shift_px", "input_rotation_rad", "camera_shift_px")
        nuisance = beam_nuisance(work)  # before the illumination routine: fitted, not reported
        # an input pixel narrower than a grid sample (fill factor < 1) sits flat inside it for small
        # shifts, so the fit cannot cross zero: start it from the best of a grid of fractions
        # (each with the camera shift that keeps the image where it is)
        best_start(work, render_markers, marker_img, marker_w)
        report = fit_markers(work, names, render_markers, marker_img, marker_w, nuisance)
        check_finite(self.name, report)

        def render_lenses(t: Twin) -> torch.Tensor:
            return torch.stack([camera_power(t, blob, g) for g in lenses])

        lens_start(work, blob, lenses, lens_img)
        lens_report = fit_twin(work, ("filter_shift_px",), render_lenses, lens_img, lens_w, iterations=20)
        check_finite(self.name, lens_report)
        chi2 = max(report.reduced_chi2, lens_report.reduced_chi2)
        if chi2 > CHI2_LIMIT:
            raise CalibrationError(self.name, f"the twin does not explain the frames (reduced chi^2 {chi2:.3g} > "
                                              f"{CHI2_LIMIT}): a marker or the blob is missing or clipped")
        values = {n: getattr(work.imperfections, n).detach().tolist() for n in (*names, "filter_shift_px")}
        with torch.no_grad():
            fitted = (render_markers(work)[0] * float(report.amplitudes[0])).numpy()
        progress(3, 3, "done")
        return RoutineResult(
            routine=self.name, values=values,
            residual=float(math.sqrt(chi2)), residual_unit="noise sigma (RMS)",
            frames=frames,
            products={},
            plot={"markers": marker_img, "fitted": fitted, "lens": lens_img},
            notes=f"reduced chi^2: markers {report.reduced_chi2:.3g}, lens patterns {lens_report.reduced_chi2:.3g}; "
                  "the input shift is its fraction in (-0.5, 0.5) px (whole pixels are the camera's)",
        )

    def plot(self, result: RoutineResult, ax: Any) -> None:
        m, f = np.asarray(result.plot["markers"]), np.asarray(result.plot["fitted"])
        ax.imshow(m - f, cmap="RdBu_r")
        ax.set_title("markers: bench - fitted twin (DN); "
                     f"input shift {np.round(result.values['input_shift_px'], 3).tolist()} px, "
                     f"camera shift {np.round(result.values['camera_shift_px'], 3).tolist()} px", fontsize=7)
        ax.set_axis_off()

"""Illumination profile (Gaussian waist and centre on the input) and the input modulator's contrast.

Profile: the input shows sparse grids of single bright pixels (markers), the
filter is flat. Each marker's light, summed in a disc around its image on the
camera, is the beam's intensity at that pixel times a constant: the sum does
not depend on where the image falls on the camera pixels. A Gaussian beam then
gives log(sum) = const - 2 |x - c|^2 / w^2 over the markers' positions x on
the input plane (the twin's pixel positions, with its current input shift and
rotation): a weighted least squares in closed form for the 1/e^2 waist w and
the centre c (one constant per frame, so the laser drifting between frames
does not bias it). That closed form is biased by coherent leakage: the off
pixels transmit 1 / contrast and their light interferes with each marker's
image, more in the aperture's middle than at its edges, in a way set by the
input's sub-pixel shift and the aberrations. So it only starts a least squares
of the same sums through the twin (holding the contrast measured here and the
registration's and aberrations' estimates: this routine runs after them; the
waist was 5-25 % off on drawn truths without them, within 1 % with them). The
filter SLM's pixels' own diffraction envelope (`slm_pixel_envelope`, from the
datasheet; the twin lacks it) is divided out of the sums, else it would read as
a narrower beam (5-7 % in the waist on `sim`; ``envelope="none"`` for a bench
without it, such as a simulated one with its unmodelled truth off, where the
datasheet's reads 15-27 % too wide; ``envelope="measure"`` measures it with
gratings instead, see `measure_output_envelope`). A frame with every pixel off
is subtracted from the marker frames first, and,
where the markers are far enough apart, each marker's local background (the
median in an annulus around its disc: scatter from the SLM's flatness error and
the optics spreads a halo from the neighbours, stronger in the middle of the grid). The
markers of one frame are `spacing` px apart so that their images' tails do not
interfere in each other's discs; offset grids fill in between.

Contrast: the modulator fully on, then fully off at a longer exposure: the
ratio of the light per second through the aperture, on over off, is the
on/off contrast (the twin's transmission floor is 1 / contrast). An off level
too faint to see at the longest exposure gives a lower bound, said in the notes.

Frames: profile 4 dark + 1-4 to find the exposure + 16 marker frames (one
batch) + 2 off; contrast 2 on + 4 dark + 1-4 + 2 off (+ 8 dark at the new
exposures): about 40.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult
from calibration.photometry import (
    clamp_exposure,
    find_exposure,
    kept_exposure,
    require,
    top_signal,
    window_sums,
)
from calibration.probe import Probe, clip_level
from calibration.twinfit import camera_power, working_twin

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: least distance (camera px) between the images of two markers shown together
MARKER_SPACING_PX = 8.0
#: largest RMS misfit of the markers' log sums (a Gaussian beam explains them to noise)
RESIDUAL_LIMIT = 0.05


def marker_grids(shape: tuple[int, int], spacing: int, steps: int,
                 levels: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Input patterns (F, rows, cols) of single bright pixels `spacing` apart, and each
    frame's marker pixels (K, 2) as (row, col); `steps` x `steps` frames whose grids are offset
    by spacing / steps, so that together they sample the modulator that densely."""
    frames, positions = [], []
    stride = max(1, spacing // steps)
    start = (spacing - stride * (steps - 1)) // 2
    for i in range(steps):
        for j in range(steps):
            rows = np.arange(start + i * stride, shape[0], spacing)
            cols = np.arange(start + j * stride, shape[1], spacing)
            if rows.size == 0 or cols.size == 0:
                continue
            pattern = np.zeros(shape, dtype=np.int64)
            rr, cc = np.meshgrid(rows, cols, indexing="ij")
            pattern[rr, cc] = levels - 1
            frames.append(pattern)
            positions.append(np.stack([rr.ravel(), cc.ravel()], axis=1))
    return np.stack(frames), positions


def input_positions_m(twin: Twin, pixels: np.ndarray) -> np.ndarray:
    """Input-plane positions (y, x) in metres of modulator pixels (row, col), with the twin's
    current input shift and rotation (the convention of `InputModulator` and `affine_warp`)."""
    geo = twin.geometry
    imp = twin.imperfections
    n = np.array(geo.input.resolution)
    shift = imp.input_shift_px.detach().cpu().numpy()
    rel = (pixels - n // 2 + shift) * geo.input.pitch_m
    a = float(imp.input_rotation_rad)
    y, x = rel[:, 0], rel[:, 1]
    # content rotates counter-clockwise in (col, row) axes
    return np.stack([math.cos(a) * y + math.sin(a) * x, -math.sin(a) * y + math.cos(a) * x], axis=1)


def camera_positions_px(twin: Twin, pixels: np.ndarray) -> np.ndarray:
    """Nominal camera pixel (row, col) of the image of modulator pixels (inverted, magnified)."""
    geo = twin.geometry
    n = np.array(geo.input.resolution)
    ncam = np.array(geo.camera.resolution)
    scale = geo.input.pitch_m * geo.focal2_m / geo.focal1_m / geo.camera.pitch_m
    return ncam // 2 - (pixels - n // 2) * scale


def slm_pixel_envelope(twin: Twin, positions_m: np.ndarray) -> np.ndarray:
    """Relative power reaching the image of input points (y, x): the filter SLM's square pixels
    (width sqrt(fill) x pitch) diffract into a sinc^2 envelope over the output plane, at
    lambda f2 per unit of spatial frequency, i.e. sinc^2(a x / (lambda f1)) for an input point x
    (the image is x f2 / f1 from the axis). The twin has no such envelope; the datasheet sets it."""
    geo = twin.geometry
    a = math.sqrt(geo.filter.fill_factor) * geo.filter.pitch_m
    u = a * np.asarray(positions_m) / (geo.wavelength_m * geo.focal1_m)
    return np.prod(np.sinc(u) ** 2, axis=-1)


#: how the output plane's own fall-off is taken out of the marker sums: from the filter SLM's
#: datasheet (`slm_pixel_envelope`, the default: every pixelated SLM diffracts into it), measured
#: with gratings (`measure_output_envelope`; on the full-size `sim` it still reads a curvature of
#: -1e-4 per px^2 with and without the envelope, a bias not yet found: not the default), or none
#: (a bench without it, such as a simulated one with its unmodelled truth off)
ENVELOPES = ("measure", "datasheet", "none")
#: markers the envelope's grating frames cover at least (whole grids, two frames each)
ENVELOPE_MARKERS = 16


class OutputEnvelope:
    """A smooth fall-off of the light over the output plane, exp(-e_y dy^2 - e_x dx^2) about the
    image of the optical axis (camera px): the filter SLM's pixels diffract into such an envelope,
    lens 2 may vignette; a bench may have none. `at(points)` is its value at camera positions."""

    def __init__(self, curvature: np.ndarray, axis_px: np.ndarray, slope_se: np.ndarray) -> None:
        self.curvature, self.axis_px, self.slope_se = np.asarray(curvature), np.asarray(axis_px), slope_se

    def at(self, points: np.ndarray) -> np.ndarray:
        d = np.asarray(points, dtype=np.float64) - self.axis_px
        return np.exp(-(self.curvature[None, :] * d * d).sum(axis=1))

    def describe(self) -> str:
        e = self.curvature
        return (f"output envelope measured with gratings: curvature ({e[0]:.3g}, {e[1]:.3g}) per px^2 "
                f"(+- {self.slope_se[0]:.2g}, {self.slope_se[1]:.2g})")


def measure_output_envelope(p: Probe, twin: Twin, patterns: np.ndarray, centres: list[np.ndarray],
                            base: list[np.ndarray], spacing_px: float, radius: float,
                            annulus: tuple[float, float] | None, dark: np.ndarray, routine: str) -> OutputEnvelope:
    """The output plane's envelope, from the data: one marker grid shown through a flat filter
    (already measured: `centres`, `base` sums) and through a blazed grating along each axis, which
    moves every image by D px on the camera while the beam on the input stays as it is. Each
    marker's sum through the grating over its sum through the flat filter is the grating's
    efficiency (the same for every marker: each lights the whole SLM alike) times E(x + D) / E(x),
    so log ratio = const - e (2 D (x - x0) + D^2): its slope across the markers is -2 D e.
    The grating is shown twice, a quarter period apart, and the frames averaged: a marker's first
    order lands where its neighbour's -1 order does (D is half the spacing, clear of the zero
    orders), and their interference changes sign between the two. Four frames per marker grid,
    on the first grids that hold `ENVELOPE_MARKERS` markers together;
    an envelope-free bench reads e ~ 0."""
    from calibration.twinfit import filter_gray, grating_phase

    geo = twin.geometry
    n_f = tuple(geo.filter.resolution)
    shift = max(2, round(spacing_px / 2))  # between the flat grid's images: orders never overlap them
    axis_px = camera_positions_px(twin, (np.array(geo.input.resolution) // 2)[None].astype(np.float64))[0]
    curv, se = np.zeros(2), np.zeros(2)
    count = int(np.searchsorted(np.cumsum([len(c) for c in centres]), ENVELOPE_MARKERS)) + 1
    grids = range(min(count, len(patterns)))
    for axis in (0, 1):
        k = [0.0, 0.0]
        k[axis] = float(shift)
        gratings = [filter_gray(twin, np.remainder(grating_phase(n_f, (k[0], k[1])) + offset, 2 * math.pi))
                    for offset in (0.0, 0.5 * math.pi)]
        rows, ratios, weights, moves = [], [], [], []
        for g in grids:
            p.show_input(patterns[g])
            frame = np.zeros_like(dark)
            for grating in gratings:  # a quarter period apart: the +1 order's interference with a
                p.show_filter(grating)  # neighbour's -1 order (on the same spot) changes sign: averaged out
                frame += (p.grab(1, lit_pixels=max(1, len(centres[g]) // 4)) - dark) / len(gratings)
            best = None
            for sign in (1.0, -1.0):  # where the first order went, whatever the camera's orientation
                d = np.zeros(2)
                d[axis] = sign * shift * geo.output_grid.pitch_m[axis] / geo.camera.pitch_m
                sums, found = marker_sums(frame, centres[g] + d, radius, annulus)
                if best is None or sums.sum() > best[0].sum():
                    best = (sums, found)
            sums, found = best
            moves.append(float(np.median((found - centres[g])[:, axis])))
            ok = (sums > 0) & (base[g] > 0)
            one = np.zeros((int(ok.sum()), len(grids)))
            one[:, g] = 1.0  # one efficiency x light level per frame
            rows.append(np.column_stack([one, centres[g][ok, axis] - axis_px[axis]]))
            ratios.append(np.log(sums[ok] / base[g][ok]))
            weights.append(np.sqrt(base[g][ok]))
        moved = float(np.median(moves))
        design, w = np.concatenate(rows), np.concatenate(weights)
        require(len(w) >= len(grids) + 3 and abs(moved) > 1.0, routine,
                "the grating did not move the marker images: is the filter SLM showing its patterns?")
        coef, res, *_ = np.linalg.lstsq(design * w[:, None], np.concatenate(ratios) * w, rcond=None)
        dof = max(len(w) - design.shape[1], 1)
        sigma2 = float(res[0]) / dof if res.size else 0.0
        cov = sigma2 * np.linalg.pinv((design * w[:, None]).T @ (design * w[:, None]))
        curv[axis] = -coef[-1] / (2 * moved)
        se[axis] = math.sqrt(max(cov[-1, -1], 0.0)) / (2 * abs(moved))
    p.show_filter(np.zeros(n_f, dtype=np.int64))
    return OutputEnvelope(curv, axis_px, se)


class GaussianFit:
    def __init__(self, waist: float, centre: np.ndarray, residual: float, positions: np.ndarray,
                 log_sums: np.ndarray, model: np.ndarray) -> None:
        self.waist, self.centre, self.residual = waist, centre, residual
        self.positions, self.log_sums, self.model = positions, log_sums, model


def fit_gaussian(positions: list[np.ndarray], sums: list[np.ndarray], routine: str) -> GaussianFit:
    """log S = a_f + b y + c x + d (y^2 + x^2) by weighted least squares (weights: the sums,
    whose relative error falls as 1/sqrt(S)); waist sqrt(-2/d), centre -(b, c)/(2 d)."""
    rows, target, weight = [], [], []
    frames = len(positions)
    for f, (pos, s) in enumerate(zip(positions, sums, strict=True)):
        ok = s > 0
        onehot = np.zeros((int(ok.sum()), frames))
        onehot[:, f] = 1.0
        y, x = pos[ok, 0], pos[ok, 1]
        rows.append(np.column_stack([onehot, y, x, y * y + x * x]))
        target.append(np.log(s[ok]))
        weight.append(np.sqrt(s[ok]))
    a = np.concatenate(rows)
    t = np.concatenate(target)
    w = np.concatenate(weight)
    require(len(t) >= frames + 4, routine, f"only {len(t)} markers seen")
    scale = np.r_[np.ones(frames), 1e-3, 1e-3, 1e-6]  # metres -> mm for conditioning
    coef, *_ = np.linalg.lstsq(a / scale * w[:, None], t * w, rcond=None)
    coef = coef / scale
    b, c, d = coef[frames:]
    model = a @ coef
    residual = float(np.sqrt(np.average((t - model) ** 2, weights=w**2)))
    if not d < 0:
        raise CalibrationError(routine, "the markers do not fall off away from a centre: no Gaussian beam fits")
    waist = math.sqrt(-2.0 / d)
    centre = -np.array([b, c]) / (2 * d)
    return GaussianFit(waist, centre, residual, np.concatenate([p[s > 0] for p, s in zip(positions, sums, strict=True)]),
                       t, model)


class IlluminationRoutine(Routine):
    name = "illumination"
    title = "Illumination profile and input modulator contrast"
    estimates = ("illumination_waist_m", "illumination_center_m", "input_contrast")
    after = ("camera", "registration")
    frames_hint = 40

    def __init__(self, target: float = 0.6, spacing: int | None = None, steps: int = 4,
                 contrast: bool = True, envelope: str = "datasheet") -> None:
        if envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {ENVELOPES}, not {envelope!r}")
        self.envelope = envelope
        self.target = target
        self.spacing = spacing
        self.steps = steps
        self.contrast = contrast

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        geo = twin.geometry
        cam = bench.camera
        shape = tuple(geo.input.resolution)
        levels = geo.input.levels
        scale = geo.input.pitch_m * geo.focal2_m / geo.focal1_m / geo.camera.pitch_m  # camera px per input px
        # markers far enough apart that their images' tails do not interfere in each other's
        # discs (light is coherent: an edge marker lacks neighbours, so interference would bias)
        spacing = self.spacing or max(2, math.ceil(MARKER_SPACING_PX / scale), min(shape) // 4)
        patterns, pixels = marker_grids(shape, spacing, self.steps, levels)
        radius = max(1.5, min(0.5 * spacing * scale - 0.5, 3.0))
        outer = 0.5 * spacing * scale - 1.0
        annulus = (radius + 1.0, outer) if outer >= radius + 2.5 else None
        flat = np.zeros(geo.filter.resolution, dtype=np.int64)
        with Probe(bench, self.name, progress=progress, cancel=cancel) as p, kept_exposure(cam):
            p.show_filter(flat)
            p.show_input(patterns[0])
            markers = len(pixels[0])
            dark, _ = p.dark_reference()
            find_exposure(p, dark, target=self.target, count=max(1, markers // 4))
            dark, _ = p.dark_reference()
            frames = p.grab_inputs(patterns, lit_pixels=markers).astype(np.float64) - dark[None]
            # the pixels between the markers leak (1 / contrast): that light is not the markers'
            p.show_input(np.zeros(shape, dtype=np.int64))
            frames -= p.grab(2, check=False)[None] - dark[None]
            sums, found = [], []
            for frame, pix in zip(frames, pixels, strict=True):
                s, centres = marker_sums(frame, camera_positions_px(twin, pix), radius, annulus)
                sums.append(s)
                found.append(centres)
            envelope = None
            if self.envelope == "measure":
                envelope = measure_output_envelope(p, twin, patterns, found, sums, spacing * scale, radius, annulus,
                                                   dark, self.name)
            contrast, bound = math.inf, False
            if self.contrast:
                contrast, bound = self._contrast(p, shape, levels)
            frame_count = p.frames
        if envelope is not None:
            sums = [s / envelope.at(c) for s, c in zip(sums, found, strict=True)]
        elif self.envelope == "datasheet":
            sums = [s / slm_pixel_envelope(twin, input_positions_m(twin, pix))
                    for s, pix in zip(sums, pixels, strict=True)]
        fit = fit_gaussian([input_positions_m(twin, pix) for pix in pixels], sums, self.name)
        fit = refine_through_twin(twin, fit, patterns, pixels, sums, radius, contrast, self.name, annulus)
        require(fit.residual <= RESIDUAL_LIMIT, self.name,
                f"the markers misfit a Gaussian beam by {100 * fit.residual:.2g} % RMS (> {100 * RESIDUAL_LIMIT:g} %)")
        width = max(shape) * geo.input.pitch_m
        require(fit.waist < 1000 * width, self.name, f"the beam is flat over the modulator (waist {fit.waist:.3g} m)")
        values: dict[str, Any] = {"illumination_waist_m": fit.waist,
                                  "illumination_center_m": [float(v) for v in fit.centre]}
        if self.contrast:
            values["input_contrast"] = float(contrast)
        notes = (f"waist {fit.waist * 1e6:.1f} um, centre ({fit.centre[0] * 1e6:+.1f}, {fit.centre[1] * 1e6:+.1f}) "
                 f"um from {fit.positions.shape[0]} markers; contrast {'>= ' if bound else ''}{contrast:.4g}; "
                 + (envelope.describe() if envelope is not None else f"output envelope: {self.envelope}"))
        extra = {} if envelope is None else {"output_envelope_per_px2": envelope.curvature.tolist()}
        return RoutineResult(self.name, values, fit.residual, "RMS misfit of log marker sums", frame_count,
                             products={**extra, "contrast_is_lower_bound": bound, "marker_positions_m": fit.positions,
                                       "marker_log_sums": fit.log_sums},
                             plot={"positions": fit.positions, "log_sums": fit.log_sums, "model": fit.model},
                             notes=notes)

    # -- contrast ------------------------------------------------------------------------------------
    def _contrast(self, p: Probe, shape: tuple[int, int], levels: int) -> tuple[float, bool]:
        """On/off ratio of the light per second inside the aperture's image."""
        cam = p.bench.camera
        area = int(np.prod(shape))
        p.show_input(np.full(shape, levels - 1, dtype=np.int64))
        dark, _ = p.dark_reference()
        find_exposure(p, dark, target=self.target, count=max(1, area // 20))
        t_on = cam.exposure_s
        dark, _ = p.dark_reference()
        lit_on = p.grab(2) - dark
        region = lit_on > 0.3 * top_signal(lit_on, max(1, area // 20))
        on_rate = float(lit_on[region].sum()) / t_on
        p.show_input(np.zeros(shape, dtype=np.int64))
        # the off level is ~1/contrast of the on level: start well above the on exposure
        cam.exposure_s = clamp_exposure(cam, t_on * 100)
        dark, _ = p.dark_reference()
        find_exposure(p, dark, target=self.target, count=max(1, area // 20))
        dark, noise = p.dark_reference()
        off = p.grab_frames(2, check=False).astype(np.float64)
        signal = float((off.mean(0) - dark)[region].sum())
        sigma = noise * math.sqrt(region.sum() / 2)
        if signal < 10 * sigma:  # too faint even at the longest exposure: a lower bound
            return on_rate / (10 * sigma / cam.exposure_s), True
        # long exposures saturate hot pixels (their dark frame too): only the aperture must not clip
        p.check_frames(off, lit_pixels=max(1, area // 20), allow_saturated=True)
        clip = min(clip_level(f, cam.max_value) for f in off)
        require(not np.any(off[:, region] >= clip), self.name,
                "the modulator's off level saturates the camera inside the aperture")
        return on_rate / (signal / cam.exposure_s), False

    def plot(self, result: RoutineResult, ax: Any) -> None:
        d = result.plot
        centre = np.asarray(result.values["illumination_center_m"])
        r = np.hypot(*(d["positions"] - centre).T) * 1e6
        ax.plot(r, d["log_sums"] - d["model"].max(), ".", ms=4, label="markers (log sum)")
        order = np.argsort(r)
        ax.plot(r[order], (d["model"] - d["model"].max())[order], "-", lw=1, label="Gaussian fit")
        ax.set_xlabel("distance from the beam centre (um)")
        ax.set_ylabel("log intensity")
        ax.set_title(f"illumination, waist {result.values['illumination_waist_m'] * 1e3:.3g} mm")
        ax.legend(fontsize="small")


def twin_marker_sums(work: Twin, patterns: np.ndarray, pixels: list[np.ndarray], radius: float,
                     annulus: tuple[float, float] | None = None) -> list[np.ndarray]:
    """The twin's marker sums for the same patterns, the all-off frame subtracted as on the bench."""
    geo = work.geometry
    flat = np.zeros(geo.filter.resolution, dtype=np.int64)
    with torch.no_grad():
        power = camera_power(work, patterns, flat) - camera_power(work, np.zeros_like(patterns[:1]), flat)
    frames = power.cpu().numpy()
    return [marker_sums(f, camera_positions_px(work, pix), radius, annulus)[0]
            for f, pix in zip(frames, pixels, strict=True)]


def refine_through_twin(twin: Twin, start: GaussianFit, patterns: np.ndarray, pixels: list[np.ndarray],
                        sums: list[np.ndarray], radius: float, contrast: float, routine: str,
                        annulus: tuple[float, float] | None = None, iterations: int = 2) -> GaussianFit:
    """Correct the closed form by the twin (holding the measured contrast): coherent leakage of the
    off pixels interferes with each marker's image, more in the middle of the aperture than at its
    edges. The twin's marker sums over the ideal Gaussian's give each marker's correction, which
    hardly depends on the beam; the measured sums divided by it are fitted in closed form again."""
    work = working_twin(twin)
    imp = work.imperfections
    if math.isfinite(contrast):
        with torch.no_grad():
            imp.input_contrast.fill_(contrast)
    positions = [input_positions_m(work, pix) for pix in pixels]
    fit = start
    for _ in range(iterations):
        with torch.no_grad():
            imp.illumination_waist_m.fill_(fit.waist)
            imp.illumination_center_m.copy_(torch.as_tensor(fit.centre, dtype=imp.illumination_center_m.dtype))
        model = twin_marker_sums(work, patterns, pixels, radius, annulus)
        corrected = []
        for s, t, pos in zip(sums, model, positions, strict=True):
            ideal = np.exp(-2 * np.sum((pos - fit.centre) ** 2, axis=1) / fit.waist**2)
            correction = np.clip(t, 1e-300, None) / ideal
            corrected.append(np.where(s > 0, s / correction * correction.mean(), 0.0))
        fit = fit_gaussian(positions, corrected, routine)
    return fit


def marker_sums(signal: np.ndarray, nominal: np.ndarray, radius: float,
                annulus: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each marker's light in a disc around its image: found near its nominal position after
    the whole grid's offset (the camera's shift, unknown yet) is taken out. With `annulus`
    (inner, outer radius), the median level there is taken as the local background (the
    halo that the SLM's and the optics' scatter spreads from the neighbours) and removed."""
    rr, cc = np.indices(signal.shape)

    def peak_near(centre: np.ndarray, search: float) -> np.ndarray:
        sel = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= search**2
        masked = np.where(sel, signal, -np.inf)
        return np.array(np.unravel_index(int(np.argmax(masked)), signal.shape), dtype=np.float64)

    peaks = np.array([peak_near(c, max(radius, 3.0)) for c in nominal])
    offset = np.median(peaks - nominal, axis=0)
    centres = []
    for c in nominal + offset:
        peak = peak_near(c, radius)
        rows = (rr - peak[0]) ** 2 + (cc - peak[1]) ** 2 <= radius**2
        w = np.where(rows, np.clip(signal, 0, None), 0.0)
        total = w.sum()
        centres.append(((w * rr).sum() / total, (w * cc).sum() / total) if total > 0 else tuple(peak))
    centres_arr = np.array(centres)
    sums = window_sums(signal, [tuple(c) for c in centres_arr], radius)
    if annulus is not None:
        for k, (r0, c0) in enumerate(centres_arr):
            d2 = (rr - r0) ** 2 + (cc - c0) ** 2
            ring = (d2 > annulus[0] ** 2) & (d2 <= annulus[1] ** 2)
            if ring.any():
                sums[k] -= float(np.median(signal[ring])) * int((d2 <= radius**2).sum())
    return sums, centres_arr

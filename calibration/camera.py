"""Camera: dark frame and offset at the exposure in use, hot pixels, photon transfer (EMVA 1288).

Frames (about 25 on a 256 x 256 camera, up to ~60 on a small one):

* ``dark_frames`` (8) dark frames at the exposure in use: the dark frame the
  compiler subtracts, the black level (-> ``camera_offset_dn`` against the
  spec's ``offset_dn``), the read noise (temporal variance);
* 2 dark frames at a long exposure (``long_dark_factor`` x): hot pixels (their
  dark rate -> ``hot_pixels_e_per_s``) and the dark current. The two dark
  levels give every pixel a dark model ``dark(t)``, so the lit exposures need
  no dark frames of their own;
* a few unchecked frames to find the exposure;
* photon transfer: the input fully on and a random-phase diffuser on the filter
  SLM spread speckle over the whole camera, so every pixel sees a different
  level and one exposure covers the whole transfer curve. Rounds of
  ``ptc_frames`` frames at three exposures (x1, x0.4, x0.16 of the top one)
  until the gain's standard error is below ``gain_precision`` (more rounds on a
  small camera, which has fewer pixels to average). Per pixel: temporal mean
  and variance of the dark-subtracted frames, each frame scaled by its total
  signal first (a laser's power fluctuating from frame to frame is not camera
  noise). EMVA 1288: variance = K * mean + read variance; K (DN/e-) by
  weighted least squares over all unsaturated pixels -> ``camera_gain`` =
  K / (spec conversion x the camera's gain setting). Linearity from the mean
  signal against exposure; saturation from the top exposure's pile-up.

Hot pixels are excluded from the transfer fit; pixels near saturation too
(cameras lose linearity there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult
from calibration.photometry import clamp_exposure, find_exposure, kept_exposure, saturation_level
from calibration.probe import Probe

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: ADC quantisation noise (DN^2) in every temporal variance
QUANTISATION_VAR = 1.0 / 12.0
#: a pixel enters the gain fit when its shot noise exceeds its dark noise this many times
SHOT_DOMINATED = 5.0
#: pixels whose mean stays below this fraction of the saturation signal enter the fit (EMVA
#: 1288 uses the range up to 70 %; cameras bend before they clip)
LINEAR_FRACTION = 0.6
#: hot pixel: dark level this many temporal-noise sigmas above the median
HOT_SIGMAS = 8.0


class CameraRoutine(Routine):
    name = "camera"
    title = "Camera: dark, offset, hot pixels, photon transfer"
    estimates = ("camera_gain", "camera_offset_dn", "hot_pixels_e_per_s")
    after = ()
    frames_hint = 25

    def __init__(self, *, dark_frames: int = 8, long_dark_factor: float = 20.0, ptc_frames: int = 3,
                 ptc_factors: tuple[float, ...] = (1.0, 0.4, 0.16), gain_precision: float = 0.003,
                 max_frames: int = 120, residual_limit_pct: float = 5.0, seed: int = 0) -> None:
        self.dark_frames = dark_frames
        self.long_dark_factor = long_dark_factor
        self.ptc_frames = ptc_frames
        self.ptc_factors = ptc_factors
        self.gain_precision = gain_precision
        self.max_frames = max_frames
        self.residual_limit_pct = residual_limit_pct
        self.seed = seed

    # -- measurement ---------------------------------------------------------------------------------
    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        cam = bench.camera
        spec = twin.geometry.camera
        total = self.frames_hint
        with Probe(bench, self.name, progress=progress, cancel=cancel) as p, kept_exposure(cam):
            report = p.progress
            t_use = float(cam.exposure_s)
            report(0, total, "dark frames")
            d_use = p.dark_frames(self.dark_frames).astype(np.float64)
            t_long = clamp_exposure(cam, t_use * self.long_dark_factor)
            if t_long < 1.5 * t_use:  # no room above: go below instead
                t_long = clamp_exposure(cam, t_use / self.long_dark_factor)
            cam.exposure_s = t_long
            d_long = p.dark_frames(2).astype(np.float64)
            dark = DarkModel(d_use, t_use, d_long, t_long, cam.max_value)

            report(p.frames, total, "photon transfer: finding the exposure")
            levels = twin.geometry.input.levels
            p.show_input(np.full(twin.geometry.input.resolution, levels - 1, dtype=np.int64))
            p.show_filter(diffuser(twin.geometry.filter.resolution, twin.geometry.filter.levels, self.seed))
            cam.exposure_s = t_use
            # most pixels well lit: the 30 % brightest above half the range (a bright few saturate
            # and are left out)
            t_top = find_exposure(p, dark.at(t_use), target=0.45, count=int(0.3 * d_use[0].size))
            exposures = sorted({clamp_exposure(cam, t_top * f) for f in self.ptc_factors}, reverse=True)
            series: dict[float, list[np.ndarray]] = {t: [] for t in exposures}
            fit = None
            while True:
                for t in exposures:
                    cam.exposure_s = t
                    p.remember_dark(t, dark.at(t), dark.noise)
                    frames = p.grab_frames(self.ptc_frames, check=False)
                    p.check_frames(frames, allow_saturated=True)
                    series[t].append(frames.astype(np.float64))
                    report(p.frames, max(total, p.frames + 1), f"photon transfer at {t:.3g} s")
                fit = photon_transfer(series, dark, cam.max_value)
                if fit.k_se / fit.k <= self.gain_precision or p.frames + len(exposures) * self.ptc_frames > self.max_frames:
                    break
            frames_used = p.frames
        return self._result(fit, dark, spec, cam.gain, t_use, frames_used)

    # -- estimates -----------------------------------------------------------------------------------
    def _result(self, fit: PhotonTransfer, dark: DarkModel, spec: Any, camera_gain_setting: float,
                t_use: float, frames: int) -> RoutineResult:
        if not np.isfinite(fit.k) or fit.k <= 0:
            raise CalibrationError(self.name, f"photon transfer slope is {fit.k:.3g} DN/e-: no shot noise seen")
        if fit.residual_pct > self.residual_limit_pct:
            raise CalibrationError(
                self.name, f"photon transfer residual {fit.residual_pct:.3g} % > {self.residual_limit_pct:g} %: "
                "variance is not linear in the signal (unstable light or a nonlinear camera)")
        if fit.k_se / fit.k > 3 * self.gain_precision:
            raise CalibrationError(self.name, f"gain uncertain to {100 * fit.k_se / fit.k:.2g} %: too few lit pixels")
        k = fit.k
        gain = k / (spec.conversion_dn_per_e * camera_gain_setting)
        dark_current_e = spec.dark_current_e_per_s
        offset = dark.black_level - spec.offset_dn - k * dark_current_e * t_use
        hot_rate = dark.hot_rate_e_per_s(k)
        read_var = max(dark.read_var - QUANTISATION_VAR, 0.0)
        values: dict[str, Any] = {
            "camera_gain": float(gain),
            "camera_offset_dn": float(offset),
            "hot_pixels_e_per_s": hot_rate if hot_rate is not None else None,
        }
        products = {
            "dark_dn": dark.at(t_use),
            "dark_exposure_s": t_use,
            "hot_pixel_mask": dark.hot,
            "conversion_dn_per_e": k,
            "conversion_se_dn_per_e": fit.k_se,
            "read_noise_e": float(np.sqrt(read_var) / k),
            "dark_current_e_per_s": float(dark.rate_dn_per_s / k),
            "linearity_error_pct": fit.linearity_pct,
            "saturation_dn": fit.saturation_dn,
            "saturation_e": (fit.saturation_dn - dark.black_level) / k if fit.saturation_dn is not None else None,
            "ptc_exposures_s": list(fit.exposures),
        }
        notes = (f"K = {k:.4g} +- {fit.k_se:.2g} DN/e- (gain x{gain:.4f} of the spec), offset {offset:+.2f} DN, "
                 f"read noise {products['read_noise_e']:.2f} e-, {int(dark.hot.sum())} hot pixels, "
                 f"linearity error {fit.linearity_pct:.2g} %")
        return RoutineResult(self.name, values, fit.residual_pct, "% (photon transfer, binned)", frames,
                             products=products, plot=fit.plot, notes=notes)

    def plot(self, result: RoutineResult, ax: Any) -> None:
        d = result.plot
        ax.loglog(d["mean_dn"], d["var_dn2"], "o", ms=3, label="measured (binned)")
        ax.loglog(d["mean_dn"], d["fit_var_dn2"], "-", label=f"fit: K = {result.products['conversion_dn_per_e']:.4g} DN/e-")
        ax.set_xlabel("mean signal above dark (DN)")
        ax.set_ylabel("temporal variance (DN$^2$)")
        ax.set_title(f"photon transfer (residual {result.residual:.2g} %)")
        ax.legend(fontsize="small")


def diffuser(shape: tuple[int, int], levels: int, seed: int, block: int = 2) -> np.ndarray:
    """Random gray levels in `block` x `block` cells: a phase diffuser whose cells are wide
    enough that the SLM's pixel crosstalk does not smooth it away (which would leave a bright
    specular image instead of speckle over the whole camera)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, levels, (-(-shape[0] // block), -(-shape[1] // block)))
    return np.kron(cells, np.ones((block, block), dtype=np.int64))[: shape[0], : shape[1]]


class DarkModel:
    """Per-pixel dark level at two exposures, read as dark(t) = level + rate * t; hot pixels."""

    def __init__(self, d_use: np.ndarray, t_use: float, d_long: np.ndarray, t_long: float, max_dn: int) -> None:
        self.t_use, self.t_long = t_use, t_long
        self.mean_use, self.mean_long = d_use.mean(0), d_long.mean(0)
        self.max_dn = max_dn
        # temporal noise of the dark frames, robust to hot pixels
        diff = d_use[1:] - d_use[:-1]
        self.noise = float(max(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2), 0.5))
        self.read_var_map = d_use.var(0, ddof=1)
        noise_long = float(max(1.4826 * np.median(np.abs(d_long[1] - d_long[0])) / np.sqrt(2), 0.5))
        excess_use = self.mean_use - np.median(self.mean_use)
        excess_long = self.mean_long - np.median(self.mean_long)
        self.hot = (excess_use > HOT_SIGMAS * self.noise / np.sqrt(len(d_use))) & (excess_use > 3.0)
        self.hot |= (excess_long > HOT_SIGMAS * noise_long) & (excess_long > 3.0)
        cold = ~self.hot
        var = self.read_var_map[cold]
        self.read_var = float(var[var < 9 * np.median(var) + 1].mean())  # mean: unbiased (a median is not)
        level = self.mean_use[cold]
        keep = np.abs(level - np.median(level)) < 6 * self.noise + 1.0
        self.black_level = float(level[keep].mean())
        dt = t_long - t_use
        self.rate_dn_per_s = float((np.median(self.mean_long[cold]) - np.median(level)) / dt) if dt else 0.0
        rate = np.full(self.mean_use.shape, self.rate_dn_per_s)
        if dt:
            unsaturated = d_long.max(0) < max_dn
            rate = np.where(self.hot & unsaturated, (self.mean_long - self.mean_use) / dt, rate)
        self.rate_map = rate

    def at(self, exposure_s: float) -> np.ndarray:
        """Modelled mean dark frame at `exposure_s`."""
        return self.mean_use + (exposure_s - self.t_use) * self.rate_map

    def hot_rate_e_per_s(self, k_dn_per_e: float) -> np.ndarray | None:
        """Extra dark rate (e-/s) of each hot pixel above the rest; None without hot pixels."""
        if not self.hot.any():
            return None
        excess = np.where(self.hot, self.mean_use - self.black_level, 0.0)
        rate_from_use = excess / (k_dn_per_e * self.t_use)
        rate_from_long = np.where(self.hot, (self.rate_map - self.rate_dn_per_s) / k_dn_per_e, 0.0)
        # the longer exposure measures the rate better where it did not saturate
        unsaturated_long = self.mean_long < self.max_dn - 1
        use_long = self.hot & unsaturated_long & (self.t_long > self.t_use)
        return np.clip(np.where(use_long, rate_from_long, rate_from_use), 0.0, None)


class PhotonTransfer:
    """The EMVA 1288 fit variance = K mean + c over every usable pixel of every exposure."""

    def __init__(self, k: float, c: float, k_se: float, residual_pct: float, linearity_pct: float,
                 saturation_dn: float | None, exposures: list[float], plot: dict[str, Any]) -> None:
        self.k, self.c, self.k_se = k, c, k_se
        self.residual_pct, self.linearity_pct = residual_pct, linearity_pct
        self.saturation_dn, self.exposures, self.plot = saturation_dn, exposures, plot


def photon_transfer(series: dict[float, list[np.ndarray]], dark: DarkModel, max_dn: int) -> PhotonTransfer:
    """Fit the transfer curve to frames per exposure (each a list of (n, H, W) batches)."""
    ms, vs, dofs, means = [], [], [], []
    usable_all = None
    top = max(series)
    top_frames = np.concatenate(series[top])
    saturation = min(saturation_level(top_frames, max_dn), *(saturation_level(np.concatenate(b), max_dn)
                                                             for b in series.values()))
    limit = LINEAR_FRACTION * (saturation - dark.black_level)
    for t, batches in series.items():
        frames = np.concatenate(batches)
        signal = frames - dark.at(t)[None]
        usable = (~dark.hot) & (frames.max(0) < saturation) & (signal.mean(0) < limit)
        # a laser whose power fluctuates scales whole frames: take that out (measured on the
        # linear pixels only: near saturation a camera compresses the fluctuation too)
        totals = signal[:, usable].sum(axis=1)
        if np.any(totals <= 0):
            raise CalibrationError("camera", f"no light at exposure {t:.3g} s")
        signal = signal * (totals.mean() / totals)[:, None, None]
        m = signal.mean(0)
        v = signal.var(0, ddof=1)
        usable &= m < limit
        usable_all = usable if usable_all is None else usable_all & usable
        ms.append(m[usable])
        vs.append(v[usable])
        dofs.append(np.full(int(usable.sum()), len(frames) - 1.0))
        means.append((t, m))
    m, v, dof = np.concatenate(ms), np.concatenate(vs), np.concatenate(dofs)
    if m.size < 100 or np.ptp(m) <= 0:
        raise CalibrationError("camera", f"only {m.size} usable pixels for photon transfer")
    # EMVA 1288: variance = K mean + dark variance, the dark variance measured on the dark
    # frames. Only pixels where shot noise dominates enter the slope: there a pixel's mean is
    # precise against the spread of means (fainter ones would dilute the slope through the
    # noise of their own mean). Weighted least squares, Var(sample variance) = 2 s^4 / dof.
    c = dark.read_var
    k = float(np.sum((v - c) * m) / np.sum(m * m))
    for _ in range(3):
        bright = m > SHOT_DOMINATED * c / max(k, 1e-9)
        if bright.sum() < 100:
            raise CalibrationError("camera", f"only {int(bright.sum())} pixels rise above the read noise")
        mb, vb = m[bright], v[bright]
        w = dof[bright] / (2 * (k * mb + c) ** 2)
        normal = float(np.sum(w * mb * mb))
        k = float(np.sum(w * mb * (vb - c)) / normal)
    k_se = float(np.sqrt(1.0 / normal))
    # binned residual (figure and quality): equal-count bins over the signal range
    order = np.argsort(m)
    bins = np.array_split(order, min(40, max(5, m.size // 200)))
    bm = np.array([m[b].mean() for b in bins])
    bv = np.array([v[b].mean() for b in bins])
    fit_v = k * bm + c
    shot = bm > 0.02 * limit  # where shot noise shows
    resid = (bv - fit_v) / fit_v
    residual_pct = float(100 * np.sqrt(np.mean(resid[shot] ** 2))) if shot.any() else float("inf")
    # linearity: mean signal of the pixels usable at every exposure, against exposure
    ts = np.array([t for t, _ in means])
    mu = np.array([mm[usable_all].mean() for _, mm in means]) if usable_all.any() else np.zeros(len(ts))
    linearity_pct = 0.0
    if len(ts) >= 2 and mu.max() > 0:
        slope, icpt = np.polyfit(ts, mu, 1)
        linearity_pct = float(100 * np.max(np.abs(mu - (slope * ts + icpt))) / mu.max())
    saturation_dn = saturation if np.sum(top_frames >= saturation) >= 3 else None
    plot = {"mean_dn": bm, "var_dn2": bv, "fit_var_dn2": fit_v}
    return PhotonTransfer(float(k), float(c), k_se, residual_pct, linearity_pct, saturation_dn,
                          sorted(series), plot)

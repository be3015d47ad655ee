"""Fourier-plane registration: filter-SLM spatial frequencies <-> camera pixels.

With one bright input pixel the filter SLM sees a plane wave, and the SLM, lens 2
and the camera are a Fourier pair (slmsuite's `FourierSLM`): a blazed grating of
k cycles across the SLM moves the image by exactly k output-grid samples, whatever
the LUT, the crosstalk, the aberrations or the input's position (they change how
much light the first order gets, never where it lands). The camera positions of
the first order for a 3 x 3 grid of k give the affine map k -> camera pixel, whose
linear part is the camera's rotation and scale against the output plane; its
offset is where the input pixel images (used by registration as a start).

Why not slmsuite's `FourierSLM.fourier_calibrate` through an adapter: it projects a
Gerchberg-Saxton spot array whose phases it turns into gray levels with a linear
2 pi LUT (unknown here before the LUT routine; many LCoS reach < 2 pi), it needs
its own camera/SLM objects (our frames must go through `Probe`, which arms the
light, checks every frame and counts it), and its blob-array fit locates spots to
a fraction of a pixel where rotation to 0.05 deg needs ~0.02 px. One grating per
frame puts all the light of the first order in one known spot, so nine frames
give an unbiased affine fit (the same model: y = M k + b, as slmsuite's `Affine`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.base import CalibrationError, Cancel, Progress, Routine, RoutineResult, no_progress
from calibration.probe import Probe
from calibration.twinfit import (
    expose,
    filter_gray,
    grating_phase,
    input_dtype,
    lit,
    peak_near,
    spot_centroid,
)

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: largest affine residual (RMS camera px) that is still a registration
RESIDUAL_LIMIT_PX = 0.25
#: a first-order spot must carry this fraction of the zero-grating spot's light
MIN_EFFICIENCY = 0.02
#: shortest grating period (filter px): shorter ones lose most light to crosstalk
PERIOD_MIN_PX = 4


def output_to_camera(scale_px: float, rotation_rad: float, camera_scale: float) -> np.ndarray:
    """The 2 x 2 map of an output-plane displacement (samples; rows, cols) to camera pixels
    for the twin's camera model (`CameraModel.integrate`): rotated by the camera's rotation,
    shrunk by its scale; `scale_px` is output pitch / camera pitch."""
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    return (scale_px / camera_scale) * np.array([[c, -s], [s, c]])


def affine_fit(ks: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares y = M k + b over the spots: M (2 x 2), b (2,), residuals (n, 2)."""
    design = np.hstack([ks, np.ones((len(ks), 1))])
    x, *_ = np.linalg.lstsq(design, positions, rcond=None)
    m, b = x[:2].T, x[2]
    return m, b, positions - design @ x


def similarity(m: np.ndarray, scale_px: float) -> tuple[float, float, float]:
    """Camera rotation (rad), camera scale and the anisotropy |M - nearest similarity| / |M|."""
    a, b = 0.5 * (m[0, 0] + m[1, 1]), 0.5 * (m[1, 0] - m[0, 1])
    rotation = math.atan2(b, a)
    size = math.hypot(a, b)
    nearest = np.array([[a, -b], [b, a]])
    return rotation, scale_px / size, float(np.linalg.norm(m - nearest) / np.linalg.norm(m))


class FourierRegistration(Routine):
    """Gratings on the filter SLM move one input pixel's image: camera rotation and scale."""

    name = "fourier"
    title = "Fourier plane: SLM frequencies -> camera"
    estimates = ("camera_rotation_rad", "camera_scale")
    after = ()
    frames_hint = 9 + 4 + 3

    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        progress = progress or no_progress
        geo = twin.geometry
        if geo.filter.modulation != "phase":
            raise CalibrationError(self.name, "needs a phase filter SLM (blazed gratings)")
        n_f = geo.filter.resolution
        cam_shape = geo.camera.resolution
        scale_px = geo.output_grid.pitch_m[0] / geo.camera.pitch_m
        # gratings of >= 8 px period (crosstalk spares them) whose spots stay well inside the camera
        k = int(min(min(n_f) // PERIOD_MIN_PX, 0.3 * min(cam_shape) / scale_px))
        if k < 3:
            raise CalibrationError(self.name, f"the camera ({cam_shape}) is too small for the grating spots")
        ks = np.array([(i * k, j * k) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=np.float64)
        point = np.zeros(geo.input.resolution, dtype=input_dtype(twin))
        point[geo.input.resolution[0] // 2, geo.input.resolution[1] // 2] = geo.input.levels - 1
        radius = float(np.clip(k * scale_px / 3, 1.5, 4.0))
        lit_px = 2
        positions, totals = [], []
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.show_input(point)
            probe.show_filter(filter_gray(twin, np.zeros(n_f)))
            expose(probe, lit_px)
            zero = lit(probe, lit_pixels=lit_px)
            origin = spot_centroid(zero, peak_near(zero, np.array(cam_shape) / 2, max(cam_shape)), radius)
            for i, kv in enumerate(ks):
                progress(i, len(ks), f"grating k = {tuple(int(v) for v in kv)}")
                probe.show_filter(filter_gray(twin, grating_phase(n_f, tuple(kv))))
                img = zero if not kv.any() else lit(probe, lit_pixels=lit_px)
                guess = origin + scale_px * kv
                pos = spot_centroid(img, peak_near(img, guess, k * scale_px / 3), radius)
                positions.append(pos)
                totals.append(float(np.clip(img, 0, None)[np.hypot(*(np.indices(img.shape) - pos[:, None, None]))
                                                            <= radius].sum()))
            frames = probe.frames
        totals_a = np.array(totals)
        ref = totals_a[np.all(ks == 0, axis=1)][0]
        weak = [tuple(int(v) for v in kk) for kk, t in zip(ks, totals_a, strict=True) if t < MIN_EFFICIENCY * ref]
        if weak:
            raise CalibrationError(self.name, f"no first-order spot for grating(s) {weak}: is the filter SLM "
                                              "showing its patterns?")
        pos_a = np.array(positions)
        m, b, res = affine_fit(ks, pos_a)
        rms = float(np.sqrt((res**2).sum(axis=1).mean()))
        if rms > RESIDUAL_LIMIT_PX:
            raise CalibrationError(self.name, f"the spot grid is not affine (RMS residual {rms:.3g} px > "
                                              f"{RESIDUAL_LIMIT_PX} px): spots misidentified or the camera moved")
        rotation, camera_scale, aniso = similarity(m, scale_px)
        progress(len(ks), len(ks), "done")
        return RoutineResult(
            routine=self.name,
            values={"camera_rotation_rad": rotation, "camera_scale": camera_scale},
            residual=rms, residual_unit="px",
            frames=frames,
            products={"fourier_affine_m": m, "fourier_affine_b": b, "grating_k": ks, "spot_px": pos_a},
            plot={"k": ks, "spots": pos_a, "residual": res},
            notes=f"k = {k} cycles; anisotropy {aniso:.2g}; camera scale from output pitch / camera pitch "
                  f"= {scale_px:.6g}",
        )

    def plot(self, result: RoutineResult, ax: Any) -> None:
        spots, res = np.asarray(result.plot["spots"]), np.asarray(result.plot["residual"])
        gain = 0.2 * np.ptp(spots[:, 0]) / max(float(np.abs(res).max()), 1e-9)
        ax.plot(spots[:, 1], spots[:, 0], "o", mfc="none", label="first-order spots")
        ax.quiver(spots[:, 1], spots[:, 0], res[:, 1] * gain, res[:, 0] * gain, angles="xy",
                  scale_units="xy", scale=1, color="C3", label=f"residual x{gain:.3g}")
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_xlabel("camera column (px)")
        ax.set_ylabel("camera row (px)")
        v = result.values
        ax.set_title(f"rotation {math.degrees(v['camera_rotation_rad']):.4f} deg, scale {v['camera_scale']:.5f}, "
                     f"RMS {result.residual:.3g} px", fontsize=8)
        ax.legend(fontsize=7)

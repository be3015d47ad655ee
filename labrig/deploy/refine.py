"""Filter patterns for the bench as measured: gray levels optimised through the calibrated twin.

The analytic double-phase encoding assumes the ideal bench. On a real one the
SLM's pixels fringe into each other (crosstalk blurs the checkerboard the
encoding relies on), its phase response is not linear, the pupil carries
aberrations, the SLM sits off the axis and the camera is shifted, rotated and
scaled against the tiles. This module makes masks for that bench:

1. *analytic pre-compensation*: each tile's grating is moved by the sub-pixel
   remainder of its measured camera position (the whole-pixel part goes into
   the ROI), the pupil's aberration is conjugated, the SLM's shift undone, the
   mask double-phase encoded (checkerboard, or stripes, which fringing blurs
   less: whichever does best on the calibrated twin) and mapped through the
   measured (inverse) LUT;
2. *gradient descent* on the SLM phase pattern, forward through the calibrated
   twin with the straight-through quantiser (`labrig.optics.quantize`), so that
   the calibrated twin's tiles match the ideal program's tiles (what the
   student was trained on) on probe images from the training set, up to one
   scale per frame (the readout's).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from labrig.optics.camera import CameraModel
from labrig.optics.conv import kernel_to_mask, linear_phase
from labrig.optics.encoding import checkerboard, normalise_mask
from labrig.optics.grid import Grid
from labrig.optics.lens import centered_fft2, centered_ifft2
from labrig.optics.multiplex import TileLayout, tile_alignment
from labrig.optics.quantize import nearest_gray_level, quantize_to_lut
from labrig.optics.system import Twin

__all__ = [
    "ENCODINGS",
    "RefineConfig",
    "RefineReport",
    "encode_pairs",
    "optimise_filter",
    "rois_on_camera",
    "shift_mask",
    "tile_centres_on_camera",
]

#: double-phase pixel pairings: the checkerboard, or stripes along rows / columns
ENCODINGS = ("checkerboard", "rows", "cols")
_EPS = 1e-7


@dataclass(frozen=True)
class RefineConfig:
    """How hard the compiler works on the masks (the defaults take well under a minute on a CPU)."""

    steps: int = 120
    """Adam steps on the phase pattern (0: the analytic pre-compensation only)."""
    lr: float = 0.05
    """Step size (rad)."""
    probes: int = 32
    """Training images the tiles are matched on."""
    batch: int = 8
    """Probe images per step."""
    readout_kernel: int = 3
    """Size of the per-tile readout correction fitted after the masks (`labrig.deploy.correction`;
    1: a gain and an offset per tile, 0: none)."""
    readout_mix: bool = True
    """Let each tile's correction read every tile of the image (a T -> T convolution,
    `fit_correction(mix=True)`): the other channels carry what fringing took from one (the
    more fringing, the more it gains; see docs/calibration.md). It costs the host T x K²
    multiply-adds per tile pixel instead of K² (`labrig program show` states it)."""
    readout_probes: int = 256
    """Training images the readout correction is fitted on (a quarter held back to check it)."""
    bench_readout: bool = False
    """Fit the readout correction on the bench's frames of the probes (`compile_program(bench=...)`;
    what the calibrated twin cannot model is then in it) instead of the calibrated twin's."""


@dataclass(frozen=True)
class RefineReport:
    """What the optimisation did, in relative tile error (calibrated twin vs ideal program) on the probes."""

    encoding: str
    error_plain: float
    """The ideal program's gray levels shown on the calibrated twin (no compensation)."""
    error_analytic: float
    """After the analytic pre-compensation."""
    error_final: float
    """After gradient descent (the program's)."""
    steps: int
    seconds: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {"encoding": self.encoding, "error_plain": self.error_plain, "error_analytic": self.error_analytic,
                "error_final": self.error_final, "steps": self.steps, "seconds": round(self.seconds, 2)}


# -- geometry: where the tiles land on the camera ---------------------------------------------------------


def tile_centres_on_camera(twin: Twin, layout: TileLayout) -> torch.Tensor:
    """(P, 2) camera pixel coordinates (row, col) of each tile's centre, through the twin's
    camera model (its shift, rotation and scale): the centroid of a uniformly lit tile."""
    n = layout.grid_shape
    half = (n[0] // 2, n[1] // 2)
    plane = torch.zeros((len(layout.offsets), *n), dtype=twin.dtype)
    for k, r in enumerate(layout.rects()):
        plane[k, r[0] + half[0] : r[2] + half[0], r[1] + half[1] : r[3] + half[1]] = 1
    with torch.no_grad():
        cam = twin.camera_power(plane)
    rows = torch.arange(cam.shape[-2], dtype=cam.dtype)
    cols = torch.arange(cam.shape[-1], dtype=cam.dtype)
    total = cam.sum(dim=(-2, -1))
    return torch.stack(((cam.sum(-1) * rows).sum(-1) / total, (cam.sum(-2) * cols).sum(-1) / total), dim=-1)


def rois_on_camera(centres: torch.Tensor, tile_shape: tuple[int, int]) -> tuple[list[tuple[int, int, int, int]],
                                                                                  torch.Tensor]:
    """Whole-pixel ROIs (top, left, bottom, right) nearest each measured tile centre, and the
    (P, 2) sub-pixel remainder (measured centre - ROI centre) the masks must take out."""
    th, tw = tile_shape
    rois, rest = [], []
    for c in centres.tolist():
        top, left = round(c[0] - (th - 1) / 2), round(c[1] - (tw - 1) / 2)
        rois.append((top, left, top + th, left + tw))
        rest.append((c[0] - (top + (th - 1) / 2), c[1] - (left + (tw - 1) / 2)))
    return rois, torch.tensor(rest, dtype=centres.dtype)


# -- analytic pre-compensation ---------------------------------------------------------------------------


def shift_mask(mask: torch.Tensor, shift_px: torch.Tensor | tuple[float, float]) -> torch.Tensor:
    """The mask moved by `shift_px` filter pixels (content at x goes to x + shift), exactly
    for a band-limited mask: a linear phase on its impulse response."""
    s = [float(v) for v in torch.as_tensor(shift_px).tolist()]
    if s == [0.0, 0.0]:
        return mask
    kernel = centered_ifft2(mask)
    # a shift of the mask is a linear phase across its impulse response (the dual of `linear_phase`)
    # M(u - s) = FT[k(x) exp(+2 pi i x.s / N)]: `linear_phase` read with positions for frequencies, conjugated
    ramp = linear_phase(tuple(mask.shape[-2:]), (s[0], s[1]), dtype=mask.real.dtype, device=mask.device).conj()
    return centered_fft2(kernel * ramp)


def tile_masks(kernels: torch.Tensor, layout: TileLayout, per_frame: int, residual_px: torch.Tensor) -> torch.Tensor:
    """Multiplexed masks (F, N, N) as `multiplexed_mask` makes them, each channel's grating
    moved so its tile's centre lands `residual_px` (P, 2) camera pixels back onto its ROI's."""
    align = tile_alignment(layout.tile_shape, tuple(kernels.shape[-2:]))
    frames = -(-kernels.shape[0] // per_frame)
    padded = frames * per_frame - kernels.shape[0]
    if padded:
        kernels = torch.cat((kernels, kernels.new_zeros(padded, *kernels.shape[1:])))
    out = []
    for f in range(frames):
        total = None
        for p, (s, h) in enumerate(zip(layout.kernel_shifts(), kernels[f * per_frame:(f + 1) * per_frame],
                                       strict=True)):
            # the 4f inversion maps a kernel moved by s to a tile moved by -s: move the kernel by +residual
            shift = (s[0] + align[0] + float(residual_px[p, 0]), s[1] + align[1] + float(residual_px[p, 1]))
            m = kernel_to_mask(h, layout.grid_shape, shift)
            total = m if total is None else total + m
        out.append(total)
    return torch.stack(out)


def _board(encoding: str, shape: tuple[int, int]) -> torch.Tensor:
    if encoding == "checkerboard":
        return checkerboard(shape)
    r = torch.arange(shape[0])[:, None].expand(shape)
    c = torch.arange(shape[1])[None, :].expand(shape)
    return (r % 2 == 0) if encoding == "rows" else (c % 2 == 0)


def encode_pairs(mask: torch.Tensor, encoding: str) -> torch.Tensor:
    """Double-phase phase pattern of a passive mask with the pixel pairs laid out by `encoding`.

    Fringing averages neighbouring phases, so it eats the pair's swing; stripes lose it along
    one axis only, the checkerboard along both. (Boosting the swing by what a Gaussian blur
    keeps does not work: the shown phases wrap, and a blurred wrap is no average.)"""
    amplitude = mask.abs().clamp(max=1 - _EPS)
    delta = torch.acos(amplitude)
    phi = torch.angle(mask)
    return torch.where(_board(encoding, tuple(mask.shape[-2:])), phi + delta, phi - delta)


# -- the optimisation ------------------------------------------------------------------------------------


class _Probe:
    """The calibrated twin on a fixed set of probe inputs, read out at the program's ROIs.

    What never changes across steps is computed once: the inputs' spectrum (coherent light)
    and the pupil. The camera integrates only a centred window around the ROIs (a cropped
    camera over the same cropped output plane is the same map there: both are centred on the
    axis), which is most of a step's cost saved.
    """

    MARGIN = 4  # camera pixels kept around the ROIs (the rotation's and the pixel overlap's reach)

    def __init__(self, twin: Twin, amplitude: torch.Tensor, rois: list[tuple[int, int, int, int]],
                 per_frame: int, channels: int, laser_power_w: float) -> None:
        self.twin, self.amplitude, self.laser = twin, amplitude, laser_power_w
        self.per_frame, self.channels = per_frame, channels
        self.spectrum = None
        with torch.no_grad():
            if twin.geometry.illumination == "coherent":  # the inputs never change: their spectrum is computed once
                self.spectrum = twin.spectrum(twin.input_field(amplitude, laser_power_w))
            pupil = twin.pupil()
        self.pupil = None if pupil is None else pupil.detach()
        self.camera, self.window = self._window_camera(twin, rois)
        o = self.window
        th, tw = rois[0][2] - rois[0][0], rois[0][3] - rois[0][1]
        r = torch.tensor([roi[0] - o[0] for roi in rois])[:, None] + torch.arange(th - 1, -1, -1)[None, :]
        c = torch.tensor([roi[1] - o[1] for roi in rois])[:, None] + torch.arange(tw - 1, -1, -1)[None, :]
        self.rows, self.cols = r[:, :, None], c[:, None, :]  # flipped: un-inverts each tile

    def _window_camera(self, twin: Twin, rois: list[tuple[int, int, int, int]]) -> tuple[CameraModel,
                                                                                          tuple[int, int, int, int]]:
        """A camera over the centred window that holds every ROI, and the window (top, left, rows, cols)."""
        geometry, spec = twin.geometry, twin.geometry.camera
        out = geometry.output_grid
        n = tuple(out.shape)
        if tuple(spec.resolution) != n or any(abs(spec.pitch_m / p - 1) > 1e-9 for p in out.pitch_m):
            return twin.camera, (0, 0, n[0], n[1])
        half = []
        for d, (lo, hi) in enumerate(((0, 2), (1, 3))):
            reach = max(max(n[d] // 2 - r[lo], r[hi] - n[d] // 2) for r in rois) + self.MARGIN
            half.append(min(reach, n[d] // 2))
        size = (2 * half[0], 2 * half[1])
        if size == n:
            return twin.camera, (0, 0, n[0], n[1])
        camera = CameraModel(dataclasses.replace(spec, resolution=size), Grid(size, out.pitch_m),
                             geometry.photon_energy_j)
        return camera, (n[0] // 2 - half[0], n[1] // 2 - half[1], size[0], size[1])

    def tiles(self, shown_phase: torch.Tensor, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """(B, T, th, tw) camera power per tile pixel for the SLM showing `shown_phase` (F, N, N)."""
        twin, imp = self.twin, self.twin.imperfections
        t = twin.filter_slm.transmission_from_phase(shown_phase, imp.slm_crosstalk_px, imp.filter_shift_px)
        prepared = torch.fft.ifftshift(t if self.pupil is None else t * self.pupil, dim=(-2, -1))  # prepare_mask
        if self.spectrum is not None:
            power = twin.output_power_spectrum(self.spectrum[index], prepared)  # (B, F, N, N)
        else:
            power = twin.output_power_prepared(self.amplitude[index], prepared, self.laser)
        o = self.window
        power = power[..., o[0]:o[0] + o[2], o[1]:o[1] + o[3]]
        cam = self.camera.integrate(power, imp.camera_shift_px, imp.camera_rotation_rad, imp.camera_scale)
        return cam[..., self.rows, self.cols].flatten(1, 2)[:, : self.channels]

    def frame_of(self) -> torch.Tensor:
        return torch.arange(self.channels) // self.per_frame


def _relative_error(pred: torch.Tensor, target: torch.Tensor, frame_of: torch.Tensor) -> torch.Tensor:
    """Relative L2 tile error after the best scale per frame (the readout fits the same scale)."""
    frames = int(frame_of.max()) + 1
    num = torch.zeros(frames, dtype=pred.dtype).index_add(0, frame_of, (pred * target).sum(dim=(0, 2, 3)))
    den = torch.zeros(frames, dtype=pred.dtype).index_add(0, frame_of, pred.square().sum(dim=(0, 2, 3)))
    scale = (num / den.clamp_min(torch.finfo(pred.dtype).tiny)).detach()[frame_of].reshape(1, -1, 1, 1)
    return ((scale * pred - target).square().sum() / target.square().sum().clamp_min(1e-30)).sqrt()


def optimise_filter(
    twin: Twin,
    kernels: torch.Tensor,
    layout: TileLayout,
    per_frame: int,
    peak: torch.Tensor,
    plain_gray: torch.Tensor,
    amplitude: torch.Tensor,
    target: torch.Tensor,
    rois: list[tuple[int, int, int, int]],
    residual_px: torch.Tensor,
    laser_power_w: float,
    config: RefineConfig = RefineConfig(),
) -> tuple[torch.Tensor, RefineReport]:
    """Gray levels (F, N, N) for the bench `twin` models (calibrated), and a report.

    `kernels` (T, S, S) and `layout`/`per_frame`/`peak` are the ideal program's; `plain_gray` its
    gray levels; `amplitude` (B, 1, rows, cols) the probe inputs on the modulator and `target`
    (B, T, th, tw) the ideal program's tiles for them (student units); `rois` and `residual_px`
    from `rois_on_camera`.
    """
    started = time.perf_counter()
    imp = twin.imperfections
    lut = imp.slm_lut.detach()
    probe = _Probe(twin, amplitude, rois, per_frame, kernels.shape[0], laser_power_w)
    frame_of = probe.frame_of()
    target = target.to(twin.dtype)

    def error(phase: torch.Tensor) -> float:
        with torch.no_grad():
            return float(_relative_error(probe.tiles(phase), target, frame_of))

    plain = error(lut[plain_gray.long()].to(twin.dtype))
    masks = tile_masks(kernels.to(torch.complex128), layout, per_frame, residual_px)
    masks, _ = normalise_mask(masks, peak.reshape(-1, 1, 1).to(torch.float64))
    pupil = twin.pupil()
    if pupil is not None:
        masks = masks * pupil.detach().to(masks.dtype).conj()
    masks = shift_mask(masks, -imp.filter_shift_px.detach())
    masks, _ = normalise_mask(masks)  # the pre-compensation may lift |H| above 1 a little
    # the ideal program's own levels compete too: the pre-compensation must earn its place
    best: tuple[float, str, torch.Tensor] = (plain, "ideal program's", lut[plain_gray.long()].to(twin.dtype))
    for encoding in ENCODINGS:
        shown = lut[nearest_gray_level(encode_pairs(masks, encoding), lut)].to(twin.dtype)
        e = error(shown)
        if e < best[0]:
            best = (e, encoding, shown)
    analytic, encoding, shown = best
    theta = shown.clone().requires_grad_(True)
    if config.steps > 0:
        opt = torch.optim.Adam([theta], lr=config.lr)
        n = amplitude.shape[0]
        gen = torch.Generator().manual_seed(0)
        best_theta, best_err = theta.detach().clone(), analytic
        for step in range(config.steps):
            idx = torch.randperm(n, generator=gen)[: config.batch]
            opt.zero_grad()
            loss = _relative_error(probe.tiles(quantize_to_lut(theta, lut)[1], idx), target[idx], frame_of)
            loss.backward()
            opt.step()
            if (step + 1) % 20 == 0 or step + 1 == config.steps:
                e = error(quantize_to_lut(theta.detach(), lut)[1])
                if e < best_err:
                    best_theta, best_err = theta.detach().clone(), e
        theta = best_theta
    gray = nearest_gray_level(theta.detach(), lut)
    final = error(lut[gray].to(twin.dtype))
    report = RefineReport(encoding=encoding, error_plain=plain, error_analytic=analytic, error_final=final,
                          steps=config.steps, seconds=time.perf_counter() - started)
    return gray, report

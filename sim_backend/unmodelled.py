"""What the simulated bench has and the twin deliberately lacks: the unmodelled truth.

A real bench is never exactly its model. These effects stand for everything
beyond the twin's parameterisation (`labrig.optics.imperfections`): no
calibration routine can fit them, because the twin has no parameter for them,
so after a perfect calibration a residual remains that only in-situ training
(`labrig.hil`) can absorb. They are read from the profile's
``[truth.unmodelled]`` table, on in `sim`, off whenever the truth is off
(`sim-ideal`). Sizes below are the `sim` defaults; each is a key of the table.

=============================  =================================  ==================================
effect                         physics                             `sim` size (key)
=============================  =================================  ==================================
input-modulator pixel aperture each square pixel (width sqrt(fill)  sinc envelope over the spectrum:
                               * pitch) multiplies the spectrum by  0.66 in amplitude at the filter's
                               sinc(a fx) sinc(a fy); the twin has  edge (``pixel_aperture = true``)
                               one sample per pixel, no envelope
filter-SLM pixel aperture      each SLM pixel's finite width        output-plane envelope, 0.65 in
                               multiplies the output field by       amplitude at the camera's edge
                               sinc(a x / (lambda f2))
ghost image                    a reflecting surface (camera         1 % of the power, shifted by
                               window) adds a shifted, attenuated   (9, 6) camera px (``ghost_fraction``,
                               copy of the image (intensity)        ``ghost_shift_px``)
aberrations beyond Zernike 11  trefoil (Z9, Z10) and secondary      0.12, -0.08, 0.06, 0.05 rad
                               astigmatism (Z12, Z13)               (``extra_zernike_rad``)
smooth SLM phase error         cover-glass / backplane flatness:    0.1 wave RMS, Gaussian-correlated
                               a smooth random phase over the SLM   over 16 px (``slm_phase_error_*``)
camera nonlinearity            the response bends near saturation   linear to 70 % of the full well, then
                               (charge-to-voltage compression)      a tanh knee: -1.3 % at 85 %
                                                                    (``camera_knee_fraction``)
laser power fluctuation        frame-to-frame power noise           1 % RMS per frame
                                                                    (``laser_fluctuation_rms``)
=============================  =================================  ==================================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from drivers.config import Section
from labrig.optics.aberrations import pupil_coordinates
from labrig.optics.camera import PixelRect
from labrig.optics.specs import BenchGeometry
from labrig.optics.system import Twin

#: Noll-normalised terms beyond the twin's set (`ZERNIKE_NAMES` stops at Z11)
EXTRA_ZERNIKE_NAMES: tuple[str, ...] = (
    "trefoil_vertical",          # Z9
    "trefoil_oblique",           # Z10
    "secondary_astig_vertical",  # Z12
    "secondary_astig_oblique",   # Z13
)

#: offset added to the truth's seed for the unmodelled effects' random draws
SEED_OFFSET = 1009


def extra_zernike_basis(rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Z9, Z10, Z12, Z13 (Noll) at (rho, theta): shape (4, *rho.shape)."""
    r2 = rho * rho
    radial = 4 * r2 * r2 - 3 * r2
    return torch.stack((
        math.sqrt(8) * r2 * rho * torch.sin(3 * theta),
        math.sqrt(8) * r2 * rho * torch.cos(3 * theta),
        math.sqrt(10) * radial * torch.cos(2 * theta),
        math.sqrt(10) * radial * torch.sin(2 * theta),
    ))


def smooth_phase_error(shape: tuple[int, int], rms_rad: float, correlation_px: float,
                       generator: torch.Generator) -> torch.Tensor:
    """White noise low-passed by a Gaussian of `correlation_px` (sigma), zero mean, `rms_rad` RMS."""
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :]
    lowpass = torch.exp(-2 * (math.pi * correlation_px) ** 2 * (fx * fx + fy * fy))
    smooth = torch.fft.ifft2(torch.fft.fft2(noise) * lowpass).real
    smooth = smooth - smooth.mean()
    return smooth * (rms_rad / smooth.square().mean().sqrt().clamp_min(1e-300))


def knee(electrons: torch.Tensor, full_well_e: float, knee_fraction: float, inplace: bool = False) -> torch.Tensor:
    """Camera response: linear up to `knee_fraction` of the full well, then a tanh
    compression that reaches the full well asymptotically (smooth at the knee).

    Without gradients only the pixels above the knee are computed (a few per cent of a
    frame, none when the frame's maximum is below it), written into `electrons` itself
    when `inplace`."""
    if knee_fraction >= 1:
        return electrons
    k = knee_fraction * full_well_e
    span = full_well_e - k
    if torch.is_grad_enabled() and electrons.requires_grad:
        return torch.where(electrons > k, k + span * torch.tanh((electrons - k) / span), electrons)
    out = electrons if inplace and electrons.is_contiguous() else electrons.contiguous().clone()
    flat = out.view(-1)
    if not flat.numel() or float(flat.max()) <= k:  # one reduction: most frames stay below the knee
        return out
    index = torch.nonzero(flat > k).squeeze(1)  # one compaction serves the gather and the scatter
    if index.numel():
        bent = flat.index_select(0, index)
        flat.index_copy_(0, index, bent.sub_(k).div_(span).tanh_().mul_(span).add_(k))
    return out


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.sinc(x)  # sin(pi x) / (pi x)


@dataclass
class Unmodelled:
    """The effects' sizes; `off()` switches all of them off (`enabled = False`)."""

    enabled: bool = False
    pixel_aperture: bool = False
    ghost_fraction: float = 0.0
    ghost_shift_px: tuple[int, int] = (0, 0)
    extra_zernike_rad: tuple[float, ...] = (0.0,) * len(EXTRA_ZERNIKE_NAMES)
    slm_phase_error_waves_rms: float = 0.0
    slm_phase_error_correlation_px: float = 16.0
    camera_knee_fraction: float = 1.0
    laser_fluctuation_rms: float = 0.0
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def off(cls) -> Unmodelled:
        return cls()

    # -- the Fourier plane -----------------------------------------------------------------------
    def filter_factor(self, geometry: BenchGeometry, dtype: torch.dtype) -> torch.Tensor | None:
        """Complex factor over the Fourier plane (centred): input-pixel sinc envelope x
        exp(i (extra aberrations + SLM phase error)); None when none of them is on."""
        if not self.enabled:
            return None
        key = ("filter", dtype)
        if key not in self._cache:
            self._cache[key] = self._filter_factor(geometry, dtype)
        return self._cache[key]

    def _filter_factor(self, geometry: BenchGeometry, dtype: torch.dtype) -> torch.Tensor | None:
        grid = geometry.fourier_grid
        amplitude = torch.ones(grid.shape, dtype=torch.float64)
        phase = torch.zeros(grid.shape, dtype=torch.float64)
        if self.pixel_aperture:
            y, x = grid.mesh(torch.float64)
            a = math.sqrt(geometry.input.fill_factor) * geometry.input.pitch_m
            scale = a / (geometry.wavelength_m * geometry.focal1_m)  # a * fx at Fourier-plane position x
            amplitude = _sinc(x * scale) * _sinc(y * scale)
        if any(self.extra_zernike_rad):
            rho, theta = pupil_coordinates(grid, torch.float64)
            coeffs = torch.tensor(self.extra_zernike_rad, dtype=torch.float64)
            phase = phase + torch.einsum("j,jyx->yx", coeffs, extra_zernike_basis(rho, theta))
        if self.slm_phase_error_waves_rms > 0:
            gen = torch.Generator().manual_seed(self.seed + SEED_OFFSET)
            phase = phase + smooth_phase_error(grid.shape, 2 * math.pi * self.slm_phase_error_waves_rms,
                                               self.slm_phase_error_correlation_px, gen)
        if not self.pixel_aperture and not bool(torch.any(phase != 0)):
            return None
        real = torch.float32 if dtype in (torch.float32, torch.complex64) else torch.float64
        return torch.polar(amplitude.to(real), phase.to(real))

    # -- the output plane ------------------------------------------------------------------------
    def output_envelope(self, geometry: BenchGeometry, dtype: torch.dtype) -> torch.Tensor | None:
        """Power envelope over the output grid from the filter SLM's pixel aperture."""
        if not (self.enabled and self.pixel_aperture):
            return None
        key = ("output", dtype)
        if key not in self._cache:
            y, x = geometry.output_grid.mesh(torch.float64)
            a = math.sqrt(geometry.filter.fill_factor) * geometry.filter.pitch_m
            scale = a / (geometry.wavelength_m * geometry.focal2_m)
            self._cache[key] = (_sinc(x * scale) * _sinc(y * scale)).square().to(dtype)
        return self._cache[key]

    def ghost(self, power: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Add the shifted, attenuated copy (zero-filled at the edges); into `power` itself
        when `inplace` (no gradients): one copy of the shifted part and one add."""
        if not self.enabled or self.ghost_fraction <= 0:
            return power
        dy, dx = self.ghost_shift_px
        h, w = power.shape[-2:]
        if abs(dy) >= h or abs(dx) >= w:
            return power  # the copy lands beyond the frame
        src = power[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        if inplace and not (torch.is_grad_enabled() and power.requires_grad):
            if src.numel():
                dst = power[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
                dst.add_(src.clone(), alpha=self.ghost_fraction)  # src overlaps dst: read it first
            return power
        copy = torch.zeros_like(power)
        copy[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
        return power + self.ghost_fraction * copy

    def power_factors(self, frames: int, dtype: torch.dtype) -> torch.Tensor:
        """Per-frame laser power multipliers (frames,), 1 + rms * N(0, 1), never negative;
        drawn from their own seeded stream (the camera noise stream is left as it was)."""
        if not self.enabled or self.laser_fluctuation_rms <= 0:
            return torch.ones(frames, dtype=dtype)
        gen = self._cache.setdefault("power", torch.Generator().manual_seed(self.seed + 2 * SEED_OFFSET))
        draw = torch.randn(frames, generator=gen, dtype=torch.float64)
        return (1 + self.laser_fluctuation_rms * draw).clamp_min(0).to(dtype)

    # -- one frame ------------------------------------------------------------------------------
    def renderer(self, twin: Twin):
        """What renders a frame: `frame` bound to `twin`, or the twin's own `frame_prepared` when off."""
        return twin.frame_prepared if not self.enabled else functools.partial(self.frame, twin)

    def frame(self, twin: Twin, input_gray: torch.Tensor, prepared: torch.Tensor, *, laser_power_w: float,
              exposure_s: float, gain: float, noise: bool, generator: torch.Generator,
              region: Sequence[PixelRect] | None = None) -> torch.Tensor:
        """`Twin.frame_prepared` with the output-plane and camera effects added (DN, rounded).
        `prepared` already carries `filter_factor` (see `SimWorld.prepared_mask`); `region`:
        noise only in these camera rectangles, as `Twin.frame_prepared`."""
        imp, camera = twin.imperfections, twin.camera
        window, offset = twin.input_field_window(twin.input_amplitude(input_gray), laser_power_w)
        batch = window.shape[:-2]
        factors = self.power_factors(int(math.prod(batch)), window.dtype)
        if self.enabled and self.laser_fluctuation_rms > 0:
            # the power factor as a field factor on the small input window, not a pass over the frame
            window = window * factors.sqrt().reshape(*batch, 1, 1)
        power = twin.output_power_window(window, offset, prepared)
        owned = not torch.is_grad_enabled()  # the render path: every frame-sized step works in place
        envelope = self.output_envelope(twin.geometry, power.dtype)
        if envelope is not None:
            power = power.mul_(envelope) if owned else power * envelope
        power = self.ghost(power, inplace=owned)
        camera_power = twin.camera_power(power)
        if owned:  # `mean_electrons` in two in-place passes (dark and hot pixels folded into one map)
            spec = camera.spec
            dark = spec.dark_current_e_per_s * exposure_s
            if imp.hot_pixels_e_per_s is not None:
                dark = imp.hot_pixels_e_per_s.to(camera_power.dtype) * exposure_s + dark
            electrons = camera_power.mul_(spec.quantum_efficiency * exposure_s / camera.photon_energy_j).add_(dark)
        else:
            electrons = camera.mean_electrons(camera_power, exposure_s, imp.hot_pixels_e_per_s)
        if noise:
            electrons = camera.sample_electrons(electrons, generator, region, inplace=owned)
        electrons = knee(electrons, camera.spec.full_well_e, self.camera_knee_fraction, inplace=owned)
        return camera.quantize(camera.to_dn(electrons, gain, imp.camera_gain, imp.camera_offset_dn, inplace=owned),
                               inplace=owned)


def unmodelled_from_profile(root: Section, truth_enabled: bool, seed: int) -> Unmodelled:
    """The profile's ``[truth.unmodelled]``; all off when the truth is off (`sim-ideal`)."""
    table = root.section("truth", required=False).section("unmodelled", required=False)
    return read_unmodelled(table, seed) if truth_enabled else Unmodelled.off()


def read_unmodelled(table: Section, seed: int) -> Unmodelled:
    """Parse ``[truth.unmodelled]`` (absent or ``enabled = false``: all off)."""
    if not table.get_bool("enabled", False):
        table.accept(*table.data.keys())
        return Unmodelled.off()
    extra = table.section("extra_zernike_rad", required=False)
    unknown = sorted(set(extra.data) - set(EXTRA_ZERNIKE_NAMES))
    if unknown:
        raise table.error("extra_zernike_rad", f"unknown term(s) {unknown}; known: {', '.join(EXTRA_ZERNIKE_NAMES)}")
    shift = table.get_floats("ghost_shift_px", 2, [0.0, 0.0])
    out = Unmodelled(
        enabled=True,
        pixel_aperture=table.get_bool("pixel_aperture", False),
        ghost_fraction=table.get_float("ghost_fraction", 0.0, min=0.0, max=1.0),
        ghost_shift_px=(round(shift[0]), round(shift[1])),
        extra_zernike_rad=tuple(extra.get_float(n, 0.0) for n in EXTRA_ZERNIKE_NAMES),
        slm_phase_error_waves_rms=table.get_float("slm_phase_error_waves_rms", 0.0, min=0.0),
        slm_phase_error_correlation_px=table.get_float("slm_phase_error_correlation_px", 16.0, positive=True),
        camera_knee_fraction=table.get_float("camera_knee_fraction", 1.0, positive=True, max=1.0),
        laser_fluctuation_rms=table.get_float("laser_fluctuation_rms", 0.0, min=0.0, max=0.5),
        seed=seed,
    )
    table.check_unused()
    return out


__all__ = ["EXTRA_ZERNIKE_NAMES", "Unmodelled", "extra_zernike_basis", "knee", "read_unmodelled",
           "smooth_phase_error", "unmodelled_from_profile"]

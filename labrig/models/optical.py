"""The SCLC front end run through the digital twin of the bench.

Two paths share tile planning and read-out:

- `OpticalPath.detect` / `field` (mode ``optical``): the exact complex mask of
  each kernel on an ideal filter plane; with ideal optics this equals the
  collapsed convolution to float precision (tested), and output is in the
  same units (divided by the power an open pixel puts on a camera pixel).
- `OpticalPath.measure` (mode ``optics_aware``): what the bench can show and
  see: the multiplexed mask normalised to |H| <= 1, double-phase encoded,
  quantised to the SLM's levels (straight-through), the input quantised to the
  input modulator's levels, camera DN with shot and read noise
  (reparameterised: expected + std * ε) and ADC rounding (straight-through).
  The host then subtracts the dark level and undoes the known gains (exposure,
  mask normalisation) so the output is on the same scale as the ideal path.

Channels share a frame through spatial multiplexing (`plan_tiles`); when they
do not fit, frames are added (time multiplexing) and batched as a frame axis.
The twin's imperfections start ideal (what the host knows before calibration);
calibration may overwrite them in `twin.imperfections`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from labrig.geometry import geometry_from_profile
from labrig.models.detection import Detection, psf_pair, safe_sqrt, subtract_pairs
from labrig.models.errors import ModelConfigError
from labrig.optics import (
    CameraModel,
    Imperfections,
    LayoutError,
    TileLayout,
    Twin,
    double_phase,
    multiplexed_mask,
    normalise_mask,
    place_centered,
    plan_tiles,
)
from labrig.optics.specs import BenchGeometry
from labrig.optics.system import abs2
from labrig.profiles import load_profile

Layout = Literal["auto", "multiplexed", "per_channel"]
LAYOUTS: tuple[str, ...] = ("auto", "multiplexed", "per_channel")


@dataclass(frozen=True)
class OpticsConfig:
    """Which bench (profile) the optical modes simulate, and how they use it.

    `layout`: ``multiplexed`` puts every channel on one frame (error if they do
    not fit), ``per_channel`` one channel per frame, ``auto`` as many per frame
    as fit. The remaining fields matter for ``optics_aware`` only. The exposure
    sets the signal against noise and saturation (a saturated pixel passes no
    gradient); None means auto-exposure per image and frame, the brightest tile
    pixel at `exposure_fill` of the full well, as a lab would set it.
    """

    profile: str = "sim"
    layout: Layout = "auto"
    gap: int = 2
    max_per_frame: int | None = None
    """Cap on tiles per frame (``auto``). With a physical filter the double-phase
    residual of a busy multiplexed mask spills onto other tiles (16 random 9x9
    channels on 28 px: ~20-35 % deviation from the ideal twin at 8 per frame,
    ~10 % at 6, ~5 % at 2, none at 1); more frames trade bench time for fidelity."""
    laser_power_w: float = 0.01
    exposure_s: float | None = None
    exposure_fill: float = 0.8
    gain: float = 1.0
    noise: bool = True
    quantize_slm: bool = True
    quantize_input: bool = True
    quantize_camera: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ModelConfigError(f"optics layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.max_per_frame is not None and self.max_per_frame < 1:
            raise ModelConfigError(f"optics max_per_frame must be >= 1, got {self.max_per_frame}")
        if self.gap < 0 or self.laser_power_w <= 0 or self.gain <= 0 or (self.exposure_s or 1) <= 0:
            raise ModelConfigError("optics gap must be >= 0 and laser power, exposure and gain > 0")
        if not 0 < self.exposure_fill <= 1:
            raise ModelConfigError(f"optics exposure_fill must be in (0, 1], got {self.exposure_fill}")


@dataclass(frozen=True)
class FramePlan:
    """How T channels go onto frames: `per_frame` tiles laid out by `layout`."""

    layout: TileLayout
    channels: int
    per_frame: int

    @property
    def frames(self) -> int:
        return math.ceil(self.channels / self.per_frame)


def bench_geometry(profile: str, detection: Detection) -> BenchGeometry:
    """The profile's geometry, with the illumination the detection model needs."""
    geometry = geometry_from_profile(load_profile(profile).root)
    illumination = "incoherent" if detection == "incoherent" else "coherent"
    if geometry.illumination != illumination:
        geometry = dataclasses.replace(geometry, illumination=illumination)
    return geometry


class OpticalPath(nn.Module):
    """Runs collapsed kernels (T, S, S) on images (B, H, W) through a `Twin`.

    Its steps (`filter_kernels`, `frame_masks`, `input_amplitude`, `dark_dn`,
    `dn_per_unit`) are public because `labrig.deploy` compiles a program from
    them: what goes on the bench is, by construction, what the student trained on.
    """

    def __init__(self, config: OpticsConfig, detection: Detection) -> None:
        super().__init__()
        self.config = config
        self.detection = detection
        geometry = bench_geometry(config.profile, detection)
        self.twin = Twin(geometry, Imperfections.ideal(geometry))
        self._plans: dict[tuple, FramePlan] = {}
        camera, out = geometry.camera, geometry.output_grid
        same_pitch = all(abs(camera.pitch_m / p - 1) < 1e-9 for p in out.pitch_m)
        if not same_pitch or tuple(camera.resolution) != tuple(out.shape):
            # tiles are cut at output-grid sample positions; another camera sampling
            # would resample them (the bench program's readout ROIs handle that)
            raise ModelConfigError(
                f"profile {config.profile!r}: the optical modes need the camera to sample the "
                f"output grid one pixel per sample ({out.shape} at {out.pitch_m[0]:g} m), got "
                f"{camera.resolution} at {camera.pitch_m:g} m"
            )

    @property
    def geometry(self) -> BenchGeometry:
        return self.twin.geometry

    def set_imperfections(self, imperfections: Imperfections) -> None:
        """Replace what the twin assumes about the bench (e.g. with calibrated values)."""
        self.twin.imperfections = imperfections.to(device=self.twin.device, dtype=self.twin.dtype)

    # -- planning -----------------------------------------------------------------------
    def plan(self, channels: int, image_shape: tuple[int, int], kernel_shape: tuple[int, int], physical: bool) -> FramePlan:
        """Tile layout for `channels` kernels on images of `image_shape` (cached)."""
        key = (channels, tuple(image_shape), tuple(kernel_shape), physical)
        if key not in self._plans:
            self._plans[key] = self._make_plan(channels, image_shape, kernel_shape, physical)
        return self._plans[key]

    def _make_plan(self, channels: int, image_shape, kernel_shape, physical: bool) -> FramePlan:
        grid = self.geometry.fourier_grid.shape
        modulator = self.geometry.input.resolution
        if image_shape[0] > modulator[0] or image_shape[1] > modulator[1]:
            raise ModelConfigError(f"{tuple(image_shape)} images do not fit the {modulator} input modulator")
        tile = (image_shape[0] + kernel_shape[0] - 1, image_shape[1] + kernel_shape[1] - 1)

        def layout(n: int) -> TileLayout:
            # physical masks leak a zero order (SLM dead space, on the axis) and a
            # double-phase residual (half a grid from each tile): keep tiles off both
            return plan_tiles(n, grid, tile, input_shape=tuple(image_shape), gap=self.config.gap,
                              avoid_zero_order=physical, avoid_residual=physical)

        mode = self.config.layout
        most = min(channels, self.config.max_per_frame or channels)
        counts = {"multiplexed": [channels], "per_channel": [1]}.get(mode, range(most, 0, -1))
        error: LayoutError | None = None
        for n in counts:
            try:
                return FramePlan(layout(n), channels, n)
            except LayoutError as exc:
                error = error or exc
        hint = " (try layout='auto')" if mode == "multiplexed" else ""
        raise ModelConfigError(f"optics profile {self.config.profile!r}: {error}{hint}") from error

    # -- shared pieces ------------------------------------------------------------------
    def filter_kernels(self, kernels: torch.Tensor) -> torch.Tensor:
        """What goes on the filter: the kernels (coherent), or the amplitude of the
        PSF pair relu(±W) (incoherent: PSF = |h|^2)."""
        return safe_sqrt(psf_pair(kernels)) if self.detection == "incoherent" else kernels

    def input_amplitude(self, images: torch.Tensor) -> torch.Tensor:
        """Modulator amplitudes (B, 1, rows, cols): the image is the field amplitude
        (coherent) or the intensity (incoherent), centred on the axis."""
        a = safe_sqrt(images.clamp_min(0)) if self.detection == "incoherent" else images
        return place_centered(a, self.geometry.input.resolution)[:, None]

    def frame_masks(self, kernels: torch.Tensor, plan: FramePlan) -> torch.Tensor:
        """One multiplexed mask per frame (F, N, N); the last frame is padded with zero kernels."""
        padded = plan.frames * plan.per_frame - kernels.shape[0]
        if padded:
            kernels = torch.cat((kernels, kernels.new_zeros(padded, *kernels.shape[1:])))
        groups = kernels.reshape(plan.frames, plan.per_frame, *kernels.shape[1:])
        return multiplexed_mask(groups, plan.layout)  # every frame's mask in one batched transform

    @staticmethod
    def _cut(planes: torch.Tensor, layout: TileLayout) -> torch.Tensor:
        """`layout.extract` as one gather: (..., N, N) -> (..., P, th, tw), un-inverted.

        One indexing op instead of a slice per tile, so the backward pass writes
        one zero frame instead of one per tile (the frames are 256 x 256).
        """
        half = (planes.shape[-2] // 2, planes.shape[-1] // 2)
        rects = torch.tensor(layout.rects(), device=planes.device)
        th, tw = layout.tile_shape
        # the flip that undoes the 4f inversion is folded into the index order
        rows = rects[:, 0:1] + half[0] + torch.arange(th - 1, -1, -1, device=planes.device)
        cols = rects[:, 1:2] + half[1] + torch.arange(tw - 1, -1, -1, device=planes.device)
        return planes[..., rows[:, :, None], cols[:, None, :]]

    def _tiles(self, frames: torch.Tensor, plan: FramePlan) -> torch.Tensor:
        """(B, F, N, N) output planes -> (B, T, th, tw) tiles, un-inverted."""
        return self._cut(frames, plan.layout).flatten(1, 2)[:, : plan.channels]

    def _unit_power(self, dtype: torch.dtype, device: torch.device, camera: bool) -> torch.Tensor:
        """Power an open pixel on the axis puts on its camera pixel (output sample)
        through an all-pass mask: the scale between twin and convolution."""
        res = self.geometry.input.resolution
        delta = torch.zeros(res, dtype=dtype, device=device)
        delta[res[0] // 2, res[1] // 2] = 1
        ones = torch.ones(self.geometry.fourier_grid.shape, dtype=dtype, device=device)
        power = self.twin.output_power(delta, torch.complex(ones, torch.zeros_like(ones)), self.config.laser_power_w)
        if camera:
            power = self.twin.camera_power(power)
        return power.amax()

    # -- mode "optical" --------------------------------------------------------------------
    def detect(self, images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Ideal optics: camera power per tile / unit power, (B, K, H', W')."""
        filt = self.filter_kernels(kernels)
        plan = self.plan(filt.shape[0], images.shape[-2:], kernels.shape[-2:], physical=False)
        power = self.twin.output_power(self.input_amplitude(images), self.frame_masks(filt, plan), self.config.laser_power_w)
        tiles = self._tiles(self.twin.camera_power(power), plan)
        tiles = tiles / self._unit_power(images.dtype, images.device, camera=True)
        return subtract_pairs(tiles) if self.detection == "incoherent" else tiles

    def field(self, images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Ideal optics, before the camera: the output field per tile (coherent),
        or the signed intensity (incoherent, which has no field to speak of)."""
        if self.detection == "incoherent":
            return self.detect(images, kernels)
        plan = self.plan(kernels.shape[0], images.shape[-2:], kernels.shape[-2:], physical=False)
        twin = self.twin
        source = twin.input_field(self.input_amplitude(images), self.config.laser_power_w)
        out = twin.output_field(source, self.frame_masks(kernels, plan)).data
        return self._tiles(out, plan) / torch.sqrt(self._unit_power(images.dtype, images.device, camera=False))

    # -- mode "optics_aware" -------------------------------------------------------------
    def measure(self, images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Physical filter, quantised input, noisy camera; read out and rescaled."""
        cfg, twin = self.config, self.twin
        filt = self.filter_kernels(kernels)
        plan = self.plan(filt.shape[0], images.shape[-2:], kernels.shape[-2:], physical=True)
        mask, peak = normalise_mask(self.frame_masks(filt, plan))
        # angle() has no gradient at an exact zero; a zero there is a zero-amplitude pixel
        mask = torch.where(mask.abs() > 0, mask, torch.full_like(mask, torch.finfo(peak.dtype).tiny))
        transmission = twin.filter_transmission_from_phase(double_phase(mask), quantize=cfg.quantize_slm)
        amplitude = self.input_amplitude(images)
        if cfg.quantize_input:
            amplitude = twin.input_amplitude(twin.input_modulator.gray_for_amplitude(amplitude))
        window, offset = twin.input_field_window(amplitude, cfg.laser_power_w)
        prepared = twin.prepare_mask(transmission)
        # the camera chain is per pixel: run it on the tiles only (the ROIs a bench reads)
        placement = twin.camera_placement(amplitude.dtype) if twin.geometry.illumination == "coherent" else None
        if placement is not None:
            # an aligned camera reads each output sample: |field|^2 of the tiles only, so
            # neither the forward nor the backward pass touches a whole power plane
            power = abs2(self._cut(twin.output_field_window(window, offset, prepared), plan.layout))
            for factor in placement:
                power = power if factor == 1.0 else power * factor
        else:
            power = twin.output_power_window(window, offset, prepared)
            power = self._cut(twin.camera_power(power), plan.layout)  # (B, F, P, th, tw)
        exposure = self._exposure(power)
        dn = self._read_camera(power, plan.layout, exposure)
        signal = (dn - self.dark_dn(exposure)) / self.dn_per_unit(images.dtype, images.device, exposure)
        # undo the known mask normalisation (per frame) so the scale matches `detect`
        tiles = (signal * peak.reshape(1, -1, 1, 1, 1).square()).flatten(1, 2)[:, : plan.channels]
        return subtract_pairs(tiles) if self.detection == "incoherent" else tiles

    def _exposure(self, power: torch.Tensor) -> torch.Tensor | float:
        """The configured exposure, or per image and frame (B, F, 1, 1, 1) the one that
        puts the brightest tile pixel at `exposure_fill` of the full well (not trained)."""
        cfg, spec = self.config, self.geometry.camera
        if cfg.exposure_s is not None:
            return cfg.exposure_s
        e_per_s = power.detach().amax(dim=(2, 3, 4), keepdim=True) * (
            spec.quantum_efficiency / self.geometry.photon_energy_j)
        return cfg.exposure_fill * spec.full_well_e / e_per_s.clamp_min(torch.finfo(power.dtype).tiny)

    def _read_camera(self, power: torch.Tensor, layout: TileLayout, exposure: torch.Tensor | float) -> torch.Tensor:
        """DN of tile pixels: the twin's expected reading (`Twin.expected_dn`: electrons,
        full well, gain, offset, ADC range) + std * ε (shot + read noise,
        reparameterised), clipped, rounded with a straight-through gradient."""
        cfg, imp = self.config, self.twin.imperfections
        spec, camera = self.geometry.camera, self.twin.camera
        hot = imp.hot_pixels_e_per_s
        hot = None if hot is None else self._cut(hot.to(power.dtype), layout)
        electrons = camera.mean_electrons(power, exposure, hot)
        dn = camera.to_dn(electrons, cfg.gain, imp.camera_gain, imp.camera_offset_dn)
        if cfg.noise:
            dn_per_e = spec.conversion_dn_per_e * cfg.gain * imp.camera_gain
            variance = electrons.clamp_min(0) + spec.read_noise_e**2
            std = dn_per_e * torch.sqrt(variance.clamp_min(torch.finfo(power.dtype).tiny))
            dn = (dn + std * torch.randn_like(dn)).clamp(0, spec.max_dn)
        return CameraModel.quantize(dn) if cfg.quantize_camera else dn

    def dark_dn(self, exposure: torch.Tensor | float) -> torch.Tensor | float:
        """Reading with no light (the nominal offset plus dark current), as a dark frame gives."""
        spec, cfg = self.geometry.camera, self.config
        return spec.offset_dn + spec.dark_current_e_per_s * exposure * spec.conversion_dn_per_e * cfg.gain

    def dn_per_unit(self, dtype: torch.dtype, device: torch.device, exposure: torch.Tensor | float) -> torch.Tensor:
        """DN per unit |x ⊛ h|^2 for a passive mask, fill factor of the filter SLM included."""
        spec, cfg = self.geometry.camera, self.config
        unit = self._unit_power(dtype, device, camera=True) * self.geometry.filter.fill_factor**2
        photons = unit * exposure / self.geometry.photon_energy_j
        return photons * spec.quantum_efficiency * spec.conversion_dn_per_e * cfg.gain

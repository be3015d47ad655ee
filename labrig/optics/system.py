"""The digital twin: the small optical elements composed into a 4f bench.

    input modulator -> illumination -> lens f1 -> aberrations -> filter SLM
      -> lens f2 -> camera (area integration, square law, noise, ADC)

Coherent light: the camera sees |u (*) h|^2. Incoherent light: it sees
I (*) |h|^2. The same object serves training (differentiable), the mask
compiler (expected frames) and the simulated bench (with the truth as its
imperfections), so the three cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from labrig.optics.aberrations import zernike_phase
from labrig.optics.camera import CameraModel, PixelRect
from labrig.optics.conv import mask_to_kernel
from labrig.optics.field import Field
from labrig.optics.grid import invert_centered
from labrig.optics.imperfections import Imperfections
from labrig.optics.lens import FourierLens, centered_fft2, centered_ifft2
from labrig.optics.modulators import FilterSLM, Illumination, InputModulator
from labrig.optics.residual import TwinResidual
from labrig.optics.specs import BenchGeometry


def _zero(t: torch.Tensor) -> bool:
    return not t.requires_grad and bool(torch.all(t == 0))


class Twin(nn.Module):
    """A differentiable model of one 4f bench with given imperfections.

    Batched over leading dims of the input; float32 or float64 (`dtype`), on
    whatever device it is moved to.
    """

    def __init__(
        self,
        geometry: BenchGeometry,
        imperfections: Imperfections | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.geometry = geometry
        self.imperfections = imperfections if imperfections is not None else Imperfections.ideal(geometry)
        self.input_modulator = InputModulator(geometry.input, geometry.input_grid)
        self.illumination = Illumination()
        self.lens1 = FourierLens(geometry.focal1_m)
        self.filter_slm = FilterSLM(geometry.filter, geometry.fourier_grid)
        self.lens2 = FourierLens(geometry.focal2_m)
        self.camera = CameraModel(geometry.camera, geometry.output_grid, geometry.photon_energy_j)
        self.residual: TwinResidual | None = None
        """A learned smooth correction (`labrig.optics.residual`) beyond the named imperfections;
        None (the default, and always in the simulator) leaves the twin as its imperfections say."""
        self.to(dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.imperfections.camera_gain.dtype

    @property
    def device(self) -> torch.device:
        return self.imperfections.camera_gain.device

    # -- input plane -------------------------------------------------------------
    def irradiance_w_m2(self, laser_power_w: float) -> float:
        """Irradiance on the input modulator: laser power through the optics,
        spread over the modulator's area (before the illumination profile)."""
        rows, cols = self.geometry.input.resolution
        area = rows * cols * self.geometry.input.pitch_m**2
        return laser_power_w * self.geometry.transmission / area

    def input_amplitude(self, gray: torch.Tensor) -> torch.Tensor:
        """Field amplitude sqrt(T) of each modulator pixel for gray levels."""
        t = self.input_modulator.transmission(gray, self.imperfections.input_contrast)
        return torch.sqrt(t.to(self.dtype))

    def input_field(self, amplitude: torch.Tensor, laser_power_w: float) -> Field:
        """Field on the simulation grid for per-pixel amplitudes in [0, 1]."""
        window, offset = self.input_field_window(amplitude, laser_power_w)
        return Field(self.input_modulator.place_window(window, offset), self.geometry.input_grid,
                     self.geometry.wavelength_m)

    def input_field_window(self, amplitude: torch.Tensor, laser_power_w: float) -> tuple[torch.Tensor, tuple[int, int]]:
        """`input_field` as its non-zero window of the grid and that window's (top, left):
        the modulator, its misalignment and the illumination profile, computed where
        there is light only."""
        imp = self.imperfections
        window, (top, left) = self.input_modulator.field_window(
            amplitude, self.irradiance_w_m2(laser_power_w), imp.input_shift_px, imp.input_rotation_rad,
        )
        dtype = window.real.dtype if torch.is_complex(window) else window.dtype
        profile = self.illumination.profile(
            self.geometry.input_grid, imp.illumination_waist_m, imp.illumination_center_m, dtype, window.device,
            (top, left, *window.shape[-2:]),
        )
        return (window if profile is None else window * profile), (top, left)

    # -- Fourier plane -------------------------------------------------------------
    def filter_transmission(self, gray: torch.Tensor) -> torch.Tensor:
        """Complex transmission of the filter SLM showing gray levels."""
        imp = self.imperfections
        response = self.filter_slm.response(gray, imp.slm_lut)
        if self.geometry.filter.modulation == "phase":
            return self.filter_slm.transmission_from_phase(response, imp.slm_crosstalk_px, imp.filter_shift_px)
        return self.filter_slm.transmission_from_intensity(response, imp.filter_shift_px)

    def filter_transmission_from_phase(self, phase: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Transmission for a wanted phase pattern (training path): quantised to
        the SLM's LUT levels with a straight-through gradient when `quantize`."""
        imp = self.imperfections
        lut = imp.slm_lut if quantize else None
        return self.filter_slm.transmission_from_phase(phase, imp.slm_crosstalk_px, imp.filter_shift_px, lut)

    def pupil(self) -> torch.Tensor | None:
        """exp(i W) of the aberrations over the Fourier plane, or None if there are none."""
        z = self.imperfections.zernike_rad
        if _zero(z):
            return None
        w = zernike_phase(z, self.geometry.fourier_grid)
        return torch.polar(torch.ones_like(w), w)

    def effective_mask(self, transmission: torch.Tensor) -> torch.Tensor:
        pupil = self.pupil()
        mask = transmission if pupil is None else transmission * pupil
        if self.residual is not None:
            mask = mask * self.residual.fourier_factor(tuple(mask.shape[-2:])).to(mask.dtype)
        return mask

    # -- output plane --------------------------------------------------------------
    def output_field(self, field: Field, transmission: torch.Tensor) -> Field:
        """Coherent propagation input plane -> output plane through the mask."""
        spectrum = self.lens1(field)
        filtered = self.filter_slm(spectrum, self.effective_mask(transmission))
        return self.lens2(filtered)

    def prepare_mask(self, transmission: torch.Tensor) -> torch.Tensor:
        """The effective mask (aberrations included) in FFT order, computed once per
        filter pattern and reused for every input frame."""
        return torch.fft.ifftshift(self.effective_mask(transmission), dim=(-2, -1))

    def output_power(self, amplitude: torch.Tensor, transmission: torch.Tensor, laser_power_w: float) -> torch.Tensor:
        """Power per output-grid sample (W) for modulator amplitudes and a mask."""
        return self.output_power_prepared(amplitude, self.prepare_mask(transmission), laser_power_w)

    def output_power_prepared(self, amplitude: torch.Tensor, prepared: torch.Tensor, laser_power_w: float) -> torch.Tensor:
        """`output_power` for a `prepare_mask` result: `input_field_window` then
        `output_power_window` (the composition lens1 -> mask -> lens2 of
        `output_field`, tested equal)."""
        window, offset = self.input_field_window(amplitude, laser_power_w)
        return self.output_power_window(window, offset, prepared)

    def output_power_window(self, window: torch.Tensor, offset: tuple[int, int], prepared: torch.Tensor) -> torch.Tensor:
        """Output power per sample (centred grid) for an input field given as its
        window at `offset` (`input_field_window`) and a `prepare_mask` result.

        Coherent: lens 1 transforms only the window's rows (the other rows are
        dark); where the window sits, and the centring shifts of both lenses, are
        linear phases folded into the mask (`window_ramp`), so no shifted or padded
        copy of a frame is made.
        """
        if self.geometry.illumination == "incoherent":
            full = self.input_modulator.place_window(window, offset)
            power = Field(full, self.geometry.input_grid, self.geometry.wavelength_m).power()
            return incoherent_output(power, torch.fft.fftshift(prepared, dim=(-2, -1)))
        return abs2(self.output_field_window(window, offset, prepared))

    def output_field_window(self, window: torch.Tensor, offset: tuple[int, int], prepared: torch.Tensor) -> torch.Tensor:
        """The coherent output field (centred grid) whose power `output_power_window` gives:
        for a caller that reads a few regions only (|.|^2 of those, not of the whole plane)."""
        if self.geometry.illumination == "incoherent":
            raise ValueError("incoherent illumination has no output field: use output_power_window")
        rows, cols = self.geometry.fourier_grid.shape
        mask = prepared * window_ramp((rows, cols), offset, prepared)
        return torch.fft.fft2(lens1_times_mask(window, mask), norm="ortho")

    @staticmethod
    def spectrum(field: Field) -> torch.Tensor:
        """The input field's spectrum in FFT order (coherent): computed once, it serves every
        mask shown to the same inputs (`output_power_spectrum`)."""
        return torch.fft.fft2(torch.fft.ifftshift(field.data, dim=(-2, -1)), norm="ortho")

    @staticmethod
    def output_power_spectrum(spectrum: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """Coherent output power per sample for a `spectrum` and a `prepare_mask` result."""
        out = torch.fft.fft2(spectrum * prepared, norm="ortho")
        return torch.fft.fftshift(abs2(out), dim=(-2, -1))

    def camera_power(self, output_power: torch.Tensor) -> torch.Tensor:
        imp = self.imperfections
        if self.residual is not None:
            output_power = output_power * self.residual.output_gain(tuple(output_power.shape[-2:])).to(output_power.dtype)
        return self.camera.integrate(output_power, imp.camera_shift_px, imp.camera_rotation_rad, imp.camera_scale)

    def camera_placement(self, dtype: torch.dtype | None = None) -> tuple[float, float] | None:
        """`CameraModel.placement` of this twin's camera: (row, col) factors when
        `camera_power` only scales each output sample onto its own camera pixel."""
        imp = self.imperfections
        return self.camera.placement(imp.camera_shift_px, imp.camera_rotation_rad, imp.camera_scale,
                                     dtype or self.dtype)

    def expected_dn(self, camera_power: torch.Tensor, exposure_s: float, gain: float = 1.0, *,
                    inplace: bool = False) -> torch.Tensor:
        """Noise-free camera reading (DN, not rounded): differentiable. `inplace` (no
        gradients): the same arithmetic in `camera_power`'s own memory (a renderer's frame)."""
        imp = self.imperfections
        e = self.camera.mean_electrons(camera_power, exposure_s, imp.hot_pixels_e_per_s, inplace=inplace)
        return self.camera.to_dn(e, gain, imp.camera_gain, imp.camera_offset_dn, inplace=inplace)

    def sample_dn(
        self, camera_power: torch.Tensor, exposure_s: float, gain: float = 1.0, generator: torch.Generator | None = None,
        region: Sequence[PixelRect] | None = None, *, inplace: bool = False,
    ) -> torch.Tensor:
        """One noisy reading (DN, not rounded) with shot, dark and read noise.

        `region`: camera rectangles (top, left, bottom, right) that the caller reads;
        noise is drawn there only and the rest of the frame is the noise-free
        reading (`expected_dn`). None: noise everywhere (a live view, a dark frame).
        """
        imp = self.imperfections
        mean_e = self.camera.mean_electrons(camera_power, exposure_s, imp.hot_pixels_e_per_s, inplace=inplace)
        owned = not torch.is_grad_enabled()  # mean_e and e are this call's own (or the caller's, given `inplace`)
        e = self.camera.sample_electrons(mean_e, generator, region, inplace=owned)
        return self.camera.to_dn(e, gain, imp.camera_gain, imp.camera_offset_dn, inplace=owned)

    def frame(
        self,
        input_gray: torch.Tensor,
        filter_gray: torch.Tensor,
        *,
        laser_power_w: float,
        exposure_s: float,
        gain: float = 1.0,
        noise: bool = False,
        generator: torch.Generator | None = None,
        region: Sequence[PixelRect] | None = None,
    ) -> torch.Tensor:
        """Camera frames (float tensor of integer DN values) for modulator and SLM gray levels."""
        prepared = self.prepare_mask(self.filter_transmission(filter_gray))
        return self.frame_prepared(
            input_gray, prepared, laser_power_w=laser_power_w,
            exposure_s=exposure_s, gain=gain, noise=noise, generator=generator, region=region,
        )

    def frame_prepared(
        self,
        input_gray: torch.Tensor,
        prepared: torch.Tensor,
        *,
        laser_power_w: float,
        exposure_s: float,
        gain: float = 1.0,
        noise: bool = False,
        generator: torch.Generator | None = None,
        region: Sequence[PixelRect] | None = None,
    ) -> torch.Tensor:
        """`frame` for a `prepare_mask` result (the filter rarely changes; inputs do).

        The stages: input amplitude -> input field (its lit window) -> output power
        -> camera power -> DN (noisy where `region` says, or everywhere) -> integer
        DN. The simulated bench renders through this, or through
        `sim_backend.unmodelled.Unmodelled.frame`, which adds its effects between them.
        """
        amplitude = self.input_amplitude(input_gray)
        window, offset = self.input_field_window(amplitude, laser_power_w)
        power = self.camera_power(self.output_power_window(window, offset, prepared))
        owned = not torch.is_grad_enabled()  # rendering: the frame's steps reuse its memory (same arithmetic)
        if noise:
            dn = self.sample_dn(power, exposure_s, gain, generator, region, inplace=owned)
        else:
            dn = self.expected_dn(power, exposure_s, gain, inplace=owned)
        return self.camera.quantize(dn, inplace=owned)


class _Abs2(torch.autograd.Function):
    """|z|^2 of a complex tensor: one fused pass forward, one multiply backward
    (d|z|^2 / dz* = z: the gradient 2 g z, where the real/imag views' backward
    would write two zero-filled complex tensors)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z.real.square().addcmul_(z.imag, z.imag)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return z * (2 * grad)


def abs2(z: torch.Tensor) -> torch.Tensor:
    """Power |z|^2 (real) of a complex field, cheap in both directions."""
    return _Abs2.apply(z) if torch.is_complex(z) else z.square()


def lens1_times_mask(window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """fft(window zero-padded to the mask's (rows, cols) grid, norm="ortho") x mask.

    A real window (the usual amplitude modulator) has a Hermitian spectrum, so
    only its non-negative column frequencies are transformed (`rfft` along the
    window's rows, then the row pass on cols // 2 + 1 columns instead of all),
    and the other half is the conjugate mirror: half the work of the full
    transform. Every 1-D pass runs along contiguous memory (a strided pass rounds
    differently with the batch size; one frame must equal the same frame in a batch).
    """
    rows, cols = mask.shape[-2:]
    if torch.is_complex(window):
        spectrum = torch.fft.fft(window.mT.contiguous(), n=rows, dim=-1, norm="ortho")
        spectrum = torch.fft.fft(spectrum.mT.contiguous(), n=cols, dim=-1, norm="ortho")
        return spectrum * mask
    half = cols // 2 + 1
    spectrum = torch.fft.rfft(window, n=cols, dim=-1, norm="ortho")  # (..., h, half)
    spectrum = torch.fft.fft(spectrum.mT.contiguous(), n=rows, dim=-1, norm="ortho").mT  # (..., rows, half)
    if torch.is_grad_enabled() and (spectrum.requires_grad or mask.requires_grad):
        # S[k1, k2] = conj(S[-k1, -k2]): the mirrored half, out of place for autograd
        mirror = torch.cat((spectrum[..., :1, :], spectrum[..., 1:, :].flip(-2)), dim=-2)
        mirror = mirror[..., 1 : cols - half + 1].flip(-1).conj()
        return torch.cat((spectrum, mirror), dim=-1) * mask
    lead = torch.broadcast_shapes(spectrum.shape[:-2], mask.shape[:-2])
    out = torch.empty((*lead, rows, cols), dtype=torch.promote_types(spectrum.dtype, mask.dtype), device=spectrum.device)
    torch.mul(spectrum, mask[..., :half], out=out[..., :half])
    k = cols - half  # mirrored columns half .. cols - 1 read columns k .. 1
    upper = out[..., half:]
    torch.mul(spectrum[..., :1, 1 : k + 1].flip(-1).conj(), mask[..., :1, half:], out=upper[..., :1, :])
    torch.mul(spectrum[..., 1:, 1 : k + 1].flip((-2, -1)).conj(), mask[..., 1:, half:], out=upper[..., 1:, :])
    return out


def window_ramp(shape: tuple[int, int], offset: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Linear phase (FFT order) that turns fft(window) into the centred 4f result.

    A window at row `top` of an N-row centred plane: fft of the plane is
    exp(-2 pi i k top / N) fft(window, n=N); the ifftshift before lens 1 and the
    fftshift after lens 2 each add exp(2 pi i k (N // 2) / N) (they cancel for
    even N). Separable: an outer product of one vector per axis.
    """
    real = like.real.dtype if torch.is_complex(like) else like.dtype
    ramps = []
    for n, t in zip(shape, offset, strict=True):
        k = (torch.arange(n, device=like.device) * ((t - 2 * (n // 2)) % n)) % n
        phase = (-2 * math.pi / n) * k.to(torch.float64)
        ramps.append(torch.polar(torch.ones_like(phase), phase).to(torch.complex128 if real == torch.float64 else torch.complex64))
    return ramps[0][:, None] * ramps[1][None, :]


def incoherent_output(input_power: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Output power of an incoherent 4f system: the input intensity convolved
    with the intensity PSF |h|^2 (h = the mask's impulse response), inverted."""
    psf = mask_to_kernel(mask)
    psf = psf.real.square() + psf.imag.square()
    n = math.sqrt(input_power.shape[-2] * input_power.shape[-1])
    spectrum = centered_fft2(input_power.to(psf.dtype)) * centered_fft2(psf) * n
    return invert_centered(centered_ifft2(spectrum).real)

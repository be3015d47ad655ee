"""The physics the twin must get right (DESIGN.md): coherent and incoherent 4f
convolution against a direct convolution, energy conservation, gratings and
magnification. Geometries are chosen so every expectation is exact
(tests/optics_helpers.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optics_helpers import bench, centroid_m, direct_conv, output_plane, rel_err

from labrig.optics import (
    Field,
    FourierLens,
    Grid,
    Twin,
    crop_centered,
    fourier_conv2d,
    full_conv_offset,
    invert_centered,
    kernel_to_mask,
    place_centered,
)

LASER_W = 2e-3

# (image shape, kernel shape): odd and even kernels, non-square images and kernels
CASES = [((9, 7), (3, 3)), ((8, 10), (4, 4)), ((6, 11), (5, 2)), ((10, 9), (2, 3)), ((7, 8), (1, 1))]



def _random_case(n, k, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    amp = torch.rand(n, generator=g, dtype=torch.float64)
    h = torch.complex(torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64))
    return amp.to(dtype), h.to(torch.complex64 if dtype == torch.float32 else torch.complex128)


def _sample_power(twin: Twin) -> float:
    """Power a fully open, aligned input pixel puts into its grid sample (W)."""
    return twin.irradiance_w_m2(LASER_W) * twin.geometry.input.pitch_m**2


# ---------------------------------------------------------------------------- convolution
@pytest.mark.parametrize("n,k", CASES)
def test_fourier_conv2d_matches_direct_convolution(n, k):
    amp, h = _random_case(n, k, seed=1)
    y = fourier_conv2d(amp.to(h.dtype), h)
    ref = direct_conv(amp.numpy(), h.numpy())
    assert y.shape == ref.shape
    assert rel_err(y.abs(), np.abs(ref)) < 1e-12
    assert np.abs(y.numpy() - ref).max() / np.abs(ref).max() < 1e-12


@pytest.mark.parametrize("n,k", CASES)
def test_coherent_twin_is_square_of_direct_convolution(n, k):
    """Camera (pitch = output pitch) reads I d^2 |x (*) h|^2, inverted about the axis:
    rel. error < 1e-10 in float64 (the brief asks 1e-5; FFT round-off is ~1e-15)."""
    geometry = bench(32, n)
    twin = Twin(geometry, dtype=torch.float64)
    for seed in (0, 1, 2):
        amp, h = _random_case(n, k, seed)
        mask = kernel_to_mask(h, geometry.filter.resolution)
        cam = twin.camera_power(twin.output_power(amp, mask, LASER_W))
        y = direct_conv(amp.numpy(), h.numpy())
        expected = _sample_power(twin) * output_plane(np.abs(y) ** 2, n, k, geometry.camera.resolution)
        assert cam.shape == geometry.camera.resolution
        assert rel_err(cam, expected) < 1e-10
        # the same read-off with the library's own helpers: undo the inversion on the
        # (circular, even) full grid, then the convolution's centre is -full_conv_offset away
        back = crop_centered(invert_centered(cam), y.shape, tuple(-o for o in full_conv_offset(n, k)))
        assert rel_err(back, _sample_power(twin) * np.abs(y) ** 2) < 1e-10


@pytest.mark.parametrize("n,k", CASES[:3])
def test_coherent_twin_float32(n, k):
    """float32 agrees with the direct convolution to rel. 1e-4 of the peak."""
    geometry = bench(32, n)
    twin = Twin(geometry, dtype=torch.float32)
    amp, h = _random_case(n, k, seed=5, dtype=torch.float32)
    mask = kernel_to_mask(h, geometry.filter.resolution)
    assert mask.dtype == torch.complex64
    cam = twin.camera_power(twin.output_power(amp, mask, LASER_W))
    assert cam.dtype == torch.float32
    y = direct_conv(amp.double().numpy(), h.to(torch.complex128).numpy())
    expected = _sample_power(twin) * output_plane(np.abs(y) ** 2, n, k, geometry.camera.resolution)
    assert rel_err(cam, expected) < 1e-4


def test_documented_identity_invert_fourier_conv2d_placed():
    """conv.py: twin output = invert_centered(fourier_conv2d(x, h)) placed at
    full_conv_offset (exact when the full convolution has an odd size, where the
    point reflection of the array is a pure flip)."""
    n, k = (9, 7), (3, 5)
    geometry = bench(32, n)
    twin = Twin(geometry, dtype=torch.float64)
    amp, h = _random_case(n, k, seed=3)
    out = twin.output_power(amp, kernel_to_mask(h, geometry.filter.resolution), LASER_W)
    y = fourier_conv2d(amp.to(h.dtype), h)
    placed = place_centered(invert_centered(y.abs() ** 2), geometry.filter.resolution, full_conv_offset(n, k))
    assert rel_err(out, _sample_power(twin) * placed) < 1e-10


@pytest.mark.parametrize("n,k", CASES[:4])
def test_incoherent_twin_is_intensity_convolved_with_psf(n, k):
    """Incoherent light: camera reads I d^2 (|x|^2 (*) |h|^2), inverted (rel. < 1e-10)."""
    geometry = bench(32, n, illumination="incoherent")
    twin = Twin(geometry, dtype=torch.float64)
    for seed in (0, 1):
        amp, h = _random_case(n, k, seed)
        mask = kernel_to_mask(h, geometry.filter.resolution)
        cam = twin.camera_power(twin.output_power(amp, mask, LASER_W))
        y = direct_conv(amp.numpy() ** 2, np.abs(h.numpy()) ** 2)
        expected = _sample_power(twin) * output_plane(y, n, k, geometry.camera.resolution)
        assert rel_err(cam, expected) < 1e-10
        assert float(cam.min()) > -1e-12 * float(cam.max())


def test_incoherent_is_not_coherent():
    """Sanity: the two illuminations differ for a complex kernel (the tests above
    would not notice a twin that ignored `illumination`)."""
    n, k = (9, 7), (3, 3)
    amp, h = _random_case(n, k, seed=0)
    outs = []
    for ill in ("coherent", "incoherent"):
        geometry = bench(32, n, illumination=ill)
        twin = Twin(geometry, dtype=torch.float64)
        outs.append(twin.output_power(amp, kernel_to_mask(h, geometry.filter.resolution), LASER_W))
    assert rel_err(outs[0], outs[1]) > 0.1


# ---------------------------------------------------------------------------- energy
def test_input_field_sample_is_amplitude_times_sqrt_irradiance_area():
    geometry = bench(32, (9, 7))
    twin = Twin(geometry, dtype=torch.float64)
    amp, _ = _random_case((9, 7), (1, 1), seed=4)
    field = twin.input_field(amp, LASER_W)
    expected = place_centered(amp * math.sqrt(_sample_power(twin)), geometry.filter.resolution)
    assert rel_err(field.data.real, expected) < 1e-12
    if torch.is_complex(field.data):
        assert float(field.data.imag.abs().max()) == 0.0
    torch.testing.assert_close(field.power(), expected.square(), rtol=1e-12, atol=0)
    assert math.isclose(
        float(field.total_power()), LASER_W * float(amp.square().mean()), rel_tol=1e-12
    )


def test_fourier_lens_is_unitary():
    """Parseval: a lens conserves the power of a random complex field (rel. 1e-12)
    and maps pitch d to wavelength f / (n d)."""
    g = torch.Generator().manual_seed(0)
    grid = Grid((24, 20), (5e-6, 7e-6))
    data = torch.complex(torch.randn(3, 24, 20, generator=g, dtype=torch.float64),
                         torch.randn(3, 24, 20, generator=g, dtype=torch.float64))
    field = Field(data, grid, 633e-9)
    out = FourierLens(0.1)(field)
    torch.testing.assert_close(out.total_power(), field.total_power(), rtol=1e-12, atol=0)
    assert out.grid.shape == grid.shape
    for d in (0, 1):
        assert math.isclose(out.grid.pitch_m[d], 633e-9 * 0.1 / (grid.shape[d] * grid.pitch_m[d]), rel_tol=1e-15)
    # two lenses invert: the point reflection through the axis
    twice = FourierLens(0.1)(out)
    torch.testing.assert_close(twice.data, invert_centered(data), rtol=0, atol=1e-12)


def test_4f_with_phase_only_mask_conserves_power():
    """|T| = 1 (random phases): input-grid power = output-grid power = camera power
    (camera = output grid, fill factor 1), rel. 1e-12."""
    geometry = bench(32, (9, 7))
    twin = Twin(geometry, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    amp = torch.rand(9, 7, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(32, 32, generator=g, dtype=torch.float64)
    t = twin.filter_transmission_from_phase(phase, quantize=False)
    torch.testing.assert_close(t.abs(), torch.ones(32, 32, dtype=torch.float64), rtol=0, atol=1e-14)
    p_in = float(twin.input_field(amp, LASER_W).total_power())
    out = twin.output_power(amp, t, LASER_W)
    assert math.isclose(float(out.sum()), p_in, rel_tol=1e-12)
    assert math.isclose(float(twin.camera_power(out).sum()), p_in, rel_tol=1e-12)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 1 / 3, 1.37, 2.0])
def test_camera_integration_conserves_power(ratio):
    """A fill-factor-1 camera that covers the output grid collects every watt,
    for integer and non-integer pitch ratios (camera pitch = ratio x output pitch)."""
    geometry = bench(32, (9, 7), camera_pitch_ratio=ratio)
    m = geometry.camera.resolution[0]
    assert m * ratio >= 32  # covers the output grid
    twin = Twin(geometry, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    power = torch.rand(2, 32, 32, generator=g, dtype=torch.float64)
    cam = twin.camera_power(power)
    assert cam.shape == (2, m, m)
    torch.testing.assert_close(cam.sum((-2, -1)), power.sum((-2, -1)), rtol=1e-12, atol=0)
    if ratio == 1 / 3:
        # an odd integer fraction keeps pixel edges aligned with the centred grid (an
        # even one does not: camera pixel m//2 is centred on the axis, like sample n//2):
        # each output sample is split evenly over 3 x 3 camera pixels
        assert m == 98  # 96 + one extra pixel each side to cover the even grid's edge
        expected = power.repeat_interleave(3, -1).repeat_interleave(3, -2) / 9
        torch.testing.assert_close(cam[..., :96, :96], expected, rtol=1e-12, atol=1e-15)
        edge = max(float(cam[..., 96:, :].abs().max()), float(cam[..., :, 96:].abs().max()))
        assert edge < 1e-12 * float(power.max())  # float slivers of the lattice only


# ---------------------------------------------------------------------------- gratings
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("m", [3, -5])
def test_blazed_grating_moves_image(axis, m):
    """A phase ramp of m whole cycles across the SLM (period N p / m) moves the image
    by wavelength f2 / period metres (sign included: phase increasing with +x moves
    light to +x). Camera pitch = output pitch / 2, so that is 2 m camera pixels."""
    n_slm = 48
    geometry = bench(n_slm, (11, 11), camera_pitch_ratio=0.5)
    twin = Twin(geometry, dtype=torch.float64)
    amp = torch.zeros(11, 11, dtype=torch.float64)
    amp[6:9, 2:5] = torch.tensor([[0.3, 0.6, 0.2], [0.5, 1.0, 0.4], [0.1, 0.7, 0.3]], dtype=torch.float64)
    j = torch.arange(n_slm, dtype=torch.float64)
    ramp = 2 * math.pi * m * j / n_slm
    phase = (ramp[:, None] if axis == 0 else ramp[None, :]).expand(n_slm, n_slm)
    cam_pitch = geometry.camera.pitch_m
    flat = twin.camera_power(twin.output_power(amp, torch.ones(n_slm, n_slm, dtype=torch.complex128), LASER_W))
    tilted = twin.camera_power(twin.output_power(amp, twin.filter_transmission_from_phase(phase, False), LASER_W))
    c0, c1 = centroid_m(flat, cam_pitch), centroid_m(tilted, cam_pitch)
    period = n_slm * geometry.filter.pitch_m / m
    predicted_m = geometry.wavelength_m * geometry.focal2_m / period
    moved = c1[axis] - c0[axis]
    assert math.isclose(moved, predicted_m, rel_tol=1e-9)
    assert math.isclose(moved / cam_pitch, 2 * m, rel_tol=1e-9)
    assert abs(c1[1 - axis] - c0[1 - axis]) < 1e-9 * cam_pitch
    # the whole image moved intact: a shift by 2 m pixels
    torch.testing.assert_close(tilted, torch.roll(flat, 2 * m, dims=axis), rtol=0, atol=1e-12 * float(flat.max()))


# ---------------------------------------------------------------------------- magnification
@pytest.mark.parametrize("f2_over_f1", [2.0, 0.5])
@pytest.mark.parametrize("ab", [(3, 5), (-4, 2)])
def test_magnification_and_inversion(f2_over_f1, ab):
    """A point at (+a, +b) input pixels lands at -(f2/f1)(a, b) p_in metres on the
    camera (camera pitch p_in / 2 in both benches)."""
    n_in, p_in = 15, 12e-6
    ratio = (p_in / 2) / (p_in * f2_over_f1)  # camera pitch over output pitch
    geometry = bench(32, (n_in, n_in), f2_over_f1=f2_over_f1, camera_pitch_ratio=ratio, input_pitch_m=p_in)
    assert math.isclose(geometry.magnification, -f2_over_f1)
    assert math.isclose(geometry.input_grid.pitch_m[0], p_in, rel_tol=1e-12)
    twin = Twin(geometry, dtype=torch.float64)
    amp = torch.zeros(n_in, n_in, dtype=torch.float64)
    a, b = ab
    amp[n_in // 2 + a, n_in // 2 + b] = 1.0
    cam = twin.camera_power(twin.output_power(amp, torch.ones(32, 32, dtype=torch.complex128), LASER_W))
    cam_pitch = geometry.camera.pitch_m
    cy, cx = centroid_m(cam, cam_pitch)
    assert math.isclose(cy, -f2_over_f1 * a * p_in, rel_tol=1e-9)
    assert math.isclose(cx, -f2_over_f1 * b * p_in, rel_tol=1e-9)
    # all the light is on the camera pixels that overlap the image of the one input
    # pixel, a square of side (f2/f1) p_in around the predicted point
    half = 0.5 * f2_over_f1 * p_in + 0.5 * cam_pitch
    rows = (torch.arange(cam.shape[0], dtype=torch.float64) - cam.shape[0] // 2) * cam_pitch
    cols = (torch.arange(cam.shape[1], dtype=torch.float64) - cam.shape[1] // 2) * cam_pitch
    near = ((rows + f2_over_f1 * a * p_in).abs() < half - 1e-3 * cam_pitch)[:, None] & (
        (cols + f2_over_f1 * b * p_in).abs() < half - 1e-3 * cam_pitch
    )[None, :]
    assert math.isclose(float(cam[near].sum()), float(cam.sum()), rel_tol=1e-12)
    assert math.isclose(float(cam.sum()), _sample_power(twin), rel_tol=1e-12)


def test_filter_dead_space_leaves_an_unmodulated_zero_order():
    """Filter SLM fill factor F: the pixel transmits F exp(i phi) + (1 - F). With a
    blazed grating of m cycles the image moves by m output samples with power F^2
    and a copy stays on the axis with (1 - F)^2 (no overlap: exact)."""
    fill, m = 0.9, 12
    geometry = bench(48, (5, 5), filter_fill=fill)
    twin = Twin(geometry, dtype=torch.float64)
    amp = torch.rand(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ramp = (2 * math.pi * m * torch.arange(48, dtype=torch.float64) / 48)[None, :].expand(48, 48)
    flat = twin.output_power(amp, torch.ones(48, 48, dtype=torch.complex128), LASER_W)
    out = twin.output_power(amp, twin.filter_transmission_from_phase(ramp, quantize=False), LASER_W)
    expected = fill**2 * torch.roll(flat, m, dims=1) + (1 - fill) ** 2 * flat
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12 * float(flat.max()))

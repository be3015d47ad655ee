"""The camera: photons -> electrons (shot noise, dark signal, read noise) -> DN
(gain, offset, full well, ADC saturation, integer quantisation)."""

from __future__ import annotations

import math

import pytest
import torch
from optics_helpers import bench

from labrig.optics import Imperfections, Twin

EXPOSURE_S = 0.5



def _twin(**camera_kw) -> Twin:
    return Twin(bench(16, (5, 5), **camera_kw), dtype=torch.float64)


def _power_for_electrons(twin: Twin, electrons: float, exposure_s: float = EXPOSURE_S) -> float:
    """Camera-pixel power (W) whose expected photo-electron count is `electrons`."""
    spec = twin.geometry.camera
    return electrons * twin.geometry.photon_energy_j / (spec.quantum_efficiency * exposure_s)


def _electrons(twin: Twin, dn: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    spec = twin.geometry.camera
    return (dn - spec.offset_dn) / (spec.conversion_dn_per_e * gain)


# ---------------------------------------------------------------------------- mean signal chain
def test_expected_dn_formula():
    """DN = offset + conversion * gain * (QE * P t / (h c / wavelength) + dark * t)."""
    twin = _twin()
    spec = twin.geometry.camera
    power = torch.tensor([[0.0, 1e-15], [3e-15, 7e-15]], dtype=torch.float64)
    photons = power * EXPOSURE_S / twin.geometry.photon_energy_j
    e = spec.quantum_efficiency * photons + spec.dark_current_e_per_s * EXPOSURE_S
    expected = spec.offset_dn + spec.conversion_dn_per_e * e
    assert float(expected.max()) < spec.max_dn
    torch.testing.assert_close(twin.expected_dn(power, EXPOSURE_S), expected, rtol=1e-12, atol=0)


def test_dark_frame_reads_offset_plus_dark_signal():
    """Zero laser power: every pixel reads offset + dark current * t * conversion
    (32 + 20 e/s * 0.5 s * 0.2 DN/e = 34 DN, exactly, before and after rounding)."""
    twin = _twin()
    spec = twin.geometry.camera
    dark_dn = spec.offset_dn + spec.dark_current_e_per_s * EXPOSURE_S * spec.conversion_dn_per_e
    assert dark_dn == pytest.approx(34.0)
    input_gray = torch.full((5, 5), 255, dtype=torch.long)
    filter_gray = torch.zeros((16, 16), dtype=torch.long)
    frame = twin.frame(input_gray, filter_gray, laser_power_w=0.0, exposure_s=EXPOSURE_S)
    assert frame.shape == spec.resolution
    torch.testing.assert_close(frame, torch.full_like(frame, 34.0), rtol=0, atol=0)
    zero = torch.zeros(spec.resolution, dtype=torch.float64)
    torch.testing.assert_close(twin.expected_dn(zero, EXPOSURE_S), torch.full_like(zero, dark_dn), rtol=1e-12, atol=0)


def test_hot_pixels_add_their_dark_signal():
    geometry = bench(16, (5, 5))
    hot = torch.zeros(geometry.camera.resolution, dtype=torch.float64)
    hot[3, 4] = 1000.0
    twin = Twin(geometry, Imperfections(geometry, hot_pixels_e_per_s=hot), dtype=torch.float64)
    zero = torch.zeros(geometry.camera.resolution, dtype=torch.float64)
    dn = twin.expected_dn(zero, EXPOSURE_S)
    conv = geometry.camera.conversion_dn_per_e
    assert float(dn[3, 4] - dn[0, 0]) == pytest.approx(1000.0 * EXPOSURE_S * conv)
    assert int((dn != dn[0, 0]).sum()) == 1


@pytest.mark.parametrize("gain", [0.5, 2.0, 3.7])
def test_gain_scales_dn_linearly_above_offset(gain):
    twin = _twin()
    offset = twin.geometry.camera.offset_dn
    power = torch.linspace(0, 2e-15, 12, dtype=torch.float64).reshape(3, 4)
    base = twin.expected_dn(power, EXPOSURE_S)
    scaled = twin.expected_dn(power, EXPOSURE_S, gain=gain)
    assert float(scaled.max()) < twin.geometry.camera.max_dn  # not saturated
    torch.testing.assert_close(scaled - offset, gain * (base - offset), rtol=1e-12, atol=1e-12)


def test_gain_and_offset_imperfections():
    """camera_gain multiplies like the gain setting; camera_offset_dn adds."""
    geometry = bench(16, (5, 5))
    twin = Twin(geometry, Imperfections(geometry, camera_gain=1.25, camera_offset_dn=-3.5), dtype=torch.float64)
    ideal = _twin()
    power = torch.linspace(0, 2e-15, 12, dtype=torch.float64).reshape(3, 4)
    offset = geometry.camera.offset_dn
    expected = 1.25 * (ideal.expected_dn(power, EXPOSURE_S) - offset) + offset - 3.5
    torch.testing.assert_close(twin.expected_dn(power, EXPOSURE_S), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- saturation
def test_full_well_clips_before_the_adc():
    """Default spec: full well 20000 e x 0.2 DN/e + 32 = 4032 DN < 4095: a very bright
    pixel reads exactly 4032 (mean and noisy), never more."""
    twin = _twin()
    spec = twin.geometry.camera
    power = torch.full((40, 40), _power_for_electrons(twin, 1e6), dtype=torch.float64)
    level = spec.offset_dn + spec.full_well_e * spec.conversion_dn_per_e
    assert level == pytest.approx(4032.0) and level < spec.max_dn
    torch.testing.assert_close(twin.expected_dn(power, EXPOSURE_S), torch.full_like(power, level), rtol=0, atol=1e-9)
    noisy = twin.sample_dn(power, EXPOSURE_S, generator=torch.Generator().manual_seed(0))
    assert float(noisy.max()) <= level + 1e-9
    assert float(noisy.min()) >= level - 1e-9


@pytest.mark.parametrize("bit_depth", [8, 12])
def test_adc_saturates_at_max_dn(bit_depth):
    """With the ADC range below the full well, every saturated pixel reads exactly
    2**bit_depth - 1, noisy or not, after rounding too, and nothing reads above."""
    twin = _twin(bit_depth=bit_depth, conversion_dn_per_e=0.5)
    spec = twin.geometry.camera
    max_dn = 2**bit_depth - 1
    assert spec.max_dn == max_dn
    assert spec.offset_dn + spec.full_well_e * spec.conversion_dn_per_e > max_dn
    input_gray = torch.full((5, 5), 255, dtype=torch.long)
    filter_gray = torch.zeros((16, 16), dtype=torch.long)
    for noise in (False, True):
        # ~1e6 e per lit pixel (50x the full well; far brighter lets FFT round-off light dark pixels)
        frame = twin.frame(input_gray, filter_gray, laser_power_w=3e-11, exposure_s=EXPOSURE_S, noise=noise,
                           generator=torch.Generator().manual_seed(1))
        assert float(frame.max()) == max_dn
        lit = frame > (spec.offset_dn + max_dn) / 2
        assert int(lit.sum()) == 25  # the 5 x 5 image of the open modulator
        assert bool(torch.all(frame[lit] == max_dn))
        assert bool(torch.all(frame <= max_dn)) and bool(torch.all(frame >= 0))
    bright = torch.full((8, 8), _power_for_electrons(twin, 1e9), dtype=torch.float64)
    assert bool(torch.all(twin.expected_dn(bright, EXPOSURE_S, gain=10.0) == max_dn))


def test_dn_never_negative():
    twin = _twin(offset_dn=0.0, read_noise_e=20.0, dark_current_e_per_s=0.0)
    zero = torch.zeros(100, 100, dtype=torch.float64)
    dn = twin.sample_dn(zero, EXPOSURE_S, generator=torch.Generator().manual_seed(0))
    assert float(dn.min()) == 0.0  # read noise would go negative; the ADC clamps


# ---------------------------------------------------------------------------- noise statistics
@pytest.mark.parametrize("mean_e", [0.7, 10.0, 45.0, 60.0, 2000.0])
def test_shot_noise_variance_equals_mean(mean_e):
    """Read noise 0, dark 0: electron variance = mean within 5 % (40 000 pixels;
    the sampling error of the variance is < 1 %); the counts are integers at
    every mean (exact Poisson, no normal shortcut)."""
    twin = _twin(read_noise_e=0.0, dark_current_e_per_s=0.0, full_well_e=1e6)
    power = torch.full((200, 200), _power_for_electrons(twin, mean_e), dtype=torch.float64)
    e = _electrons(twin, twin.sample_dn(power, EXPOSURE_S, generator=torch.Generator().manual_seed(11)))
    assert float(e.mean()) == pytest.approx(mean_e, rel=0.02, abs=0.02)
    assert float(e.var()) == pytest.approx(mean_e, rel=0.05)
    assert float((e - e.round()).abs().max()) < 1e-6 * max(1.0, mean_e)


@pytest.mark.parametrize("mean_e", [10.0, 2000.0])
def test_read_noise_adds_its_variance(mean_e):
    """Read noise sigma: variance = mean + sigma^2 (within 5 %)."""
    sigma = 6.0
    twin = _twin(read_noise_e=sigma, dark_current_e_per_s=0.0, full_well_e=1e6)
    power = torch.full((200, 200), _power_for_electrons(twin, mean_e), dtype=torch.float64)
    e = _electrons(twin, twin.sample_dn(power, EXPOSURE_S, generator=torch.Generator().manual_seed(5)))
    assert float(e.mean()) == pytest.approx(mean_e, rel=0.02, abs=0.1)
    assert float(e.var()) == pytest.approx(mean_e + sigma**2, rel=0.05)


def test_dark_current_is_shot_noise_too():
    """Dark electrons are counted like photo-electrons: variance = dark * t."""
    twin = _twin(read_noise_e=0.0, dark_current_e_per_s=40.0, full_well_e=1e6)
    zero = torch.zeros(200, 200, dtype=torch.float64)
    e = _electrons(twin, twin.sample_dn(zero, EXPOSURE_S, generator=torch.Generator().manual_seed(2)))
    assert float(e.mean()) == pytest.approx(20.0, rel=0.02)
    assert float(e.var()) == pytest.approx(20.0, rel=0.05)


def test_seeded_generator_reproduces_frames():
    twin = _twin()
    g = torch.Generator().manual_seed(0)
    input_gray = torch.randint(0, 256, (5, 5), generator=g)
    filter_gray = torch.randint(0, 256, (16, 16), generator=g)
    kw = dict(laser_power_w=1e-9, exposure_s=1e-3, noise=True)
    a = twin.frame(input_gray, filter_gray, generator=torch.Generator().manual_seed(42), **kw)
    b = twin.frame(input_gray, filter_gray, generator=torch.Generator().manual_seed(42), **kw)
    c = twin.frame(input_gray, filter_gray, generator=torch.Generator().manual_seed(43), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------------------- frames
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("noise", [False, True])
def test_frame_is_integer_dn_in_range(dtype, noise):
    """Twin.frame with integer gray patterns (input LUT, filter LUT) returns a float
    tensor of integer DN in [0, max_dn], including some saturated pixels."""
    twin = Twin(bench(16, (5, 5)), dtype=dtype)
    spec = twin.geometry.camera
    g = torch.Generator().manual_seed(3)
    input_gray = torch.randint(0, 256, (2, 5, 5), generator=g)  # a batch of two
    filter_gray = torch.randint(0, 256, (16, 16), generator=g)
    frame = twin.frame(input_gray, filter_gray, laser_power_w=2e-9, exposure_s=1e-3, noise=noise,
                       generator=torch.Generator().manual_seed(0))
    assert frame.dtype == dtype
    assert frame.shape == (2, *spec.resolution)
    assert bool(torch.all(frame == frame.round()))
    assert float(frame.min()) >= 0 and float(frame.max()) <= spec.max_dn
    assert float(frame.max()) == spec.max_dn or float(frame.max()) >= 4032  # bright enough to clip somewhere
    assert float(frame.min()) < 100  # and dark elsewhere


def test_frame_uses_the_input_lut():
    """Input gray g shows intensity g / 255 (ideal LUT): DN above dark grows linearly
    with g for a flat filter (unit transmission) and camera = output grid."""
    twin = _twin()
    spec = twin.geometry.camera
    filter_gray = torch.zeros((16, 16), dtype=torch.long)  # phase 0 everywhere
    dark = spec.offset_dn + spec.dark_current_e_per_s * 1e-3 * spec.conversion_dn_per_e
    readings = []
    for g in (0, 51, 102, 204):
        gray = torch.zeros((5, 5), dtype=torch.long)
        gray[2, 2] = g
        dn = twin.expected_dn(
            twin.camera_power(twin.output_power(twin.input_amplitude(gray), twin.filter_transmission(filter_gray), 1e-10)),
            1e-3,
        )
        assert float(dn.max()) < 0.5 * spec.full_well_e * spec.conversion_dn_per_e  # linear range
        readings.append(float(dn[8, 8]) - dark)
    assert readings[0] == pytest.approx(0.0, abs=1e-9)
    for g, r in zip((51, 102, 204), readings[1:], strict=True):
        assert r == pytest.approx(readings[1] * g / 51, rel=1e-9)
    assert not math.isclose(readings[3], 0.0)

"""The console's pure helpers, without Qt: test patterns, frame statistics, run views."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labrig.bench.patterns import PATTERN_KINDS, grating, lens, make_pattern, spot, to_gray, uniform
from labrig.gui.framestats import RateMeter, roi_means, saturated_fraction
from labrig.gui.runview import RunRecords, tile_strip

PHASE_LUT = 2 * np.pi * np.arange(256) / 256
AMP_LUT = np.arange(256) / 255


# -- patterns -----------------------------------------------------------------------------------


def test_grating_is_a_phase_ramp_with_the_period_asked() -> None:
    g = grating((4, 32), period_px=8)
    assert g.shape == (4, 32) and g.min() >= 0 and g.max() < 2 * np.pi
    # one period along the columns brings the phase back; a quarter period adds pi/2
    assert np.allclose(g[:, 8:], g[:, :-8])
    assert np.allclose(np.remainder(g[0, 2] - g[0, 0], 2 * np.pi), np.pi / 2)
    tilted = grating((32, 4), period_px=8, angle_deg=90)
    assert np.allclose(tilted[8:, :], tilted[:-8, :]) and np.allclose(tilted[:, 0], tilted[:, 3])


def test_amplitude_patterns_stay_in_0_1() -> None:
    for pattern in (grating((16, 16), 4, modulation="amplitude"),
                    lens((16, 16), 0.5, 532e-9, 8e-6, modulation="amplitude")):
        assert pattern.min() >= 0 and pattern.max() <= 1


def test_lens_phase_is_quadratic_about_the_centre() -> None:
    f, wl, pitch = 0.2, 633e-9, 10e-6
    p = lens((65, 65), f, wl, pitch)
    r2 = (3 * pitch) ** 2
    want = np.remainder(-math.pi * r2 / (wl * f), 2 * np.pi)
    assert p[32, 32] == 0 and np.isclose(p[32, 35], want) and np.isclose(p[35, 32], want)
    assert np.allclose(p, p[::-1, ::-1])  # symmetric


def test_spot_and_uniform() -> None:
    s = spot((21, 21), radius_px=3)
    assert s[10, 10] == 1 and s[0, 0] == 0 and s.sum() == np.count_nonzero(s)
    assert np.count_nonzero(s) == 29  # lattice points within radius 3
    assert spot((9, 9), 2, modulation="phase")[4, 4] == pytest.approx(np.pi)
    assert np.all(uniform((3, 5), 0.25) == 0.25)


def test_to_gray_inverts_the_lut() -> None:
    gray = np.arange(256)
    assert np.array_equal(to_gray(PHASE_LUT[gray], PHASE_LUT, "phase"), gray)
    assert np.array_equal(to_gray(AMP_LUT[gray], AMP_LUT, "amplitude"), gray)
    # phase is circular: just below 2 pi is nearest to gray 0, not 255
    assert to_gray(np.array([2 * np.pi - 1e-4]), PHASE_LUT, "phase")[0] == 0
    # a nonlinear LUT (as calibrated) is inverted through its own values
    bent = 2 * np.pi * (np.arange(256) / 256) ** 1.3
    assert int(to_gray(np.array([bent[100]]), bent, "phase")[0]) == 100
    assert to_gray(np.zeros(3), PHASE_LUT, "phase").dtype == np.uint8


@pytest.mark.parametrize("kind", PATTERN_KINDS)
def test_make_pattern_fits_the_slm(kind: str) -> None:
    for lut, modulation in ((PHASE_LUT, "phase"), (AMP_LUT, "amplitude")):
        gray = make_pattern(kind, (24, 32), lut, modulation, {"period_px": 4, "radius_px": 5})
        assert gray.shape == (24, 32) and gray.dtype == np.uint8 and gray.max() <= 255


def test_make_pattern_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown test pattern"):
        make_pattern("checkers", (4, 4), PHASE_LUT, "phase")
    with pytest.raises(ValueError, match="period"):
        make_pattern("grating", (4, 4), PHASE_LUT, "phase", {"period_px": 0})
    with pytest.raises(ValueError, match="modulation"):
        to_gray(np.zeros(2), PHASE_LUT, "polarisation")


# -- frame statistics -----------------------------------------------------------------------------


def test_saturation_and_tile_means() -> None:
    frame = np.zeros((10, 10), np.uint16)
    frame[:2, :5] = 4095
    assert saturated_fraction(frame, 4095) == pytest.approx(0.1)
    assert saturated_fraction(frame, 65535) == 0
    means = roi_means(frame, [(0, 0, 2, 5), (0, 0, 4, 5), (20, 20, 30, 30), (-5, -5, 1, 5)])
    assert means[0] == 4095 and means[1] == pytest.approx(4095 / 2)
    assert math.isnan(means[2]) and means[3] == 4095  # outside: NaN; partly outside: clipped


def test_rate_meter() -> None:
    meter = RateMeter(window=5)
    assert meter.rate == 0
    for i in range(10):
        meter.tick(i * 0.05)
    assert meter.rate == pytest.approx(20) and meter.count == 10


# -- run views ------------------------------------------------------------------------------------


def test_run_records_and_tile_strip() -> None:
    class Result:
        images, path = 3, None
        predictions = np.array([1, 0, 1])
        labels = np.array([1, 1, 1])
        tiles = np.arange(3 * 2 * 4 * 4).reshape(3, 2, 4, 4)

    images = np.random.default_rng(0).random((3, 8, 8))
    records = RunRecords(Result(), images, ("a", "b"))
    rec = records.record(1)
    assert rec.label == 1 and rec.prediction == 0 and records.class_name(rec.label) == "b"
    assert np.array_equal(rec.image, images[1]) and rec.tiles.shape == (2, 4, 4)
    with pytest.raises(IndexError):
        records.record(3)
    strip = tile_strip(rec.tiles, gap=2)
    assert strip.shape == (4, 10) and np.isnan(strip[:, 4:6]).all()
    assert np.array_equal(strip[:, 6:], rec.tiles[1])

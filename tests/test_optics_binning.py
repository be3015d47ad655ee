"""On-camera binning in the twin: the block's signal sums; charge binning reads the sum once
(one read noise per binned pixel), digital binning reads every pixel (factor² read noises)."""

from __future__ import annotations

import math

import pytest
import torch
from optics_helpers import bench

from labrig.optics import Twin
from labrig.optics.camera import bin_sum, binned_size


def _camera(read_noise_e: float = 4.0):
    return Twin(bench(16, (5, 5), read_noise_e=read_noise_e), dtype=torch.float64).camera


def test_bin_sum_adds_each_block_and_drops_the_ragged_edge():
    x = torch.arange(7 * 9, dtype=torch.float64).reshape(7, 9)
    b = bin_sum(x, 3)
    assert b.shape == (2, 3) == binned_size((7, 9), 3)
    assert b[1, 2].item() == x[3:6, 6:9].sum().item()
    assert torch.equal(bin_sum(x, 1), x)
    with pytest.raises(ValueError, match="no pixel"):
        bin_sum(x, 8)


def test_binned_signal_sums_and_read_noise_counts_once():
    """Mean and variance of a binned pixel over many draws: mean = k²·s; variance =
    k²·s (shot) + σ² (charge) or + k²·σ² (digital)."""
    cam = _camera(read_noise_e=6.0)
    k, s, sigma = 4, 25.0, 6.0
    mean_e = torch.full((2000, 8, 8), s, dtype=torch.float64)  # 2000 frames, 2x2 binned pixels each
    g = torch.Generator().manual_seed(0)
    for mode, reads in (("charge", 1), ("digital", k * k)):
        e = cam.binned_electrons(mean_e, k, mode=mode, generator=g)
        assert e.shape == (2000, 2, 2)
        assert e.mean().item() == pytest.approx(k * k * s, rel=0.01)
        expected_var = k * k * s + reads * sigma**2
        assert e.var().item() == pytest.approx(expected_var, rel=0.06)
    assert torch.equal(cam.binned_electrons(mean_e[:1], k, noise=False), torch.full((1, 2, 2), k * k * s,
                                                                                        dtype=torch.float64))


def test_each_pixel_saturates_before_the_sum():
    cam = _camera()
    full = cam.spec.full_well_e
    mean_e = torch.tensor([[3 * full, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert cam.binned_electrons(mean_e, 2, noise=False).item() == pytest.approx(full)


def test_binned_snr_formula_and_its_gain_in_the_read_noise_limit():
    cam = _camera(read_noise_e=4.0)
    s, k = 2.0, 4  # read-noise limited: 2 e- per pixel against 4 e- read noise
    one = cam.binned_snr(s, 1)
    charge = cam.binned_snr(s, k, "charge")
    digital = cam.binned_snr(s, k, "digital")
    assert one == pytest.approx(s / math.sqrt(s + 16.0))
    assert charge == pytest.approx(16 * s / math.sqrt(16 * s + 16.0))
    assert digital == pytest.approx(k * one)  # digital binning: only the averaging gain, √(k²)
    assert charge > 2 * digital  # charge binning beats it by far when read noise dominates

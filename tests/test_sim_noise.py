"""The simulated camera's noise: exact Poisson shot noise (no normal shortcut), the
frame's mean and variance per pixel class as the camera model says, and noise
drawn only in the regions a batched grab is told the caller reads."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from labrig.optics.camera import sample_poisson
from labrig.profiles import load_profile
from sim_backend.unmodelled import Unmodelled
from sim_backend.world import SimWorld


def _world(noise: bool = True, unmodelled: bool = True) -> SimWorld:
    world = SimWorld.from_profile(load_profile("sim").root)
    world.truth = replace(world.truth, noise=noise)
    if not unmodelled:  # the camera model alone (no laser fluctuation, knee, ghost, envelope)
        world.unmodelled = Unmodelled.off()
    world.laser_enabled, world.shutter_open, world.laser_power_w = True, True, 0.01
    rng = np.random.default_rng(4)
    world.show_filter(rng.integers(0, 256, world.geometry.filter.resolution).astype(np.uint8))
    return world


def _inputs(world: SimWorld, n: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    one = np.zeros(world.geometry.input.resolution, np.uint8)
    one[18:46, 18:46] = rng.integers(0, 256, (28, 28))
    return np.broadcast_to(one, (n, *one.shape)).copy()


@pytest.mark.parametrize("mean", [0.3, 3.0, 30.0, 300.0])
def test_shot_noise_is_poisson_to_the_third_moment(mean: float) -> None:
    """Integer counts with mean, variance and third central moment all equal to the
    mean (a normal of equal mean and variance has a third moment of 0)."""
    x = sample_poisson(torch.full((200_000,), mean), torch.Generator().manual_seed(1)).double()
    assert bool(torch.all(x == x.round())) and float(x.min()) >= 0
    n = x.numel()
    m, v = float(x.mean()), float(x.var())
    m3 = float(((x - m) ** 3).mean())
    assert abs(m - mean) < 5 * (mean / n) ** 0.5
    assert abs(v - mean) < 5 * mean * (2 / n) ** 0.5 + 5 * (mean / n) ** 0.5
    assert abs(m3 - mean) < 5 * (15 * mean**3 + mean) ** 0.5 / n**0.5 + 0.05 * mean


def test_frame_mean_and_variance_per_pixel_class() -> None:
    """Many frames of one input through the truth-on bench: per pixel class (dark,
    dim, mid, bright by expected electrons), the mean DN is the noise-free reading
    and the variance is gain^2 (electrons + read noise^2) + 1/12 (the ADC's rounding)."""
    world = _world(unmodelled=False)
    n = 96
    frames = torch.from_numpy(world.render_batch(_inputs(world, n), 1e-3, 1.0).astype(np.float64))
    twin, spec = world.twin, world.geometry.camera
    with torch.no_grad():
        amplitude = twin.input_amplitude(torch.from_numpy(_inputs(world, 1)).long())
        power = twin.camera_power(twin.output_power_prepared(amplitude, world.prepared_mask(), 0.01))[0]
        mean_e = twin.camera.mean_electrons(power, 1e-3, twin.imperfections.hot_pixels_e_per_s).double()
        dn_per_e = spec.conversion_dn_per_e * float(twin.imperfections.camera_gain)
        expected_mean = twin.expected_dn(power, 1e-3).double()
    expected_var = dn_per_e**2 * (mean_e + spec.read_noise_e**2) + 1 / 12
    mean, var = frames.mean(0), frames.var(0)
    classes = {"dark": (0, 1), "dim": (1, 20), "mid": (20, 200), "bright": (200, 0.5 * spec.full_well_e)}
    checked = 0
    for name, (lo, hi) in classes.items():
        sel = (mean_e >= lo) & (mean_e < hi) & (expected_mean > 8)  # clear of the ADC's zero clip
        if int(sel.sum()) < 200:
            continue
        checked += 1
        # pooled over the class: the sampling error of a mean of k pixel variances is ~ sqrt(2 / (n k))
        bias = float((mean[sel] - expected_mean[sel]).mean() / expected_var[sel].sqrt().mean())
        ratio = float(var[sel].mean() / expected_var[sel].mean())
        assert abs(bias) < 0.05, f"{name}: mean off by {bias:.3f} sd"
        assert abs(ratio - 1) < 0.05, f"{name}: variance ratio {ratio:.3f}"
    assert checked >= 3


def test_noise_only_in_the_regions_read() -> None:
    """With `rois` the batched grab draws noise inside them only; the rest of each frame
    is the noise-free reading, and the frames without `rois` are noisy everywhere (the
    `sim` profile's unmodelled truth on: its renderer takes the hint too)."""
    rois = [(40, 40, 76, 76), (150, 100, 186, 136)]
    noisy, clean = _world(), _world(noise=False)
    assert noisy.unmodelled.enabled
    grays = _inputs(noisy, 4)
    hinted = noisy.render_batch(grays, 1e-3, 1.0, rois).astype(np.int64)
    reference = clean.render_batch(grays, 1e-3, 1.0).astype(np.int64)
    inside = np.zeros(hinted.shape[1:], bool)
    for top, left, bottom, right in rois:
        inside[top:bottom, left:right] = True
    np.testing.assert_array_equal(hinted[:, ~inside], reference[:, ~inside])
    assert (hinted[:, inside] != reference[:, inside]).mean() > 0.5
    full = noisy.render_batch(grays, 1e-3, 1.0).astype(np.int64)
    assert (full[:, ~inside] != reference[:, ~inside]).mean() > 0.5


def test_mean_electrons_takes_a_per_image_exposure() -> None:
    """Auto-exposure hands the camera one exposure per image (a tensor), hot pixels included."""
    camera = _world().twin.camera
    power = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 1e-12
    hot = torch.zeros(4, 4, dtype=torch.float64)
    hot[1, 2] = 5e5
    exposure = torch.tensor([1e-3, 2e-3], dtype=torch.float64).reshape(2, 1, 1, 1)
    both = camera.mean_electrons(power, exposure, hot)
    for i in range(2):
        torch.testing.assert_close(both[i], camera.mean_electrons(power[i], float(exposure[i]), hot))

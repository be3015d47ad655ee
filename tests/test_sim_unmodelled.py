"""The unmodelled truth: each effect is there with its documented size, off in `sim-ideal`,
and the profile table is validated."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hil_helpers import small_profile, unmodelled_table

from drivers.errors import ConfigError
from labrig.bench import Bench
from sim_backend.unmodelled import Unmodelled, knee, smooth_phase_error

NO_NOISE = "enabled = true\nnoise = false"
#: no noise and the camera on the output grid (the ghost is compared sample by sample)
ALIGNED = NO_NOISE + ("\ncamera_shift_px = [0.0, 0.0]\ncamera_rotation_deg = 0.0\ncamera_scale = 1.0"
                      "\ndrift_px_per_s = [0.0, 0.0]\nhot_pixel_fraction = 0.0")


def _frames(bench: Bench, n: int = 1, seed: int = 0, exposure_s: float = 2e-3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inp = np.zeros((n, *bench.input.resolution), np.uint8)
    inp[:, 4:12, 4:12] = rng.integers(0, 256, (n, 8, 8))
    bench.filter.show(np.zeros(bench.filter.resolution, np.uint8))
    bench.camera.exposure_s = exposure_s
    bench.guard.arm()
    try:
        return bench.camera.grab_batch(inp).astype(np.float64)
    finally:
        bench.guard.make_safe()


def _world(bench: Bench):
    return bench.shared["sim.world"]


def test_off_in_sim_ideal_and_on_in_sim() -> None:
    with Bench.open("sim-ideal") as bench:
        assert not _world(bench).unmodelled.enabled
    with Bench.open("sim") as bench:
        u = _world(bench).unmodelled
        assert u.enabled and u.pixel_aperture and u.ghost_fraction == pytest.approx(0.01)
        assert u.slm_phase_error_waves_rms == pytest.approx(0.1) and u.laser_fluctuation_rms == pytest.approx(0.01)


def test_disabled_table_renders_exactly_the_twin(tmp_path: Path) -> None:
    on = small_profile(tmp_path, truth=NO_NOISE, unmodelled="enabled = false\nghost_fraction = 0.5", name="a")
    ref = small_profile(tmp_path, truth=NO_NOISE, name="b")
    with Bench.open(on) as a, Bench.open(ref) as b:
        np.testing.assert_array_equal(_frames(a, 3), _frames(b, 3))


def test_ghost_is_a_shifted_copy_of_one_percent(tmp_path: Path) -> None:
    with Bench.open(small_profile(tmp_path, truth=ALIGNED, name="ref")) as ref:
        base = _frames(ref, exposure_s=1e-5)[0] - 32.0 - 6.0  # nominal + the truth's offset error
    ghost = small_profile(tmp_path, truth=ALIGNED, unmodelled=unmodelled_table(ghost_fraction="0.01", ghost_shift_px="[5, 3]"),
                         name="ghost")
    with Bench.open(ghost) as bench:
        frame = _frames(bench, exposure_s=1e-5)[0] - 32.0 - 6.0
    assert base.max() < 3000  # nothing saturated
    extra = frame - base
    expected = np.zeros_like(base)
    expected[5:, 3:] = 0.01 * base[:-5, :-3]
    # within the rounding of two integer frames
    assert np.abs(extra - expected).max() <= 1.0 + 1e-9
    assert extra.sum() == pytest.approx(0.01 * base[:-5, :-3].sum(), rel=0.05)


def test_laser_power_fluctuates_one_percent_per_frame(tmp_path: Path) -> None:
    path = small_profile(tmp_path, truth=NO_NOISE, unmodelled=unmodelled_table(laser_fluctuation_rms="0.01"))
    with Bench.open(path) as bench:
        rng = np.random.default_rng(0)
        inp = np.repeat(rng.integers(100, 256, (1, *bench.input.resolution)).astype(np.uint8), 200, axis=0)
        bench.filter.show(np.zeros(bench.filter.resolution, np.uint8))
        bench.camera.exposure_s = 1e-5
        bench.guard.arm()
        frames = bench.camera.grab_batch(inp).astype(np.float64) - 32.0
        bench.guard.make_safe()
    total = frames.sum(axis=(1, 2))
    assert total.std() / total.mean() == pytest.approx(0.01, rel=0.25)


def test_camera_bends_near_saturation_only() -> None:
    fw = 20000.0
    e = torch.tensor([0.5, 0.7, 0.85, 1.0, 3.0], dtype=torch.float64) * fw
    out = knee(e, fw, 0.7) / fw
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.7)
    assert out[2] == pytest.approx(0.85 * (1 - 0.013), abs=1e-3)  # the documented -1.3 % at 85 %
    assert out[3] < 1.0 and out[4] <= 1.0 and bool(torch.all(out[1:].diff() > 0))


def test_smooth_phase_error_has_its_rms_and_is_smooth() -> None:
    err = smooth_phase_error((128, 128), 2 * math.pi * 0.1, 16.0, torch.Generator().manual_seed(3))
    assert float(err.square().mean().sqrt()) == pytest.approx(2 * math.pi * 0.1, rel=1e-6)
    step = (err[:, 1:] - err[:, :-1]).abs().mean() / err.abs().mean()
    assert step < 0.15  # neighbouring pixels nearly equal: smooth, not white


def test_fourier_plane_factor_has_sinc_envelope_and_phase(tmp_path: Path) -> None:
    with Bench.open("sim") as bench:
        world = _world(bench)
        factor = world.unmodelled.filter_factor(world.geometry, torch.float64)
    n = factor.shape[0]
    assert float(factor[n // 2, n // 2].abs()) == pytest.approx(1.0)
    edge = float(factor[n // 2, 0].abs())
    assert edge == pytest.approx(0.66, abs=0.02)  # sinc(sqrt(0.92) / 2): the documented 0.66 at the edge
    phase = torch.angle(factor)
    assert float(phase.std()) > 0.3  # the 0.1-wave error (0.63 rad) plus trefoil / secondary astigmatism


def test_unmodelled_changes_frames_the_twin_cannot_explain(tmp_path: Path) -> None:
    full = "enabled = true"  # the rest inherited from `sim` through `sim-ideal`
    with Bench.open(small_profile(tmp_path, truth=NO_NOISE, name="ref")) as ref:
        base = _frames(ref, 4)
    with Bench.open(small_profile(tmp_path, truth=NO_NOISE, unmodelled=full, name="full")) as bench:
        frames = _frames(bench, 4)
    rel = np.linalg.norm(frames - base) / np.linalg.norm(base - 32.0)
    assert 0.05 < rel < 1.0


def test_bad_table_is_a_clear_error(tmp_path: Path) -> None:
    bad = small_profile(tmp_path, truth=NO_NOISE, unmodelled="enabled = true\nextra_zernike_rad = { quatrefoil = 1.0 }",
                        name="bad")
    with pytest.raises(ConfigError, match="extra_zernike_rad"):
        Bench.open(bad)
    typo = small_profile(tmp_path, truth=NO_NOISE, unmodelled="enabled = true\nghost_fractoin = 0.01", name="t")
    with pytest.raises(ConfigError, match="ghost_fractoin"):
        Bench.open(typo)


def test_off_is_off() -> None:
    u = Unmodelled.off()
    assert u.filter_factor(None, torch.float32) is None  # type: ignore[arg-type]
    p = torch.ones(2, 4, 4)
    assert u.ghost(p) is p

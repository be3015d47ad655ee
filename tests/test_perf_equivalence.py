"""The fast paths of issue 13 compute what the long ways define: each shortcut (half
spectrum, one transform per multiplexed mask, tile-only power, cached masks, in-place
frame steps, the split Poisson draw, the run's float32 twin) against its definition."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labrig.models.optical import OpticalPath, OpticsConfig
from labrig.optics.camera import POISSON_SPLIT, sample_poisson
from labrig.optics.multiplex import multiplexed_mask, multiplexed_mask_reference, plan_tiles
from labrig.optics.resample import affine_warp
from labrig.optics.system import lens1_times_mask
from labrig.profiles import load_profile
from sim_backend.unmodelled import Unmodelled, knee
from sim_backend.world import MASK_CACHE, SimWorld


@pytest.mark.parametrize(("h", "w", "rows", "cols"), [(7, 5, 16, 16), (5, 7, 15, 17), (3, 4, 9, 8)])
def test_lens1_half_spectrum_is_the_full_transform(h: int, w: int, rows: int, cols: int) -> None:
    gen = torch.Generator().manual_seed(0)
    window = torch.rand(3, h, w, dtype=torch.float64, generator=gen)
    mask = torch.randn(rows, cols, dtype=torch.complex128, generator=gen)
    full = torch.fft.fft2(F.pad(window, (0, cols - w, 0, rows - h)).to(torch.complex128), norm="ortho") * mask
    torch.testing.assert_close(lens1_times_mask(window, mask), full, rtol=0, atol=1e-13)
    # the autograd branch: same values, and the gradient of a real loss matches the full transform's
    leaf = window.clone().requires_grad_()
    out = lens1_times_mask(leaf, mask)
    torch.testing.assert_close(out.detach(), full, rtol=0, atol=1e-13)
    (grad,) = torch.autograd.grad(out.abs().square().sum(), leaf)
    ref_leaf = window.clone().requires_grad_()
    ref = torch.fft.fft2(F.pad(ref_leaf, (0, cols - w, 0, rows - h)).to(torch.complex128), norm="ortho") * mask
    (ref_grad,) = torch.autograd.grad(ref.abs().square().sum(), ref_leaf)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    # a complex window takes the full transform
    cwin = window.to(torch.complex128) * 1j
    torch.testing.assert_close(lens1_times_mask(cwin, mask), full * 1j, rtol=0, atol=1e-13)


def test_lens1_one_frame_equals_the_same_frame_in_a_batch() -> None:
    window = torch.rand(5, 71, 71, generator=torch.Generator().manual_seed(1))
    mask = torch.randn(256, 256, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    batch = lens1_times_mask(window, mask)
    assert torch.equal(lens1_times_mask(window[3:4], mask)[0], batch[3])


@pytest.mark.parametrize(("n", "k", "image", "channels"), [(64, 3, 8, 4), (65, 4, 9, 2), (256, 9, 28, 4)])
def test_multiplexed_mask_is_the_sum_of_gratinged_kernel_masks(n: int, k: int, image: int, channels: int) -> None:
    layout = plan_tiles(channels, (n, n), (image + k - 1, image + k - 1), input_shape=(image, image))
    kernels = torch.randn(3, channels, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    fast = multiplexed_mask(kernels, layout)  # three frames' masks in one call
    for f in range(3):
        ref = multiplexed_mask_reference(kernels[f], layout)
        torch.testing.assert_close(fast[f], ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    assert fast.dtype == torch.complex128
    assert multiplexed_mask(kernels[0].float(), layout).dtype == torch.complex64


def _aware(max_per_frame: int = 4) -> OpticalPath:
    return OpticalPath(OpticsConfig(noise=False, max_per_frame=max_per_frame), "coherent")


def test_optics_aware_tiles_only_equals_the_whole_plane_path() -> None:
    """An aligned camera: |field|^2 of the tiles only, forward and gradient, equals the
    power plane integrated by the camera and cut."""
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(3, 28, 28, generator=gen)
    kernels = torch.randn(8, 9, 9, generator=gen)
    fast_path = _aware()
    assert fast_path.twin.camera_placement() is not None
    k1 = kernels.clone().requires_grad_()
    fast = fast_path.measure(images, k1)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), k1)
    slow_path = _aware()
    slow_path.twin.camera_placement = lambda dtype=None: None  # force the whole-plane path
    k2 = kernels.clone().requires_grad_()
    slow = slow_path.measure(images, k2)
    (g_slow,) = torch.autograd.grad(slow.square().sum(), k2)
    assert torch.equal(fast, slow)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-5, atol=1e-6 * float(g_slow.abs().max()))


def test_camera_placement_only_for_an_aligned_camera() -> None:
    twin = _aware().twin
    assert twin.camera_placement() == (pytest.approx(1.0, rel=1e-5), pytest.approx(1.0, rel=1e-5))
    imp = twin.imperfections
    with torch.no_grad():
        imp.camera_shift_px.copy_(torch.tensor([0.3, 0.0]))
    assert twin.camera_placement() is None  # a sub-pixel shift mixes neighbouring samples
    with torch.no_grad():
        imp.camera_shift_px.zero_()
        imp.camera_rotation_rad.fill_(0.01)
    assert twin.camera_placement() is None


def _world(noise: bool = False) -> SimWorld:
    world = SimWorld.from_profile(load_profile("sim").root)
    world.truth = replace(world.truth, noise=noise)
    world.laser_enabled, world.shutter_open, world.laser_power_w = True, True, 0.01
    return world


def test_cached_masks_are_the_masks_computed_afresh() -> None:
    rng = np.random.default_rng(5)
    patterns = [rng.integers(0, 256, (256, 256)).astype(np.uint8) for _ in range(MASK_CACHE + 2)]
    world, fresh = _world(), _world()
    masks = []
    for p in patterns:
        world.show_filter(p)
        masks.append(world.prepared_mask())
    assert len(world._masks) == MASK_CACHE  # bounded: the oldest patterns are evicted
    for i in (len(patterns) - 1, len(patterns) - 2):
        world.show_filter(patterns[i])
        assert world.prepared_mask() is masks[i]  # reused, not recomputed
    for i in (0, len(patterns) - 1):  # evicted and recomputed, or cached: the fresh mask either way
        world.show_filter(patterns[i])
        fresh.show_filter(patterns[i])
        assert torch.equal(world.prepared_mask(), fresh.prepared_mask())
    world.show_filter(patterns[0])
    fresh.show_filter(patterns[0])
    inputs = rng.integers(0, 256, (2, 64, 64)).astype(np.uint8)
    np.testing.assert_array_equal(world.render_batch(inputs, 1e-3, 1.0), fresh.render_batch(inputs, 1e-3, 1.0))


def test_knee_fast_path_equals_the_formula() -> None:
    fw = 20000.0
    e = torch.rand(4, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 1.2 * fw
    k, span = 0.7 * fw, 0.3 * fw
    expected = torch.where(e > k, k + span * torch.tanh((e - k) / span), e)
    torch.testing.assert_close(knee(e, fw, 0.7), expected, rtol=1e-15, atol=0)
    inplace = e.clone()
    assert knee(inplace, fw, 0.7, inplace=True) is inplace
    torch.testing.assert_close(inplace, expected, rtol=1e-15, atol=0)
    leaf = e.clone().requires_grad_()  # with gradients: the differentiable formula
    torch.testing.assert_close(knee(leaf, fw, 0.7), expected, rtol=1e-15, atol=0)


def test_ghost_in_place_equals_the_copy() -> None:
    u = replace(Unmodelled.off(), enabled=True, ghost_fraction=0.01)
    power = torch.rand(3, 40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for shift in ((9, 6), (-4, 3), (0, -5), (50, 0)):
        g = replace(u, ghost_shift_px=shift)
        expected = g.ghost(power)
        work = power.clone()
        assert g.ghost(work, inplace=True) is work
        torch.testing.assert_close(work, expected, rtol=1e-15, atol=0)


def test_poisson_split_is_seeded_alike_for_any_thread_count() -> None:
    mean = torch.rand(POISSON_SPLIT + 17, generator=torch.Generator().manual_seed(8)) * 50
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sample_poisson(mean, torch.Generator().manual_seed(9))
        torch.set_num_threads(2)
        two = sample_poisson(mean, torch.Generator().manual_seed(9))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert bool(torch.all(one == one.round())) and one.shape == mean.shape
    # both halves are drawn (no half left at zero or at the mean)
    half = len(mean) // 2
    for part in (slice(0, half), slice(half, None)):
        assert float((one[part] - mean[part]).abs().mean()) > 1.0


def test_rotation_is_the_same_for_any_thread_count_and_batch() -> None:
    x = torch.rand(6, 2, 32, 32, generator=torch.Generator().manual_seed(10))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = affine_warp(x, (0.3, -0.2), 0.01, 1.0)
        torch.set_num_threads(2)
        two = affine_warp(x, (0.3, -0.2), 0.01, 1.0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.equal(affine_warp(x[4, 1], (0.3, -0.2), 0.01, 1.0), one[4, 1])


def test_program_twin_shares_each_window_and_float32_is_within_one_dn() -> None:
    """The run's twin reference (`labrig run --twin`): one input field per image for every frame
    group is the twin's own frame per group, and the float32 twin the run uses is the float64
    one to the ADC's rounding."""
    from deploy_helpers import held_out, program

    from labrig.deploy.inputs import encode_images
    from labrig.deploy.twin import ProgramTwin

    p = program()
    gray = encode_images(p.input, held_out().images[:5, 0].numpy())
    exact = ProgramTwin(p)  # float64, as compile uses it
    frames = exact.frames(gray)
    ro = p.readout
    with torch.no_grad():
        for f, prepared in enumerate(exact.prepared):
            one = exact.twin.frame_prepared(torch.from_numpy(gray.astype(np.int64)), prepared,
                                            laser_power_w=ro.laser_power_w, exposure_s=ro.exposure_s[f], gain=ro.gain)
            np.testing.assert_array_equal(frames[:, f], one.numpy())
    fast = ProgramTwin(p, dtype=torch.float32).frames(gray)
    assert fast.shape == frames.shape and frames.max() > 100  # lit
    assert np.abs(fast - frames).max() <= 1

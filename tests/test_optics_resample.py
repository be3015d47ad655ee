"""The area-overlap resampler equals its dense matrix, in the aligned fast path too."""

from __future__ import annotations

import pytest
import torch

from labrig.optics.resample import AxisOverlap


@pytest.mark.parametrize(
    ("n_src", "d_src", "n_dst", "d_dst", "origin", "fill", "placement"),
    [
        (16, 1.0, 32, 1.0, 0.0, 1.0, True),   # small modulator placed on a bigger grid
        (32, 1.0, 20, 1.0, 3.0, 1.0, True),   # cropped and offset by whole pixels
        (30, 1.0, 17, 1.37, 0.25, 1.0, False),  # non-integer pitch ratio
        (24, 2.0, 40, 1.0, -0.3, 0.8, False),  # fill factor and sub-pixel offset
    ],
)
def test_apply_equals_dense(n_src, d_src, n_dst, d_dst, origin, fill, placement) -> None:
    ov = AxisOverlap(n_src, d_src, n_dst, d_dst, dst_origin=origin, dst_fill=fill)
    assert (ov.placement is not None) == placement
    x = torch.randn(3, 5, n_src, dtype=torch.float64)
    expected = x @ ov.dense().T
    torch.testing.assert_close(ov.apply(x, -1), expected, rtol=1e-12, atol=1e-12)
    xt = x.transpose(-1, -2).contiguous()
    torch.testing.assert_close(ov.apply(xt, -2), expected.transpose(-1, -2), rtol=1e-12, atol=1e-12)


def test_overlaps_conserve_area_inside() -> None:
    """Each destination cell fully inside the source lattice is covered exactly once."""
    ov = AxisOverlap(40, 1.0, 10, 2.7, dst_origin=0.4)
    torch.testing.assert_close(ov.weight.sum(1), torch.full((10,), 2.7, dtype=torch.float64))


@pytest.mark.parametrize(
    ("n_src", "d_src", "n_dst", "d_dst", "origin", "scale"),
    [
        (256, 1.0, 256, 1.0, 1.3, 1.003),  # a camera: shifted and scaled, a few slice runs
        (64, 1.0, 256, 1.0, 0.35, 1.0),  # a modulator window on the grid
        (64, 2.0, 256, 1.0, 0.7, 1.0),  # pitch ratio 2: many runs, gathered per band
    ],
)
def test_apply_window_and_gradient_paths_equal_dense(n_src, d_src, n_dst, d_dst, origin, scale) -> None:
    """A window of the destination, and the gradient path, give the dense map's rows."""
    ov = AxisOverlap(n_src, d_src, n_dst, d_dst, dst_origin=origin, dst_scale=scale, dst_fill=0.9)
    x = torch.randn(2, 3, n_src, dtype=torch.float64)
    expected = x @ ov.dense().T
    lo, hi = ov.support()
    assert torch.all(expected[..., :lo] == 0) and torch.all(expected[..., hi:] == 0)
    window = (max(lo - 3, 0), hi)
    torch.testing.assert_close(ov.apply(x, -1, window=window), expected[..., window[0] : window[1]])
    xg = x.clone().requires_grad_(True)
    out = ov.apply(xg, -1)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    torch.testing.assert_close(xg.grad, ov.dense().sum(0).expand_as(x))

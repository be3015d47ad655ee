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

"""Resolution changes: centered zero padding, antialiased resize, [0, 1] scaling."""

from __future__ import annotations

import pytest
import torch

from labrig.data import DataError, to_float01, to_resolution


def test_pad_centered_even() -> None:
    x = torch.ones(2, 1, 28, 28)
    y = to_resolution(x, 32, "pad")
    assert y.shape == (2, 1, 32, 32)
    assert y[:, :, 2:30, 2:30].eq(1).all()
    assert y.sum() == x.sum()  # only zeros were added
    assert y[:, :, :2].eq(0).all() and y[:, :, 30:].eq(0).all()
    assert y[..., :2].eq(0).all() and y[..., 30:].eq(0).all()


def test_pad_odd_remainder_and_rectangular() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)
    y = to_resolution(x, (5, 6), "pad")
    assert y.shape == (1, 1, 5, 6)
    # top = (5 - 2) // 2 = 1, left = (6 - 3) // 2 = 1; the extra row/col goes bottom/right.
    assert torch.equal(y[0, 0, 1:3, 1:4], x[0, 0])
    assert y.sum() == x.sum()


def test_pad_keeps_uint8_and_3d_input() -> None:
    x = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    y = to_resolution(x, 6)
    assert y.dtype == torch.uint8 and y.shape == (3, 6, 6)
    assert y[:, 1:5, 1:5].eq(200).all() and int(y.sum()) == 200 * 48


def test_pad_into_smaller_frame_refused() -> None:
    with pytest.raises(DataError, match="use mode='resize'"):
        to_resolution(torch.zeros(1, 1, 28, 28), 16, "pad")


def test_resize_shapes_and_constant_preserved() -> None:
    x = torch.full((2, 3, 28, 28), 0.25)
    for size in (14, 64, (20, 40)):
        y = to_resolution(x, size, "resize")
        hw = (size, size) if isinstance(size, int) else size
        assert y.shape == (2, 3, *hw)
        assert torch.allclose(y, torch.full_like(y, 0.25))


def test_resize_is_antialiased() -> None:
    """A 1-pixel checkerboard shrunk 4x averages to gray instead of aliasing."""
    x = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float()[None, None]
    y = to_resolution(x, 8, "resize")
    assert torch.allclose(y, torch.full_like(y, 0.5), atol=0.02)


def test_resize_uint8_rounds_and_keeps_dtype() -> None:
    x = torch.full((1, 1, 10, 10), 37, dtype=torch.uint8)
    y = to_resolution(x, 5, "resize")
    assert y.dtype == torch.uint8 and y.eq(37).all()


def test_resize_pad_keeps_aspect() -> None:
    x = torch.ones(1, 1, 20, 40)
    y = to_resolution(x, 32, "resize_pad")
    assert y.shape == (1, 1, 32, 32)
    # 20x40 → 16x32, padded 8 rows top and bottom.
    assert torch.allclose(y[0, 0, 8:24], torch.ones(16, 32))
    assert y[0, 0, :8].eq(0).all() and y[0, 0, 24:].eq(0).all()


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="unknown resolution mode"):
        to_resolution(torch.zeros(1, 1, 4, 4), 8, "crop")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="positive"):
        to_resolution(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        to_resolution(torch.zeros(4, 4), 8)


def test_to_float01() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float01(x), torch.tensor([0.0, 0.2, 1.0]))
    assert to_float01(x).dtype == torch.float32
    assert to_float01(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(DataError, match="int32"):
        to_float01(torch.tensor([1], dtype=torch.int32))

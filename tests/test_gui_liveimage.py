"""The live view's cheap drawing: stride to the screen, one lookup per frame, camera coordinates kept."""

from __future__ import annotations

import numpy as np
import pytest

from labrig.gui.liveimage import LiveImage, display_stride, histogram, level_lut, palette, to_uint8


def test_stride_follows_the_screen_resolution() -> None:
    assert display_stride((1024, 1024), (0.5, 0.5)) == 1  # zoomed in: every pixel
    assert display_stride((1024, 1024), (1.02, 1.02)) == 1  # a 1024 frame in a 1000 px view
    assert display_stride((1024, 1024), (1.45, 1.45)) == 2  # ... in a 700 px view
    assert display_stride((1024, 1024), (2.4, 2.6)) == 2
    assert display_stride((1024, 1024), (3.0, 3.0)) == 3
    assert display_stride((4, 4), (100.0, 100.0)) == 2  # never fewer than 2 pixels a side
    assert display_stride((1024, 1024), (float("nan"), 1.0)) == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lookup_matches_the_direct_scaling(dtype) -> None:
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max
    frame = rng.integers(0, top, (33, 47), endpoint=True).astype(dtype)
    levels = (0.1 * top, 0.7 * top)
    direct = to_uint8(frame, levels)
    looked = to_uint8(frame, levels, level_lut(levels, np.dtype(dtype)))
    assert np.abs(direct.astype(int) - looked.astype(int)).max() <= 1
    assert looked[frame <= levels[0]].max() == 0 and looked[frame >= levels[1]].min() == 255


def test_float_frames_and_nan_are_drawn() -> None:
    frame = np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32)
    assert level_lut((0.0, 1.0), frame.dtype) is None
    assert to_uint8(frame, (0.0, 1.0)).tolist() == [[0, 127], [255, 0]]


def test_palette_packs_colours_as_rgb32_words() -> None:
    grey = palette()
    assert grey[0] == 0xFF000000 and grey[255] == 0xFFFFFFFF and grey[128] == 0xFF808080
    colours = np.zeros((256, 3), np.uint8)
    colours[:, 0] = 255
    assert palette(colours)[7] == 0xFFFF0000


def test_draws_a_strided_frame_in_camera_coordinates(qtbot) -> None:
    view = LiveImage()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    frame = (np.arange(1024 * 1024).reshape(1024, 1024) % 4096).astype(np.uint16)
    view.set_levels(0.0, 4095.0)
    view.draw(frame, auto_range=True)  # fits the view: several camera pixels per screen pixel
    view.draw(frame)
    k = view.stride
    assert k >= 2 and k == display_stride(frame.shape, view.viewbox.viewPixelSize())
    shown = view.image_item.image
    assert shown.shape == frame[::k, ::k].shape and shown.dtype == np.uint32
    # the drawn words are the grey of every k-th camera pixel
    expected = palette()[to_uint8(frame[::k, ::k], (0.0, 4095.0), level_lut((0.0, 4095.0), frame.dtype))]
    assert np.array_equal(shown, expected)
    # the strided image still covers the whole frame: ROIs in camera pixels stay where they were
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    assert abs(rect.width() - 1024) < k and abs(rect.height() - 1024) < k
    # new levels take effect on the next frame
    view.set_levels(0.0, 100.0)
    view.draw(frame)
    assert view.levels() == (0.0, 100.0)
    assert (view.image_item.image == 0xFFFFFFFF).mean() > 0.9
    view.close()


def test_integer_histogram_counts_every_pixel_in_its_bin() -> None:
    rng = np.random.default_rng(2)
    part = rng.integers(100, 4000, (64, 80)).astype(np.uint16)
    centres, counts = histogram(part, bins=32)
    assert counts.sum() == part.size and len(centres) == len(counts) == 32
    width = centres[1] - centres[0]
    lo = part.min()
    manual = np.bincount(((part.astype(int) - lo) // int(width)).ravel(), minlength=32)
    assert np.array_equal(counts, manual[:32])
    assert centres[0] - width / 2 == lo and centres[-1] + width / 2 > part.max()
    flat = np.full((4, 4), 7, np.uint16)  # a constant frame is one full bin
    assert histogram(flat, bins=8)[1].tolist() == [16, 0, 0, 0, 0, 0, 0, 0]
    floats = np.array([[0.0, 1.0], [np.nan, 0.5]], np.float32)
    assert histogram(floats, bins=2)[1].sum() == 3

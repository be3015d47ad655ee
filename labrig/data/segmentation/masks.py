"""Reading label masks and bringing image/mask pairs to one size together.

A mask is a map of class indices, not a picture: it is read as stored (an
indexed PNG's palette indices, a grayscale PNG's values), never converted
through colours, and resized with nearest-neighbour so no label is invented
between two others. Padding is labelled `IGNORE`, so it counts in no loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from labrig.data.errors import DataError
from labrig.data.segmentation.base import IGNORE
from labrig.data.transforms import Mode, as_size, to_resolution

MASK_SUFFIXES: frozenset[str] = frozenset({".png", ".gif", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"})


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable mask ({type(e).__name__}: {e})") from None


def read_index_mask(path: str | Path) -> np.ndarray:
    """Class indices (H, W) uint8 of an indexed (palette) or grayscale mask image.

    A colour (RGB) mask is refused: its colours would need a palette to mean
    classes, and guessing one mislabels silently.
    """
    path = Path(path)
    im = _open(path)
    with im:
        if im.mode in ("P", "L"):
            return np.array(im, dtype=np.uint8)
        if im.mode == "1":
            return np.array(im, dtype=np.uint8)
        raise DataError(f"{path}: a class mask must be an indexed (palette) or grayscale image of class "
                        f"indices, got mode {im.mode}")


def read_binary_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """Foreground (1) / background (0) (H, W) uint8 of a binary mask image.

    Palette images (Carvana's GIFs) are foreground where the index is non-zero;
    anything else is converted to gray and thresholded (JPEG-compressed masks
    have values between 0 and 255 along the edges).
    """
    path = Path(path)
    im = _open(path)
    with im:
        if im.mode == "P":
            return (np.asarray(im) > 0).astype(np.uint8)
        if im.mode == "1":
            return np.asarray(im).astype(np.uint8)
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            return (np.asarray(im, dtype=np.float64) > threshold * 257).astype(np.uint8)
        return (np.asarray(im.convert("L")) > threshold).astype(np.uint8)


def _resize_nearest(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == hw:
        return mask
    y = F.interpolate(mask[None, None].float(), size=hw, mode="nearest-exact")
    return y[0, 0].to(mask.dtype)


def _pad(mask: torch.Tensor, hw: tuple[int, int], value: int) -> torch.Tensor:
    """Pad as `transforms._pad_center` pads images: centred, odd remainder bottom/right."""
    h, w = mask.shape[-2:]
    top, left = (hw[0] - h) // 2, (hw[1] - w) // 2
    return F.pad(mask, (left, hw[1] - w - left, top, hw[0] - h - top), value=value)


def fit_pair(
    image: torch.Tensor, mask: torch.Tensor, size: int | tuple[int, int], mode: Mode = "resize_pad",
    where: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring a (C, H, W) image and its (H, W) mask to `size` with the same geometry.

    Modes as `labrig.data.transforms.to_resolution`; the image is resized
    bilinearly, the mask by nearest neighbour, padding is 0 in the image and
    `IGNORE` in the mask.
    """
    hw = as_size(size)
    h, w = mask.shape
    if tuple(image.shape[-2:]) != (h, w):
        raise DataError(f"{where or 'image/mask pair'}: image {tuple(image.shape[-2:])} and mask {(h, w)} differ in size")
    if mode == "pad":
        if h > hw[0] or w > hw[1]:
            raise DataError(f"{where}: cannot pad {h}x{w} into {hw[0]}x{hw[1]}; use mode='resize' or 'resize_pad'")
        return to_resolution(image, hw, "pad"), _pad(mask, hw, IGNORE)
    if mode == "resize":
        return to_resolution(image, hw, "resize"), _resize_nearest(mask, hw)
    scale = min(hw[0] / h, hw[1] / w)
    fit = (max(1, min(hw[0], round(h * scale))), max(1, min(hw[1], round(w * scale))))
    return to_resolution(image, hw, "resize_pad"), _pad(_resize_nearest(mask, fit), hw, IGNORE)

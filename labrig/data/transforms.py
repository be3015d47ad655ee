"""Bring images to the input resolution of a model or of the input modulator.

The 4f bench wants a fixed input size; padding keeps the image's pixel scale
(what the optics sees), resizing keeps its field of view. Both are offered, and
nothing happens silently: asking to pad into a smaller frame is an error.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from labrig.data.errors import DataError

Mode = Literal["pad", "resize", "resize_pad"]
MODES: tuple[str, ...] = ("pad", "resize", "resize_pad")


def as_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalize `size` (int or (H, W)) to a (H, W) tuple of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    else:
        try:
            hw = tuple(int(s) for s in size)  # type: ignore[union-attr]
        except TypeError:
            raise DataError(f"size must be an int or (H, W), got {size!r}") from None
    if len(hw) != 2 or min(hw) < 1:
        raise DataError(f"size must be a positive int or (H, W), got {size!r}")
    return hw  # type: ignore[return-value]


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float32 in [0, 1]; float images are only cast to float32.

    Data stays uint8 in memory (4x smaller) and is converted per batch with this.
    """
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.dtype.is_floating_point:
        return images.to(torch.float32)
    if images.dtype == torch.bool:
        return images.to(torch.float32)
    raise DataError(
        f"cannot scale images of dtype {images.dtype} to [0, 1]; expected uint8 or float"
    )


def _resize(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (N, C, H, W); the dtype is kept (uint8 is rounded)."""
    if tuple(images.shape[-2:]) == hw:
        return images
    x = (
        images.to(torch.float32)
        if images.dtype in (torch.uint8, torch.float16, torch.bfloat16)
        else images
    )
    if not x.dtype.is_floating_point:
        raise DataError(f"cannot resize images of dtype {images.dtype}; expected uint8 or float")
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    if images.dtype == torch.uint8:
        return y.round_().clamp_(0, 255).to(torch.uint8)
    return y.to(images.dtype)


def _pad_center(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Zero-pad (N, C, H, W) to `hw`, centered; an odd remainder goes to the bottom/right."""
    h, w = images.shape[-2:]
    th, tw = hw
    if h > th or w > tw:
        raise DataError(
            f"cannot pad {h}x{w} images into a smaller {th}x{tw} frame; "
            "use mode='resize' or mode='resize_pad'"
        )
    top, left = (th - h) // 2, (tw - w) // 2
    if (th, tw) == (h, w):
        return images
    return F.pad(images, (left, tw - w - left, top, th - h - top), mode="constant", value=0)


def to_resolution(
    images: torch.Tensor, size: int | tuple[int, int], mode: Mode = "pad"
) -> torch.Tensor:
    """Bring (N, C, H, W) or (C, H, W) images to `size`; the dtype is kept.

    - "pad": center the image in a zero frame (pixel scale kept; must not shrink).
    - "resize": bilinear antialiased resize to exactly `size` (aspect may change).
    - "resize_pad": resize keeping the aspect ratio to fit, then center-pad.
    """
    hw = as_size(size)
    if mode not in MODES:
        raise DataError(f"unknown resolution mode {mode!r}; expected one of {', '.join(MODES)}")
    if images.ndim not in (3, 4):
        raise DataError(
            f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}"
        )
    single = images.ndim == 3
    x = images.unsqueeze(0) if single else images
    if mode == "pad":
        y = _pad_center(x, hw)
    elif mode == "resize":
        y = _resize(x, hw)
    else:
        h, w = x.shape[-2:]
        scale = min(hw[0] / h, hw[1] / w)
        fit = (max(1, min(hw[0], round(h * scale))), max(1, min(hw[1], round(w * scale))))
        y = _pad_center(_resize(x, fit), hw)
    return y.squeeze(0) if single else y

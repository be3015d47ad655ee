"""Frames: which pixel formats labrig accepts, and a harvesters image component as a 2-D array.

Kept apart so the pixel-format table the profile check, the camera and the
conversion share lives in one place, and the conversion is testable without a device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.errors import DeviceError, FrameDropped

__all__ = [
    "PIXEL_FORMATS",
    "frame_from_component",
]

#: pixel formats labrig turns into a 2-D integer array, with their bit depth
PIXEL_FORMATS: dict[str, int] = {
    "Mono8": 8,
    "Mono10": 10,
    "Mono10p": 10,
    "Mono10Packed": 10,
    "Mono12": 12,
    "Mono12p": 12,
    "Mono12Packed": 12,
    "Mono14": 14,
    "Mono16": 16,
}


def frame_from_component(component: Any, owner: str) -> np.ndarray:
    """A 2-D copy of a harvesters image component (the buffer goes back to the producer)."""
    fmt = str(component.data_format)
    if fmt not in PIXEL_FORMATS:
        raise DeviceError(
            f"{owner}: frame has pixel format {fmt}, which labrig cannot turn into a 2-D array "
            f"(it takes {', '.join(PIXEL_FORMATS)})"
        )
    width, height = int(component.width), int(component.height)
    data = component.data
    if data is None or height <= 0 or width <= 0 or data.size < width * height:
        raise FrameDropped(f"{owner}: incomplete frame ({0 if data is None else data.size} "
                           f"values for {height}x{width})")
    if data.size % height == 0 and data.size // height >= width:  # rows may carry padding
        return np.array(data.reshape(height, -1)[:, :width])
    return np.array(data[: width * height].reshape(height, width))

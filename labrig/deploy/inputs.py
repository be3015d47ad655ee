"""The input encoding: images in [0, 1] -> gray levels of the input modulator.

The same steps as the student's optical path (`OpticalPath.input_amplitude`
then `InputModulator.gray_for_amplitude`): the image is the field amplitude
(coherent) or the intensity (incoherent), centred on the axis, and each pixel
takes the gray level whose transmission is nearest. Numpy, so the runner's
per-image cost stays small.
"""

from __future__ import annotations

import numpy as np

from labrig.deploy.program import InputEncoding
from labrig.optics.modulators import InputModulator
from labrig.optics.specs import BenchGeometry

__all__ = ["encode_images", "gray_dtype", "make_input_encoding", "nearest_level"]


def make_input_encoding(
    geometry: BenchGeometry, image_shape: tuple[int, int], detection: str, scale: float = 1.0,
    lut: np.ndarray | None = None,
) -> InputEncoding:
    """Centred placement (as `place_centered`) and the modulator's nominal LUT unless given."""
    rows, cols = geometry.input.resolution
    h, w = image_shape
    if h > rows or w > cols:
        raise ValueError(f"{h}x{w} images do not fit the {rows}x{cols} input modulator")
    if lut is None:
        lut = InputModulator(geometry.input, geometry.input_grid).lut.numpy()
    return InputEncoding(
        image_shape=(int(h), int(w)),
        modulator_shape=(int(rows), int(cols)),
        origin=(rows // 2 - h // 2, cols // 2 - w // 2),
        scale=float(scale),
        quantity="intensity" if detection == "incoherent" else "amplitude",
        lut=np.asarray(lut, dtype=np.float64),
    )


def gray_dtype(levels: int) -> np.dtype:
    return np.dtype(np.uint8 if levels <= 256 else np.uint16)


def encode_images(encoding: InputEncoding, images: np.ndarray) -> np.ndarray:
    """(B, H, W) images in [0, 1] -> (B, rows, cols) gray levels for the input modulator."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or tuple(images.shape[1:]) != encoding.image_shape:
        raise ValueError(f"images must be (B, {encoding.image_shape[0]}, {encoding.image_shape[1]}), "
                         f"got {images.shape}")
    x = np.clip(images * encoding.scale, 0.0, 1.0)
    amplitude = x if encoding.quantity == "amplitude" else np.sqrt(x)
    dtype = gray_dtype(len(encoding.lut))
    background = nearest_level(np.zeros(1), encoding.lut)[0]  # what a zero amplitude shows
    out = np.full((len(images), *encoding.modulator_shape), background, dtype=dtype)
    top, left = encoding.origin
    out[:, top : top + x.shape[1], left : left + x.shape[2]] = nearest_level(np.square(amplitude), encoding.lut)
    return out


def nearest_level(target: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Gray level whose transmission is nearest to `target` (ties to the lower level)."""
    idx = np.clip(np.searchsorted(lut, target), 1, len(lut) - 1)
    lower_closer = (target - lut[idx - 1]) < (lut[idx] - target)
    return np.where(lower_closer, idx - 1, idx)

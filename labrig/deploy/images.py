"""Images for compiling and running: a dataset or an array, served in slices as (B, H, W) in [0, 1].

A program needs one-channel images of its input size; a dataset is brought to
that size the way training did (`ImageDataset.with_resolution`), and uint8
arrays are scaled by 1/255. Slices are prepared lazily, so 10,000 images cost
no more memory than their uint8 originals.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from labrig.data.base import ImageDataset
from labrig.data.errors import DataError

__all__ = ["ImageSource"]


class ImageSource:
    """Images (and labels, when known) to stream through a program."""

    def __init__(self, data: Any, image_shape: tuple[int, int], labels: Any = None, limit: int | None = None) -> None:
        self.image_shape = tuple(image_shape)
        self.name, self.source, self.classes = "images", "", ()
        if isinstance(data, tuple) and len(data) == 2 and labels is None:
            data, labels = data
        if isinstance(data, ImageDataset):
            ds = data if tuple(data.image_shape[1:]) == self.image_shape else data.with_resolution(self.image_shape)
            if ds.image_shape[0] != 1:
                raise DataError(f"{ds.name or 'dataset'}: the bench shows one channel, the images have {ds.image_shape[0]}")
            self._dataset: ImageDataset | None = ds
            self._array: np.ndarray | None = None
            labels = ds.labels if labels is None else labels
            self.name, self.source, self.classes = ds.name or "dataset", ds.source, tuple(ds.classes)
            n = len(ds)
        else:
            self._dataset = None
            self._array = _as_array(data, self.image_shape)
            n = len(self._array)
        self.total = n if limit is None else max(0, min(n, int(limit)))
        self.labels = None if labels is None else np.asarray(torch.as_tensor(labels), dtype=np.int64)[: self.total]
        if self.labels is not None and len(self.labels) != self.total:
            raise DataError(f"{self.total} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return self.total

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Images [start, stop) as float32 (B, H, W) in [0, 1]."""
        stop = min(stop, self.total)
        if self._dataset is not None:
            x = self._dataset.prepare(self._dataset.images[start:stop])
            return x[:, 0].numpy()
        assert self._array is not None
        return self._array[start:stop]

    def digest(self) -> str:
        """Identifies the images and labels (for resuming: the same set in the same order)."""
        h = hashlib.sha256(f"{self.total}:{self.image_shape}".encode())
        if self._dataset is not None:
            h.update(np.ascontiguousarray(self._dataset.images[: self.total].numpy()).tobytes())
        else:
            assert self._array is not None
            h.update(np.ascontiguousarray(self._array[: self.total]).tobytes())
        if self.labels is not None:
            h.update(self.labels.tobytes())
        return h.hexdigest()


def _as_array(data: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or tuple(a.shape[1:]) != tuple(shape):
        raise DataError(f"images must be (N, {shape[0]}, {shape[1]}) or (N, 1, {shape[0]}, {shape[1]}), got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"images must be uint8 or float in [0, 1], got {a.dtype}")
    return a.astype(np.float32, copy=False)

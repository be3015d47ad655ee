"""`SegmentationDataset`: images with one class label per pixel.

The dense counterpart of `ImageDataset`, with the same batch interface the
trainer uses (`images`, `labels`, `prepare`, `batches`, `subset`), so one
trainer serves both. Images stay uint8 (N, C, H, W) and masks uint8 (N, H, W)
in memory; `ignore_index` (255, VOC's convention) marks pixels that no loss or
metric counts: object boundaries, padding, unlabelled areas.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from labrig.data.base import in_memory_batches
from labrig.data.errors import DataError
from labrig.data.transforms import to_float01

IGNORE = 255


@dataclass(eq=False)
class SegmentationDataset(Dataset):
    """Images (N, C, H, W), masks (N, H, W) of class indices or `ignore_index`, class names."""

    images: torch.Tensor
    masks: torch.Tensor
    classes: list[str]
    name: str = ""
    source: str = ""
    ignore_index: int = IGNORE
    indices: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        what = self.name or self.source or "segmentation dataset"
        if not isinstance(self.images, torch.Tensor) or self.images.ndim != 4:
            raise DataError(f"{what}: images must be a (N, C, H, W) tensor, got shape "
                            f"{tuple(getattr(self.images, 'shape', ()))}")
        if not (self.images.dtype == torch.uint8 or self.images.dtype.is_floating_point):
            raise DataError(f"{what}: images must be uint8 or float, got {self.images.dtype}")
        masks = torch.as_tensor(self.masks)
        if masks.dtype.is_floating_point or masks.dtype == torch.bool:
            raise DataError(f"{what}: masks must hold integer class indices, got {masks.dtype}")
        n, _, h, w = self.images.shape
        if tuple(masks.shape) != (n, h, w):
            raise DataError(f"{what}: masks {tuple(masks.shape)} do not match images {tuple(self.images.shape)} "
                            "(expected one (H, W) mask per image)")
        self.classes = [str(c) for c in self.classes]
        if len(self.classes) < 2:
            raise DataError(f"{what}: segmentation needs at least 2 classes, got {self.classes}")
        if len(self.classes) > IGNORE:
            raise DataError(f"{what}: {len(self.classes)} classes do not fit uint8 masks")
        bad = masks[(masks != self.ignore_index) & ((masks < 0) | (masks >= len(self.classes)))]
        if bad.numel():
            raise DataError(f"{what}: mask values {sorted(set(bad.unique().tolist()))[:8]} are neither a class "
                            f"(0..{len(self.classes) - 1}) nor the ignore label {self.ignore_index}")
        self.masks = masks.to(torch.uint8)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One float32 (C, H, W) image in [0, 1] and its int64 (H, W) mask."""
        return self.prepare(self.images[index]), self.masks[index].long()

    @property
    def labels(self) -> torch.Tensor:
        """The masks: what the trainer indexes as targets."""
        return self.masks

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Stored images → float32 in [0, 1] (they are stored at their final size)."""
        return to_float01(images)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images float32 (B, C, H, W), masks int64 (B, H, W)); order depends on `seed` only."""
        for x, y in in_memory_batches(self.images, self.masks, self.prepare, batch_size, shuffle=shuffle, seed=seed,
                                      device=device, drop_last=drop_last):
            yield x, y.long()

    def subset(self, indices: Sequence[int] | torch.Tensor, name: str | None = None) -> SegmentationDataset:
        """A copy holding the given rows (`indices` remembers where from)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        base = self.indices[idx] if self.indices is not None else idx
        return SegmentationDataset(self.images[idx], self.masks[idx], list(self.classes),
                                   name=self.name if name is None else name, source=self.source,
                                   ignore_index=self.ignore_index, indices=base)

    def class_pixel_counts(self) -> torch.Tensor:
        """Labelled pixels per class (int64, length `num_classes`; ignored pixels not counted)."""
        m = self.masks[self.masks != self.ignore_index].long()
        return torch.bincount(m, minlength=self.num_classes)

"""`ImageDataset`: the one shape every loader returns.

Images stay as stored (uint8 for every standard dataset: 60000x28x28 is 47 MB,
float32 would be 4x that) and are scaled to [0, 1] float32 and brought to the
requested resolution per item or per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from labrig.data.errors import DataError
from labrig.data.transforms import MODES, Mode, as_size, to_float01, to_resolution


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool = False, seed: int | None = None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Row indices of each batch of an in-memory dataset; a shuffle depends only on `seed`
    (0 when None), never on the global RNG."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed or 0)) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def in_memory_batches(
    images: torch.Tensor, targets: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
    *, shuffle: bool = False, seed: int | None = None, device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(prepare(images[idx]), targets[idx]) per batch of `batch_indices`. The stored rows
    move to `device` first (uint8 is 4x less to move) and are converted there."""
    for idx in batch_indices(len(images), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last):
        x, y = images[idx], targets[idx]
        if device is not None:
            x, y = x.to(device), y.to(device)
        yield prepare(x), y


@dataclass(eq=False)
class ImageDataset(Dataset):
    """Images (N, C, H, W), int64 labels (N,), class names, and where they came from.

    `size`/`mode` are applied lazily (per item in `__getitem__`, per batch in
    `batches`), so the stored tensor keeps its native resolution and dtype.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    source: str = ""
    size: tuple[int, int] | None = None
    mode: Mode = "pad"
    # Indices into the dataset this one was split from (None for a loaded dataset).
    indices: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        what = self.name or self.source or "dataset"
        if not isinstance(self.images, torch.Tensor) or self.images.ndim != 4:
            shape = tuple(getattr(self.images, "shape", ()))
            raise DataError(f"{what}: images must be a (N, C, H, W) tensor, got shape {shape}")
        if not (self.images.dtype == torch.uint8 or self.images.dtype.is_floating_point):
            raise DataError(f"{what}: images must be uint8 or float, got {self.images.dtype}")
        labels = torch.as_tensor(self.labels)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise DataError(
                f"{what}: labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}"
            )
        self.labels = labels.to(torch.int64)
        if len(self.labels) != len(self.images):
            raise DataError(f"{what}: {len(self.images)} images but {len(self.labels)} labels")
        self.classes = [str(c) for c in self.classes]
        if not self.classes:
            raise DataError(f"{what}: no class names")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(
                f"{what}: labels span [{int(self.labels.min())}, {int(self.labels.max())}] "
                f"but there are {len(self.classes)} classes"
            )
        if self.size is not None:
            self.size = as_size(self.size)
            h, w = self.images.shape[-2:]
            if self.mode == "pad" and (self.size[0] < h or self.size[1] < w):
                # Fail here, not at the first batch of a long run.
                raise DataError(
                    f"{what}: cannot pad {h}x{w} images to {self.size[0]}x{self.size[1]}; "
                    "use mode='resize' or 'resize_pad'"
                )
        if self.mode not in MODES:
            raise DataError(
                f"{what}: unknown resolution mode {self.mode!r}; expected one of {', '.join(MODES)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """One (C, H, W) float32 image in [0, 1] at the requested size, and its label."""
        return self.prepare(self.images[index]), int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what `__getitem__`/`batches` return (after `size`)."""
        c, h, w = self.images.shape[1:]
        return (c, *self.size) if self.size is not None else (c, h, w)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Stored images (N, C, H, W) or (C, H, W) → float32 [0, 1] at `size`."""
        x = to_float01(images)
        return x if self.size is None else to_resolution(x, self.size, self.mode)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images float32 (B, C, H, W), labels int64 (B,)) converted per batch.

        Faster than a DataLoader over `__getitem__` for in-memory data, and the
        shuffle order depends only on `seed`, never on the global RNG.
        """
        return in_memory_batches(self.images, self.labels, self.prepare, batch_size, shuffle=shuffle, seed=seed,
                                 device=device, drop_last=drop_last)

    def subset(
        self, indices: Sequence[int] | torch.Tensor, name: str | None = None
    ) -> ImageDataset:
        """A new dataset holding the given rows (a copy; `indices` remembers where from)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        base = self.indices[idx] if self.indices is not None else idx
        return ImageDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            name=self.name if name is None else name,
            source=self.source,
            size=self.size,
            mode=self.mode,
            indices=base,
        )

    def with_resolution(
        self, size: int | tuple[int, int] | None, mode: Mode = "pad"
    ) -> ImageDataset:
        """The same data (shared, not copied) served at another resolution."""
        return ImageDataset(
            images=self.images,
            labels=self.labels,
            classes=list(self.classes),
            name=self.name,
            source=self.source,
            size=None if size is None else as_size(size),
            mode=mode,
            indices=self.indices,
        )

    def class_counts(self) -> torch.Tensor:
        """Images per class (int64, length `num_classes`)."""
        return torch.bincount(self.labels, minlength=self.num_classes)

"""Segmentation datasets from folders: the PASCAL VOC layout and image/mask pairs.

- VOC: ``JPEGImages/<id>.jpg`` + ``SegmentationClass/<id>.png`` (indexed PNG,
  255 = ignore), ids from ``ImageSets/Segmentation/<split>.txt``.
- Pairs (Carvana-style binary masks): ``images/<stem>.*`` +
  ``masks/<stem>.*`` or ``masks/<stem>_mask.*``; foreground = 1.

A missing partner, a mask whose size differs from its image, an unreadable
file or a label that is no class is a `DataError` naming the file: a
silently dropped or shifted mask teaches the wrong pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from labrig.data.errors import DataError
from labrig.data.folders import IMAGE_SUFFIXES, read_image
from labrig.data.segmentation.base import IGNORE, SegmentationDataset
from labrig.data.segmentation.masks import (
    MASK_SUFFIXES,
    fit_pair,
    read_binary_mask,
    read_index_mask,
)
from labrig.data.transforms import Mode

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
BINARY_CLASSES: tuple[str, ...] = ("background", "foreground")


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)


def assemble(
    pairs: Sequence[tuple[Path, Path]],
    read_mask: Callable[[Path], np.ndarray],
    classes: Sequence[str],
    *,
    size: int | tuple[int, int] | None,
    mode: Mode,
    color: str,
    name: str,
    source: str,
) -> SegmentationDataset:
    """Read (image, mask) file pairs into one dataset; all one size unless `size` is given."""
    if not pairs:
        raise DataError(f"{source}: no image/mask pairs")
    images, masks = [], []
    first: tuple[Path, tuple[int, int]] | None = None
    for image_path, mask_path in pairs:
        image = torch.from_numpy(read_image(image_path, color))
        mask = torch.from_numpy(read_mask(mask_path))
        if tuple(image.shape[1:]) != tuple(mask.shape):
            raise DataError(f"{mask_path}: mask size {tuple(mask.shape)} differs from its image {image_path} "
                            f"{tuple(image.shape[1:])}")
        bad = np.setdiff1d(np.unique(mask.numpy()), [*range(len(classes)), IGNORE])
        if bad.size:
            raise DataError(f"{mask_path}: label values {bad[:8].tolist()} are neither a class "
                            f"(0..{len(classes) - 1}) nor the ignore label {IGNORE}")
        if size is not None:
            image, mask = fit_pair(image, mask, size, mode, where=str(mask_path))
        elif first is None:
            first = (image_path, tuple(mask.shape))
        elif tuple(mask.shape) != first[1]:
            raise DataError(f"{image_path}: size {tuple(mask.shape)} differs from {first[0]} {first[1]}; "
                            "pass size=... to bring all pairs to one resolution")
        images.append(image)
        masks.append(mask)
    return SegmentationDataset(torch.stack(images), torch.stack(masks), list(classes), name=name, source=source)


def find_voc_root(root: str | Path) -> Path:
    """The folder holding ``JPEGImages`` and ``SegmentationClass`` (also under VOCdevkit/VOC20xx)."""
    root = Path(root)
    candidates = [root, *sorted(root.glob("VOC20*")), *sorted(root.glob("VOCdevkit/VOC20*"))]
    for c in candidates:
        if (c / "JPEGImages").is_dir() and (c / "SegmentationClass").is_dir():
            return c
    raise DataError(f"{root}: not a VOC-style folder (expected JPEGImages/ and SegmentationClass/)")


def load_voc(
    root: str | Path,
    split: str | None = "train",
    *,
    size: int | tuple[int, int] | None = None,
    mode: Mode = "resize_pad",
    color: str = "gray",
    classes: Sequence[str] = VOC_CLASSES,
    limit: int | None = None,
) -> SegmentationDataset:
    """A VOC-style split; `split` None takes every mask in ``SegmentationClass``.

    VOC images differ in size: pass `size` (default mode keeps the aspect and
    pads, the padding labelled ignore). `limit` takes the first ids only.
    """
    voc = find_voc_root(root)
    if split is None:
        ids = [p.stem for p in _files(voc / "SegmentationClass", frozenset({".png"}))]
    else:
        listing = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise DataError(f"{listing}: split list not found (split={split!r}; pass split=None for every mask)")
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    ids = ids[:limit] if limit is not None else ids
    images = {p.stem: p for p in _files(voc / "JPEGImages", IMAGE_SUFFIXES)}
    pairs = []
    for i in ids:
        mask = voc / "SegmentationClass" / f"{i}.png"
        if i not in images:
            raise DataError(f"{voc / 'JPEGImages'}: no image for id {i!r} (listed in the split or masks)")
        if not mask.is_file():
            raise DataError(f"{mask}: mask not found for image {images[i]}")
        pairs.append((images[i], mask))
    return assemble(pairs, read_index_mask, classes, size=size, mode=mode, color=color,
                    name=voc.name, source=f"{voc} [{split or 'all'}]")


def _mask_for(stem: str, masks: dict[str, Path]) -> Path | None:
    return masks.get(stem) or masks.get(f"{stem}_mask")


def load_mask_pairs(
    root: str | Path,
    *,
    images: str = "images",
    masks: str = "masks",
    size: int | tuple[int, int] | None = None,
    mode: Mode = "resize",
    color: str = "gray",
    threshold: int = 127,
    limit: int | None = None,
) -> SegmentationDataset:
    """Image/mask folder pairs with binary masks (background 0, foreground 1).

    Masks match images by stem, with or without a ``_mask`` suffix (Carvana's
    ``<id>_mask.gif``). Every image needs a mask and every mask an image.
    """
    root = Path(root)
    image_files = _files(root / images, IMAGE_SUFFIXES)
    mask_files = {p.stem: p for p in _files(root / masks, MASK_SUFFIXES)}
    if not image_files:
        raise DataError(f"{root / images}: no images")
    pairs, used = [], set()
    for path in image_files:
        mask = _mask_for(path.stem, mask_files)
        if mask is None:
            raise DataError(f"{path}: no mask in {root / masks} (expected {path.stem}.* or {path.stem}_mask.*)")
        pairs.append((path, mask))
        used.add(mask.stem)
    orphans = sorted(set(mask_files) - used)
    if orphans:
        raise DataError(f"{mask_files[orphans[0]]}: mask without an image in {root / images} "
                        f"({len(orphans)} such mask(s))")
    pairs = pairs[:limit] if limit is not None else pairs
    return assemble(pairs, lambda p: read_binary_mask(p, threshold), BINARY_CLASSES, size=size, mode=mode,
                    color=color, name=root.name, source=str(root))

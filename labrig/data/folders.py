"""Image folders: one sub-folder per class, as a lab collects its own data.

Class indices follow the sorted folder names, so the same folder always gives
the same labels. A file that will not decode, or a class with no images, is an
error naming it: a silently skipped class shifts every label after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from labrig.data.base import ImageDataset
from labrig.data.errors import DataError
from labrig.data.transforms import Mode, as_size, to_resolution

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
Color = Literal["gray", "rgb"]
_COLOR_ALIASES = {"gray": "gray", "grey": "gray", "grayscale": "gray", "l": "gray", "rgb": "rgb"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def _color(color: str) -> Color:
    c = _COLOR_ALIASES.get(color.lower())
    if c is None:
        raise DataError(f"unknown color {color!r}; expected 'gray' or 'rgb'")
    return c  # type: ignore[return-value]


def read_image(path: str | Path, color: str = "gray") -> np.ndarray:
    """Read one image as uint8 (C, H, W), C = 1 (gray) or 3 (rgb).

    16-bit images (common from lab cameras) are scaled to 8 bits, not clipped.
    """
    path = Path(path)
    c = _color(color)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _SIXTEEN_BIT:
                arr16 = np.asarray(im, dtype=np.float64)
                gray = np.clip(np.rint(arr16 / 257.0), 0, 255).astype(np.uint8)
                arr = gray[None] if c == "gray" else np.repeat(gray[None], 3, axis=0)
            elif im.mode == "F":
                raise DataError(f"{path}: floating-point image (mode F) has no defined 8-bit scale")
            else:
                conv = np.asarray(im.convert("L" if c == "gray" else "RGB"), dtype=np.uint8)
                arr = conv[None] if c == "gray" else conv.transpose(2, 0, 1)
    except DataError:
        raise
    except (
        OSError,
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return np.array(arr, dtype=np.uint8, order="C", copy=True)  # PIL arrays are read-only


def list_class_images(root: str | Path) -> tuple[list[str], list[list[Path]]]:
    """(sorted class names, image paths per class); hidden entries are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
    files: list[list[Path]] = []
    for name in classes:
        imgs = sorted(
            p
            for p in (root / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not imgs:
            raise DataError(
                f"{root / name}: empty class folder (no {', '.join(sorted(IMAGE_SUFFIXES))} files)"
            )
        files.append(imgs)
    return classes, files


def load_image_folder(
    root: str | Path,
    *,
    color: str = "gray",
    size: int | tuple[int, int] | None = None,
    mode: Mode = "resize_pad",
    name: str | None = None,
) -> ImageDataset:
    """Load a class-per-folder tree as an `ImageDataset` of uint8 (N, C, H, W).

    All images must share one size unless `size` is given, in which case each
    is brought to it on load (`mode`, default keeps the aspect ratio).
    """
    root = Path(root)
    classes, files = list_class_images(root)
    hw = as_size(size) if size is not None else None
    images: list[torch.Tensor] = []
    labels: list[int] = []
    first: tuple[Path, tuple[int, ...]] | None = None
    for label, paths in enumerate(files):
        for path in paths:
            img = torch.from_numpy(read_image(path, color))
            if hw is not None:
                img = to_resolution(img, hw, mode)
            elif first is None:
                first = (path, tuple(img.shape[1:]))
            elif tuple(img.shape[1:]) != first[1]:
                raise DataError(
                    f"{path}: size {tuple(img.shape[1:])} differs from {first[0]} {first[1]}; "
                    "pass size=... to bring all images to one resolution"
                )
            images.append(img)
            labels.append(label)
    return ImageDataset(
        images=torch.stack(images),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=classes,
        name=name or root.name,
        source=str(root),
    )

"""Generated scene sets, made once and kept on disk.

The file name carries a hash of everything that decides the scenes (the item
images, the `SceneConfig`, the count and the seed), so another setting never
reads a stale file. Writes are atomic; a file that does not load or does not
hold what its name promises is reported (a warning naming it) and rebuilt,
never trusted.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from labrig.data.base import ImageDataset
from labrig.data.errors import DataError
from labrig.data.segmentation.base import SegmentationDataset
from labrig.data.segmentation.generated import SceneConfig, generate_scenes
from labrig.io import atomic_write

FORMAT = "labrig-scenes"
VERSION = 1


def items_fingerprint(items: ImageDataset) -> str:
    """A hash of the item images and labels (which pool a scene set was drawn from)."""
    digest = hashlib.sha1()
    digest.update(items.images.contiguous().numpy().tobytes())
    digest.update(items.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def scene_key(items: ImageDataset, count: int, config: SceneConfig, seed: int) -> str:
    text = json.dumps({"items": items_fingerprint(items), "count": count, "config": config.as_dict(),
                       "seed": seed, "version": VERSION}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def scene_classes(items: ImageDataset) -> list[str]:
    """Background, then the item classes (label = item class + 1)."""
    return ["background", *items.classes]


def _read(path: Path, key: str, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = torch.load(path, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        raise DataError("not a scene file of these settings")
    images, masks, places = data["images"], data["masks"], data["placements"]
    if images.shape != (count, 1, size, size) or masks.shape != (count, size, size) or len(places) != count:
        raise DataError(f"holds {tuple(images.shape)} images and {tuple(masks.shape)} masks, "
                        f"expected {count} of {size}x{size}")
    if images.dtype != torch.uint8 or masks.dtype != torch.uint8:
        raise DataError("images and masks must be uint8")
    return images, masks, places


def scene_dataset(
    items: ImageDataset,
    count: int,
    config: SceneConfig,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    name: str = "scenes",
) -> SegmentationDataset:
    """`count` scenes of `items` (a grayscale classification set), from the cache
    in `cache_dir` when there, else generated (and cached when `cache_dir` is given).

    The dataset's `placements` attribute (count, slots, 8) says where every item went.
    """
    if items.images.shape[1] != 1:
        raise DataError(f"{items.name or items.source}: scene items must be grayscale (1 channel)")
    key = scene_key(items, count, config, seed)
    path = Path(cache_dir) / f"{name}-{config.size}px-{key}.pt" if cache_dir is not None else None
    loaded = None
    if path is not None and path.is_file():
        try:
            loaded = _read(path, key, count, config.size)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"{path}: unusable scene cache ({type(exc).__name__}: {reason}); rebuilding it",
                          stacklevel=2)
    if loaded is None:
        loaded = generate_scenes(items.images, items.labels, count, config, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            images, masks, places = loaded
            atomic_write(path, lambda tmp: torch.save(
                {"format": FORMAT, "version": VERSION, "key": key, "config": config.as_dict(), "count": count,
                 "seed": seed, "images": images, "masks": masks, "placements": places}, tmp))
    images, masks, places = loaded
    dataset = SegmentationDataset(images, masks, scene_classes(items), name=name,
                                  source=f"{count} scenes of {items.name or items.source} (seed {seed})")
    dataset.placements = places  # type: ignore[attr-defined]
    return dataset

"""The segmentation experiment's data: train/val/test splits from one folder.

The folder decides the kind:

- IDX files (Fashion-MNIST, the default): generated scenes; train and
  validation scenes draw their items from disjoint parts of the IDX training
  split, test scenes from the IDX test split, so no test garment was seen in
  training. Cached under ``<out>/data``.
- A VOC-style folder: its ``train`` list (validation carved out of it) and its
  ``val`` list as the test set.
- ``images/`` + ``masks/`` pairs: one seeded three-way split.

An output folder remembers the data it was made with (``data.json``); resuming
it with other data is an error, since the runs' keys do not include the data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from labrig.data.datasets import train_val_split
from labrig.data.errors import DataError
from labrig.data.idx import find_idx_files, load_idx_dataset
from labrig.data.segmentation import (
    SceneConfig,
    SegmentationDataset,
    load_mask_pairs,
    load_voc,
    scene_dataset,
)
from labrig.data.segmentation.folders import find_voc_root
from labrig.experiments.jobs import write_json

DATA_RECORD = "data.json"


@dataclass(frozen=True)
class SegDataConfig:
    """Sizes and seeds of the splits. `scenes.size` is replaced by `size`."""

    size: int = 128
    train: int = 4000
    val: int = 500
    test: int = 500
    seed: int = 0
    scenes: SceneConfig = field(default_factory=SceneConfig)
    item_val_fraction: float = 5000 / 60000
    """Share of the IDX training items kept for validation scenes."""
    val_fraction: float = 0.1
    """Folder data: the share of the training list held out for validation (pairs: also for test)."""

    def scene_config(self) -> SceneConfig:
        return replace(self.scenes, size=self.size)


def detect_kind(path: Path) -> str:
    """``generated`` (IDX items), ``voc`` or ``pairs`` from what the folder holds."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data folder {path} does not exist")
    try:
        find_voc_root(path)
        return "voc"
    except DataError:
        pass
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return "pairs"
    try:
        find_idx_files(path, "train")
        return "generated"
    except DataError:
        pass
    raise DataError(f"{path}: neither IDX item files (for generated scenes), a VOC folder "
                    "(JPEGImages/ + SegmentationClass/) nor images/ + masks/ pairs")


def _split3(data: SegmentationDataset, config: SegDataConfig) -> tuple[SegmentationDataset, ...]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    n_hold = max(1, round(len(data) * config.val_fraction))
    if len(data) < 2 * n_hold + 1:
        raise DataError(f"{data.source}: {len(data)} pairs are too few for train/val/test splits")
    test, val, train = order[:n_hold], order[n_hold : 2 * n_hold], order[2 * n_hold :]
    return (data.subset(train[: config.train], f"{data.name}[train]"),
            data.subset(val[: config.val], f"{data.name}[val]"), data.subset(test[: config.test], f"{data.name}[test]"))


def _holdout(data: SegmentationDataset, config: SegDataConfig) -> tuple[SegmentationDataset, SegmentationDataset]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    n_val = max(1, round(len(data) * config.val_fraction))
    return data.subset(order[n_val:][: config.train], f"{data.name}[train]"), \
        data.subset(order[:n_val][: config.val], f"{data.name}[val]")


def load_seg_splits(
    data_dir: str | Path, config: SegDataConfig, cache_dir: str | Path | None = None
) -> tuple[SegmentationDataset, SegmentationDataset, SegmentationDataset]:
    """(train, val, test) for the experiment, all at `config.size` square."""
    data_dir = Path(data_dir)
    kind = detect_kind(data_dir)
    if kind == "generated":
        items = load_idx_dataset(data_dir, "train")
        test_items = load_idx_dataset(data_dir, "test")
        train_items, val_items = train_val_split(items, config.item_val_fraction, seed=config.seed)
        scenes = config.scene_config()
        make = [(train_items, config.train, "train"), (val_items, config.val, "val"), (test_items, config.test, "test")]
        train, val, test = (scene_dataset(pool, count, scenes, seed=config.seed * 3 + i, cache_dir=cache_dir,
                                          name=f"{items.name or 'items'}-scenes-{split}")
                            for i, (pool, count, split) in enumerate(make))
        return train, val, test
    size = config.size
    if kind == "voc":
        full = load_voc(data_dir, "train", size=size, limit=None)
        train, val = _holdout(full, config)
        test = load_voc(data_dir, "val", size=size, limit=config.test)
        return train, val, test
    train, val, test = _split3(load_mask_pairs(data_dir, size=size), config)
    return train, val, test


def data_record(data_dir: str | Path, config: SegDataConfig) -> dict[str, Any]:
    return {"dir": str(Path(data_dir).resolve()), "kind": detect_kind(Path(data_dir)), "config": asdict(config)}


def check_data_record(out: Path, record: dict[str, Any]) -> None:
    """Write ``data.json`` into a new output folder; refuse one made with other data."""
    path = Path(out) / DATA_RECORD
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: unreadable ({exc}); remove it or use another output folder") from exc
        if stored != json.loads(json.dumps(record)):
            raise DataError(f"{path}: this output folder holds runs on other data ({stored}); "
                            "use another --out for these data settings")
        return
    write_json(path, record)

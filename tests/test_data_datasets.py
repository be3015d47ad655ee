"""ImageDataset, load_dataset dispatch, and the train/val split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_idx_split

from labrig.data import DataError, ImageDataset, detect_format, load_dataset, train_val_split


def _dataset(n_per_class: tuple[int, ...] = (30, 20, 10)) -> ImageDataset:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4)
    return ImageDataset(images.contiguous(), labels, ["a", "b", "c"], name="toy", source="memory")


def test_item_and_batches_are_float01_at_size() -> None:
    ds = _dataset().with_resolution(8)
    x, y = ds[5]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert ds.images.shape == (60, 1, 4, 4)  # storage untouched
    batches = list(ds.batches(16, shuffle=True, seed=3))
    assert [len(b[1]) for b in batches] == [16, 16, 16, 12]
    assert batches[0][0].shape == (16, 1, 8, 8) and batches[0][0].max() <= 1.0
    again = list(ds.batches(16, shuffle=True, seed=3))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(ds.labels.tolist())
    assert len(list(ds.batches(16, drop_last=True))) == 3


def test_works_with_dataloader() -> None:
    ds = _dataset()
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=7)))
    assert x.shape == (7, 1, 4, 4) and y.dtype == torch.int64


def test_validation() -> None:
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        ImageDataset(torch.zeros(3, 4, 4), torch.zeros(3), ["a"])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        ImageDataset(torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(DataError, match="2 classes"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 2]), ["a", "b"])


@pytest.mark.parametrize("stratify", [True, False])
def test_split_deterministic_disjoint_covering(stratify: bool) -> None:
    ds = _dataset()
    train, val = train_val_split(ds, 0.2, seed=7, stratify=stratify)
    train2, val2 = train_val_split(ds, 0.2, seed=7, stratify=stratify)
    assert torch.equal(train.indices, train2.indices) and torch.equal(val.indices, val2.indices)
    assert set(train.indices.tolist()).isdisjoint(val.indices.tolist())
    assert sorted(train.indices.tolist() + val.indices.tolist()) == list(range(len(ds)))
    assert len(val) == 12
    # The rows really are the indexed ones (images encode their original index).
    assert torch.equal(val.images[:, 0, 0, 0].long(), val.indices)
    assert torch.equal(val.labels, ds.labels[val.indices])
    _, val3 = train_val_split(ds, 0.2, seed=8, stratify=stratify)
    assert not torch.equal(val.indices, val3.indices)


def test_split_ignores_global_rng_and_is_stratified() -> None:
    ds = _dataset()
    torch.manual_seed(1)
    _, a = train_val_split(ds, 0.2, seed=0)
    torch.manual_seed(2)
    _, b = train_val_split(ds, 0.2, seed=0)
    assert torch.equal(a.indices, b.indices)
    assert a.class_counts().tolist() == [6, 4, 2]


def test_split_rounding_hits_total() -> None:
    ds = _dataset((3, 3, 3))
    train, val = train_val_split(ds, 0.2, seed=0)
    assert len(val) == round(9 * 0.2) and len(train) == 7
    with pytest.raises(DataError, match="val_fraction"):
        train_val_split(ds, 1.0)
    with pytest.raises(DataError, match="both must be non-empty"):
        train_val_split(_dataset((1, 1, 1)), 0.01)


def test_split_of_split_tracks_original_indices() -> None:
    ds = _dataset()
    train, _ = train_val_split(ds, 0.5, seed=0)
    inner, _ = train_val_split(train, 0.5, seed=0)
    assert torch.equal(inner.images[:, 0, 0, 0].long(), inner.indices)


def test_load_dataset_kinds(tmp_path: Path) -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.array([0, 1, 2, 3], np.uint8)
    write_idx_split(tmp_path / "KMNIST" / "raw", images, labels, "test")
    ds = load_dataset("kmnist", tmp_path, "test", size=32)
    assert ds.name == "kmnist" and ds.classes[1] == "ki" and ds.image_shape == (1, 32, 32)
    assert detect_format(tmp_path / "KMNIST" / "raw") == "idx"
    assert len(load_dataset("idx", tmp_path / "KMNIST" / "raw", "test")) == 4
    assert len(load_dataset("auto", tmp_path / "KMNIST" / "raw", "test")) == 4
    with pytest.raises(DataError, match="unknown dataset kind 'imagenet'"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(DataError, match="pass root="):
        load_dataset("fashion-mnist")
    with pytest.raises(DataError, match="cannot pad 28x28 images to 16x16"):
        load_dataset("kmnist", tmp_path, "test", size=16)
    assert load_dataset("kmnist", tmp_path, "test", size=16, mode="resize")[0][0].shape == (
        1,
        16,
        16,
    )
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(tmp_path, split="val")
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[\.gz\]"):
        load_dataset("mnist", tmp_path, "train")

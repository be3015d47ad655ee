"""Class-per-folder image trees read with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_png
from PIL import Image

from labrig.data import DataError, detect_format, load_dataset, load_image_folder, read_image


def _tree(root: Path, size: tuple[int, int] = (6, 8)) -> None:
    """Two classes, "zebra" (2 images) and "apple" (3), so sorting matters."""
    h, w = size
    for i in range(3):
        write_png(root / "apple" / f"a{i}.png", np.full((h, w), 10 * i, np.uint8))
    for i in range(2):
        write_png(root / "zebra" / f"z{i}.png", np.full((h, w, 3), (200, 100, 50), np.uint8))


def test_two_classes_gray(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "apple" / "notes.txt").write_text("not an image, ignored")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ["apple", "zebra"]
    assert ds.images.shape == (5, 1, 6, 8)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.images[1].unique().tolist() == [10]
    # PIL's ITU-R 601-2 luma: L = 0.299 R + 0.587 G + 0.114 B
    assert ds.images[3].unique().tolist() == [round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)]


def test_rgb(tmp_path: Path) -> None:
    _tree(tmp_path)
    ds = load_image_folder(tmp_path, color="rgb")
    assert ds.images.shape == (5, 3, 6, 8)
    assert ds.images[4, :, 0, 0].tolist() == [200, 100, 50]
    assert ds.images[0, :, 0, 0].tolist() == [0, 0, 0]


def test_other_formats_and_16_bit(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "x.bmp", np.full((4, 4), 7, np.uint8))
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "b" / "y.tif")
    write_png(tmp_path / "b" / "z.jpg", np.full((4, 4), 128, np.uint8))
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (3, 1, 4, 4)
    assert ds.images[0].unique().tolist() == [7]
    assert ds.images[1].unique().tolist() == [255]  # 16-bit full scale → 255, not clipped garbage
    assert abs(int(ds.images[2].float().mean()) - 128) <= 2  # jpeg is lossy
    assert read_image(tmp_path / "b" / "y.tif", "rgb").shape == (3, 4, 4)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    _tree(tmp_path)
    bad = tmp_path / "zebra" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        load_image_folder(tmp_path)


def test_empty_class_folder(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "mango").mkdir()
    (tmp_path / "mango" / ".DS_Store").write_bytes(b"")
    with pytest.raises(DataError, match="mango: empty class folder"):
        load_image_folder(tmp_path)


def test_mixed_sizes_need_a_size(tmp_path: Path) -> None:
    _tree(tmp_path)
    write_png(tmp_path / "zebra" / "big.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DataError, match=r"big\.png: size \(12, 16\) differs"):
        load_image_folder(tmp_path)
    ds = load_image_folder(tmp_path, size=10)
    assert ds.images.shape == (6, 1, 10, 10)


def test_split_subfolders_and_autodetect(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    _tree(tmp_path / "test")
    assert detect_format(tmp_path) == "folders"
    train = load_dataset(tmp_path, split="train", size=(8, 12))
    assert len(train) == 5 and train.image_shape == (1, 8, 12)
    assert train[0][0].shape == (1, 8, 12)
    flat = tmp_path / "flat"
    _tree(flat)
    assert len(load_dataset(flat)) == 5  # a flat tree is the train split
    with pytest.raises(DataError, match="no 'test' sub-folder"):
        load_dataset(flat, split="test")


def test_no_class_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no IDX files, no CIFAR batches"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path)

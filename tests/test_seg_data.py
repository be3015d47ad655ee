"""Segmentation data: generated scenes (deterministic, masks that match the pasted
items, cached), VOC folders and image/mask pairs, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labrig.data import DataError, ImageDataset
from labrig.data.segmentation import (
    IGNORE,
    SceneConfig,
    SegmentationDataset,
    fit_pair,
    generate_scenes,
    load_mask_pairs,
    load_voc,
    render_items,
    scene_dataset,
)
from labrig.data.segmentation import cache as scene_cache
from labrig.data.segmentation.generated import ACTIVE, CLASS, GAIN, ITEM
from labrig.paths import find_default_data_dir


def items(n: int = 12) -> ImageDataset:
    """Garment-like blobs: a filled rectangle per item, class = index mod 10."""
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        h, w = 8 + int(torch.randint(0, 14, (1,), generator=g)), 8 + int(torch.randint(0, 14, (1,), generator=g))
        imgs[i, 0, 14 - h // 2 : 14 - h // 2 + h, 14 - w // 2 : 14 - w // 2 + w] = 120 + 10 * (i % 10)
    return ImageDataset(imgs, torch.arange(n) % 10, [f"c{i}" for i in range(10)], name="blobs")


CONFIG = SceneConfig(size=48, items=(1, 3), noise=0.0)


def test_scenes_are_deterministic_for_a_seed() -> None:
    pool = items()
    a = generate_scenes(pool.images, pool.labels, 10, CONFIG, seed=3)
    b = generate_scenes(pool.images, pool.labels, 10, CONFIG, seed=3)
    c = generate_scenes(pool.images, pool.labels, 10, CONFIG, seed=4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (10, 1, 48, 48) and a[1].shape == (10, 48, 48) and a[0].dtype == torch.uint8


def test_masks_match_the_pasted_items() -> None:
    pool = items()
    images, masks, places = generate_scenes(pool.images, pool.labels, 12, CONFIG, seed=1)
    item_images = pool.images.float() / 255
    for i in range(len(images)):
        active = places[i, places[i, :, ACTIVE] > 0]
        drawn = render_items(item_images[active[:, ITEM].long()], active, 48)[:, 0]  # (items, S, S)
        # the last item is on top: wherever it is opaque, the label is its class and the pixel its own
        top, p = drawn[-1] >= CONFIG.threshold, active[-1]
        assert top.any()
        assert torch.all(masks[i][top] == int(p[CLASS]) + 1)
        expected = (p[GAIN].float() * drawn[-1][top] * 255).round()
        assert (images[i, 0][top].float() - expected).abs().max() <= 1
        # where no item reaches the threshold it is background; labels come from the placed items only
        assert torch.all(masks[i][(drawn < CONFIG.threshold).all(0)] == 0)
        assert set(masks[i].unique().tolist()) <= {0, *(int(c) + 1 for c in active[:, CLASS])}


FASHION = find_default_data_dir(Path(__file__).parent) or Path("/nonexistent")


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(), reason="no Fashion-MNIST")
def test_scenes_from_the_real_fashion_mnist_items() -> None:
    from labrig.data import load_idx_dataset

    real = load_idx_dataset(FASHION, "test")
    ds = scene_dataset(real, 6, SceneConfig(size=64), seed=0)
    assert ds.classes[0] == "background" and ds.num_classes == 11 and ds.images.shape == (6, 1, 64, 64)
    counts = ds.class_pixel_counts()
    assert counts[0] > 0 and counts[1:].sum() > 0


def test_the_cache_is_reused_and_a_corrupt_one_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = items()
    first = scene_dataset(pool, 5, CONFIG, seed=2, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    monkeypatch.setattr(scene_cache, "generate_scenes", lambda *a, **k: pytest.fail("regenerated a cached set"))
    again = scene_dataset(pool, 5, CONFIG, seed=2, cache_dir=tmp_path)
    assert torch.equal(again.images, first.images) and torch.equal(again.masks, first.masks)
    monkeypatch.undo()
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match=f"{path.name}.*unusable scene cache.*rebuilding"):
        rebuilt = scene_dataset(pool, 5, CONFIG, seed=2, cache_dir=tmp_path)
    assert torch.equal(rebuilt.masks, first.masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene_dataset(pool, 5, CONFIG, seed=2, cache_dir=tmp_path)  # the rewritten file is good
    other = scene_dataset(pool, 5, CONFIG, seed=9, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2 and not torch.equal(other.masks, first.masks)


# -- folders -------------------------------------------------------------------------------------------
def indexed_png(path: Path, labels: np.ndarray) -> Path:
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette([v for c in range(256) for v in (c * 7 % 256, c * 13 % 256, c * 29 % 256)])
    im.save(path)
    return path


def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for name, h, w in (("a", 6, 8), ("b", 8, 6)):
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        labels = np.zeros((h, w), np.uint8)
        labels[1:3, 1:3] = 15  # person
        labels[0, :] = IGNORE
        indexed_png(root / "SegmentationClass" / f"{name}.png", labels)
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    return tmp_path


def test_voc_masks_keep_their_indices_and_padding_is_ignored(tmp_path: Path) -> None:
    ds = load_voc(voc(tmp_path), "train", size=8)
    assert isinstance(ds, SegmentationDataset) and ds.num_classes == 21 and ds.images.shape == (2, 1, 8, 8)
    a = ds.masks[0]  # 6 x 8 kept at scale, padded by one row above and below
    assert torch.all(a[0] == IGNORE) and torch.all(a[-1] == IGNORE) and torch.all(a[1] == IGNORE)
    assert set(a.unique().tolist()) == {0, 15, IGNORE}
    assert ds.images[0, 0, 0].sum() == 0 and ds.images[0, 0, 3, 3] > 0  # image padding is black
    image, mask = fit_pair(torch.full((1, 4, 2), 7, dtype=torch.uint8), torch.ones(4, 2, dtype=torch.uint8), 4)
    assert mask[:, 0].tolist() == [IGNORE] * 4 and mask[:, 1].tolist() == [1] * 4 and image[0, 0, 0] == 0


def test_voc_errors_name_the_file(tmp_path: Path) -> None:
    root = voc(tmp_path) / "VOCdevkit" / "VOC2012"
    masks = root / "SegmentationClass"
    with pytest.raises(DataError, match="differ"):  # two sizes and no size= given
        load_voc(tmp_path, "train")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(masks / "a.png")  # an RGB "mask"
    with pytest.raises(DataError, match=r"a\.png.*indexed \(palette\) or grayscale"):
        load_voc(tmp_path, "train", size=8)
    (masks / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"a\.png: unreadable mask"):
        load_voc(tmp_path, "train", size=8)
    indexed_png(masks / "a.png", np.zeros((5, 8), np.uint8))  # wrong size for its image
    with pytest.raises(DataError, match=r"a\.png: mask size \(5, 8\) differs from its image"):
        load_voc(tmp_path, "train", size=8)
    indexed_png(masks / "a.png", np.full((6, 8), 40, np.uint8))  # no such class
    with pytest.raises(DataError, match=r"a\.png: label values \[40\]"):
        load_voc(tmp_path, "train", size=8)
    (masks / "a.png").unlink()
    with pytest.raises(DataError, match=r"a\.png: mask not found"):
        load_voc(tmp_path, "train", size=8)
    with pytest.raises(DataError, match=r"val\.txt: split list not found"):
        load_voc(tmp_path, "val", size=8)


def pairs(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("car1", "car2"):
        Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
        labels = np.zeros((5, 7), np.uint8)
        labels[2:4, 3:6] = 1
        indexed_png(tmp_path / "masks" / f"{name}_mask.gif", labels)
    return tmp_path


def test_pairs_are_binary_and_matched_by_stem(tmp_path: Path) -> None:
    ds = load_mask_pairs(pairs(tmp_path))
    assert ds.classes == ["background", "foreground"] and ds.masks.shape == (2, 5, 7)
    assert int(ds.masks[0].sum()) == 6 and set(ds.masks.unique().tolist()) == {0, 1}
    gray = Image.fromarray(np.where(np.arange(35).reshape(5, 7) > 20, 250, 3).astype(np.uint8))
    gray.save(tmp_path / "masks" / "car2_mask.gif")  # a non-palette (grayscale) mask is thresholded
    assert int(load_mask_pairs(tmp_path).masks[1].sum()) == 14


def test_pair_mismatches_are_errors_naming_the_file(tmp_path: Path) -> None:
    root = pairs(tmp_path)
    (root / "masks" / "car3.png").write_bytes((root / "masks" / "car1_mask.gif").read_bytes())
    with pytest.raises(DataError, match=r"car3\.png: mask without an image"):
        load_mask_pairs(root)
    (root / "masks" / "car3.png").unlink()
    (root / "masks" / "car2_mask.gif").unlink()
    with pytest.raises(DataError, match=r"car2\.jpg: no mask"):
        load_mask_pairs(root)
    (root / "masks" / "car2.png").write_bytes(b"GIF89a garbage")
    with pytest.raises(DataError, match=r"car2\.png: unreadable mask"):
        load_mask_pairs(root)

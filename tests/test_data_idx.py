"""IDX reader: real Fashion-MNIST, and every way a download goes wrong."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_helpers import idx_bytes, write_idx, write_idx_split

from drivers.errors import LabrigError
from labrig.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    find_idx_files,
    load_dataset,
    load_idx_arrays,
    load_idx_dataset,
    read_idx,
    read_idx_images,
    read_idx_labels,
)

FMNIST = Path("/work/shared/data/fashion-mnist")
needs_fmnist = pytest.mark.skipif(
    not (FMNIST / "t10k-labels-idx1-ubyte.gz").is_file(), reason="Fashion-MNIST not available"
)


def _raw_first_label(path: Path) -> int:
    """Read the first label straight from the bytes (header is 8 bytes), independently of labrig."""
    with gzip.open(path, "rb") as f:
        head = f.read(9)
    assert head[:4] == b"\x00\x00\x08\x01"
    return head[8]


@needs_fmnist
def test_real_fashion_mnist_test_split() -> None:
    ds = load_idx_dataset(FMNIST, "test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert str(ds.images.dtype) == "torch.uint8"
    assert ds.labels.min() == 0 and ds.labels.max() == 9
    assert ds.classes == list(FASHION_MNIST_CLASSES)
    assert ds.name == "fashion-mnist"
    first = _raw_first_label(FMNIST / "t10k-labels-idx1-ubyte.gz")
    assert int(ds.labels[0]) == first
    # Image bytes too: first pixel row of image 0 straight from the file.
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read(16 + 28)
    assert bytes(ds.images[0, 0, 0].numpy()) == raw[16:]


@needs_fmnist
def test_real_fashion_mnist_named_kind_train() -> None:
    ds = load_dataset("fashion-mnist", FMNIST.parent, "train")
    assert ds.images.shape == (60000, 1, 28, 28)
    assert ds.classes[9] == "Ankle boot"


@needs_fmnist
def test_gzip_and_plain_give_identical_arrays(tmp_path: Path) -> None:
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(FMNIST / f"{stem}.gz", "rb") as src, open(tmp_path / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    gz_images, gz_labels = load_idx_arrays(FMNIST, "test")
    images, labels = load_idx_arrays(tmp_path, "test")
    np.testing.assert_array_equal(gz_images, images)
    np.testing.assert_array_equal(gz_labels, labels)


def test_compression_detected_by_magic_not_name(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain_named_gz = write_idx(tmp_path / "a.gz", arr, gz=False)
    gz_named_plain = write_idx(tmp_path / "b", arr, gz=True)
    np.testing.assert_array_equal(read_idx(plain_named_gz), arr)
    np.testing.assert_array_equal(read_idx(gz_named_plain), arr)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_all_idx_dtypes_round_trip(tmp_path: Path, dtype: str) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = read_idx(write_idx(tmp_path / "x", arr))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_file_and_sizes(tmp_path: Path, gz: bool) -> None:
    # Random pixels: incompressible, so the cut lands inside the image data.
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    full = idx_bytes(arr)
    path = tmp_path / "train-images-idx3-ubyte"
    if gz:
        comp = gzip.compress(full)
        path.write_bytes(comp[: len(comp) // 2])
    else:
        path.write_bytes(full[:-100])
    with pytest.raises(DataError) as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "truncated" in msg
    assert str(len(full)) in msg  # the expected size
    if not gz:
        assert str(len(full) - 100) in msg  # the actual size


@pytest.mark.parametrize("gz", [False, True])
def test_oversized_file_is_an_error(tmp_path: Path, gz: bool) -> None:
    full = idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8)) + b"\x00" * 7
    path = tmp_path / "x"
    path.write_bytes(gzip.compress(full) if gz else full)
    with pytest.raises(DataError, match=rf"{len(full) - 7}.*{len(full)}"):
        read_idx(path)


def test_gzip_cut_inside_header(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8)))[:12])
    with pytest.raises(
        DataError,
        match=r"x\.gz: gzip stream is truncated or corrupt before the end of the IDX header",
    ):
        read_idx(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="type code 0x07"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(path)


def test_wrong_rank_for_images_and_labels(tmp_path: Path) -> None:
    labels_file = write_idx(tmp_path / "l", np.zeros(4, dtype=np.uint8))
    images_file = write_idx(tmp_path / "i", np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="expected uint8 images"):
        read_idx_images(labels_file)
    with pytest.raises(DataError, match="expected integer labels"):
        read_idx_labels(images_file)


def test_label_image_count_mismatch(tmp_path: Path) -> None:
    write_idx_split(tmp_path, np.zeros((5, 4, 4), np.uint8), np.zeros(4, np.uint8), "test")
    with pytest.raises(DataError, match=r"5 images.*4 labels"):
        load_idx_arrays(tmp_path, "test")


def test_mislabeled_out_of_range(tmp_path: Path) -> None:
    labels = np.array([0, 3, 10, 2, 12], dtype=np.uint8)
    write_idx_split(tmp_path, np.zeros((5, 4, 4), np.uint8), labels, "train")
    with pytest.raises(DataError, match=r"mislabeled: 2 label\(s\) outside \[0, 10\).*index 2"):
        load_idx_dataset(tmp_path, "train")
    ds = load_idx_dataset(tmp_path, "train", num_classes=13)  # EMNIST-like: more classes is fine
    assert ds.num_classes == 13


def test_missing_file_lists_the_missing_name(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 2, 2), np.uint8), gz=True)
    with pytest.raises(DataError) as err:
        find_idx_files(tmp_path, "train")
    msg = str(err.value)
    assert "train-labels-idx1-ubyte" in msg and str(tmp_path) in msg
    assert "train-images-idx3-ubyte[.gz]" not in msg  # present, so not listed as missing
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\[\.gz\], t10k-labels"):
        find_idx_files(tmp_path, "test")


def test_dotted_mirror_names_and_plain_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images.idx3-ubyte", np.ones((2, 3, 3), np.uint8))
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", np.array([1, 0], np.uint8))
    ds = load_idx_dataset(tmp_path, "test")
    assert ds.images.shape == (2, 1, 3, 3) and ds.labels.tolist() == [1, 0]
    assert ds.classes == [str(i) for i in range(10)]  # unknown folder → index names


def test_class_names_from_folder_name(tmp_path: Path) -> None:
    folder = write_idx_split(
        tmp_path / "My-Fashion-Data", np.zeros((2, 2, 2), np.uint8), np.array([0, 9], np.uint8)
    )
    ds = load_dataset(folder)
    assert ds.classes[9] == "Ankle boot"


def test_data_error_is_labrig_and_value_error() -> None:
    assert issubclass(DataError, LabrigError) and issubclass(DataError, ValueError)

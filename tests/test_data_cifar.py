"""CIFAR-10 batches: synthetic files in the real format, and pickles that must be refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from data_helpers import cifar_pickle, write_cifar_batch, write_cifar_meta

from labrig.data import (
    CIFAR10_CLASSES,
    DataError,
    detect_format,
    load_cifar10,
    load_dataset,
    read_cifar_batch,
)

NAMES = ["cat", "dog", "emu"]


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _write_cifar(
    folder: Path, *, py2: bool = True, meta: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Five train batches of 4 and a test batch of 3; returns the train arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for i in range(1, 6):
        im, lab = _images(4, i), [(i + j) % 3 for j in range(4)]
        write_cifar_batch(folder / f"data_batch_{i}", im, lab, py2=py2)
        images.append(im)
        labels.extend(lab)
    write_cifar_batch(folder / "test_batch", _images(3, 99), [2, 0, 1], py2=py2)
    if meta:
        write_cifar_meta(folder / "batches.meta", NAMES, py2=py2)
    return np.concatenate(images), np.array(labels)


def test_fixture_matches_real_file_layout(tmp_path: Path) -> None:
    path = write_cifar_batch(tmp_path / "b", _images(2, 0), [0, 1])
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as cPickle wrote them
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw


@pytest.mark.parametrize("py2", [True, False])
def test_round_trip(tmp_path: Path, py2: bool) -> None:
    images, labels = _write_cifar(tmp_path, py2=py2)
    ds = load_cifar10(tmp_path, "train")
    assert ds.images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.images.numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    assert ds.classes == NAMES
    test = load_cifar10(tmp_path, "test")
    assert test.labels.tolist() == [2, 0, 1]


def test_channel_layout_is_rgb_planes(tmp_path: Path) -> None:
    """A row is 1024 R, then 1024 G, then 1024 B values."""
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    batch = {b"data": row[None], b"labels": [0]}
    (tmp_path / "b").write_bytes(cifar_pickle(batch))
    images, _ = read_cifar_batch(tmp_path / "b")
    assert images[0, :, 5, 7].tolist() == [10, 20, 30]


def test_subfolder_and_autodetect_and_default_names(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-py", meta=False)
    assert detect_format(tmp_path) == "cifar"
    ds = load_dataset(tmp_path, split="test")
    assert ds.classes == list(CIFAR10_CLASSES)
    ds = load_dataset("cifar10", tmp_path, "train", size=40, mode="pad")
    assert ds.image_shape == (3, 40, 40)


def test_missing_batch_is_named(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, "train")


def test_bad_shape_and_labels(tmp_path: Path) -> None:
    (tmp_path / "shape").write_bytes(
        cifar_pickle({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"shape.*\(N, 3072\)"):
        read_cifar_batch(tmp_path / "shape")
    (tmp_path / "dtype").write_bytes(
        cifar_pickle({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]})
    )
    with pytest.raises(DataError, match="uint8"):
        read_cifar_batch(tmp_path / "dtype")
    write_cifar_batch(tmp_path / "range", _images(3, 0), [0, 10, 1])
    with pytest.raises(DataError, match=r"mislabeled.*index 1 \(label 10\)"):
        read_cifar_batch(tmp_path / "range")
    write_cifar_batch(tmp_path / "count", _images(3, 0), [0, 1])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        read_cifar_batch(tmp_path / "count")


def test_truncated_pickle(tmp_path: Path) -> None:
    path = write_cifar_batch(tmp_path / "b", _images(3, 0), [0, 1, 2])
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="b"):
        read_cifar_batch(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=protocol))
    with pytest.raises(
        DataError, match=r"data_batch_1.*refusing to load global (__builtin__|builtins)\.exec"
    ):
        read_cifar_batch(path)
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    """Protocol-2 pickles of bytes call _codecs.encode; any other codec is refused."""
    import codecs

    class Sneaky:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (codecs.encode, ("eJwLz0/KSc0FAA==", "base64"))

    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": Sneaky(), "labels": []}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        read_cifar_batch(path)

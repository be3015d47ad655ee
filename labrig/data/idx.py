"""Reader for the IDX format of MNIST, Fashion-MNIST, KMNIST (and EMNIST).

Downloads get truncated, renamed and half-decompressed; every such file must
fail loudly with its name and sizes, never load as a short or shifted dataset.
Compression is detected from the magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from labrig.data.base import ImageDataset
from labrig.data.classes import guess_idx_dataset, idx_class_names
from labrig.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
#: deflate's largest expansion (1032:1) with slack: a gzip file cannot hold more than this many
#: bytes per compressed byte, so a header claiming more is forged, checked before allocating
MAX_GZIP_RATIO = 1100
#: no IDX dataset comes near this (EMNIST is ~0.7 GB); numpy cannot even shape an array of 2**63 bytes
MAX_ARRAY_BYTES = 1 << 40
_CHUNK = 1 << 20

# IDX type codes (third magic byte) → big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Standard stems per split: (images, labels). Files may end in .gz or not, and
# some mirrors write "train-images.idx3-ubyte" (dot instead of dash).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _read_into(f: BinaryIO, buf: bytearray, path: Path, header: int) -> int:
    """Fill `buf` from `f`; return how many bytes came (fewer means the file is short).

    `header` is only for the message, which gives whole-file sizes.
    """
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        try:
            n = f.readinto(view[got : got + _CHUNK])
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            # A cut gzip stream: what was decompressed so far is the actual size.
            raise DataError(
                f"{path}: truncated or corrupt gzip stream: header needs {header + len(buf)} "
                f"decompressed bytes, stream broke after {header + got} ({e})"
            ) from None
        if not n:
            break
        got += n
    return got


def _count_rest(f: BinaryIO, path: Path) -> int:
    """Bytes left in `f` (streamed, so an oversized file is never held in memory)."""
    extra = 0
    try:
        while chunk := f.read(_CHUNK):
            extra += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        pass  # already an error: the file is oversized; the count is a lower bound
    return extra


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or plain) into a native-endian numpy array.

    Validates the magic number, the type code, the dimensions and that the
    data size matches the header exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    gz = is_gzip(path)
    try:
        return _read_idx_stream(path, gz)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        # Payload errors are reported with sizes in `_read_into`; this is the header.
        raise DataError(
            f"{path}: gzip stream is truncated or corrupt before the end of the IDX header ({e})"
        ) from None


def _read_idx_stream(path: Path, gz: bool) -> np.ndarray:
    """The body of `read_idx`; gzip errors in the header are translated by the caller."""
    kind = "decompressed " if gz else ""
    with gzip.open(path, "rb") if gz else open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4:
            raise DataError(
                f"{path}: {len(magic)} {kind}bytes, too short for an IDX header (4 bytes)"
            )
        if magic[0] != 0 or magic[1] != 0:
            raise DataError(
                f"{path}: not an IDX file (magic {magic.hex()}, expected 0000<type><ndim>)"
            )
        code, ndim = magic[2], magic[3]
        if code not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
            raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
        if ndim < 1:
            raise DataError(f"{path}: IDX header declares {ndim} dimensions")
        dims_raw = f.read(4 * ndim)
        if len(dims_raw) < 4 * ndim:
            raise DataError(
                f"{path}: header is truncated: {4 + len(dims_raw)} {kind}bytes, "
                f"expected {4 + 4 * ndim} for {ndim} dimensions"
            )
        dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
        dtype = IDX_DTYPES[code]
        if math.prod(d for d in dims if d) * dtype.itemsize >= MAX_ARRAY_BYTES:
            # numpy refuses such a shape even when a zero makes it empty: a header no real file has
            raise DataError(f"{path}: header {dims} of {dtype.name} describes an array beyond any "
                            "dataset (forged or corrupt header)")
        header = 4 + 4 * ndim
        payload = math.prod(dims) * dtype.itemsize
        expected = header + payload
        if not gz:
            actual = path.stat().st_size
            if actual != expected:
                raise DataError(
                    f"{path}: size mismatch: header {dims} of {dtype.name} needs {expected} bytes, "
                    f"file has {actual} ({'truncated' if actual < expected else 'oversized'})"
                )
        else:  # before allocating: deflate cannot expand a stream more than ~1032-fold
            compressed = path.stat().st_size
            if expected > MAX_GZIP_RATIO * compressed:
                raise DataError(
                    f"{path}: header {dims} of {dtype.name} needs {expected} decompressed bytes, more than a "
                    f"{compressed}-byte gzip file can hold (forged or corrupt header)"
                )
        buf = bytearray(payload)
        got = _read_into(f, buf, path, header)
        if got < payload:
            raise DataError(
                f"{path}: truncated: header {dims} of {dtype.name} needs {expected} {kind}bytes, "
                f"got {header + got}"
            )
        extra = _count_rest(f, path)
        if extra:
            raise DataError(
                f"{path}: oversized: header {dims} of {dtype.name} needs {expected} {kind}bytes, "
                f"got {expected + extra}"
            )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an image file: uint8, shape (N, H, W)."""
    arr = read_idx(path)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise DataError(
            f"{path}: expected uint8 images (N, H, W), got {arr.dtype} with shape {arr.shape}"
        )
    return arr


def read_idx_labels(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a label file: int64 (N,), each in [0, num_classes) when that is given."""
    arr = read_idx(path)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(
            f"{path}: expected integer labels (N,), got {arr.dtype} with shape {arr.shape}"
        )
    labels = arr.astype(np.int64)
    if num_classes is not None and len(labels):
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{path}: mislabeled: {len(bad)} label(s) outside [0, {num_classes}), "
                f"first at index {i} (label {int(labels[i])})"
            )
    return labels


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(root: str | Path, split: str = "train") -> tuple[Path, Path]:
    """Locate (images, labels) for `split` in `root`, with or without .gz."""
    root = Path(root)
    if split not in IDX_FILES:
        raise DataError(f"unknown split {split!r} for IDX data; expected 'train' or 'test'")
    if not root.is_dir():
        raise DataError(f"IDX folder {root} does not exist")
    found: list[Path] = []
    missing: list[str] = []
    for stem in IDX_FILES[split]:
        hit = next((root / n for n in _candidates(stem) if (root / n).is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        else:
            found.append(hit)
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_file())
        raise DataError(
            f"IDX {split} split incomplete in {root}: missing {', '.join(missing)}; "
            f"files there: {', '.join(present) or '(none)'}"
        )
    return found[0], found[1]


def load_idx_arrays(
    root: str | Path, split: str = "train", num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels int64 (N,)) for a split, checked against each other."""
    images_path, labels_path = find_idx_files(root, split)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path, num_classes)
    if len(images) != len(labels):
        raise DataError(
            f"count mismatch: {images_path} has {len(images)} images "
            f"but {labels_path} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{images_path}: no images")
    return images, labels


def load_idx_dataset(
    root: str | Path,
    split: str = "train",
    *,
    num_classes: int = 10,
    classes: list[str] | None = None,
    name: str | None = None,
) -> ImageDataset:
    """Load an IDX split as an `ImageDataset` (N, 1, H, W) uint8.

    Class names come from `classes`, else from the folder name (Fashion-MNIST,
    KMNIST, MNIST), else "0".."K-1".
    """
    root = Path(root)
    if classes is not None:
        num_classes = len(classes)
    images, labels = load_idx_arrays(root, split, num_classes)
    guessed = guess_idx_dataset(root)
    return ImageDataset(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels),
        classes=list(classes) if classes is not None else idx_class_names(guessed, num_classes),
        name=name or guessed,
        source=f"{root} [{split}]",
    )

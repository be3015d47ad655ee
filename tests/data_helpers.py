"""Writers for small synthetic dataset files in the real on-disk formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file's bytes: 00 00 <type> <ndim>, big-endian u32 dims, big-endian data."""
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    code = (
        IDX_CODES[np.dtype(big.dtype.str.replace("|", ""))]
        if big.dtype.itemsize == 1
        else IDX_CODES[big.dtype]
    )
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + big.tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_split(
    folder: Path, images: np.ndarray, labels: np.ndarray, split: str = "train", *, gz: bool = True
) -> Path:
    """Write the two standard-named files of a split into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz=gz)
    return folder


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 `str` opcodes, like the original CIFAR files (cPickle, py2)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def cifar_pickle(obj: dict, *, py2: bool = True) -> bytes:
    """Pickle a batch dict as the real files are (py2 strings, numpy.core globals) or as py3."""
    if not py2:
        return pickle.dumps(obj, protocol=4)
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 names numpy._core; the real files (numpy 1.x era) say numpy.core.
    return buf.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")


def write_cifar_batch(
    path: Path, images: np.ndarray, labels: list[int], *, py2: bool = True
) -> Path:
    """`images` uint8 (N, 3, 32, 32) → a batch file with keys data/labels/batch_label/filenames."""
    batch = {
        b"batch_label": b"synthetic batch",
        b"labels": list(labels),
        b"data": np.ascontiguousarray(images.reshape(len(images), -1)),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(cifar_pickle(batch, py2=py2))
    return path


def write_cifar_meta(path: Path, names: list[str], *, py2: bool = True) -> Path:
    meta = {
        b"num_cases_per_batch": 10,
        b"label_names": [n.encode() for n in names],
        b"num_vis": 3072,
    }
    path.write_bytes(cifar_pickle(meta, py2=py2))
    return path


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path

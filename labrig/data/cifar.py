"""CIFAR-10 "python version" batches, read without trusting the pickles.

A pickle can run arbitrary code when loaded, and dataset folders get passed
around labs; so the unpickler only resolves the few globals a numpy array
needs and refuses everything else, naming the file and the global.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labrig.data.base import ImageDataset
from labrig.data.classes import CIFAR10_CLASSES
from labrig.data.errors import DataError

CIFAR_SUBDIR = "cifar-10-batches-py"
CIFAR_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR_META = "batches.meta"
CIFAR_VALUES = 3 * 32 * 32


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What `_codecs.encode` does in protocol-2 pickles of bytes, and nothing else."""
    try:
        latin1 = codecs.lookup(encoding).name == "iso8859-1"
    except (LookupError, TypeError):
        latin1 = False
    if not latin1:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    """numpy 1.x keeps these in numpy.core, numpy 2.x in numpy._core."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {', '.join(modules)}")


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
_RECONSTRUCT = _numpy_attr(_MULTIARRAY, "_reconstruct")
_SCALAR = _numpy_attr(_MULTIARRAY, "scalar")
_FROMBUFFER = _numpy_attr(_NUMERIC, "_frombuffer")

# (module, name) as written in the pickle → the object it may resolve to. Pickles
# from numpy 1.x name numpy.core.*, from numpy 2.x numpy._core.*; both map here.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{(m, "_reconstruct"): _RECONSTRUCT for m in _MULTIARRAY},
    **{(m, "scalar"): _SCALAR for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _FROMBUFFER for m in _NUMERIC},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction; every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return obj


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle a CIFAR file with the restricted unpickler (latin1 for Python 2 pickles)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: unsafe or corrupt pickle: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None


def _text_keys(obj: dict) -> dict[str, Any]:
    """Keys are bytes in pickles written from Python 3 with bytes keys, str otherwise."""
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: str | Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (images uint8 (N, 3, 32, 32), labels int64 (N,)), validated."""
    path = Path(path)
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    batch = _text_keys(obj)
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataError(
            f"{path}: batch lacks key(s) {', '.join(missing)}; has {', '.join(map(str, batch))}"
        )
    data = batch["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != CIFAR_VALUES
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, {CIFAR_VALUES}), got {desc}")
    try:
        labels = np.asarray(batch["labels"])
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: 'labels' is not a list of ints ({e})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: 'labels' must be a flat list of ints, got {labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if len(labels) != len(data):
        raise DataError(f"{path}: count mismatch: {len(data)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path}: mislabeled: {len(bad)} label(s) outside [0, {num_classes}), "
            f"first at index {i} (label {int(labels[i])})"
        )
    # Rows are 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


def read_cifar_meta(path: str | Path) -> list[str]:
    """Class names from `batches.meta`."""
    path = Path(path)
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, got {type(obj).__name__}")
    meta = _text_keys(obj)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"{path}: 'label_names' missing or empty")
    if meta.get("num_vis", CIFAR_VALUES) != CIFAR_VALUES:
        raise DataError(f"{path}: num_vis is {meta['num_vis']}, expected {CIFAR_VALUES} (32x32x3)")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def is_cifar_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    names = (CIFAR_META, *CIFAR_FILES["train"], *CIFAR_FILES["test"])
    return any((folder / n).is_file() for n in names)


def find_cifar_folder(root: str | Path) -> Path:
    """`root` itself when it holds CIFAR batches, else its `cifar-10-batches-py` subfolder."""
    root = Path(root)
    for folder in (root, root / CIFAR_SUBDIR):
        if is_cifar_folder(folder):
            return folder
    raise DataError(f"no CIFAR-10 batches in {root} or {root / CIFAR_SUBDIR}")


def load_cifar10(root: str | Path, split: str = "train", *, name: str = "cifar10") -> ImageDataset:
    """Load a CIFAR-10 split as an `ImageDataset` (N, 3, 32, 32) uint8."""
    if split not in CIFAR_FILES:
        raise DataError(f"unknown split {split!r} for CIFAR-10; expected 'train' or 'test'")
    folder = find_cifar_folder(root)
    missing = [n for n in CIFAR_FILES[split] if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 {split} split incomplete in {folder}: missing {', '.join(missing)}"
        )
    meta = folder / CIFAR_META
    classes = read_cifar_meta(meta) if meta.is_file() else list(CIFAR10_CLASSES)
    parts = [read_cifar_batch(folder / n, len(classes)) for n in CIFAR_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=classes,
        name=name,
        source=f"{folder} [{split}]",
    )

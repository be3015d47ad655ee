"""One entry point for every dataset format, and a reproducible train/val split.

`load_dataset` takes either a path (format detected from what is in it) or a
dataset kind plus the folder holding it, so configs can say
`kind = "fashion-mnist", root = "/data"` or just `path = "/data/my_images"`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from labrig.data.base import ImageDataset
from labrig.data.cifar import CIFAR_SUBDIR, is_cifar_folder, load_cifar10
from labrig.data.classes import FASHION_MNIST_CLASSES, KMNIST_CLASSES, MNIST_CLASSES
from labrig.data.errors import DataError
from labrig.data.folders import load_image_folder
from labrig.data.idx import load_idx_dataset
from labrig.data.transforms import Mode

FORMATS: tuple[str, ...] = ("idx", "cifar", "folders")

# Named datasets: (format, folder names tried under root, class names or None).
NAMED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...] | None]] = {
    "mnist": ("idx", ("mnist", "MNIST", "MNIST/raw"), MNIST_CLASSES),
    "fashion-mnist": (
        "idx",
        ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
        FASHION_MNIST_CLASSES,
    ),
    "kmnist": ("idx", ("kmnist", "KMNIST", "KMNIST/raw"), KMNIST_CLASSES),
    "cifar10": ("cifar", (CIFAR_SUBDIR, "cifar10", "cifar-10"), None),
}
ALIASES: dict[str, str] = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar": "cifar",
    "idx": "idx",
    "folders": "folders",
    "folder": "folders",
    "auto": "auto",
}
SPLITS: tuple[str, ...] = ("train", "test")


def _has_idx_files(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.is_file() and ("-idx" in p.name or ".idx" in p.name) and "ubyte" in p.name
        for p in folder.iterdir()
    )


def detect_format(path: str | Path) -> str:
    """ "idx", "cifar" or "folders", from what the folder holds (IDX files win)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"dataset folder {path} does not exist")
    if _has_idx_files(path):
        return "idx"
    if is_cifar_folder(path) or is_cifar_folder(path / CIFAR_SUBDIR):
        return "cifar"
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return "folders"
    raise DataError(f"{path}: no IDX files, no CIFAR batches and no class sub-folders")


def _folder_split_root(path: Path, split: str | None) -> Path:
    """`path/<split>` when present; a flat class tree counts as the train split only."""
    if split is None:
        return path
    if (path / split).is_dir():
        return path / split
    if split == "train" and not any((path / s).is_dir() for s in SPLITS):
        return path
    raise DataError(
        f"{path}: no {split!r} sub-folder (found: {', '.join(sorted(p.name for p in path.iterdir())) or 'nothing'})"
    )


def _load_format(
    fmt: str,
    path: Path,
    split: str | None,
    *,
    color: str | None,
    num_classes: int | None,
    classes: list[str] | None,
    name: str | None,
) -> ImageDataset:
    if fmt == "idx":
        return load_idx_dataset(
            path, split or "train", num_classes=num_classes or 10, classes=classes, name=name
        )
    if fmt == "cifar":
        return load_cifar10(path, split or "train", name=name or "cifar10")
    folder = _folder_split_root(path, split)
    return load_image_folder(folder, color=color or "gray", name=name or path.name)


def _named_folder(kind: str, root: Path) -> Path:
    """The first of the kind's usual sub-folders of `root` that holds its files, else `root`."""
    fmt, subdirs, _ = NAMED[kind]
    for sub in subdirs:
        folder = root / sub
        if (fmt == "idx" and _has_idx_files(folder)) or (
            fmt == "cifar" and folder.is_dir() and is_cifar_folder(folder)
        ):
            return folder
    return root


def load_dataset(
    kind_or_path: str | Path,
    root: str | Path | None = None,
    split: str | None = "train",
    size: int | tuple[int, int] | None = None,
    *,
    mode: Mode = "pad",
    color: str | None = None,
    num_classes: int | None = None,
    classes: list[str] | None = None,
) -> ImageDataset:
    """Load a dataset split; images stay uint8 and are served at `size` (lazily, per batch).

    - `root` None: `kind_or_path` is a folder; its format is detected.
    - `root` given: `kind_or_path` is a kind ("mnist", "fashion-mnist", "kmnist",
      "cifar10", or a format "idx"/"cifar"/"folders"/"auto") and `root` is the
      folder holding it (named kinds also look in their usual sub-folder).

    `split` is "train" or "test"; for image folders None means the folder as is.
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    name: str | None = None
    if root is None:
        path = Path(kind_or_path)
        if (
            not path.exists()
            and ALIASES.get(str(kind_or_path).lower(), str(kind_or_path).lower()) in NAMED
        ):
            raise DataError(f"{kind_or_path!r} is a dataset kind: pass root=<folder holding it>")
        fmt = detect_format(path)
    else:
        kind = str(kind_or_path).lower()
        kind = ALIASES.get(kind, kind)
        root = Path(root)
        if kind in NAMED:
            fmt, _, names = NAMED[kind]
            path = _named_folder(kind, root)
            name = kind
            if classes is None and names is not None:
                classes = list(names)
        elif kind in FORMATS:
            fmt, path = kind, root
        elif kind == "auto":
            path = root
            fmt = detect_format(path)
        else:
            known = ", ".join([*NAMED, *FORMATS, "auto"])
            raise DataError(f"unknown dataset kind {kind_or_path!r}; expected one of {known}")
    ds = _load_format(
        fmt, path, split, color=color, num_classes=num_classes, classes=classes, name=name
    )
    return ds if size is None else ds.with_resolution(size, mode)


def _stratified_val_counts(counts: torch.Tensor, val_fraction: float) -> torch.Tensor:
    """Per-class validation counts summing to round(N * f) (largest remainder)."""
    quota = counts.double() * val_fraction
    take = quota.floor().long()
    short = round(float(counts.sum()) * val_fraction) - int(take.sum())
    if short > 0:
        remainder = quota - take.double()
        # Stable sort: ties go to the lower class index, so the result is deterministic.
        order = torch.sort(-remainder, stable=True).indices
        order = order[take[order] < counts[order]]
        take[order[:short]] += 1
    return take


def train_val_split(
    dataset: ImageDataset, val_fraction: float = 0.1, seed: int = 0, *, stratify: bool = True
) -> tuple[ImageDataset, ImageDataset]:
    """Split into (train, val): disjoint, covering every image, the same for the same seed.

    Stratified by default (each class keeps its share in both parts); the
    shuffle uses its own generator, so the global RNG state does not matter.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    if stratify:
        take = _stratified_val_counts(dataset.class_counts(), val_fraction)
        labels = dataset.labels[perm]
        val_parts = [perm[labels == c][: int(take[c])] for c in range(dataset.num_classes)]
        val_idx = torch.cat(val_parts) if val_parts else torch.empty(0, dtype=torch.int64)
    else:
        val_idx = perm[: round(n * val_fraction)]
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val_idx] = True
    val_idx = torch.nonzero(is_val).flatten()
    train_idx = torch.nonzero(~is_val).flatten()
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise DataError(
            f"val_fraction {val_fraction} of {n} images leaves {len(train_idx)} for training "
            f"and {len(val_idx)} for validation; both must be non-empty"
        )
    base = dataset.name or "dataset"
    return dataset.subset(train_idx, f"{base}[train]"), dataset.subset(val_idx, f"{base}[val]")

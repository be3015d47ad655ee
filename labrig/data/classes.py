"""Class names of the standard datasets, so reports say "Sandal" rather than "5"."""

from __future__ import annotations

from pathlib import Path

MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Romanized hiragana, in the order of KMNIST's kmnist_classmap.csv.
KMNIST_CLASSES: tuple[str, ...] = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def guess_idx_dataset(folder: str | Path) -> str:
    """Name an IDX dataset from its folder (and parent, for torchvision's `X/raw` layout).

    IDX files carry no class names, so the folder name is the only hint.
    """
    parts = [p.lower() for p in Path(folder).resolve().parts[-2:]]
    if any("fashion" in p for p in parts):
        return "fashion-mnist"
    if any("kmnist" in p for p in parts):
        return "kmnist"
    if any("mnist" in p for p in parts):
        return "mnist"
    return Path(folder).resolve().name or "idx"


def idx_class_names(dataset: str, num_classes: int) -> list[str]:
    """Class names for an IDX dataset; plain indices when the dataset is not a known one."""
    known = {
        "fashion-mnist": FASHION_MNIST_CLASSES,
        "kmnist": KMNIST_CLASSES,
        "mnist": MNIST_CLASSES,
    }.get(dataset)
    if known is not None and len(known) == num_classes:
        return list(known)
    return [str(i) for i in range(num_classes)]

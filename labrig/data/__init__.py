"""Datasets for teachers and students: IDX (MNIST family), CIFAR-10, image folders.

Every loader returns an `ImageDataset` (uint8 images kept in memory, converted
to float32 [0, 1] at the requested resolution per batch); every failure is a
`DataError` that names the file.
"""

from labrig.data.base import ImageDataset
from labrig.data.cifar import load_cifar10, read_cifar_batch, read_cifar_meta, safe_unpickle
from labrig.data.classes import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    KMNIST_CLASSES,
    MNIST_CLASSES,
)
from labrig.data.datasets import detect_format, load_dataset, train_val_split
from labrig.data.errors import DataError
from labrig.data.folders import load_image_folder, read_image
from labrig.data.idx import (
    find_idx_files,
    load_idx_arrays,
    load_idx_dataset,
    read_idx,
    read_idx_images,
    read_idx_labels,
)
from labrig.data.transforms import to_float01, to_resolution

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "KMNIST_CLASSES",
    "MNIST_CLASSES",
    "DataError",
    "ImageDataset",
    "detect_format",
    "find_idx_files",
    "load_cifar10",
    "load_dataset",
    "load_idx_arrays",
    "load_idx_dataset",
    "load_image_folder",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "read_image",
    "safe_unpickle",
    "to_float01",
    "to_resolution",
    "train_val_split",
]

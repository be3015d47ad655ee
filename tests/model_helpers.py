"""Tiny data and models shared by the training tests: fast, learnable, deterministic."""

from __future__ import annotations

import torch

from labrig.data import ImageDataset
from labrig.distill import seed_everything
from labrig.models import BackendConfig, SCLCConfig, StudentConfig, StudentModel

SIZE = 16


def toy_dataset(n: int = 320, seed: int = 0) -> ImageDataset:
    """10 classes: a bright 4x4 square at a class-dependent place, on noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        r, col = 2 + 3 * (c // 4), 1 + 4 * (c % 4)
        images[i, 0, r : r + 4, col : col + 4] += 0.7
    return ImageDataset((images.clamp(0, 1) * 255).to(torch.uint8), labels, [str(i) for i in range(10)], name="toy")


def student(seed: int = 0, **backend) -> StudentModel:
    seed_everything(seed)
    return StudentModel(StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                                      backend=BackendConfig(**backend), input_size=(SIZE, SIZE)))

"""Batch augmentation on the device: random crop with zero padding, horizontal flip.

Driven by an explicit generator (seeded per epoch by the trainer), so a run
and its resumed copy see the same crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labrig.distill.config import AugmentConfig


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ±padding pixels (zero fill), size kept."""
    if padding == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)[None, :]  # (B, H)
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)[None, :]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    x = random_crop(x, config.crop_padding, generator)
    return random_hflip(x, generator) if config.hflip else x

"""Scenes composed from real item images: a segmentation set from a classification set.

Each scene is a textured, noisy background with a few items (e.g.
Fashion-MNIST garments) pasted at random places, sizes and angles; later items
occlude earlier ones. An item pixel at or above `threshold` of full scale is
labelled with the item's class + 1 (0 is background); fainter item pixels
blend into what lies below and keep its label. Everything comes from one
seeded generator, so a (items, config, count, seed) always gives the same
scenes; every placement is returned, so a test can re-render any item and
check its mask.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from labrig.data.errors import DataError

# placement columns (float64): whether the slot is used, which item, its class,
# side in pixels, angle in radians, centre (x, y) in pixels, brightness gain
ACTIVE, ITEM, CLASS, SIDE, ANGLE, CX, CY, GAIN = range(8)
PLACEMENT_FIELDS = 8
CHUNK = 128
"""Scenes per generator chunk: fixed, so the result does not depend on memory."""


@dataclass(frozen=True)
class SceneConfig:
    """How scenes look. Sizes are fractions of the scene side, so a config means
    the same at 64 and at 256 px."""

    size: int = 128
    items: tuple[int, int] = (2, 4)
    """Fewest and most items per scene."""
    item_scale: tuple[float, float] = (0.28, 0.5)
    """Item side (the 28 px source square) as a fraction of the scene side."""
    rotation_deg: float = 30.0
    """Items turn by up to ± this."""
    gain: tuple[float, float] = (0.7, 1.0)
    """Item brightness factor range."""
    background: tuple[float, float] = (0.05, 0.4)
    """Mean background level range."""
    texture: float = 0.12
    """Amplitude of the background's smooth blobs and grating."""
    noise: float = 0.04
    """Standard deviation of the per-pixel noise added last (sensor noise)."""
    threshold: float = 0.2
    """Item pixels at or above this value (of 1) are labelled with the item."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(int(i) for i in self.items))
        object.__setattr__(self, "item_scale", tuple(float(s) for s in self.item_scale))
        object.__setattr__(self, "gain", tuple(float(g) for g in self.gain))
        object.__setattr__(self, "background", tuple(float(b) for b in self.background))
        if self.size < 16:
            raise DataError(f"scene size must be >= 16 px, got {self.size}")
        if not 1 <= self.items[0] <= self.items[1]:
            raise DataError(f"scene items must be 1 <= min <= max, got {self.items}")
        if not 0 < self.item_scale[0] <= self.item_scale[1] <= 1.5:
            raise DataError(f"item_scale must be 0 < min <= max <= 1.5, got {self.item_scale}")
        if not 0 < self.threshold < 1 or self.noise < 0 or self.texture < 0:
            raise DataError("threshold must be in (0, 1), noise and texture >= 0")

    def as_dict(self) -> dict:
        return asdict(self)


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def draw_placements(g: torch.Generator, n: int, pool_labels: torch.Tensor, config: SceneConfig) -> torch.Tensor:
    """(n, max items, `PLACEMENT_FIELDS`) float64: where each item of each scene goes."""
    slots = config.items[1]
    size = config.size
    counts = torch.randint(config.items[0], config.items[1] + 1, (n,), generator=g)
    p = torch.zeros(n, slots, PLACEMENT_FIELDS, dtype=torch.float64)
    p[..., ACTIVE] = (torch.arange(slots)[None, :] < counts[:, None]).double()
    item = torch.randint(0, len(pool_labels), (n, slots), generator=g)
    p[..., ITEM] = item.double()
    p[..., CLASS] = pool_labels[item].double()
    side = _uniform(g, (n, slots), *config.item_scale) * size
    p[..., SIDE] = side
    p[..., ANGLE] = _uniform(g, (n, slots), -1.0, 1.0) * math.radians(config.rotation_deg)
    # the centre keeps at least a third of the item inside the scene
    margin = side * 0.3
    p[..., CX] = margin + torch.rand(n, slots, generator=g, dtype=torch.float64) * (size - 2 * margin)
    p[..., CY] = margin + torch.rand(n, slots, generator=g, dtype=torch.float64) * (size - 2 * margin)
    p[..., GAIN] = _uniform(g, (n, slots), *config.gain)
    return p


def render_items(items: torch.Tensor, placements: torch.Tensor, size: int) -> torch.Tensor:
    """Items (M, 1, h, w) float in [0, 1] drawn onto (M, 1, size, size) canvases by
    placements (M, `PLACEMENT_FIELDS`): scaled to `SIDE` px, turned by `ANGLE`,
    centred at (`CX`, `CY`); zero outside the item. Bilinear, deterministic."""
    side = placements[:, SIDE]
    angle = placements[:, ANGLE]
    # output pixel (normalised, align_corners=False) -> item coordinates (normalised)
    k = size / side
    cos, sin = torch.cos(angle), torch.sin(angle)
    a = torch.stack((torch.stack((k * cos, k * sin), -1), torch.stack((-k * sin, k * cos), -1)), -2)  # (M, 2, 2)
    centre = torch.stack((placements[:, CX], placements[:, CY]), -1) * 2 / size - 1  # (M, 2) normalised
    b = -(a @ centre[:, :, None])[:, :, 0]
    theta = torch.cat((a, b[:, :, None]), -1).to(torch.float32)
    grid = F.affine_grid(theta, [len(items), 1, size, size], align_corners=False)
    return F.grid_sample(items.to(torch.float32), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def render_background(g: torch.Generator, n: int, config: SceneConfig) -> torch.Tensor:
    """(n, 1, S, S) float32: a level, smooth random blobs and a random grating."""
    s = config.size
    level = _uniform(g, (n, 1, 1, 1), *config.background).float()
    blobs = F.interpolate(torch.randn(n, 1, 6, 6, generator=g), size=(s, s), mode="bicubic", align_corners=False)
    freq = _uniform(g, (n, 1, 1, 1), 2.0, 10.0).float()
    direction = _uniform(g, (n, 1, 1, 1), 0.0, math.pi).float()
    phase = _uniform(g, (n, 1, 1, 1), 0.0, 2 * math.pi).float()
    coords = torch.arange(s, dtype=torch.float32) / s
    y, x = coords[None, None, :, None], coords[None, None, None, :]
    grating = torch.sin(2 * math.pi * freq * (x * torch.cos(direction) + y * torch.sin(direction)) + phase)
    weight = _uniform(g, (n, 1, 1, 1), 0.0, 1.0).float()
    return level + config.texture * (0.6 * blobs + 0.4 * weight * grating)


def compose(
    g: torch.Generator, pool: torch.Tensor, placements: torch.Tensor, config: SceneConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes (n, 1, S, S) uint8 and masks (n, S, S) uint8 from placements (n, slots, ...)."""
    n, slots = placements.shape[:2]
    s, thr = config.size, config.threshold
    image = render_background(g, n, config)
    mask = torch.zeros(n, 1, s, s, dtype=torch.uint8)
    for j in range(slots):
        p = placements[:, j]
        value = render_items(pool[p[:, ITEM].long()], p, s)
        active = p[:, ACTIVE].bool()[:, None, None, None]
        alpha = (value / thr).clamp(max=1.0) * active
        image = alpha * (p[:, GAIN].float()[:, None, None, None] * value) + (1 - alpha) * image
        label = (p[:, CLASS] + 1).to(torch.uint8)[:, None, None, None].expand_as(mask)
        mask = torch.where(active & (value >= thr), label, mask)
    if config.noise:
        image = image + config.noise * torch.randn(image.shape, generator=g)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), mask[:, 0]


def generate_scenes(
    pool: torch.Tensor, pool_labels: torch.Tensor, count: int, config: SceneConfig, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` scenes from item images `pool` (N, 1, h, w) (uint8 or float in [0, 1])
    with labels (N,): (images (count, 1, S, S) uint8, masks (count, S, S) uint8,
    placements (count, slots, `PLACEMENT_FIELDS`) float64)."""
    if count < 1:
        raise DataError(f"scene count must be >= 1, got {count}")
    if pool.ndim != 4 or pool.shape[1] != 1 or len(pool) != len(pool_labels) or not len(pool):
        raise DataError(f"item pool must be (N, 1, h, w) with N labels, got {tuple(pool.shape)} "
                        f"and {tuple(pool_labels.shape)}")
    items = pool.float() / 255 if pool.dtype == torch.uint8 else pool.float()
    labels = pool_labels.long()
    images, masks, places = [], [], []
    for chunk, start in enumerate(range(0, count, CHUNK)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
        n = min(CHUNK, count - start)
        p = draw_placements(g, n, labels, config)
        image, mask = compose(g, items, p, config)
        images.append(image)
        masks.append(mask)
        places.append(p)
    return torch.cat(images), torch.cat(masks), torch.cat(places)

"""Electronic back ends: what the host computes from the camera tiles.

normalise -> (BatchNorm) -> pool each tile -> classifier. The ``fc`` back end
is one linear layer (most of the work stays optical, as in the paper); ``mlp``
adds hidden layers. Normalisation makes the back end indifferent to the
absolute light level (laser power, exposure, mask normalisation):

- ``scale``: divide each image's tiles by their mean absolute value;
- ``log1p``: log(1 + x) of the (non-negative) intensities, compressing the
  square law's dynamic range;
- ``scale_log1p``: both, in that order;
- ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from labrig.models.errors import ModelConfigError

Kind = Literal["fc", "mlp"]
Norm = Literal["scale", "log1p", "scale_log1p", "none"]
NORMS: tuple[str, ...] = ("scale", "log1p", "scale_log1p", "none")


@dataclass(frozen=True)
class BackendConfig:
    """The electronic back end; `pool` is the side of the adaptive pooling grid per tile."""

    kind: Kind = "fc"
    norm: Norm = "scale"
    batch_norm: bool = True
    pool: int = 4
    pool_kind: Literal["avg", "max"] = "avg"
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.kind not in ("fc", "mlp"):
            raise ModelConfigError(f"backend kind must be 'fc' or 'mlp', got {self.kind!r}")
        if self.norm not in NORMS:
            raise ModelConfigError(f"backend norm must be one of {NORMS}, got {self.norm!r}")
        if self.pool_kind not in ("avg", "max"):
            raise ModelConfigError(f"backend pool_kind must be 'avg' or 'max', got {self.pool_kind!r}")
        if self.pool < 1 or (self.kind == "mlp" and (not self.hidden or min(self.hidden) < 1)):
            raise ModelConfigError("backend pool must be >= 1 and an mlp needs hidden sizes >= 1")
        if not 0 <= self.dropout < 1:
            raise ModelConfigError(f"backend dropout must be in [0, 1), got {self.dropout}")


class TileNorm(nn.Module):
    """Per-image light-level normalisation of the camera tiles (no parameters)."""

    def __init__(self, norm: Norm, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = norm
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm in ("scale", "scale_log1p"):
            x = x / (x.abs().mean(dim=(1, 2, 3), keepdim=True) + self.eps)
        if self.norm in ("log1p", "scale_log1p"):
            x = torch.log1p(x.clamp_min(0))  # intensities; a signed field is clipped
        return x

    def extra_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        n = output[0].numel()
        return {"scale": 3 * n, "log1p": 2 * n, "scale_log1p": 5 * n, "none": 0}[self.norm]


class ElectronicBackend(nn.Module):
    """Camera tiles (B, C, H, W) -> logits (B, classes); any tile size (adaptive pooling)."""

    def __init__(self, config: BackendConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.normalise = TileNorm(config.norm)
        self.bn = nn.BatchNorm2d(in_channels) if config.batch_norm else nn.Identity()
        pool = nn.AdaptiveAvgPool2d if config.pool_kind == "avg" else nn.AdaptiveMaxPool2d
        self.pool = pool(config.pool)
        features = in_channels * config.pool * config.pool
        layers: list[nn.Module] = [nn.Flatten()]
        if config.kind == "mlp":
            for width in config.hidden:
                layers += [nn.Dropout(config.dropout), nn.Linear(features, width), nn.ReLU(inplace=True)]
                features = width
        layers += [nn.Dropout(config.dropout), nn.Linear(features, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tiles (B, C, H, W): what the hint loss compares with a teacher layer."""
        return self.bn(self.normalise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.tiles(x)))

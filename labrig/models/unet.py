"""The segmentation teacher: a U-Net (Ronneberger et al. 2015), small and configurable.

`depth` times: two 3x3 conv-BN-ReLU layers, then a 2x2 max pool (channels
double per level); a bottleneck; then back up, each level upsampled
(bilinear, to the exact size of its skip, so any input size works),
concatenated with the skip and convolved twice; a 1x1 convolution gives the
per-pixel logits (B, classes, H, W). Every level is a named stage, so any of
them can be a hint layer for a student; the default is the last decoder stage
(full resolution, what a per-pixel student's optical channels compare with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from labrig.models.errors import ModelConfigError
from labrig.models.flops import count_flops
from labrig.models.teacher import ElectronicTeacher


@dataclass(frozen=True)
class UNetConfig:
    """`width` channels at full resolution, doubled at each of `depth` levels."""

    in_channels: int = 1
    num_classes: int = 11
    input_size: tuple[int, int] = (128, 128)
    width: int = 16
    depth: int = 3
    batch_norm: bool = True
    dropout: float = 0.0
    """Dropout before the 1x1 head."""
    hint_layer: str | None = None
    """Stage returned by `features` by default (None: ``dec0``, the last decoder stage)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        for name in ("in_channels", "width", "depth"):
            if int(getattr(self, name)) < 1:
                raise ModelConfigError(f"unet {name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_classes < 2:
            raise ModelConfigError(f"unet num_classes must be >= 2, got {self.num_classes}")
        if min(self.input_size) < 2**self.depth:
            raise ModelConfigError(f"unet depth {self.depth} pools {self.input_size} images below one pixel")
        if not 0 <= self.dropout < 1:
            raise ModelConfigError(f"unet dropout must be in [0, 1), got {self.dropout}")


def _double_conv(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Upsample(nn.Module):
    """Bilinear resize to a given size (a module, so FLOP counting sees it)."""

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def extra_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        return 7 * output[0].numel()  # four weights, three adds per output sample


class UNet(ElectronicTeacher):
    """Images (B, C, H, W) -> per-pixel logits (B, classes, H, W)."""

    kind: ClassVar[str] = "unet"
    task: ClassVar[str] = "segmentation"
    """Per-pixel logits: `labrig.distill.tasks.task_of` trains and scores it as segmentation."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or UNetConfig()
        widths = [cfg.width * 2**level for level in range(cfg.depth + 1)]
        self.down = nn.ModuleDict()
        cin = cfg.in_channels
        for level, w in enumerate(widths):
            self.down[f"enc{level}"] = _double_conv(cin, w, cfg.batch_norm)
            cin = w
        self.up = nn.ModuleDict()
        for level in reversed(range(cfg.depth)):
            self.up[f"dec{level}"] = _double_conv(widths[level + 1] + widths[level], widths[level], cfg.batch_norm)
        self.resize = Upsample()
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout else nn.Identity()
        self.head = nn.Conv2d(widths[0], cfg.num_classes, 1)
        if cfg.hint_layer is not None and cfg.hint_layer not in self.feature_layers:
            raise ModelConfigError(f"hint_layer {cfg.hint_layer!r} is not a stage; stages: {self.feature_layers}")

    @property
    def feature_layers(self) -> list[str]:
        return [*self.down, *self.up]

    def _resolve(self, layer: str | None) -> str:
        name = layer or self.config.hint_layer or "dec0"
        if name not in self.feature_layers:
            raise ModelConfigError(f"no unet stage {name!r}; stages: {self.feature_layers}")
        return name

    def forward_with_features(self, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, activations of stage `layer`) in one pass."""
        name = self._resolve(layer)
        feats: dict[str, torch.Tensor] = {}
        skips = []
        for level, (key, stage) in enumerate(self.down.items()):
            if level:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            feats[key] = x
            skips.append(x)
        for key, stage in self.up.items():
            skip = skips[int(key[3:])]
            x = stage(torch.cat((self.resize(x, tuple(skip.shape[-2:])), skip), dim=1))
            feats[key] = x
        return self.head(self.dropout(x)), feats[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x, "dec0")[0]

    def features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        return self.forward_with_features(x, layer)[1]

    def flops(self, input_size: tuple[int, int] | None = None) -> int:
        """FLOPs per image of a forward pass (all electronic; max pools count one per input)."""
        size = tuple(input_size or self.config.input_size)
        p = next(self.parameters())
        x = torch.zeros(1, self.config.in_channels, *size, dtype=p.dtype, device=p.device)
        was = self.training
        self.eval()
        try:
            pools = sum(self.config.width * 2 ** (level - 1) * (size[0] >> (level - 1)) * (size[1] >> (level - 1))
                        for level in range(1, self.config.depth + 1))
            return count_flops(self, lambda: self(x)) + pools
        finally:
            self.train(was)

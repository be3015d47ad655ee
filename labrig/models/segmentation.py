"""The SCLC segmentation student: an optical encoder and a small electronic decoder.

The encoder is the SCLC front end (`SCLCFrontEnd`): a linear convolution
stack that collapses to one Fourier-plane mask per channel, detected by the
bench's camera model (coherent: the square law), in any of its modes
(stack, collapsed, ideal twin, optics-aware twin). Its tiles are the full
convolution (H + S - 1 per side); the host reads out the H x W window centred
on each, aligned pixel for pixel with the input, so channel k at (i, j) is the
kernel's response centred on input pixel (i, j).

The decoder is what the host computes per pixel: the tile normalisation of
the classification back end (`TileNorm`), BatchNorm, optionally an average
pool by `downsample` (cheaper, and a wider view for the same taps), a few
dilated 3x3 conv-BN-ReLU layers, a 1x1 convolution to class logits, and a
bilinear upsampling back to H x W. Trained on labels it is the no-KD baseline;
trained with dense KD it is the KD student: the same network either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from labrig.models.backends import NORMS, Norm, TileNorm
from labrig.models.errors import ModelConfigError
from labrig.models.flops import count_flops
from labrig.models.optical import OpticsConfig
from labrig.models.sclc import SCLCConfig, SCLCFrontEnd
from labrig.models.serialize import OMIT_DEFAULT
from labrig.models.student import OpticalStudent
from labrig.models.unet import Upsample


@dataclass(frozen=True)
class DecoderConfig:
    """The electronic decoder: one conv layer per entry of `widths` (with its `dilations`)."""

    norm: Norm = "scale_log1p"
    batch_norm: bool = True
    widths: tuple[int, ...] = (32, 32, 32)
    dilations: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = 3
    downsample: int = 2
    """Average-pool the tiles by this factor before the convolutions (1: full resolution)."""
    context_bins: tuple[int, ...] = field(default=(), metadata=OMIT_DEFAULT)
    """A pooled context branch (pyramid pooling): the last layer's features averaged over a
    b×b grid for each b, each through a 1×1 conv of `context_width`, upsampled and joined
    to the features before the head, so every pixel also sees its region and the scene.
    Empty: none."""
    context_width: int = field(default=16, metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "context_bins", tuple(int(b) for b in self.context_bins))
        if (self.context_bins and min(self.context_bins) < 1) or self.context_width < 1:
            raise ModelConfigError("decoder context_bins and context_width must be >= 1")
        if self.norm not in NORMS:
            raise ModelConfigError(f"decoder norm must be one of {NORMS}, got {self.norm!r}")
        if len(self.widths) != len(self.dilations):
            raise ModelConfigError(f"decoder widths {self.widths} and dilations {self.dilations} differ in length")
        if (self.widths and min(self.widths) < 1) or (self.dilations and min(self.dilations) < 1):
            raise ModelConfigError("decoder widths and dilations must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.downsample < 1:
            raise ModelConfigError("decoder kernel_size must be odd and >= 1, downsample >= 1")


@dataclass(frozen=True)
class SegStudentConfig:
    """A whole segmentation student. `optics` None: no twin (only the digital modes)."""

    frontend: SCLCConfig = field(default_factory=lambda: SCLCConfig(channels=(8, 8), kernel_sizes=(9, 9)))
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    optics: OpticsConfig | None = field(default_factory=lambda: OpticsConfig(profile="sim-wide"))
    num_classes: int = 11
    input_size: tuple[int, int] = (128, 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        if self.num_classes < 2 or min(self.input_size) < 1:
            raise ModelConfigError("segmentation student needs num_classes >= 2 and a positive input_size")


def align(tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The (H, W) window of full-convolution tiles (H + S - 1, ...) centred on the
    input: output pixel (i, j) is the kernel's centre tap on input pixel (i, j)
    (exact for odd S, half a pixel off for even S)."""
    top = (tiles.shape[-2] - size[0]) // 2
    left = (tiles.shape[-1] - size[1]) // 2
    if top < 0 or left < 0:
        raise ModelConfigError(f"tiles {tuple(tiles.shape[-2:])} are smaller than the input {size}")
    return tiles[..., top : top + size[0], left : left + size[1]]


class PyramidContext(nn.Module):
    """Pyramid pooling (PSPNet): features averaged over b×b grids, 1×1 conv-BN-ReLU each,
    upsampled back: what a region of the image (b small: the scene) looks like."""

    def __init__(self, in_channels: int, bins: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, width, 1, bias=False),
                          nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for b in bins)
        self.resize = Upsample()
        self.out_channels = width * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        return torch.cat([self.resize(stage(x), size) for stage in self.stages], dim=1)


class ElectronicDecoder(nn.Module):
    """Aligned camera tiles (B, K, H, W) -> per-pixel logits (B, classes, H, W)."""

    def __init__(self, config: DecoderConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.normalise = TileNorm(config.norm)
        self.bn = nn.BatchNorm2d(in_channels) if config.batch_norm else nn.Identity()
        self.pool = nn.AvgPool2d(config.downsample) if config.downsample > 1 else nn.Identity()
        layers: list[nn.Module] = []
        cin = in_channels
        for width, dilation in zip(config.widths, config.dilations, strict=True):
            pad = dilation * (config.kernel_size // 2)
            layers += [nn.Conv2d(cin, width, config.kernel_size, padding=pad, dilation=dilation, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.context = PyramidContext(cin, config.context_bins, config.context_width) if config.context_bins else None
        self.head = nn.Conv2d(cin + (self.context.out_channels if self.context else 0), num_classes, 1)
        self.resize = Upsample()

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tiles (B, K, H, W): what the hint loss compares with a teacher stage."""
        return self.bn(self.normalise(x))

    def classify(self, tiles: torch.Tensor) -> torch.Tensor:
        size = tuple(tiles.shape[-2:])
        features = self.body(self.pool(tiles))
        if self.context is not None:
            features = torch.cat([features, self.context(features)], dim=1)
        logits = self.head(features)
        return logits if tuple(logits.shape[-2:]) == size else self.resize(logits, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.tiles(x))


class SegmentationStudent(OpticalStudent):
    """Images (B, 1, H, W) -> per-pixel logits; `mode` selects how the encoder runs."""

    kind: ClassVar[str] = "seg_student"
    task: ClassVar[str] = "segmentation"

    def __init__(self, config: SegStudentConfig | None = None) -> None:
        super().__init__()
        self._config = config = config or SegStudentConfig()
        self.front = SCLCFrontEnd(config.frontend, config.optics)
        self.back = ElectronicDecoder(config.decoder, self.front.out_channels, config.num_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Detected tiles read out aligned with the input (B, K, H, W)."""
        return align(self.front(x), tuple(x.shape[-2:]))

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits (B, classes, H, W); with `with_features`, (logits, normalised optical
        channels (B, K, H, W)) for the hint loss."""
        tiles = self.back.tiles(self.encode(x))
        logits = self.back.classify(tiles)
        return (logits, tiles) if with_features else logits

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(x, with_features=True)

    def flops(self, input_size: tuple[int, int] | None = None) -> int:
        """Electronic FLOPs per image: camera read-out plus decoder (the optics compute for free)."""
        size = tuple(input_size or self.config.input_size)
        p = self.front.stack.weights[0]
        tiles = torch.zeros(1, self.front.out_channels, *size, dtype=p.dtype, device=p.device)
        was = self.back.training
        self.back.eval()
        try:
            return self.front.readout_flops(size) + count_flops(self.back, lambda: self.back(tiles))
        finally:
            self.back.train(was)

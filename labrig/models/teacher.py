"""Nonlinear teacher CNNs: what the linear optical student is distilled from.

Two families, one config: `small` (VGG-like blocks of conv-BN-ReLU with
pooling, then dropout and a two-layer classifier; ~93-94 % on Fashion-MNIST
with augmentation) and `alexnet` (AlexNet's five convolutions and three FC
layers, scaled in width and pooling for 28-64 px inputs). The network is a
sequence of named stages so any stage's output can serve as a hint layer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from labrig.models.errors import ModelConfigError
from labrig.models.flops import count_flops

Arch = Literal["small", "alexnet"]
ARCHS: tuple[str, ...] = ("small", "alexnet")


@dataclass(frozen=True)
class TeacherConfig:
    """What a teacher is. `width` is the first stage's channel count (`small`:
    doubled per block) or AlexNet's first-layer width (64 in the original)."""

    arch: Arch = "small"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)
    width: int = 32
    blocks: int = 3
    convs_per_block: int = 2
    hidden: int = 256
    dropout: float = 0.3
    batch_norm: bool = True
    hint_layer: str | None = None
    """Stage whose output `features` returns by default (None: the last conv stage)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelConfigError(f"teacher arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("in_channels", "num_classes", "width", "blocks", "convs_per_block", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ModelConfigError(f"teacher {name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ModelConfigError(f"teacher dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))


def _conv(cin: int, cout: int, k: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _small_stages(cfg: TeacherConfig) -> tuple[OrderedDict[str, nn.Module], int]:
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    cin, size = cfg.in_channels, min(cfg.input_size)
    for b in range(cfg.blocks):
        cout = cfg.width * 2**b
        layers: list[nn.Module] = []
        for c in range(cfg.convs_per_block):
            layers += _conv(cin if c == 0 else cout, cout, 3, cfg.batch_norm)
        if size >= 2:  # pool while there is something left to pool
            layers.append(nn.MaxPool2d(2))
            size //= 2
        stages[f"block{b + 1}"] = nn.Sequential(*layers)
        cin = cout
    return stages, cin


def _alexnet_stages(cfg: TeacherConfig) -> tuple[OrderedDict[str, nn.Module], int]:
    """AlexNet's conv stack (64-192-384-256-256 at width 64), with 5x5/3x3
    kernels and three 2x2 pools instead of the 11x11 stride-4 stem (for small inputs)."""
    w = [max(1, round(cfg.width * f / 64)) for f in (64, 192, 384, 256, 256)]
    bn = cfg.batch_norm
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["conv1"] = nn.Sequential(*_conv(cfg.in_channels, w[0], 5, bn), nn.MaxPool2d(2))
    stages["conv2"] = nn.Sequential(*_conv(w[0], w[1], 5, bn), nn.MaxPool2d(2))
    stages["conv3"] = nn.Sequential(*_conv(w[1], w[2], 3, bn))
    stages["conv4"] = nn.Sequential(*_conv(w[2], w[3], 3, bn))
    stages["conv5"] = nn.Sequential(*_conv(w[3], w[4], 3, bn), nn.MaxPool2d(2))
    return stages, w[4]


class ElectronicTeacher(nn.Module):
    """What every teacher shares: all of it runs on the host, and any named stage's
    output shape can be probed (for the hint projection). Subclasses keep `config`
    (with `in_channels` and `input_size`) and define `features(x, layer)`."""

    def feature_shape(self, layer: str | None = None) -> tuple[int, int, int]:
        """(C, H, W) of `features(x, layer)` for the configured input size."""
        p = next(self.parameters())
        x = torch.zeros(1, self.config.in_channels, *self.config.input_size, dtype=p.dtype, device=p.device)
        was = self.training
        self.eval()
        with torch.no_grad():
            shape = tuple(self.features(x, layer).shape[1:])
        self.train(was)
        return shape  # type: ignore[return-value]

    def param_count(self) -> dict[str, int]:
        n = sum(p.numel() for p in self.parameters())
        return {"optical": 0, "electronic": n, "total": n}


class TeacherCNN(ElectronicTeacher):
    """A nonlinear CNN classifier with named stages (for hint distillation)."""

    kind: ClassVar[str] = "teacher"

    def __init__(self, config: TeacherConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TeacherConfig()
        build = _small_stages if config.arch == "small" else _alexnet_stages
        stages, channels = build(config)
        self.stages = nn.ModuleDict(stages)
        pooled = 3 if config.arch == "small" else 2
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        hidden = config.hidden if config.arch == "small" else 4 * config.hidden
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(config.dropout)]
        layers += [nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(inplace=True)]
        if config.arch == "alexnet":  # AlexNet's two hidden FC layers
            layers += [nn.Dropout(config.dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(config.dropout), nn.Linear(hidden, config.num_classes)]
        self.classifier = nn.Sequential(*layers)
        if config.hint_layer is not None and config.hint_layer not in self.stages:
            raise ModelConfigError(
                f"hint_layer {config.hint_layer!r} is not a stage; stages: {list(self.stages)}"
            )

    @property
    def feature_layers(self) -> list[str]:
        """Names of the stages `features` can return."""
        return list(self.stages)

    def _resolve(self, layer: str | None) -> str:
        name = layer or self.config.hint_layer or self.feature_layers[-1]
        if name not in self.stages:
            raise ModelConfigError(f"no teacher stage {name!r}; stages: {self.feature_layers}")
        return name

    def forward_with_features(
        self, x: torch.Tensor, layer: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, activations of `layer`) in one pass."""
        name = self._resolve(layer)
        feats = None
        for key, stage in self.stages.items():
            x = stage(x)
            if key == name:
                feats = x
        assert feats is not None
        return self.classifier(self.pool(x)), feats

    def features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Activations of one stage (default: `config.hint_layer` or the last one);
        stops there, so it is cheaper than a full forward."""
        name = self._resolve(layer)
        for key, stage in self.stages.items():
            x = stage(x)
            if key == name:
                return x
        raise AssertionError("unreachable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages.values():
            x = stage(x)
        return self.classifier(self.pool(x))

    def flops(self, input_size: tuple[int, int] | None = None) -> int:
        """FLOPs per image of a forward pass (all electronic)."""
        size = tuple(input_size or self.config.input_size)
        p = next(self.parameters())
        x = torch.zeros(1, self.config.in_channels, *size, dtype=p.dtype, device=p.device)
        return count_flops(self, lambda: self(x))

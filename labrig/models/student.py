"""The student: SCLC optical front end + electronic back end.

Parameters split into optical (the linear stack's kernels, which become
Fourier-plane masks) and electronic (the back end). FLOPs count only the
electronic side: the read-out and the back end; the optics compute for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import nn

from labrig.models.backends import BackendConfig, ElectronicBackend
from labrig.models.errors import ModelConfigError
from labrig.models.flops import count_flops
from labrig.models.optical import OpticsConfig
from labrig.models.sclc import SCLCConfig, SCLCFrontEnd


@dataclass(frozen=True)
class StudentConfig:
    """A whole student. `optics` None: no twin (only the digital modes)."""

    frontend: SCLCConfig = field(default_factory=SCLCConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    optics: OpticsConfig | None = field(default_factory=OpticsConfig)
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        if self.num_classes < 2 or min(self.input_size) < 1:
            raise ModelConfigError("student needs num_classes >= 2 and a positive input_size")


class OpticalStudent(nn.Module):
    """What every SCLC student shares: an optical front end (`front`, an
    `SCLCFrontEnd`) and an electronic part (`back`); subclasses build both and
    say how the back end reads the tiles. Their configs carry `frontend`."""

    front: SCLCFrontEnd
    back: nn.Module
    _config: object

    @property
    def config(self):
        """The config, with the front end's current mode (what a checkpoint records)."""
        if self._config.frontend.mode == self.front.mode:
            return self._config
        return replace(self._config, frontend=replace(self._config.frontend, mode=self.front.mode))

    @property
    def mode(self) -> str:
        return self.front.mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self.front.mode = mode

    def optical_parameters(self) -> list[nn.Parameter]:
        return list(self.front.stack.parameters())

    def electronic_parameters(self) -> list[nn.Parameter]:
        return list(self.back.parameters())

    def freeze_optics(self, frozen: bool = True) -> None:
        """Stop (or restart) training the masks (fixed on the bench): the paper's second
        stage trains the electronic part only."""
        for p in self.optical_parameters():
            p.requires_grad_(not frozen)

    def param_count(self) -> dict[str, int]:
        """Trainable-or-frozen parameter counts: `optical` (layer kernels; a complex
        tap counts 2), `optical_collapsed` (taps of the masks' kernels), `electronic`."""
        optical = self.front.optical_param_count()
        cfg = self.config.frontend
        collapsed = cfg.out_channels * cfg.in_channels * cfg.collapsed_size**2 * (2 if cfg.complex_kernels else 1)
        electronic = sum(p.numel() for p in self.electronic_parameters())
        return {"optical": optical, "optical_collapsed": collapsed, "electronic": electronic,
                "total": optical + electronic}

    def digital_frontend_flops(self, input_size: tuple[int, int] | None = None) -> int:
        """What the front end would cost electronically (the work the optics saves)."""
        return self.front.digital_flops(tuple(input_size or self.config.input_size))


class StudentModel(OpticalStudent):
    """Images (B, C, H, W) -> logits; `mode` selects how the front end runs."""

    kind: ClassVar[str] = "student"

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self._config = config = config or StudentConfig()
        self.front = SCLCFrontEnd(config.frontend, config.optics)
        self.back = ElectronicBackend(config.backend, self.front.out_channels, config.num_classes)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits; with `with_features`, (logits, normalised optical channels) for the
        hint loss (a flag, not a second method, so it passes through DDP's forward)."""
        if with_features:
            return self.forward_with_features(x)
        return self.back(self.front(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, normalised optical channels (B, C, H', W'))."""
        tiles = self.back.tiles(self.front(x))
        return self.back.classifier(self.back.pool(tiles)), tiles

    def electronic_flops(self, input_size: tuple[int, int] | None = None) -> int:
        """FLOPs per image on the host: camera read-out plus back end (optics free)."""
        size = tuple(input_size or self.config.input_size)
        out = self.front.output_size(size)
        p = self.front.stack.weights[0]
        tiles = torch.zeros(1, self.front.out_channels, *out, dtype=p.dtype, device=p.device)
        return self.front.readout_flops(size) + count_flops(self.back, lambda: self.back(tiles))

    def flops(self, input_size: tuple[int, int] | None = None) -> int:
        """Alias of `electronic_flops`, so teacher and student report alike."""
        return self.electronic_flops(input_size)

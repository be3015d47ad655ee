"""The SCLC optical front end: a linear convolution stack that collapses exactly.

L convolution layers with no nonlinearity and no bias between them, each a
*full* linear convolution (padding k - 1, true convolution as the optics does
it, not cross-correlation). By associativity the stack is one convolution per
(input, output) channel pair with a kernel of Σ(k_l - 1) + 1 taps: the
Fourier-plane mask of that channel. The same front end runs in four modes, all
returning the detected camera intensity (B, C_det, H + S - 1, W + S - 1):

- ``stack``: the uncollapsed layers, then detection (the training view);
- ``collapsed``: one convolution with the collapsed kernels, then detection;
- ``optical``: through the ideal digital twin (`labrig.optics.Twin`), with the
  exact complex masks on the filter plane and camera power per tile;
- ``optics_aware``: through the twin with a physical filter (normalised,
  double-phase encoded, SLM-quantised mask) and a noisy, quantised camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from labrig.models.detection import DETECTIONS, Detection, detect
from labrig.models.errors import ModelConfigError
from labrig.models.optical import OpticalPath, OpticsConfig

Mode = Literal["stack", "collapsed", "optical", "optics_aware"]
MODES: tuple[str, ...] = ("stack", "collapsed", "optical", "optics_aware")


@dataclass(frozen=True)
class SCLCConfig:
    """The linear stack: `channels[l]` output channels and `kernel_sizes[l]` taps
    for layer l (square kernels); the last entry of `channels` is K, the number
    of optical channels (camera tiles; twice that for signed incoherent)."""

    in_channels: int = 1
    channels: tuple[int, ...] = (16, 16)
    kernel_sizes: tuple[int, ...] = (5, 5)
    complex_kernels: bool = False
    detection: Detection = "coherent"
    mode: Mode = "collapsed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        if not self.channels or len(self.channels) != len(self.kernel_sizes):
            raise ModelConfigError(
                f"SCLC channels {self.channels} and kernel_sizes {self.kernel_sizes} must be "
                "non-empty and of equal length (one entry per layer)"
            )
        if self.in_channels < 1 or min(self.channels) < 1 or min(self.kernel_sizes) < 1:
            raise ModelConfigError("SCLC channel counts and kernel sizes must be >= 1")
        if self.detection not in DETECTIONS:
            raise ModelConfigError(f"detection must be one of {DETECTIONS}, got {self.detection!r}")
        if self.mode not in MODES:
            raise ModelConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.complex_kernels and self.detection == "incoherent":
            raise ModelConfigError("incoherent detection needs real kernels (intensity PSFs are real)")

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    @property
    def collapsed_size(self) -> int:
        """Taps of the collapsed kernel: Σ(k_l - 1) + 1."""
        return sum(k - 1 for k in self.kernel_sizes) + 1


def full_conv2d(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Full linear convolution summed over input channels:
    y[b, o] = Σ_i x[b, i] ⊛ w[o, i], (B, I, H, W) ⊛ (O, I, k1, k2) -> (B, O, H+k1-1, W+k2-1).

    True convolution (flipped kernel, as `fourier_conv2d` and the optics), so
    stacks compose by associativity. Real or complex (either operand).
    """
    if torch.is_complex(w) and not torch.is_complex(x):
        x = x.to(w.dtype)
    elif torch.is_complex(x) and not torch.is_complex(w):
        w = w.to(x.dtype)
    k1, k2 = w.shape[-2:]
    return F.conv2d(x, torch.flip(w, dims=(-2, -1)), padding=(k1 - 1, k2 - 1))


class LinearConvStack(nn.Module):
    """The L bias-free convolution layers; `collapse()` composes them into one kernel set.

    Complex weights are stored as real tensors with a trailing (re, im) axis, so
    `.double()`/`.float()`, optimisers and DDP treat them like any parameter.
    """

    def __init__(self, config: SCLCConfig) -> None:
        super().__init__()
        self.config = config
        weights = []
        cin = config.in_channels
        for cout, k in zip(config.channels, config.kernel_sizes, strict=True):
            shape = (cout, cin, k, k) + ((2,) if config.complex_kernels else ())
            # variance-preserving init: each layer keeps the signal's scale
            std = 1.0 / math.sqrt(cin * k * k * (2 if config.complex_kernels else 1))
            weights.append(nn.Parameter(torch.randn(shape) * std))
            cin = cout
        self.weights = nn.ParameterList(weights)

    def kernel(self, layer: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Layer weights (O, I, k, k), complex when configured, optionally cast."""
        w = self.weights[layer]
        if dtype is not None:
            w = w.to(dtype)
        return torch.view_as_complex(w.contiguous()) if self.config.complex_kernels else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The uncollapsed stack: L full convolutions, nothing in between."""
        for layer in range(len(self.weights)):
            x = full_conv2d(x, self.kernel(layer))
        return x

    def collapse(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One kernel per (output, input) channel pair, (K, C_in, S, S), S = Σ(k_l - 1) + 1.

        Pushes one impulse per input channel through the stack (batch = input
        channel), which composes the kernels by convolution:
        H[o, i] = Σ_j w2[o, j] ⊛ w1[j, i]. Differentiable; pass ``torch.float64``
        for an exact export.
        """
        w = self.weights[0] if dtype is None else self.weights[0].to(dtype)
        cin = self.config.in_channels
        h = torch.eye(cin, dtype=w.dtype, device=w.device).reshape(cin, cin, 1, 1)
        for layer in range(len(self.weights)):
            h = full_conv2d(h, self.kernel(layer, dtype))
        return h.transpose(0, 1)

    def optical_param_count(self) -> int:
        return sum(p.numel() for p in self.weights)


class SCLCFrontEnd(nn.Module):
    """The linear optical front end plus detection, in any of the four modes.

    `mode` may be changed at any time (train collapsed, evaluate through the
    twin). The optical modes need a single input channel (one input modulator)
    and an `OpticsConfig` (which bench profile gives the geometry).
    """

    def __init__(self, config: SCLCConfig | None = None, optics: OpticsConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SCLCConfig()
        self.stack = LinearConvStack(config)
        self.optics = OpticalPath(optics, config.detection) if optics is not None else None
        self._mode: str = config.mode
        self.mode = config.mode

    # -- configuration -----------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ModelConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if mode in ("optical", "optics_aware"):
            if self.optics is None:
                raise ModelConfigError(f"mode {mode!r} needs an OpticsConfig (the bench geometry)")
            if self.config.in_channels != 1:
                raise ModelConfigError(
                    f"mode {mode!r} needs in_channels = 1 (one input modulator), got {self.config.in_channels}"
                )
            if mode == "optics_aware" and self.config.detection == "linear":
                raise ModelConfigError("linear detection has no optics-aware path: a camera measures intensity")
        self._mode = mode

    @property
    def detection(self) -> str:
        return self.config.detection

    @property
    def out_channels(self) -> int:
        """Channels of the detected output (K; 2K for linear detection of a complex field)."""
        k = self.config.out_channels
        return 2 * k if self.config.detection == "linear" and self.config.complex_kernels else k

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        s = self.config.collapsed_size
        return (input_size[0] + s - 1, input_size[1] + s - 1)

    def collapsed_kernels(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(K, C_in, S, S): the kernels the masks implement."""
        return self.stack.collapse(dtype)

    def optical_param_count(self) -> int:
        return self.stack.optical_param_count()

    # -- computation ---------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return self.stack.weights[0].dtype

    def field(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """The linear response before detection (B, K, H', W'): the field (coherent,
        linear) or the signed intensity (incoherent). Linear in x, in every mode."""
        mode = mode or self.mode
        x = x.to(self._dtype())
        if mode == "stack":
            return self.stack(x)
        if mode == "collapsed":
            return full_conv2d(x, self.stack.collapse())
        if mode == "optical":
            assert self.optics is not None
            field = self.optics.field(x[:, 0], self.stack.collapse()[:, 0])
            # real kernels: the imaginary part is round-off (the twin drops no phase that matters)
            return field.real if torch.is_complex(field) and not self.config.complex_kernels else field
        raise ModelConfigError(f"mode {mode!r} has no noise-free linear field; use 'optical'")

    def forward(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Detected intensity per channel (B, out_channels, H + S - 1, W + S - 1)."""
        mode = mode or self.mode
        if mode in ("optical", "optics_aware") and self.config.detection != "linear":
            assert self.optics is not None
            x = x.to(self._dtype())
            kernels = self.stack.collapse()[:, 0]
            if mode == "optical":  # the camera's square law, applied by the twin
                return self.optics.detect(x[:, 0], kernels)
            return self.optics.measure(x[:, 0], kernels)
        return detect(self.field(x, mode), self.config.detection)

    def readout_flops(self, input_size: tuple[int, int]) -> int:
        """Electronic work per image between camera and back end: dark subtraction and
        scaling of every tile pixel, plus the pair subtraction of signed incoherent."""
        h, w = self.output_size(input_size)
        k = self.config.out_channels
        tiles = 2 * k if self.config.detection == "incoherent" else self.out_channels
        flops = 2 * tiles * h * w
        if self.config.detection == "incoherent":
            flops += k * h * w
        return flops

    def digital_flops(self, input_size: tuple[int, int]) -> int:
        """What the collapsed front end would cost done electronically (for comparison):
        a direct full convolution per channel pair, plus the square law."""
        h, w = self.output_size(input_size)
        s = self.config.collapsed_size
        per_pair = 2 * input_size[0] * input_size[1] * s * s
        if self.config.complex_kernels:
            per_pair *= 4
        return self.config.in_channels * self.config.out_channels * per_pair + 3 * self.out_channels * h * w

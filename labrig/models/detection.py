"""What the camera makes of the optical front end's output: the detection models.

- ``coherent``: the camera sees |field|^2 (the square law), the network's first
  nonlinearity; the input image is the field amplitude.
- ``incoherent``: the system is linear in intensity with a non-negative PSF
  |h|^2; the input image is the intensity. A signed kernel W is shown as two
  channels, PSFs relu(W) and relu(-W), subtracted electronically.
- ``linear``: the field itself, no square law (not measurable by a camera; the
  ablation that shows what the square law does). Complex fields become their
  real and imaginary parts as separate channels.
"""

from __future__ import annotations

from typing import Literal

import torch

Detection = Literal["coherent", "incoherent", "linear"]
DETECTIONS: tuple[str, ...] = ("coherent", "incoherent", "linear")


def intensity(field: torch.Tensor) -> torch.Tensor:
    """|field|^2 without the sqrt/abs (whose gradient is undefined at 0)."""
    if torch.is_complex(field):
        return field.real.square() + field.imag.square()
    return field.square()


def detect(field: torch.Tensor, detection: Detection) -> torch.Tensor:
    """Camera reading of a pre-detection response (B, K, H, W).

    For ``incoherent`` the response is already an intensity (input intensity
    convolved with the signed kernel: the PSF pair's difference), returned as is.
    """
    if detection == "coherent":
        return intensity(field)
    if detection == "linear":
        return torch.cat((field.real, field.imag), dim=1) if torch.is_complex(field) else field
    if detection == "incoherent":
        return field
    raise ValueError(f"unknown detection {detection!r}; expected one of {DETECTIONS}")


def psf_pair(kernels: torch.Tensor) -> torch.Tensor:
    """Signed real kernels (K, ...) -> non-negative PSFs (2K, ...): relu(W), relu(-W)."""
    return torch.cat((torch.relu(kernels), torch.relu(-kernels)), dim=0)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) gradient where x == 0: amplitude of a PSF."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def subtract_pairs(tiles: torch.Tensor) -> torch.Tensor:
    """(B, 2K, ...) readings of a PSF pair -> (B, K, ...) signed channels."""
    k = tiles.shape[1] // 2
    return tiles[:, :k] - tiles[:, k:]

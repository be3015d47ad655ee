"""Device and dtype choice in one place (``--device auto`` = CUDA when present)."""

from __future__ import annotations

import torch

from labrig.models.errors import ModelConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1', or a device."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ModelConfigError(f"unknown device {spec!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelConfigError(f"device {spec!r} asked for, but CUDA is not available here")
    return device


def resolve_dtype(spec: str | torch.dtype) -> torch.dtype:
    """'float32' / 'float64' (or the torch dtype itself)."""
    if isinstance(spec, torch.dtype):
        if spec not in DTYPES.values():
            raise ModelConfigError(f"dtype must be float32 or float64, got {spec}")
        return spec
    if spec not in DTYPES:
        raise ModelConfigError(f"dtype must be one of {list(DTYPES)}, got {spec!r}")
    return DTYPES[spec]

"""The named, differentiable imperfections of a bench.

One parameterisation serves three masters (DESIGN.md): the simulated bench's
hidden truth is a set of values for these parameters, calibration estimates
them, and the twin uses whatever it was given. A new imperfection is added
here and used in `system.Twin`, and so enters all three at once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from labrig.optics.aberrations import ZERNIKE_NAMES
from labrig.optics.specs import BenchGeometry


def ideal_phase_lut(levels: int, dtype=torch.float64) -> torch.Tensor:
    """Gray level g -> 2 pi g / levels: the LUT of a perfectly calibrated phase SLM."""
    return 2 * math.pi * torch.arange(levels, dtype=dtype) / levels


def gamma_phase_lut(levels: int, max_phase_rad: float, gamma: float, dtype=torch.float64) -> torch.Tensor:
    """A typical uncalibrated LCoS response: phase(g) = max_phase (g / levels) ** gamma."""
    g = torch.arange(levels, dtype=dtype) / levels
    return max_phase_rad * g**gamma


def ideal_intensity_lut(levels: int, dtype=torch.float64) -> torch.Tensor:
    """Gray level g -> intensity transmission g / (levels - 1)."""
    return torch.arange(levels, dtype=dtype) / (levels - 1)


def _param(value: Any, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(value, dtype=dtype).clone(), requires_grad=False)


class Imperfections(nn.Module):
    """Parameter values for every imperfection; `ideal()` gives a perfect bench.

    All are `nn.Parameter`s with ``requires_grad=False``: calibration turns on
    the ones it fits. Units are in the names (px = pixels of the plane named).
    """

    SCALARS = (
        "input_rotation_rad",
        "camera_rotation_rad",
        "camera_scale",
        "slm_crosstalk_px",
        "illumination_waist_m",
        "input_contrast",
        "camera_gain",
        "camera_offset_dn",
    )
    VECTORS = ("input_shift_px", "filter_shift_px", "camera_shift_px", "illumination_center_m", "zernike_rad")

    def __init__(self, geometry: BenchGeometry, dtype: torch.dtype = torch.float64, **values: Any) -> None:
        super().__init__()
        defaults: dict[str, Any] = {
            "input_shift_px": [0.0, 0.0],
            "input_rotation_rad": 0.0,
            "filter_shift_px": [0.0, 0.0],
            "camera_shift_px": [0.0, 0.0],
            "camera_rotation_rad": 0.0,
            "camera_scale": 1.0,
            "zernike_rad": [0.0] * len(ZERNIKE_NAMES),
            "slm_crosstalk_px": 0.0,
            "illumination_waist_m": math.inf,
            "illumination_center_m": [0.0, 0.0],
            "input_contrast": math.inf,
            "camera_gain": 1.0,
            "camera_offset_dn": 0.0,
        }
        unknown = set(values) - set(defaults) - {"slm_lut", "hot_pixels_e_per_s"}
        if unknown:
            raise ValueError(f"unknown imperfection(s): {sorted(unknown)}")
        for name, default in defaults.items():
            setattr(self, name, _param(values.get(name, default), dtype))
        lut = values.get("slm_lut")
        if lut is None:
            levels = geometry.filter.levels
            lut = ideal_phase_lut(levels) if geometry.filter.modulation == "phase" else ideal_intensity_lut(levels)
        self.slm_lut = _param(lut, dtype)
        hot = values.get("hot_pixels_e_per_s")
        self.register_buffer("hot_pixels_e_per_s", None if hot is None else torch.as_tensor(hot, dtype=dtype))

    @classmethod
    def ideal(cls, geometry: BenchGeometry, dtype: torch.dtype = torch.float64) -> Imperfections:
        return cls(geometry, dtype)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists/floats) for storing in calibration files and run snapshots."""
        out: dict[str, Any] = {}
        for name, p in self.named_parameters():
            out[name] = p.detach().cpu().tolist()
        if self.hot_pixels_e_per_s is not None:
            out["hot_pixel_count"] = int((self.hot_pixels_e_per_s > 0).sum())
        return out

"""A learned, smooth correction of the twin: what no named imperfection describes.

No model of a real bench is complete. After calibration a residual is left
that has no name in `labrig.optics.imperfections`: the SLM's flatness, pixel
apertures, aberrations beyond the Zernike set, an uneven relay. Camera-in-the-
loop holography (Peng et al., SIGGRAPH Asia 2020) and dual adaptive training
(Zheng et al., 2023) learn such a residual from the bench's frames; this is the
smallest version of that idea that still covers the usual suspects:

- a complex factor over the Fourier plane (log-amplitude and phase on a coarse
  grid, upsampled smoothly): what a flatness error, a pixel's sinc envelope or
  a higher aberration does to every mask alike;
- a power gain over the output plane (log-gain on a coarser grid): what an
  envelope across the camera does (the filter SLM's pixel aperture, vignetting).

Both start at exactly 1 (zero parameters), so a twin with an untrained residual
is the calibrated twin. Smoothness is the prior: the grids are coarse and the
upsampling bicubic, so a few hundred frames determine them
(`labrig.hil.residual_fit` fits them through the differentiable twin).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TwinResidual"]


def _upsample(coarse: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A coarse (gy, gx) map bicubically resampled to `shape`, corners on corners."""
    return F.interpolate(coarse[None, None], size=shape, mode="bicubic", align_corners=True)[0, 0]


class TwinResidual(nn.Module):
    """Fourier-plane complex factor and output-plane power gain, both smooth, both 1 at zero."""

    def __init__(self, fourier_grid: int = 32, output_grid: int = 8, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if fourier_grid < 2 or output_grid < 2:
            raise ValueError(f"residual grids must be >= 2 (got {fourier_grid}, {output_grid})")
        self.log_amplitude = nn.Parameter(torch.zeros(fourier_grid, fourier_grid, dtype=dtype))
        self.phase = nn.Parameter(torch.zeros(fourier_grid, fourier_grid, dtype=dtype))
        self.log_gain = nn.Parameter(torch.zeros(output_grid, output_grid, dtype=dtype))

    def fourier_factor(self, shape: tuple[int, int]) -> torch.Tensor:
        """exp(log-amplitude + i phase) over the (centred) Fourier plane of `shape`."""
        return torch.polar(torch.exp(_upsample(self.log_amplitude, shape)), _upsample(self.phase, shape))

    def output_gain(self, shape: tuple[int, int]) -> torch.Tensor:
        """exp(log-gain) over the (centred) output plane of `shape`."""
        return torch.exp(_upsample(self.log_gain, shape))

    def clone(self, dtype: torch.dtype | None = None, *, trainable: bool = False) -> TwinResidual:
        """An independent copy (a fit works on one; a frozen one rides along in another twin)."""
        out = TwinResidual.from_state(self.state(), dtype or self.phase.dtype)
        return out.requires_grad_(trainable)

    def state(self) -> dict[str, list]:
        """Plain lists (JSON, HDF5 attributes, a program's lineage)."""
        return {k: v.detach().cpu().tolist() for k, v in self.state_dict().items()}

    @classmethod
    def from_state(cls, state: dict[str, list], dtype: torch.dtype = torch.float32) -> TwinResidual:
        tensors = {k: torch.as_tensor(v, dtype=dtype) for k, v in state.items()}
        missing = {"log_amplitude", "phase", "log_gain"} - set(tensors)
        if missing:
            raise ValueError(f"twin residual state lacks {sorted(missing)}")
        out = cls(tensors["log_amplitude"].shape[-1], tensors["log_gain"].shape[-1], dtype)
        out.load_state_dict(tensors)
        return out

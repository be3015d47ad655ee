"""Moving sampled quantities between planes whose pixels do not line up.

Two operations, both linear and differentiable in their geometry:

* `AxisOverlap` - exact area integration between two 1-D pixel lattices
  (different pitch, offset, scale and fill factor). Applied per axis it maps a
  modulator's pixels onto the simulation grid, or the output plane onto camera
  pixels. It is banded, so it costs a few multiply-adds per output sample.
* `affine_warp` - bilinear resampling for rotation (which is not separable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: overlaps below this fraction of a cell are floating-point slivers of aligned
#: lattices (positions carry float error ~ eps * extent); physically meaningless
SLIVER = 1e-4


class AxisOverlap:
    """Overlap lengths between destination cells and source cells along one axis.

    Source cell j is centred at ``(j - n_src // 2) * d_src`` and is
    ``src_fill * d_src`` wide; destination cell i is centred at
    ``((i - n_dst // 2) * d_dst) * dst_scale + dst_origin`` and is
    ``dst_fill * d_dst * dst_scale`` wide. `weight[i, b]` is the overlap (metres)
    of cell i with source cell `index[i, b]`; tensors may carry gradients to
    `dst_origin` and `dst_scale`.
    """

    def __init__(
        self,
        n_src: int,
        d_src: float,
        n_dst: int,
        d_dst: float,
        *,
        src_fill: float = 1.0,
        dst_fill: float = 1.0,
        dst_origin: torch.Tensor | float = 0.0,
        dst_scale: torch.Tensor | float = 1.0,
        dtype: torch.dtype = torch.float64,
        device=None,
    ) -> None:
        origin = torch.as_tensor(dst_origin, dtype=dtype, device=device)
        scale = torch.as_tensor(dst_scale, dtype=dtype, device=device)
        centres = (torch.arange(n_dst, dtype=dtype, device=device) - n_dst // 2) * d_dst * scale + origin
        half_dst = 0.5 * dst_fill * d_dst * scale
        left, right = centres - half_dst, centres + half_dst
        half_src = 0.5 * src_fill * d_src
        band = math.ceil(float(dst_fill * d_dst * float(scale.detach().max())) / d_src) + 2
        first = torch.floor((left.detach() + half_src) / d_src + n_src // 2).long() - 1
        index = first[:, None] + torch.arange(band + 1, device=device)[None, :]
        src_c = (index.to(dtype) - n_src // 2) * d_src
        weight = torch.clamp(
            torch.minimum(right[:, None], src_c + half_src) - torch.maximum(left[:, None], src_c - half_src),
            min=0.0,
        )
        self._tol = SLIVER
        valid = (index >= 0) & (index < n_src) & (weight > self._tol * float(weight.detach().max()))
        self.weight = torch.where(valid, weight, torch.zeros_like(weight))
        self.index = index.clamp(0, n_src - 1)
        self.n_src = n_src
        self.placement = self._as_placement()

    def _as_placement(self) -> tuple[int, float] | None:
        """(c, w) when the map is out[i] = w * x[i + c] (aligned lattices of equal
        pitch): then `apply` pads or crops instead of gathering."""
        if self.weight.requires_grad:
            return None
        nonzero = self.weight != 0
        if bool((nonzero.sum(1) > 1).any()):
            return None
        rows = torch.nonzero(nonzero.any(1)).squeeze(1)
        if rows.numel() == 0:
            return None
        band = nonzero[rows].to(torch.int8).argmax(1)
        offsets = self.index[rows, band] - rows
        w = self.weight[rows, band]
        if not bool(torch.all(offsets == offsets[0])) or float((w - w[0]).abs().max()) > self._tol * float(w[0]):
            return None
        c = int(offsets[0])
        # every row whose source exists must carry the weight (no partial edges)
        expected = torch.arange(self.weight.shape[0]) + c
        inside = (expected >= 0) & (expected < self.n_src)
        if not bool(torch.equal(inside, nonzero.any(1))):
            return None
        return c, float(w.mean())

    def apply(self, x: torch.Tensor, dim: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        """sum_j W[i, j] x[..., j, ...] along `dim`, with W = `weight` or the overlaps.

        Loops over the few band columns that carry weight (one for aligned
        lattices), so no (..., n_dst, band) intermediate is built.
        """
        w = self.weight if weight is None else weight
        dim = dim % x.ndim
        if self.placement is not None and (weight is None or not weight.requires_grad):
            scale = self.placement[1] if weight is None else float(weight[weight != 0].mean())
            return _shift_axis(x, dim, self.placement[0], self.index.shape[0]) * scale
        real = x.real.dtype if torch.is_complex(x) else x.dtype
        w = w.to(real)
        shape = [1] * x.ndim
        shape[dim] = w.shape[0]
        out = None
        for b in self._active_bands(w):
            term = x.index_select(dim, self.index[:, b]) * w[:, b].reshape(shape)
            out = term if out is None else out + term
        if out is None:
            size = list(x.shape)
            size[dim] = w.shape[0]
            return x.new_zeros(size)
        return out

    def _active_bands(self, w: torch.Tensor) -> list[int]:
        if w.requires_grad:
            return list(range(w.shape[1]))
        return [b for b in range(w.shape[1]) if bool(torch.any(w[:, b] != 0))]

    def dense(self) -> torch.Tensor:
        """The (n_dst, n_src) matrix, for tests and small problems."""
        m = torch.zeros(self.index.shape[0], self.n_src, dtype=self.weight.dtype)
        m.scatter_add_(1, self.index, self.weight)
        return m


def _shift_axis(x: torch.Tensor, dim: int, offset: int, n_out: int) -> torch.Tensor:
    """out[i] = x[i + offset] along `dim`, zero where that index is outside x."""
    n_in = x.shape[dim]
    lo, hi = max(0, -offset), min(n_out, n_in - offset)
    if lo >= hi:
        size = list(x.shape)
        size[dim] = n_out
        return x.new_zeros(size)
    core = x.narrow(dim, lo + offset, hi - lo)
    pad = [0, 0] * (x.ndim - 1 - dim) + [lo, n_out - hi]
    return torch.nn.functional.pad(core, pad) if (lo or n_out - hi) else core


def affine_warp(
    x: torch.Tensor,
    shift_px: torch.Tensor | tuple[float, float] = (0.0, 0.0),
    rotation_rad: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Resample x (..., H, W) so that content moves by `shift_px` (rows, cols),
    rotates by `rotation_rad` (counter-clockwise in (col, row) axes) and scales
    by `scale` about the centre sample. Bilinear, zero outside; complex ok."""
    if torch.is_complex(x):
        re = affine_warp(x.real, shift_px, rotation_rad, scale)
        im = affine_warp(x.imag, shift_px, rotation_rad, scale)
        return torch.complex(re, im)
    h, w = x.shape[-2:]
    dtype, device = x.dtype, x.device
    shift = torch.as_tensor(shift_px, dtype=dtype, device=device)
    rot = torch.as_tensor(rotation_rad, dtype=dtype, device=device)
    s = torch.as_tensor(scale, dtype=dtype, device=device)
    # output pixel (r, c) samples input at A^-1 ((r, c) - centre - shift) + centre
    rows = torch.arange(h, dtype=dtype, device=device) - h // 2
    cols = torch.arange(w, dtype=dtype, device=device) - w // 2
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr - shift[0], cc - shift[1]
    cos, sin = torch.cos(rot), torch.sin(rot)
    src_c = (cos * cc + sin * rr) / s + w // 2
    src_r = (-sin * cc + cos * rr) / s + h // 2
    # grid_sample wants x, y in [-1, 1] with align_corners=True
    grid = torch.stack((2 * src_c / (w - 1) - 1, 2 * src_r / (h - 1) - 1), dim=-1)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    grid = grid.expand(flat.shape[0], h, w, 2)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, h, w)


def is_identity_warp(shift_px, rotation_rad, scale) -> bool:
    """True when a warp would change nothing and carries no gradient (skip it)."""
    params = [torch.as_tensor(shift_px), torch.as_tensor(rotation_rad), torch.as_tensor(scale) - 1]
    return all((not p.requires_grad) and bool(torch.all(p == 0)) for p in params)

"""Moving sampled quantities between planes whose pixels do not line up.

Two operations, both linear and differentiable in their geometry:

* `AxisOverlap` - exact area integration between two 1-D pixel lattices
  (different pitch, offset, scale and fill factor). Applied per axis it maps a
  modulator's pixels onto the simulation grid, or the output plane onto camera
  pixels. It is banded, so it costs a few multiply-adds per output sample.
* `affine_warp` - bilinear resampling for rotation (which is not separable).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

#: overlaps below this fraction of a cell are floating-point slivers of aligned
#: lattices (positions carry float error ~ eps * extent); physically meaningless
SLIVER = 1e-4
#: above this many slice runs a lattice map gathers instead (one gather per band)
_MAX_RUNS = 16


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
        self._runs: list[tuple[int, int, int, int]] | None = None
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

    def support(self) -> tuple[int, int]:
        """[lo, hi): the destination cells that receive any weight (everything else is 0)."""
        rows = torch.nonzero((self.weight.detach() != 0).any(1)).squeeze(1)
        if rows.numel() == 0:
            return 0, 0
        return int(rows[0]), int(rows[-1]) + 1

    def runs(self) -> list[tuple[int, int, int, int]]:
        """(band, lo, hi, offset): destination cells lo..hi-1 read source cell
        i + offset in band `band`. A lattice map is a few such runs (one per band
        for equal pitches), so `apply` multiplies shifted slices instead of gathering."""
        if self._runs is None:
            nonzero = (self.weight.detach() != 0).cpu().numpy()
            index = self.index.cpu().numpy()
            runs = []
            for b in range(nonzero.shape[1]):
                rows = np.flatnonzero(nonzero[:, b])
                if rows.size == 0:
                    continue
                offset = index[rows, b] - rows
                cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(offset) != 0)) + 1
                for lo, hi in zip(np.r_[0, cut], np.r_[cut, rows.size], strict=True):
                    runs.append((b, int(rows[lo]), int(rows[hi - 1]) + 1, int(offset[lo])))
            self._runs = runs
        return self._runs

    def apply(
        self, x: torch.Tensor, dim: int, weight: torch.Tensor | None = None, window: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """sum_j W[i, j] x[..., j, ...] along `dim`, with W = `weight` or the overlaps,
        for destination cells i in `window` = [lo, hi) (default: all of them).

        Each run of cells that reads a fixed shift of the source is one slice
        multiply-add, so no gather and no (..., n_dst, band) intermediate is built.
        """
        w = self.weight if weight is None else weight
        dim = dim % x.ndim
        lo, hi = (0, w.shape[0]) if window is None else window
        if self.placement is not None and (weight is None or not weight.requires_grad):
            scale = self.placement[1] if weight is None else float(weight[weight != 0].mean())
            shifted = _shift_axis(x, dim, self.placement[0] + lo, hi - lo)
            return shifted if scale == 1.0 else shifted * scale
        w = w.to(x.real.dtype if torch.is_complex(x) else x.dtype)
        size = list(x.shape)
        size[dim] = hi - lo
        shape = [1] * x.ndim
        runs = self.runs()
        if len(runs) > _MAX_RUNS:  # e.g. a pitch ratio of 2: every other cell shifts; gather per band
            shape[dim] = hi - lo
            out = x.new_zeros(size)
            for b in sorted({r[0] for r in runs}):
                out = out + x.index_select(dim, self.index[lo:hi, b]) * w[lo:hi, b].reshape(shape)
            return out
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            out = x.new_zeros(size)
            for b, r0, r1, c in runs:
                a, z = max(r0, lo), min(r1, hi)
                if a < z:
                    shape[dim] = z - a
                    out.narrow(dim, a - lo, z - a).addcmul_(x.narrow(dim, a + c, z - a), w[a:z, b].reshape(shape))
            return out
        # without gradients: the first run to reach a cell writes it (no zero-filled
        # frame first), later ones add; cells no run reaches are zeroed at the end
        out = x.new_empty(size)
        written = np.zeros(hi - lo, bool)
        for b, r0, r1, c in runs:
            a, z = max(r0, lo), min(r1, hi)
            if a >= z:
                continue
            seen = written[a - lo : z - lo]
            bounds = [0, *(np.flatnonzero(np.diff(seen.astype(np.int8))) + 1).tolist(), z - a]
            for s0, s1 in itertools.pairwise(bounds):
                shape[dim] = s1 - s0
                src = x.narrow(dim, a + s0 + c, s1 - s0)
                wb = w[a + s0 : a + s1, b].reshape(shape)
                dst = out.narrow(dim, a + s0 - lo, s1 - s0)
                if seen[s0]:
                    dst.addcmul_(src, wb)
                else:
                    torch.mul(src, wb, out=dst)
            written[a - lo : z - lo] = True
        for start, stop in _false_runs(written):
            out.narrow(dim, start, stop - start).zero_()
        return out

    def dense(self) -> torch.Tensor:
        """The (n_dst, n_src) matrix, for tests and small problems."""
        m = torch.zeros(self.index.shape[0], self.n_src, dtype=self.weight.dtype)
        m.scatter_add_(1, self.index, self.weight)
        return m


def _false_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of False in a boolean vector."""
    edges = np.diff(np.r_[0, (~flags).astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


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
    centre: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Resample x (..., H, W) so that content moves by `shift_px` (rows, cols),
    rotates by `rotation_rad` (counter-clockwise in (col, row) axes) and scales
    by `scale` about the centre sample (or `centre`, in array indices: a window
    of a bigger plane turns about that plane's axis). Bilinear, zero outside; complex ok."""
    if torch.is_complex(x):
        re = affine_warp(x.real, shift_px, rotation_rad, scale, centre)
        im = affine_warp(x.imag, shift_px, rotation_rad, scale, centre)
        return torch.complex(re, im)
    h, w = x.shape[-2:]
    cy, cx = (h // 2, w // 2) if centre is None else centre
    dtype, device = x.dtype, x.device
    shift = torch.as_tensor(shift_px, dtype=dtype, device=device)
    rot = torch.as_tensor(rotation_rad, dtype=dtype, device=device)
    s = torch.as_tensor(scale, dtype=dtype, device=device)
    # output pixel (r, c) samples input at A^-1 ((r, c) - centre - shift) + centre
    rows = torch.arange(h, dtype=dtype, device=device) - cy
    cols = torch.arange(w, dtype=dtype, device=device) - cx
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr - shift[0], cc - shift[1]
    cos, sin = torch.cos(rot), torch.sin(rot)
    src_c = (cos * cc + sin * rr) / s + cx
    src_r = (-sin * cc + cos * rr) / s + cy
    # grid_sample wants x, y in [-1, 1] with align_corners=True
    grid = torch.stack((2 * src_c / (w - 1) - 1, 2 * src_r / (h - 1) - 1), dim=-1)
    lead = x.shape[:-2]
    # frames as channels: the sample positions and weights are computed once per image
    # instead of once per frame (the same values); as many images as torch has threads,
    # because grid_sample spreads its images, not its channels, over the threads
    frames = math.prod(lead)
    images = max(d for d in range(1, min(torch.get_num_threads(), frames) + 1) if frames % d == 0) if frames else 1
    flat = x.reshape(images, -1, h, w)
    out = F.grid_sample(flat, grid.expand(images, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, h, w)


def rotated_window(
    window: tuple[int, int, int, int], shape: tuple[int, int], rotation_rad: float, centre: tuple[float, float]
) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) window of a `shape` plane that holds everything a
    bilinear rotation by `rotation_rad` about `centre` makes of content inside `window`:
    a point at distance d from the centre moves by 2 d sin(|angle| / 2), plus one sample
    for the interpolation footprint."""
    top, left, bottom, right = window
    corners = [(r - centre[0], c - centre[1]) for r in (top - 1, bottom) for c in (left - 1, right)]
    reach = max(math.hypot(r, c) for r, c in corners)
    grow = math.ceil(2 * reach * math.sin(min(abs(rotation_rad), math.pi) / 2)) + 2
    return (max(0, top - grow), max(0, left - grow), min(shape[0], bottom + grow), min(shape[1], right + grow))


def is_identity_warp(shift_px, rotation_rad, scale) -> bool:
    """True when a warp would change nothing and carries no gradient (skip it)."""
    params = [torch.as_tensor(shift_px), torch.as_tensor(rotation_rad), torch.as_tensor(scale) - 1]
    return all((not p.requires_grad) and bool(torch.all(p == 0)) for p in params)

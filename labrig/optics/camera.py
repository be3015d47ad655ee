"""The camera: area integration onto pixels, then photons -> electrons -> DN.

Detection is a square law: the camera sees power, never the field, which is
the first nonlinearity of a coherent optical network.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
from torch import nn

from labrig.optics.grid import Grid
from labrig.optics.resample import AxisOverlap, affine_warp, is_identity_warp
from labrig.optics.specs import CameraSpec

PixelRect = tuple[int, int, int, int]
"""A camera rectangle: top, left, bottom (exclusive), right (exclusive), in pixels."""


class CameraModel(nn.Module):
    """Integrates output-plane power onto camera pixels and converts it to DN.

    The camera is centred on the optical axis; `shift_px`, `rotation_rad` and
    `scale` describe its misalignment against the output plane (scale > 1:
    the image looks smaller on the camera).
    """

    def __init__(self, spec: CameraSpec, output_grid: Grid, photon_energy_j: float) -> None:
        super().__init__()
        self.spec = spec
        self.output_grid = output_grid
        self.photon_energy_j = float(photon_energy_j)

    def integrate(
        self,
        power: torch.Tensor,
        shift_px: torch.Tensor | None = None,
        rotation_rad: torch.Tensor | float = 0.0,
        scale: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """Power per camera pixel (W) from power per output-grid sample (..., N, N)."""
        dtype, device = power.dtype, power.device
        if not is_identity_warp((0.0, 0.0), rotation_rad, 1.0):
            power = affine_warp(power, (0.0, 0.0), -torch.as_tensor(rotation_rad), 1.0)
        shift = torch.zeros(2, dtype=dtype, device=device) if shift_px is None else shift_px.to(dtype)
        lin_fill = math.sqrt(self.spec.fill_factor)
        p = self.spec.pitch_m
        axes = []
        for d in (0, 1):
            d_src = self.output_grid.pitch_m[d]
            ov = AxisOverlap(
                self.output_grid.shape[d], d_src, self.spec.resolution[d], p,
                dst_fill=lin_fill, dst_origin=shift[d] * p, dst_scale=scale, dtype=dtype, device=device,
            )
            axes.append((ov, ov.weight / d_src))
        (oy, wy), (ox, wx) = axes
        return oy.apply(ox.apply(power, -1, wx), -2, wy)

    def placement(
        self, shift_px: torch.Tensor | None = None, rotation_rad: torch.Tensor | float = 0.0,
        scale: torch.Tensor | float = 1.0, dtype: torch.dtype = torch.float64,
    ) -> tuple[float, float] | None:
        """(col factor, row factor) when `integrate` maps every output sample onto the camera
        pixel of the same index times a constant (an aligned camera that samples the output
        grid one pixel per sample, no gradient through its geometry): then a pixel's power
        is its sample's, and a caller reading a few pixels needs only those samples
        (`integrate` = x * col factor, then * row factor). None otherwise."""
        if tuple(self.spec.resolution) != tuple(self.output_grid.shape):
            return None
        if not is_identity_warp((0.0, 0.0), rotation_rad, 1.0) or torch.as_tensor(scale).requires_grad:
            return None
        if shift_px is not None and shift_px.requires_grad:
            return None
        shift = torch.zeros(2, dtype=dtype) if shift_px is None else shift_px.detach().to(dtype)
        factors = []
        for d in (1, 0):
            d_src = self.output_grid.pitch_m[d]
            ov = AxisOverlap(
                self.output_grid.shape[d], d_src, self.spec.resolution[d], self.spec.pitch_m,
                dst_fill=math.sqrt(self.spec.fill_factor), dst_origin=shift[d] * self.spec.pitch_m,
                dst_scale=scale, dtype=dtype,
            )
            if ov.placement is None or ov.placement[0] != 0:
                return None
            weight = ov.weight / d_src
            factors.append(float(weight[weight != 0].mean()))  # as `AxisOverlap.apply` scales a placement
        return factors[0], factors[1]

    def mean_electrons(
        self, power_w: torch.Tensor, exposure_s: float, hot_pixels_e_per_s: torch.Tensor | None = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Expected photo-electrons plus dark electrons per pixel. `inplace` (no gradients,
        a float exposure): the same arithmetic into `power_w` itself (a renderer's own frame)."""
        c = self.spec.quantum_efficiency * exposure_s / self.photon_energy_j
        dark = self.spec.dark_current_e_per_s * exposure_s
        if inplace and not torch.is_grad_enabled() and isinstance(exposure_s, float | int):
            e = power_w.mul_(c).add_(dark)
            if hot_pixels_e_per_s is not None:
                e.add_(hot_pixels_e_per_s.to(e.dtype) * exposure_s)
            return e
        e = power_w * c
        e = e + dark
        if hot_pixels_e_per_s is not None:
            e = e + hot_pixels_e_per_s.to(e.dtype) * exposure_s  # exposure may be a tensor (per image)
        return e

    def to_dn(
        self, electrons: torch.Tensor, gain: float, gain_error: torch.Tensor | float = 1.0,
        offset_error_dn: torch.Tensor | float = 0.0, inplace: bool = False,
    ) -> torch.Tensor:
        """Full-well clip, conversion, gain and offset, ADC saturation (no rounding).
        `inplace` (no gradients): into `electrons` itself."""
        scale = self.spec.conversion_dn_per_e * gain * gain_error
        offset = self.spec.offset_dn + offset_error_dn
        if torch.is_grad_enabled():
            e = torch.clamp(electrons, max=self.spec.full_well_e)
            return (e * scale + offset).clamp(0, self.spec.max_dn)
        # the same arithmetic in place (the simulated bench renders without gradients)
        e = electrons.clamp_(max=self.spec.full_well_e) if inplace else torch.clamp(electrons, max=self.spec.full_well_e)
        return e.mul_(scale).add_(offset).clamp_(0, self.spec.max_dn)

    def sample_electrons(
        self, mean_e: torch.Tensor, generator: torch.Generator | None = None,
        region: Sequence[PixelRect] | None = None, inplace: bool = False,
    ) -> torch.Tensor:
        """Shot noise (exact Poisson counts) plus read noise (Gaussian, in electrons).

        `region`: the camera rectangles (top, left, bottom, right) a caller reads;
        noise is drawn there only and every other pixel keeps its mean (so its DN
        is the noise-free reading). None: the whole frame (a live view, a dark frame).
        `inplace` (with `region`, no gradients): the noisy pixels are written into
        `mean_e` itself instead of a copy of the frame.
        """
        if region is not None:
            # every rectangle's pixels in one contiguous gather: one draw, one scatter
            index = region_index(region, tuple(mean_e.shape[-2:]), mean_e.device)
            flat = mean_e.flatten(-2)
            noisy = self.sample_electrons(flat.index_select(-1, index), generator)
            if inplace and mean_e.is_contiguous() and not (torch.is_grad_enabled() and mean_e.requires_grad):
                flat.index_copy_(-1, index, noisy)  # `flat` is a view of `mean_e`
                return mean_e
            return flat.index_copy(-1, index, noisy).view(mean_e.shape)
        e = sample_poisson(mean_e.clamp_min(0), generator)
        read = torch.randn(mean_e.shape, generator=generator, dtype=mean_e.dtype, device=mean_e.device)
        return e.add_(read, alpha=self.spec.read_noise_e)

    def binned_electrons(
        self, mean_e: torch.Tensor, factor: int, *, mode: BinningMode = "charge", noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Electrons per binned pixel when the camera sums `factor`×`factor` pixels itself.

        Each pixel saturates on its own (full well), then the block's charge is summed.
        Shot noise is that of the summed charge (a sum of Poissons is Poisson). Read
        noise: ``charge`` binning (CCD, some CMOS) reads the summed charge once, so
        one read noise per binned pixel; ``digital`` binning (most CMOS: the sum after
        the ADC) reads every pixel, so factor² read noises add in quadrature. Rows and
        columns that do not fill a block are dropped, as cameras do.
        """
        summed = bin_sum(torch.clamp(mean_e, max=self.spec.full_well_e), factor)
        if not noise:
            return summed
        e = sample_poisson(summed.clamp_min(0), generator)
        reads = 1 if mode == "charge" else factor * factor
        read = torch.randn(summed.shape, generator=generator, dtype=summed.dtype, device=summed.device)
        return e.add_(read, alpha=self.spec.read_noise_e * math.sqrt(reads))

    def binned_snr(self, signal_e: float, factor: int, mode: BinningMode = "charge",
                   dark_e: float = 0.0) -> float:
        """Signal-to-noise ratio of one binned pixel for `signal_e` photo-electrons (and
        `dark_e` dark electrons) per camera pixel: shot noise plus read noise."""
        n = factor * factor
        reads = 1 if mode == "charge" else n
        signal = n * signal_e
        return signal / math.sqrt(n * (signal_e + dark_e) + reads * self.spec.read_noise_e**2)

    @staticmethod
    def quantize(dn: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Round to integer DN with a straight-through gradient (`inplace`, without one:
        into `dn` itself)."""
        if not dn.requires_grad:
            # the same values, without the gradient's two extra passes
            return dn.round_() if inplace and not torch.is_grad_enabled() else torch.round(dn)
        return dn + (torch.round(dn) - dn).detach()


BinningMode = Literal["charge", "digital"]
"""Where a camera sums a binned block: before the read-out (one read) or after the ADC."""


def bin_sum(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Sum of each `factor`×`factor` block of the last two axes (incomplete blocks dropped)."""
    if factor < 1:
        raise ValueError(f"binning factor must be >= 1, got {factor}")
    if factor == 1:
        return x
    rows, cols = x.shape[-2] // factor, x.shape[-1] // factor
    if rows < 1 or cols < 1:
        raise ValueError(f"binning {factor}x{factor} leaves no pixel of a {tuple(x.shape[-2:])} frame")
    x = x[..., : rows * factor, : cols * factor]
    return x.reshape(*x.shape[:-2], rows, factor, cols, factor).sum(dim=(-3, -1))


def binned_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """Pixels a `factor`×`factor`-binned read-out of a `size` window delivers."""
    return size[0] // factor, size[1] // factor


def region_index(region: Sequence[PixelRect], shape: tuple[int, int], device=None) -> torch.Tensor:
    """Flat indices (row * cols + col) of the pixels inside any of the rectangles, each once."""
    inside = torch.zeros(shape, dtype=torch.bool)
    for top, left, bottom, right in region:
        inside[max(top, 0) : bottom, max(left, 0) : right] = True
    return torch.nonzero(inside.flatten()).squeeze(1).to(device)


#: above this many means, `sample_poisson` draws in `POISSON_PARTS` independent parts
POISSON_SPLIT = 1 << 16
POISSON_PARTS = 2
_pool: ThreadPoolExecutor | None = None

#: `poisson_exact`'s table: means below `TABLE_MAX_MEAN` on a grid of 1 / `TABLE_STEPS_PER_E`,
#: uniforms on a grid of 1 / `TABLE_CELLS`; larger means go to `torch.poisson`
TABLE_MAX_MEAN = 64
TABLE_STEPS_PER_E = 64
TABLE_CELLS = 1024  # a power of two, at most 2**14 (`poisson_exact` draws cells as bits)
#: `sample_poisson` uses `poisson_exact` when at least this fraction of the means (a strided
#: sample of them) is below `TABLE_MAX_MEAN`; brighter sets go to `torch.poisson` whole
#: (measured: the `sim` frame, 83 % below, ~17 % faster by the table; its readout tiles,
#: 43 % below, ~18 % slower)
TABLE_MIN_FRACTION = 0.75
_TABLE_SENTINEL = 255  # "no bound": the top uniform cell (its quantile is unbounded)
_TABLE_LARGE = 254  # `settled` for the means `torch.poisson` draws
_WALK = 2  # `_settle`'s steps before it evaluates whole CDF rows
_SERIES = 7  # terms of `_settle`'s additivity series (the next: < 5e-17)
_CHUNK = 1 << 16  # elements per pass: every temporary stays in cache


@functools.lru_cache(maxsize=2)
def quantile_table(max_mean: int, steps_per_e: int, cells: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poisson quantiles on a grid, and where they settle a draw (flat, uint8).

    `low`, entry (b, j): the smallest k with j / cells < F(k; b / steps_per_e), F the
    Poisson CDF (float64, from the pmf). The quantile is non-decreasing in the mean and
    in u, so for a mean in [b, b + 1) / steps_per_e and u in [j, j + 1) / cells the
    exact draw lies between low (b, j) and low (b + 1, j + 1). `settled`, entry (b, j):
    that draw where the two bounds agree (always below `_TABLE_LARGE` here),
    `_TABLE_SENTINEL` where they do not; its last row (b = max_mean * steps_per_e, the
    bucket means at and above `max_mean` are clamped to) is `_TABLE_LARGE`: those
    means are drawn elsewhere. `cdf`, entry (b, _SERIES - 1 + k): F(k; b / steps_per_e)
    (float64; `_SERIES - 1` zeros, F of negative counts, lead each row), for `_settle`."""
    if cells & (cells - 1) or not 1 <= cells <= 1 << 14:
        raise ValueError(f"cells must be a power of two up to 2**14, got {cells}")
    rows = max_mean * steps_per_e
    lam = torch.arange(rows + 2, dtype=torch.float64) / steps_per_e
    k = torch.arange(_TABLE_SENTINEL + 1, dtype=torch.float64)
    log_pmf = k * torch.log(lam.clamp_min(1e-300))[:, None] - lam[:, None] - torch.lgamma(k + 1)
    log_pmf[0] = -math.inf
    log_pmf[0, 0] = 0.0  # mean 0: always 0
    cdf = torch.cumsum(torch.exp(log_pmf), 1)
    u = torch.arange(cells + 1, dtype=torch.float64) / cells
    low = torch.searchsorted(cdf, u.expand(len(lam), -1).contiguous(), right=True).clamp_(max=_TABLE_SENTINEL)
    low[:, cells] = _TABLE_SENTINEL  # u -> 1: no bound
    lo, hi = low[: rows + 1, :cells], low[1:, 1:]
    settled = torch.where(lo == hi, lo, _TABLE_SENTINEL)
    if int(settled[:rows].masked_fill(settled[:rows] == _TABLE_SENTINEL, 0).max()) >= _TABLE_LARGE:
        raise ValueError(f"max_mean {max_mean} is too large for a byte table")
    settled[rows] = _TABLE_LARGE
    return (low[: rows + 1, :cells].to(torch.uint8).reshape(-1), settled.to(torch.uint8).reshape(-1),
            torch.nn.functional.pad(cdf[: rows + 1].clamp_(max=1.0), (_SERIES - 1, 0)).reshape(-1))


def poisson_exact(mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact Poisson counts (CPU, non-negative means): inversion of the CDF, the same
    draw `min{k : u < F(k; mean)}` as a sequential search from one uniform u per pixel,
    cheaper than `torch.poisson` for means from ~0.3 up to `TABLE_MAX_MEAN` (~10 ns a
    pixel against 14-54 ns measured here), not for darker or brighter ones.

    u is drawn in two independent parts, its cell j (one of `TABLE_CELLS`, uniform) and
    its place in the cell (uniform), which together are a uniform u. Means below
    `TABLE_MAX_MEAN`: `quantile_table` settles the draw from the mean's bucket and j
    alone for most pixels (one byte lookup); where it does not (~2-3 %), the place in
    the cell is drawn and the CDF at the pixel's own mean decides (`_settle`). Larger
    means: `torch.poisson` (transformed rejection, exact), on the compacted set."""
    steps, cells = TABLE_STEPS_PER_E, TABLE_CELLS
    low, settled, cdf = quantile_table(TABLE_MAX_MEAN, steps, cells)
    top = TABLE_MAX_MEAN * steps  # the `_TABLE_LARGE` row: means that `torch.poisson` draws
    flat = mean.reshape(-1)
    if flat.numel() and not float(flat.min()) >= 0:  # one reduction; NaN fails too, as in torch.poisson
        raise ValueError("invalid Poisson rate, expected rate to be non-negative")
    out = torch.empty_like(flat)
    unsure: list[tuple[torch.Tensor, torch.Tensor]] = []
    large: list[torch.Tensor] = []
    for a in range(0, flat.numel(), _CHUNK):
        lam = flat[a : a + _CHUNK]
        # table position: the mean's bucket (truncation = floor, means are >= 0) plus a uniform
        # cell; the cells are the low bits of the four 16-bit lanes of uniform 62-bit integers
        # (independent uniform bits: a quarter of the generator calls of one integer per cell)
        n = lam.numel()
        bits = torch.randint(0, 1 << 62, ((n + 3) // 4,), generator=generator, device=lam.device)
        at = (lam * steps).clamp_(max=top).int().mul_(cells)
        at.add_(bits.view(torch.int16)[:n].bitwise_and(cells - 1))
        draw = settled.index_select(0, at)
        out[a : a + _CHUNK] = draw
        here = torch.nonzero(draw >= _TABLE_LARGE).squeeze(1)
        if here.numel():
            big = draw.index_select(0, here) == _TABLE_LARGE
            large.append(here[big] + a)
            here = here[~big]
            unsure.append((here + a, at.index_select(0, here)))
    if unsure:
        index, at = (torch.cat(parts) for parts in zip(*unsure, strict=True))
        at = at.long()
        u = torch.rand(index.shape, generator=generator, dtype=torch.float64, device=index.device)
        u.add_(at.remainder(cells)).div_(cells)
        _settle(flat, out, index, u, low.index_select(0, at), cdf, steps)
    if large:
        index = torch.cat(large)
        out.index_copy_(0, index, torch.poisson(flat.index_select(0, index), generator=generator))
    return out.view(mean.shape)


def _settle(flat: torch.Tensor, out: torch.Tensor, index: torch.Tensor, u: torch.Tensor, k: torch.Tensor,
            cdf: torch.Tensor, steps: int) -> None:
    """The exact draw `min{k >= low : u < F(k; mean)}` where the table does not settle it.

    F at the pixel's own mean from the grid's CDF below it (mean = m_b + r, 0 <= r <
    1 / steps) by Poisson additivity: F(k; m_b + r) = sum_i pmf(i; r) F(k - i; m_b), the
    terms falling as r^i / i!, so `_SERIES` terms leave under 5e-17 (float64 exact)."""
    lam = flat.index_select(0, index).to(torch.float64)
    bucket = (lam * steps).floor_()
    r = lam - bucket / steps
    weights = [torch.exp(-r)]  # pmf(i; r), i = 0 .. _SERIES - 1
    for i in range(1, _SERIES):
        weights.append(weights[-1] * (r / i))
    weights = torch.stack(weights)  # (_SERIES, n): every op runs along the pixels
    width = _SERIES - 1 + _TABLE_SENTINEL + 1
    row = bucket.long().mul_(width).add_(_SERIES - 1)  # F(0; m_b) of each pixel's row
    k = k.long()
    for _ in range(_WALK):  # most draws are the table's lower bound or the next count
        at = row + k
        f = cdf.index_select(0, at).mul_(weights[0])
        for i in range(1, _SERIES):
            f.addcmul_(cdf.index_select(0, at.sub_(1)), weights[i])
        below = f <= u
        more = torch.nonzero(below).squeeze(1)
        done = below.logical_not_()
        out[index[done]] = k[done].to(out.dtype)
        if not more.numel():
            return
        index, u, k, row = (t.index_select(0, more) for t in (index, u, k, row))
        weights = weights.index_select(1, more)
        k += 1
    # the rest (the end cells of u, where a bound is 0 or none): the whole CDF row at once
    counts = torch.arange(-(_SERIES - 1), _TABLE_SENTINEL + 1)
    rows = cdf.index_select(0, (row[:, None] + counts).reshape(-1)).view(len(k), -1)
    f = torch.zeros(len(k), _TABLE_SENTINEL + 1, dtype=torch.float64)  # F(k) for k = 0 .. 255
    for i in range(_SERIES):
        f.addcmul_(rows[:, _SERIES - 1 - i : _SERIES - 1 - i + _TABLE_SENTINEL + 1], weights[i][:, None])
    out.index_copy_(0, index, (f <= u[:, None]).sum(1).clamp_(max=_TABLE_SENTINEL).to(out.dtype))

def _poisson(mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """`poisson_exact` for a mostly dim set of means (a camera frame), `torch.poisson`
    otherwise (bright readout tiles, other devices and dtypes): the choice depends on
    the means alone, so a seed gives the same counts either way."""
    if mean.device.type != "cpu" or mean.dtype not in (torch.float32, torch.float64) or not mean.numel():
        return torch.poisson(mean, generator=generator)
    sample = mean.reshape(-1)[::97]
    if float((sample < TABLE_MAX_MEAN).sum()) < TABLE_MIN_FRACTION * sample.numel():
        return torch.poisson(mean, generator=generator)
    return poisson_exact(mean, generator)


def sample_poisson(mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact Poisson counts for non-negative means (any size; no normal shortcut).

    CPU: `poisson_exact` (inversion, one uniform per pixel) for mostly dim means,
    `torch.poisson` for bright ones (see `_poisson`). A large tensor is drawn in
    `POISSON_PARTS` parts, each from its own generator seeded from `generator`, on
    as many threads as torch has: the same counts for a seed whatever the thread
    count, exact Poisson either way."""
    n = mean.numel()
    if n < POISSON_SPLIT or mean.device.type != "cpu":
        return _poisson(mean, generator)
    seeds = torch.randint(0, 2**62, (POISSON_PARTS,), generator=generator).tolist()
    flat = mean.reshape(-1)
    out = torch.empty_like(flat)
    bounds = [n * i // POISSON_PARTS for i in range(POISSON_PARTS + 1)]

    def part(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        out[a:b] = _poisson(flat[a:b], torch.Generator().manual_seed(seeds[i]))

    if torch.get_num_threads() < 2:
        for i in range(POISSON_PARTS):
            part(i)
    else:
        global _pool
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POISSON_PARTS - 1, thread_name_prefix="labrig-poisson")
        pending = [_pool.submit(part, i) for i in range(1, POISSON_PARTS)]
        part(0)
        for f in pending:
            f.result()
    return out.view(mean.shape)

"""Putting K output channels on one camera: spatial tiles, or several frames.

Spatial multiplexing: each channel's kernel gets its own grating (a linear
phase on its spectrum) so its output lands on its own camera tile; the masks
are summed into one Fourier-plane pattern. Tiles must not overlap, nor touch
the zero order (light through the SLM's dead space images the input on the
axis) or the double-phase residuals (each half a grid from its tile). When they do not
fit, channels are split over several frames (time multiplexing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from labrig.optics.conv import kernel_to_mask
from labrig.optics.grid import Grid, fast_size


class LayoutError(ValueError):
    """The channels do not fit on the camera as asked; the message says why."""


Rect = tuple[int, int, int, int]  # top, left, bottom (excl.), right (excl.) in centred sample coords


def _rect(centre: tuple[int, int], shape: tuple[int, int]) -> Rect:
    top = centre[0] - shape[0] // 2
    left = centre[1] - shape[1] // 2
    return (top, left, top + shape[0], left + shape[1])


def _intersects(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class TileLayout:
    """Where each channel lands in the output plane, in output-grid samples.

    `offsets[k]` is the centre of tile k relative to the optical axis; a tile is
    `tile_shape` samples (the full linear-convolution size n + k - 1).
    """

    grid_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    offsets: tuple[tuple[int, int], ...]
    forbidden: tuple[Rect, ...] = ()

    @property
    def channels(self) -> int:
        return len(self.offsets)

    def rects(self) -> list[Rect]:
        return [_rect(o, self.tile_shape) for o in self.offsets]

    def check(self) -> None:
        """Raise `LayoutError` if tiles overlap, leave the grid or hit a forbidden zone."""
        half = (self.grid_shape[0] // 2, self.grid_shape[1] // 2)
        rects = self.rects()
        for k, r in enumerate(rects):
            if r[0] < -half[0] or r[1] < -half[1] or r[2] > self.grid_shape[0] - half[0] or r[3] > self.grid_shape[1] - half[1]:
                raise LayoutError(f"tile {k} at {self.offsets[k]} leaves the {self.grid_shape} output grid")
            for j in range(k):
                if _intersects(r, rects[j]):
                    raise LayoutError(f"tiles {j} and {k} overlap (centres {self.offsets[j]}, {self.offsets[k]})")
            for z in self.forbidden:
                if _intersects(r, z):
                    raise LayoutError(f"tile {k} at {self.offsets[k]} overlaps a forbidden zone {z}")

    def kernel_shifts(self) -> list[tuple[int, int]]:
        """Kernel displacement for each channel: the 4f inversion maps a kernel
        shifted by s to an output at -s (`multiplexed_mask` adds `tile_alignment`)."""
        return [(-o[0], -o[1]) for o in self.offsets]

    def extract(self, output: torch.Tensor) -> torch.Tensor:
        """Cut the tiles out of an output-plane array (..., N, N) -> (..., K, th, tw),
        already un-inverted so each tile reads like the convolution it computed
        (a tile holds the point-reflected full convolution exactly, so a flip undoes it)."""
        half = (output.shape[-2] // 2, output.shape[-1] // 2)
        tiles = [output[..., r[0] + half[0] : r[2] + half[0], r[1] + half[1] : r[3] + half[1]] for r in self.rects()]
        return torch.flip(torch.stack(tiles, dim=-3), dims=(-2, -1))

    def camera_rois(self, output_grid: Grid, camera_pitch_m: float, camera_shape: tuple[int, int]) -> list[Rect]:
        """Tile rectangles in camera pixel indices (top, left, bottom, right), for an
        aligned camera centred on the axis."""
        rois = []
        for r in self.rects():
            box = []
            for d, (lo, hi) in enumerate(((r[0], r[2]), (r[1], r[3]))):
                pitch = output_grid.pitch_m[d]
                a = (lo - 0.5) * pitch / camera_pitch_m + camera_shape[d] // 2 + 0.5
                b = (hi - 0.5) * pitch / camera_pitch_m + camera_shape[d] // 2 + 0.5
                box.append((_floor(a), _ceil(b)))
            rois.append((box[0][0], box[1][0], box[0][1], box[1][1]))
        return rois


def _floor(v: float, tol: float = 1e-6) -> int:
    """floor that ignores floating-point error of an exact integer."""
    return round(v) if abs(v - round(v)) < tol else math.floor(v)


def _ceil(v: float, tol: float = 1e-6) -> int:
    return round(v) if abs(v - round(v)) < tol else math.ceil(v)


def forbidden_zones(
    grid_shape: tuple[int, int], input_shape: tuple[int, int], zero_order: bool, residual: bool
) -> tuple[Rect, ...]:
    """Output regions no tile may touch.

    zero_order: the unmodulated image of the input on the axis (light through the
    SLM's dead space). residual: a double-phase mask sends every channel's
    encoding error half a grid away from its own tile (the checkerboard shifts it
    by N/2 in both axes), so tiles must stay inside the central half of the grid;
    the four returned bands cover the rest.
    """
    zones: list[Rect] = []
    if zero_order:
        zones.append(_rect((0, 0), (input_shape[0] + 2, input_shape[1] + 2)))
    if residual:
        hy, hx = grid_shape[0] // 2, grid_shape[1] // 2
        qy, qx = grid_shape[0] // 4, grid_shape[1] // 4
        zones += [
            (-hy, -hx, -qy, grid_shape[1] - hx),  # top band
            (grid_shape[0] - hy - qy, -hx, grid_shape[0] - hy, grid_shape[1] - hx),  # bottom band
            (-qy, -hx, grid_shape[0] - hy - qy, -qx),  # left band
            (-qy, grid_shape[1] - hx - qx, grid_shape[0] - hy - qy, grid_shape[1] - hx),  # right band
        ]
    return tuple(zones)


def plan_tiles(
    channels: int,
    grid_shape: tuple[int, int],
    tile_shape: tuple[int, int],
    *,
    input_shape: tuple[int, int] | None = None,
    gap: int = 2,
    avoid_zero_order: bool = False,
    avoid_residual: bool = False,
) -> TileLayout:
    """Place `channels` tiles on a centred lattice, nearest the axis first.

    Lattice spacing is tile + gap (the tile is already n + k - 1, the DESIGN's
    minimum spacing). Raises `LayoutError` saying how many fit otherwise.
    """
    if channels < 1:
        raise LayoutError("need at least one channel")
    zones = forbidden_zones(grid_shape, input_shape or tile_shape, avoid_zero_order, avoid_residual)
    step = (tile_shape[0] + gap, tile_shape[1] + gap)
    reach = (grid_shape[0] // (2 * step[0]) + 1, grid_shape[1] // (2 * step[1]) + 1)
    candidates = []
    # with an even count of tiles per axis the lattice is offset by half a step
    for parity in ((0.0, 0.0), (0.5, 0.5), (0.5, 0.0), (0.0, 0.5)):
        layout_points = []
        for i in range(-reach[0] - 1, reach[0] + 2):
            for j in range(-reach[1] - 1, reach[1] + 2):
                centre = (round((i + parity[0]) * step[0]), round((j + parity[1]) * step[1]))
                single = TileLayout(grid_shape, tile_shape, (centre,), zones)
                try:
                    single.check()
                except LayoutError:
                    continue
                layout_points.append(centre)
        layout_points.sort(key=lambda c: (c[0] ** 2 + c[1] ** 2, c))
        candidates.append(layout_points)
    best = max(candidates, key=lambda pts: (min(len(pts), channels), -sum(c[0] ** 2 + c[1] ** 2 for c in pts[:channels])))
    if len(best) < channels:
        raise LayoutError(
            f"{channels} tiles of {tile_shape} do not fit in a {grid_shape} output grid "
            f"(at most {len(best)} fit with gap {gap}); use time multiplexing"
        )
    chosen = sorted(best[:channels])
    layout = TileLayout(grid_shape, tile_shape, tuple(chosen), zones)
    layout.check()
    return layout


def tile_alignment(tile_shape: tuple[int, int], kernel_shape: tuple[int, int]) -> tuple[int, int]:
    """Extra kernel shift (0 or 1 samples per axis) that makes the inverted full
    convolution of an (L - k + 1)-sample image with a k-sample kernel fill its
    L-sample tile exactly (convolution sample m at tile index L - 1 - m): 0 when
    image and kernel are both odd along the axis, 1 otherwise."""
    out = []
    for size, k in zip(tile_shape, kernel_shape, strict=True):
        n = size - k + 1
        if n < 1:
            raise LayoutError(f"a {tuple(kernel_shape)} kernel does not fit a {tuple(tile_shape)} tile")
        out.append(n // 2 + k // 2 + size // 2 - size + 1)
    return (out[0], out[1])


def multiplexed_mask(kernels: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """One Fourier-plane mask for K kernels (..., K, k, k) -> (..., N, N): each kernel's
    spectrum times its grating, summed.

    The gratings shift by whole samples, so the sum of the K gratinged spectra is the
    spectrum of one plane holding every kernel at its shifted place (the DFT's shift
    theorem, circular as the DFT is): one transform per mask instead of one per kernel
    and no phase ramps (equal to `kernel_to_mask` per kernel, summed, to float rounding).
    """
    if kernels.shape[-3] != layout.channels:
        raise LayoutError(f"{kernels.shape[-3]} kernels for a layout of {layout.channels} tiles")
    k = tuple(kernels.shape[-2:])
    align = tile_alignment(layout.tile_shape, k)
    shifts = [(s[0] + align[0], s[1] + align[1]) for s in layout.kernel_shifts()]
    n = layout.grid_shape
    h = kernels if torch.is_complex(kernels) else kernels.to(
        torch.complex128 if kernels.dtype == torch.float64 else torch.complex64)
    device = kernels.device
    # kernel sample (a, b) of channel c sits at centre + shift + (a - k // 2, b - k // 2) of the
    # centred plane, i.e. at that minus the centre in the FFT order the transform reads
    # (`centered_fft2`'s ifftshift folded into the placement)
    shift = torch.tensor(shifts, dtype=torch.long, device=device)  # (K, 2)
    rows = (shift[:, 0, None] + torch.arange(k[0], device=device) - k[0] // 2) % n[0]  # (K, k0)
    cols = (shift[:, 1, None] + torch.arange(k[1], device=device) - k[1] // 2) % n[1]  # (K, k1)
    flat = (rows[:, :, None] * n[1] + cols[:, None, :]).reshape(-1)  # (K * k0 * k1,)
    plane = h.new_zeros((*h.shape[:-3], n[0] * n[1]))
    plane = plane.index_add(-1, flat, h.reshape(*h.shape[:-3], -1))  # overlapping kernels add
    spectrum = torch.fft.fft2(plane.reshape(*h.shape[:-3], *n), norm="ortho")
    return torch.fft.fftshift(spectrum, dim=(-2, -1)) * math.sqrt(n[0] * n[1])


def multiplexed_mask_reference(kernels: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """`multiplexed_mask` the long way (one `kernel_to_mask` with its grating per kernel,
    summed): the definition it is tested against."""
    align = tile_alignment(layout.tile_shape, tuple(kernels.shape[-2:]))
    shifts = [(s[0] + align[0], s[1] + align[1]) for s in layout.kernel_shifts()]
    masks = [kernel_to_mask(h, layout.grid_shape, shift) for h, shift in zip(kernels, shifts, strict=True)]
    return torch.stack(masks).sum(0)


def time_multiplex_groups(channels: int, per_frame: int) -> list[list[int]]:
    """Channel indices for each frame when at most `per_frame` fit on one frame."""
    if per_frame < 1:
        raise LayoutError("no channel fits on one frame")
    return [list(range(s, min(s + per_frame, channels))) for s in range(0, channels, per_frame)]


def fast_size_for_tiles(channels: int, n_input: int, kernel: int, gap: int = 2) -> int:
    """Smallest FFT-friendly square grid that holds `channels` tiles of an
    n_input image convolved with a kernel, clear of the zero order and the
    double-phase residual: the filter-SLM size a bench designer would pick."""
    tile = n_input + kernel - 1
    n = fast_size(tile)
    while True:
        try:
            plan_tiles(channels, (n, n), (tile, tile), input_shape=(n_input, n_input), gap=gap,
                       avoid_zero_order=True, avoid_residual=True)
            return n
        except LayoutError:
            n = fast_size(n + 1)

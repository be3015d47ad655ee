"""Spatial or time multiplexing, decided exactly as the student's optical path
decides it (`OpticalPath.plan`), with the reason written down for people."""

from __future__ import annotations

from labrig.deploy.program import Multiplexing
from labrig.models.optical import FramePlan, OpticalPath
from labrig.optics.multiplex import LayoutError, plan_tiles

__all__ = ["choose_multiplexing", "tile_capacity"]

#: never search for more tiles per frame than this
MAX_TILES = 256


def tile_capacity(
    grid_shape: tuple[int, int], tile_shape: tuple[int, int], image_shape: tuple[int, int], gap: int,
    limit: int = MAX_TILES,
) -> int:
    """Tiles of `tile_shape` one frame holds (up to `limit`), clear of the zero order and
    the double-phase residuals. Binary search: if n tiles fit, so do fewer."""

    def fits(n: int) -> bool:
        try:
            plan_tiles(n, grid_shape, tile_shape, input_shape=image_shape, gap=gap,
                       avoid_zero_order=True, avoid_residual=True)
        except LayoutError:
            return False
        return True

    lo, hi = 0, limit  # fits(lo) (trivially for 0); find the largest n <= limit that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def choose_multiplexing(
    path: OpticalPath, channels: int, image_shape: tuple[int, int], kernel_shape: tuple[int, int]
) -> tuple[FramePlan, Multiplexing]:
    """The physical frame plan of `path` for `channels` tiles, and why it is what it is."""
    plan = path.plan(channels, image_shape, kernel_shape, physical=True)
    grid = path.geometry.fourier_grid.shape
    tile = plan.layout.tile_shape
    capacity = tile_capacity(grid, tile, image_shape, path.config.gap)
    where = (f"the {grid[0]}x{grid[1]} filter grid holds {capacity} tiles of {tile[0]}x{tile[1]} "
             "clear of the zero order and the double-phase residuals")
    cfg = path.config
    if plan.frames == 1:
        mode, reason = "spatial", f"spatial multiplexing: all {channels} channels on one frame ({where})"
    elif cfg.layout == "per_channel":
        mode = "time"
        reason = (f"time multiplexing: {channels} frames of one channel, as the student's optics "
                  f"layout 'per_channel' asks ({where})")
    elif cfg.max_per_frame is not None and cfg.max_per_frame < min(capacity, channels):
        mode = "time"
        reason = (f"time multiplexing: {channels} channels in {plan.frames} frames of up to {plan.per_frame}: "
                  f"the student was trained with at most {cfg.max_per_frame} tiles per frame "
                  f"(max_per_frame, less double-phase crosstalk), although {where}")
    else:
        mode = "time"
        reason = (f"time multiplexing: {channels} channels in {plan.frames} frames of up to {plan.per_frame}, "
                  f"because {where}")
    return plan, Multiplexing(mode=mode, reason=reason, channels=channels, per_frame=plan.per_frame,
                              capacity=capacity, gap=cfg.gap)

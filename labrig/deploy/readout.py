"""Camera frames -> the back end's input, as the student's optical path reads them.

Cut one ROI per tile (un-inverted: the 4f system point-reflects each tile),
subtract the dark level, scale to the student's units (exposure, gain and the
per-frame mask normalisation undone; `OpticalPath.measure` does the same), apply
the compiler's per-tile correction when it fitted one (`labrig.deploy.correction`),
and subtract PSF pairs for signed incoherent kernels.
"""

from __future__ import annotations

import numpy as np
import torch

from labrig.deploy.correction import apply_correction
from labrig.deploy.program import Program

__all__ = ["TileReader"]


class TileReader:
    """One program's camera ROIs and per-channel dark level and scale, ready to apply."""

    def __init__(self, program: Program) -> None:
        ro, mux = program.readout, program.multiplexing
        th, tw = ro.tile_shape
        rois = np.asarray(ro.rois, dtype=np.int64).reshape(-1, 4)
        sizes = {(int(r[2] - r[0]), int(r[3] - r[1])) for r in rois}
        if sizes != {(th, tw)}:
            raise ValueError(f"camera ROIs {sorted(sizes)} do not match the {th}x{tw} tiles "
                             "(the camera must sample the output plane one pixel per sample)")
        self.rois = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rois]
        self.channels = mux.channels
        self.pair_subtract = ro.pair_subtract
        frame_of = np.arange(mux.channels) // mux.per_frame  # channel c is on frame c // per_frame
        self.dark = np.asarray(ro.dark_dn, dtype=np.float64)[frame_of].reshape(1, -1, 1, 1)
        self.scale = np.asarray(ro.scale, dtype=np.float64)[frame_of].reshape(1, -1, 1, 1)
        self.correction = ro.correction

    def cut(self, frames: np.ndarray) -> np.ndarray:
        """(B, F, H, W) frames -> (B, T, th, tw) raw tile DN (same dtype), un-inverted."""
        tiles = np.stack([frames[:, :, r[0] : r[2], r[1] : r[3]] for r in self.rois], axis=2)  # (B, F, P, th, tw)
        tiles = tiles.reshape(len(frames), -1, *tiles.shape[-2:])[:, : self.channels]
        return np.ascontiguousarray(tiles[..., ::-1, ::-1])  # the 4f system point-reflects each tile

    def signal(self, raw: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """(B, T, th, tw) raw DN -> back-end input (B, C, th, tw) in the student's units."""
        out = (raw.astype(dtype) - self.dark.astype(dtype)) * self.scale.astype(dtype)
        if self.correction:
            with torch.no_grad():
                out = apply_correction(torch.from_numpy(np.ascontiguousarray(out)), self.correction).numpy()
        if self.pair_subtract:
            k = out.shape[1] // 2
            out = out[:, :k] - out[:, k:]
        return out

"""Bench frames for a fine-tuning step: the current filter pattern shown, a batch grabbed, checked.

Each step shows the masks it is at (gray levels through the calibrated LUT),
then grabs one frame per image and frame group through `labrig.deploy`'s
`Acquirer` (the batched camera path where there is one). Every batch is
checked: a frame at the dark level, or taken while the light was made safe,
is never data (`LightLost`); too many saturated tile pixels raise
`SaturatedFrames`, which the trainer answers by lowering the exposure (before
training) or rolling the step back (during). Frames are counted, because a
bench charges for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from labrig.deploy.acquire import Acquirer
from labrig.deploy.inputs import gray_dtype
from labrig.deploy.program import Program, Readout
from labrig.deploy.readout import TileReader
from labrig.deploy.track import DriftTracker
from labrig.hil.errors import LightLost, SaturatedFrames

__all__ = ["BenchMeter", "rescale_exposure"]

#: fraction of tile pixels at full scale beyond which a batch is saturated
MAX_SATURATED = 2e-3
#: a pixel at this fraction of full scale counts as saturated (the response bends before the top)
SATURATION_LEVEL = 0.98
#: a lit batch rises this many DN above the dark level somewhere in its tiles
MIN_SIGNAL_DN = 16.0


def rescale_exposure(program: Program, readout: Readout, factor: float) -> Readout:
    """Every frame group's exposure times `factor`, with the dark level (dark current)
    and the scale (signal per DN) that go with it."""
    cam = program.bench_geometry().camera
    old = np.asarray(readout.exposure_s, dtype=np.float64)
    new = old * factor
    dark = np.asarray(readout.dark_dn) + cam.dark_current_e_per_s * (new - old) * cam.conversion_dn_per_e * readout.gain
    scale = np.asarray(readout.scale) / factor
    return dataclasses.replace(readout, exposure_s=tuple(map(float, new)), dark_dn=tuple(map(float, dark)),
                               scale=tuple(map(float, scale)))


class BenchMeter:
    """Shows filter gray levels, grabs a batch, returns checked raw tiles (B, T, th, tw)."""

    def __init__(self, bench: Any, program: Program, *, timeout_s: float = 1.0, retries: int = 2,
                 max_saturated: float = MAX_SATURATED) -> None:
        self.bench, self.program = bench, program
        self.reader = TileReader(program)
        self.readout = program.readout
        self.timeout_s, self.retries = timeout_s, retries
        self.max_saturated = max_saturated
        # full scale: the ADC's top, or the full well's reading when that comes first (nominal gain)
        cam = program.bench_geometry().camera
        well_dn = cam.offset_dn + cam.full_well_e * cam.conversion_dn_per_e * program.readout.gain
        self.full_scale_dn = SATURATION_LEVEL * min(2 ** int(bench.camera.bit_depth) - 1, well_dn)
        self.frames = 0
        self.device_s = 0.0
        #: the last batch: (filter gray, input gray, frames as taken); re-registration reuses its frames
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: the last batch's raw tiles (what `measure` returned)
        self.last_raw: np.ndarray | None = None
        #: the bench's drift against the twin: frames are moved back by it before the tiles are cut
        self.tracker = DriftTracker()

    def set_readout(self, readout: Readout) -> None:
        self.readout = readout

    def measure(self, filter_gray: np.ndarray, input_gray: np.ndarray) -> np.ndarray:
        """Raw tile DN (float32) for the filter pattern (F, N, N) and inputs (B, rows, cols)."""
        program = dataclasses.replace(
            self.program, readout=self.readout,
            filter=dataclasses.replace(self.program.filter, gray=np.asarray(filter_gray)))
        acquirer = Acquirer(self.bench, program, timeout_s=self.timeout_s, retries=self.retries)
        input_gray = np.asarray(input_gray).astype(gray_dtype(len(program.input.lut)))  # as the modulator takes them
        try:
            acquirer.prepare()
            self._check_light()
            frames = acquirer.acquire(input_gray)
            self._check_light()
        finally:
            self.frames += acquirer.frames
            self.device_s += acquirer.device_s
        raw = self.reader.cut(self.tracker.correct(frames))
        self.check(raw)
        self.last = (np.asarray(filter_gray), np.asarray(input_gray), frames)
        self.last_raw = raw.astype(np.float32)
        return self.last_raw

    def _check_light(self) -> None:
        bench = self.bench
        if (bench.laser is not None or bench.shutter is not None) and not bench.guard.armed:
            raise LightLost("the light is off (the bench was made safe): frames taken now are not data")

    def check(self, raw: np.ndarray) -> None:
        """Refuse dark batches (`LightLost`) and saturated ones (`SaturatedFrames`)."""
        dark = np.asarray(self.readout.dark_dn).max()
        if float(raw.max()) < dark + MIN_SIGNAL_DN:
            raise LightLost(f"no tile rises {MIN_SIGNAL_DN:g} DN above the dark level ({dark:.1f} DN): "
                            "is the shutter closed or the laser off? frames taken in the dark are not data")
        fraction = float(np.mean(raw >= self.full_scale_dn))
        if fraction > self.max_saturated:
            raise SaturatedFrames(f"{fraction:.2%} of the tile pixels are saturated (limit "
                                  f"{self.max_saturated:.2%})", fraction)

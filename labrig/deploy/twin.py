"""What the digital twin expects a program to give: frames, tile power, tiles.

Built from the program alone (its stored geometry and LUTs, and the calibrated
values of a program compiled through a calibration), so expected outputs can
be recomputed anywhere the program file is, without the profile or the
student. For a program compiled for the ideal bench this is the ideal twin
(with the truth off the simulated bench *is* it); for one compiled through a
calibration it is the calibrated twin: the bench as measured.
"""

from __future__ import annotations

import numpy as np
import torch

from labrig.deploy.calibrated import program_imperfections
from labrig.deploy.program import Program
from labrig.optics.imperfections import Imperfections
from labrig.optics.system import Twin

__all__ = ["ProgramTwin"]

#: images per twin forward pass (bounds memory: a 256² complex128 plane is 1 MiB)
CHUNK = 32


class ProgramTwin:
    """The twin of the program's bench (ideal, or as calibrated), showing the program's filter patterns."""

    def __init__(self, program: Program, dtype: torch.dtype = torch.float64,
                 imperfections: Imperfections | None = None) -> None:
        geometry = program.bench_geometry()
        if imperfections is None:
            imperfections = program_imperfections(program, geometry)
        if imperfections is None:
            imperfections = Imperfections(geometry, slm_lut=torch.as_tensor(program.filter.lut))
        self.program = program
        self.twin = Twin(geometry, imperfections, dtype=dtype)
        with torch.no_grad():
            self.twin.input_modulator.lut.copy_(torch.as_tensor(program.input.lut))
            self.prepared = [
                self.twin.prepare_mask(self.twin.filter_transmission(torch.from_numpy(g.astype(np.int64))))
                for g in program.filter.gray
            ]

    @torch.no_grad()
    def camera_power(self, input_gray: np.ndarray) -> np.ndarray:
        """(B, F, H, W) power per camera pixel (W) for input gray levels (B, rows, cols)."""
        twin, laser = self.twin, self.program.readout.laser_power_w
        out = []
        for s in range(0, len(input_gray), CHUNK):
            amplitude = twin.input_amplitude(torch.from_numpy(np.asarray(input_gray[s : s + CHUNK], np.int64)))
            out.append(torch.stack([
                twin.camera_power(twin.output_power_prepared(amplitude, p, laser)) for p in self.prepared
            ], dim=1).numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def frames(self, input_gray: np.ndarray) -> np.ndarray:
        """(B, F, H, W) noise-free camera frames (DN, integer-valued floats) at the program's settings.

        Each image's input field (its lit window) is built once and serves every frame
        group's mask; each group's stages after it are `Twin.frame_prepared`'s."""
        ro, twin = self.program.readout, self.twin
        out = []
        for s in range(0, len(input_gray), CHUNK):
            gray = torch.from_numpy(np.asarray(input_gray[s : s + CHUNK], np.int64))
            window, offset = twin.input_field_window(twin.input_amplitude(gray), ro.laser_power_w)
            out.append(torch.stack([
                twin.camera.quantize(twin.expected_dn(
                    twin.camera_power(twin.output_power_window(window, offset, p)), ro.exposure_s[f], ro.gain))
                for f, p in enumerate(self.prepared)
            ], dim=1).numpy())
        return np.concatenate(out)

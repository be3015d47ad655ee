"""The calibrated twin's tiles for a program, differentiable in the filter phase.

What `labrig.deploy.readout.TileReader` reads from bench frames, computed by the
twin instead: the program's input encoding, the filter phase quantised to the
SLM's (calibrated) LUT with a straight-through gradient, the twin's expected
camera DN at the program's exposures, the ROIs cut and un-inverted, dark
subtracted and scaled. Its vector-Jacobian product is the backward pass of
physics-aware training; its forward is the control arm's ("twin" mode).
"""

from __future__ import annotations

import numpy as np
import torch

from labrig.deploy.correction import apply_correction
from labrig.deploy.program import Program
from labrig.optics.system import Twin

__all__ = ["TwinTiles"]


class TwinTiles:
    """(phase (F, N, N), input gray (B, rows, cols)) -> back-end input (B, C, th, tw)."""

    def __init__(self, program: Program, twin: Twin) -> None:
        self.twin = twin
        self.program = program
        dtype, device = twin.dtype, twin.device
        with torch.no_grad():
            twin.input_modulator.lut.copy_(torch.as_tensor(program.input.lut))
        ro, mux = program.readout, program.multiplexing
        th, tw = ro.tile_shape
        rois = torch.as_tensor(np.asarray(ro.rois, dtype=np.int64).reshape(-1, 4), device=device)
        # the flip that undoes the 4f inversion is folded into the index order (TileReader.cut)
        self._rows = rois[:, 0:1] + torch.arange(th - 1, -1, -1, device=device)
        self._cols = rois[:, 1:2] + torch.arange(tw - 1, -1, -1, device=device)
        self.channels = mux.channels
        self.pair_subtract = ro.pair_subtract
        self.set_readout(ro)
        self.dtype = dtype

    def set_readout(self, readout) -> None:
        """Exposures, dark levels and scales (the exposure guard may change them)."""
        self.readout = readout
        mux = self.program.multiplexing
        frame_of = np.arange(mux.channels) // mux.per_frame
        kw = {"dtype": self.twin.dtype, "device": self.twin.device}
        self._exposure = torch.as_tensor(readout.exposure_s, **kw).reshape(-1, 1, 1)
        self._dark = torch.as_tensor(np.asarray(readout.dark_dn)[frame_of], **kw).reshape(1, -1, 1, 1)
        self._scale = torch.as_tensor(np.asarray(readout.scale)[frame_of], **kw).reshape(1, -1, 1, 1)
        # on the twin's device once, not copied there at every step
        self._correction = {k: torch.as_tensor(v, **kw) for k, v in readout.correction.items()}

    def cut(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W) -> (B, T, th, tw) tiles, un-inverted, as `TileReader.cut`."""
        tiles = frames[..., self._rows[:, :, None], self._cols[:, None, :]]  # (B, F, P, th, tw)
        return tiles.flatten(1, 2)[:, : self.channels]

    def signal(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw tile DN -> student units (dark subtracted, scaled, the readout's correction, pairs subtracted)."""
        out = apply_correction((raw - self._dark) * self._scale, self._correction)
        if self.pair_subtract:
            k = out.shape[1] // 2
            out = out[:, :k] - out[:, k:]
        return out

    def expected_dn(self, phase: torch.Tensor, input_gray: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W) noise-free camera DN (rounded with a straight-through gradient)."""
        twin = self.twin
        transmission = twin.filter_transmission_from_phase(phase.to(twin.dtype), quantize=True)
        prepared = twin.prepare_mask(transmission)  # (F, N, N)
        amplitude = twin.input_amplitude(torch.as_tensor(input_gray, device=twin.device).long())[:, None]
        power = twin.camera_power(twin.output_power_prepared(amplitude, prepared, self.readout.laser_power_w))
        return twin.camera.quantize(twin.expected_dn(power, self._exposure, self.readout.gain))

    def raw(self, phase: torch.Tensor, input_gray: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """Raw tile DN; with a generator, shot and read noise added (not differentiated)."""
        dn = self.cut(self.expected_dn(phase, input_gray))
        if noise is not None:
            dn = dn + self._noise_std(dn.detach()) * torch.randn(dn.shape, generator=noise, dtype=dn.dtype)
            dn = dn.clamp(0, self.twin.geometry.camera.max_dn)
        return dn

    def _noise_std(self, dn: torch.Tensor) -> torch.Tensor:
        spec, imp = self.twin.geometry.camera, self.twin.imperfections
        dn_per_e = spec.conversion_dn_per_e * self.readout.gain * imp.camera_gain.detach()
        electrons = ((dn - spec.offset_dn) / dn_per_e).clamp_min(0)
        return dn_per_e * torch.sqrt(electrons + spec.read_noise_e**2)

    def __call__(self, phase: torch.Tensor, input_gray: torch.Tensor,
                 noise: torch.Generator | None = None) -> torch.Tensor:
        return self.signal(self.raw(phase, input_gray, noise))

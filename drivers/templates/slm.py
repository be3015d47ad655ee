"""Template: a spatial light modulator driver for labrig (the filter SLM, or the input
modulator). Copy this file, rename `TemplateSLM`, and fill in every hook marked ``HW:``.

Register it under ``[project.entry-points."labrig.devices"]`` (``"acme.slm" =
"acme_labrig.slm:AcmeSLM"``) and name it in a bench profile::

    [devices.filter]
    kind = "acme.slm"
    display = 1                  # which screen or board
    resolution = [1152, 1920]    # rows, cols
    pitch_m = 9.2e-6
    bit_depth = 8
    modulation = "phase"         # or "amplitude" (an input modulator between polarisers)
    settle_s = 0.01              # liquid-crystal response: frames wait this long after a write

`drivers.base.SLM` checks each pattern's shape, dtype and gray-level range, keeps the
pattern shown and waits the settle time; `_show_hw` only sends the validated gray
levels. An input modulator that is not an SLM (a DMD, a micro-LED array) subclasses
`drivers.base.InputModulator` instead and implements `show` the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.base import SLM
from drivers.config import MODULATOR_KEYS, Section
from drivers.plugin import DeviceContext


class TemplateSLM(SLM):
    """An SLM on a vendor SDK or a screen (rename me)."""

    def __init__(self, display: int, **settings: Any) -> None:
        super().__init__(f"SLM {display}", **settings)
        self.display = display
        self._handle: Any = None  # the SDK's board or window, between _open_hw and _close_hw

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> TemplateSLM:
        """Build (not open) the SLM from its profile table; unknown keys are an error."""
        slm = cls(
            section.get_int("display", 0, min=0),
            resolution=section.get_shape("resolution"),
            pitch_m=section.get_float("pitch_m", positive=True),
            bit_depth=section.get_int("bit_depth", 8, min=1, max=16),
            modulation=section.get_str("modulation", "phase", choices=("phase", "amplitude")),
            settle_s=section.get_float("settle_s", 0.0, min=0.0),
        )
        section.accept(*MODULATOR_KEYS)  # fill_factor is the twin's
        section.check_unused()
        return slm

    def identity(self) -> dict[str, str]:
        # HW (optional): ask the device for vendor, model, serial and firmware.
        return {"vendor": "unknown", "model": type(self).__name__, "serial": str(self.display)}

    # -- hardware hooks -------------------------------------------------------------------------
    def _open_hw(self) -> None:
        # HW: open the board or the full-screen window on `self.display`, check its size
        #     against `resolution` (DeviceError naming both when they differ), and load the
        #     vendor's wavefront correction if it has one. Show a blank pattern.
        raise NotImplementedError("HW: _open_hw")

    def _close_hw(self) -> None:
        # HW: blank the SLM and release the board or window; must not fail twice.
        raise NotImplementedError("HW: _close_hw")

    def _show_hw(self, pattern: np.ndarray) -> None:
        # HW: write the (rows, cols) gray levels (uint8, or uint16 above 8 bits; already
        #     checked) and return once the frame is on the panel. Raise DeviceError when
        #     the write fails: a run never takes a frame with the wrong pattern shown.
        raise NotImplementedError("HW: _show_hw")

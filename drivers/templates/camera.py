"""Template: a camera driver for labrig. Copy this file, rename `TemplateCamera`, and fill in
every hook marked ``HW:``; nothing else needs to change.

Register it in your package's ``pyproject.toml``::

    [project.entry-points."labrig.devices"]
    "acme.camera" = "acme_labrig.camera:AcmeCamera"

and name it in a bench profile::

    [devices.camera]
    kind = "acme.camera"
    serial = "12345"
    resolution = [1080, 1440]    # rows, cols
    bit_depth = 12
    pitch_m = 3.45e-6
    exposure_range_s = [1e-5, 1.0]
    gain_range = [1.0, 16.0]

`drivers.base.Camera` checks exposure and gain against their ranges, the frame's
shape against `resolution`, and that the device is open; the hooks only talk to
the hardware. Raise `drivers.errors` types (`DeviceTimeout`, `DeviceDisconnected`,
`DeviceError`) so a run retries or stops the right way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.base import Camera
from drivers.config import CAMERA_KEYS, Section
from drivers.plugin import DeviceContext


class TemplateCamera(Camera):
    """A camera on a vendor SDK (rename me)."""

    def __init__(self, serial: str, **settings: Any) -> None:
        super().__init__(f"camera {serial}".strip(), **settings)
        self.serial = serial
        self._handle: Any = None  # the SDK's camera object, between _open_hw and _close_hw

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> TemplateCamera:
        """Build (not open) the camera from its profile table; every key is checked here, so a
        typo is an error naming the key and the file, before any hardware is touched."""
        camera = cls(
            section.get_str("serial", ""),
            resolution=section.get_shape("resolution"),
            bit_depth=section.get_int("bit_depth", 12, min=1, max=16),
            pixel_pitch_m=section.get_float("pitch_m", positive=True),
            exposure_bounds_s=section.get_range("exposure_range_s", [1e-5, 1.0]),
            gain_bounds=section.get_range("gain_range", [1.0, 1.0]),
        )
        section.accept(*CAMERA_KEYS)  # the optics keys (quantum efficiency, ...) are the twin's
        section.check_unused()
        return camera

    def identity(self) -> dict[str, str]:
        # HW (optional): ask the device for vendor, model, serial and firmware.
        return {"vendor": "unknown", "model": type(self).__name__, "serial": self.serial}

    # -- hardware hooks -------------------------------------------------------------------------
    def _open_hw(self) -> None:
        # HW: connect to the camera (e.g. ``self._handle = sdk.open(self.serial)``), set a
        #     software trigger, and check the sensor against `resolution` and `bit_depth`
        #     (raise DeviceError naming both when they differ). Then send the current
        #     `self.exposure_s` and `self.gain`: they were set before the device was open.
        raise NotImplementedError("HW: _open_hw")

    def _close_hw(self) -> None:
        # HW: stop acquisition and release the camera; must not fail on a half-open device.
        raise NotImplementedError("HW: _close_hw")

    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        # HW: trigger and wait up to `timeout_s` for one frame; return it as a (rows, cols)
        #     integer array. Raise DeviceTimeout when none comes, FrameDropped for an
        #     incomplete frame, DeviceDisconnected when the camera is gone.
        raise NotImplementedError("HW: _grab_hw")

    def _set_exposure_hw(self, exposure_s: float) -> None:
        # HW: send the exposure time in seconds (already checked against exposure_range_s).
        raise NotImplementedError("HW: _set_exposure_hw")

    def _set_gain_hw(self, gain: float) -> None:
        # HW: send the analogue gain (linear factor, already checked against gain_range).
        raise NotImplementedError("HW: _set_gain_hw")

"""Template: a beam shutter driver for labrig. Copy this file, rename `TemplateShutter`,
and fill in every hook marked ``HW:``. Closed is the safe state: the safety guard
closes it on every exit path (and before it enables a laser, asks `confirm_closed`).

Register it under ``[project.entry-points."labrig.devices"]`` (``"acme.shutter" =
"acme_labrig.shutter:AcmeShutter"``) and name it in a bench profile::

    [devices.shutter]
    kind = "acme.shutter"
    port = "/dev/ttyUSB0"
    timeout_s = 0.5
"""

from __future__ import annotations

from typing import Any

from drivers.base import Shutter
from drivers.config import Section
from drivers.plugin import DeviceContext


class TemplateShutter(Shutter):
    """A shutter on a serial port or a vendor SDK (rename me)."""

    def __init__(self, port: str, timeout_s: float = 0.5) -> None:
        super().__init__(f"shutter {port}")
        self.port = port
        self.timeout_s = timeout_s
        self._handle: Any = None  # the open port or SDK object

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> TemplateShutter:
        """Build (not open) the shutter from its profile table; unknown keys are an error."""
        shutter = cls(section.get_str("port"), section.get_float("timeout_s", 0.5, positive=True))
        section.check_unused()
        return shutter

    def identity(self) -> dict[str, str]:
        # HW (optional): ask the controller for its model, serial and firmware.
        return {"vendor": "unknown", "model": type(self).__name__, "serial": self.port}

    # -- hardware hooks -------------------------------------------------------------------------
    def _open_hw(self) -> None:
        # HW: open the port (e.g. ``self._handle = serial.Serial(self.port, timeout=...)``),
        #     check the controller answers as this model (DeviceError if not), and close
        #     the beam: a bench starts dark.
        raise NotImplementedError("HW: _open_hw")

    def _close_hw(self) -> None:
        # HW: close the beam first (``self._set_shutter_hw(False)``), then release the port,
        #     even when closing the beam failed.
        raise NotImplementedError("HW: _close_hw")

    def _set_shutter_hw(self, open_: bool) -> None:
        # HW: open (True) or close (False) the beam; raise DeviceError if the controller
        #     refuses or does not answer within `timeout_s`.
        raise NotImplementedError("HW: _set_shutter_hw")

    def _closed_hw(self) -> bool:
        # HW: ask the controller whether the beam is blocked (a position sensor); without
        #     one, return ``not self.shutter_open`` (the last command).
        raise NotImplementedError("HW: _closed_hw")

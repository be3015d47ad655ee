"""Template: a laser controller driver for labrig. Copy this file, rename `TemplateLaser`,
and fill in every hook marked ``HW:``. Off is the safe state: the safety guard turns
emission off on every exit path, and `drivers.base.LaserController` checks the power
set-point against `power_range_w` before `_set_power_hw` sees it.

Register it under ``[project.entry-points."labrig.devices"]`` (``"acme.laser" =
"acme_labrig.laser:AcmeLaser"``) and name it in a bench profile::

    [devices.laser]
    kind = "acme.laser"
    port = "/dev/ttyACM0"
    power_range_w = [0.0, 0.05]
    power_w = 0.01               # set when the bench opens (emission stays off)
"""

from __future__ import annotations

from typing import Any

from drivers.base import LaserController
from drivers.config import Section
from drivers.plugin import DeviceContext


class TemplateLaser(LaserController):
    """A laser on a serial port or a vendor SDK (rename me)."""

    def __init__(self, port: str, power_w: float, power_bounds_w: tuple[float, float]) -> None:
        super().__init__(f"laser {port}", power_bounds_w=power_bounds_w)
        self.port = port
        self._initial_power_w = power_w
        self._handle: Any = None  # the open port or SDK object

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> TemplateLaser:
        """Build (not open) the laser from its profile table; unknown keys are an error."""
        bounds = section.get_range("power_range_w", [0.0, 0.001])
        power = section.get_float("power_w", bounds[0])
        if not bounds[0] <= power <= bounds[1]:
            raise section.error("power_w", f"{power:g} W is outside power_range_w [{bounds[0]:g}, {bounds[1]:g}]")
        laser = cls(section.get_str("port"), power, bounds)
        section.check_unused()
        return laser

    def identity(self) -> dict[str, str]:
        # HW (optional): ask the controller for its model, serial, wavelength and firmware.
        return {"vendor": "unknown", "model": type(self).__name__, "serial": self.port}

    # -- hardware hooks -------------------------------------------------------------------------
    def _open_hw(self) -> None:
        # HW: open the port, check the controller answers as this model (DeviceError if not),
        #     switch emission off, then send the configured set-point:
        #     ``self._set_power_hw(self._initial_power_w); self._power_w = self._initial_power_w``.
        raise NotImplementedError("HW: _open_hw")

    def _close_hw(self) -> None:
        # HW: switch emission off (``self._enable_hw(False)``), then release the port, even
        #     when switching off failed.
        raise NotImplementedError("HW: _close_hw")

    def _enable_hw(self, on: bool) -> None:
        # HW: switch emission on or off; raise SafetyError when the controller refuses to
        #     switch on (interlock open, key off), DeviceError when it does not answer.
        raise NotImplementedError("HW: _enable_hw")

    def _set_power_hw(self, power_w: float) -> None:
        # HW: send the power set-point in watts (already checked against power_range_w).
        raise NotImplementedError("HW: _set_power_hw")

    def _interlock_hw(self) -> bool:
        # HW: whether the interlock is closed (emission allowed); True if it has none.
        raise NotImplementedError("HW: _interlock_hw")

    def _measured_power_hw(self) -> float:
        # HW: the power the controller measures, in watts (0 with emission off).
        raise NotImplementedError("HW: _measured_power_hw")

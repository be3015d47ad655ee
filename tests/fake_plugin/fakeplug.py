"""Fake devices for the bench tests, installed as a real distribution (see conftest.py).

Every hardware action is appended to `EVENTS` ("laser.open", "laser.enable", ...)
so tests can check order and what was left on. Any device fails in `open` when
its profile table says ``fail_open = true`` (a DeviceError) or ``fail_open_runtime = true``
(a foreign exception), and in `from_config` with ``fail_build = true``; the laser fails to switch off with
``fail_disable = true``. The camera sees light only when the laser is on and the
shutter open, so a test can tell that a frame was taken armed.
"""

from __future__ import annotations

import numpy as np

from drivers.base import SLM, Camera, Device, LaserController, Shutter
from drivers.config import Section
from drivers.errors import DeviceError
from drivers.plugin import DeviceContext

EVENTS: list[str] = []
INSTANCES: dict[str, Device] = {}


class _Fake:
    """Mixin: records events, optionally fails to open, registers itself for the tests."""

    fail_open = False
    fail_open_runtime = False
    tag = "fake"

    def _event(self, what: str) -> None:
        EVENTS.append(f"{self.tag}.{what}")

    def _open_hw(self) -> None:
        self._event("open")
        if self.fail_open:
            raise DeviceError(f"{self.tag}: simulated failure to open")
        if self.fail_open_runtime:
            raise RuntimeError("vendor SDK error 0x42")

    def identity(self) -> dict[str, str]:
        return {"vendor": "fakeplug", "model": type(self).__name__, "serial": "0001"}

    @classmethod
    def _setup(cls, dev: _Fake, section: Section, context: DeviceContext) -> _Fake:
        dev.tag = context.role
        if section.get_bool("fail_build", False):
            raise ValueError("a driver bug while reading its table")
        dev.fail_open = section.get_bool("fail_open", False)
        dev.fail_open_runtime = section.get_bool("fail_open_runtime", False)
        context.shared[context.role] = dev
        INSTANCES[context.role] = dev  # type: ignore[assignment]
        return dev


class FakeLaser(_Fake, LaserController):
    fail_disable = False

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> FakeLaser:
        dev = cls(power_bounds_w=(0.0, 0.1))
        dev.interlock = section.get_bool("interlock", True)
        dev.fail_disable = section.get_bool("fail_disable", False)
        return cls._setup(dev, section, context)  # type: ignore[return-value]

    def _enable_hw(self, on: bool) -> None:
        self._event("enable" if on else "disable")
        if not on and self.fail_disable:
            raise DeviceError("laser: simulated failure to switch off")

    def _set_power_hw(self, power_w: float) -> None:
        self._event(f"power={power_w}")

    def _interlock_hw(self) -> bool:
        return self.interlock

    def _close_hw(self) -> None:
        self._event("close")
        super()._close_hw()


class FakeShutter(_Fake, Shutter):
    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> FakeShutter:
        return cls._setup(cls(), section, context)  # type: ignore[return-value]

    def _set_shutter_hw(self, open_: bool) -> None:
        self._event("open_shutter" if open_ else "close_shutter")

    def _close_hw(self) -> None:
        self._event("close")
        super()._close_hw()


class FakeSLM(_Fake, SLM):
    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> FakeSLM:
        dev = cls(resolution=section.get_shape("resolution", [4, 4]), pitch_m=8e-6)
        return cls._setup(dev, section, context)  # type: ignore[return-value]

    def _show_hw(self, pattern: np.ndarray) -> None:
        self._event("show")

    def _close_hw(self) -> None:
        self._event("close")


class FakeCamera(_Fake, Camera):
    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> FakeCamera:
        dev = cls(resolution=section.get_shape("resolution", [6, 8]),
                  bit_depth=section.get_int("bit_depth", 12), pixel_pitch_m=5e-6)
        dev.shared = context.shared
        return cls._setup(dev, section, context)  # type: ignore[return-value]

    def _lit(self) -> bool:
        laser, shutter = self.shared.get("laser"), self.shared.get("shutter")
        return bool((laser is None or laser.enabled) and (shutter is None or shutter.shutter_open))

    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        self._event("grab")
        level = self.max_value - 5 if self._lit() else 3
        frame = np.full(self.resolution, level, dtype=np.uint16)
        frame[0, 0] = 0
        return frame

    def _close_hw(self) -> None:
        self._event("close")


class NotADevice:
    """Registered as a kind, but not a drivers.base.Device."""

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> NotADevice:
        return cls()


class NoFactory(Device):
    """A Device without from_config."""

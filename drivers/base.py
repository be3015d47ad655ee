"""Device protocols shared by real drivers (`drivers/vendors/`) and simulated ones (`sim_backend/`).

Modelled on slmsuite's base classes: the public methods here validate, keep
state and raise the errors of `drivers.errors`; a driver only fills in small
`_*_hw` hooks that talk to the hardware. So bounds checks, shape checks and
idempotent close behave the same on every device. A new driver starts from
the copy-me templates in `drivers/templates/`.

The roles a bench fills: `LaserController`, `Shutter`, an `InputModulator`
(anything that shows gray-level patterns in the input plane: an `SLM`, a DMD,
a micro-LED array), the filter `SLM` and the `Camera`. A capability beyond a
role (`BatchCamera`: one frame per input pattern in one call) is a protocol a
driver declares by subclassing it, and callers test it with ``isinstance``,
never by looking for a method.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from drivers.errors import (
    DeviceError,
    DeviceNotOpen,
    OutOfRange,
    PatternError,
)

__all__ = ["SLM", "BatchCamera", "Camera", "Device", "InputModulator", "LaserController", "Shutter", "describe"]


class Device(ABC):  # noqa: B024 - abstract hooks live in the subclasses
    """A device that is opened, used and closed; a context manager.

    `close()` is idempotent and never raises for an already closed device, so
    it is safe on every failure path.
    """

    #: the device role it can fill ("camera", "slm", "shutter", "laser")
    role: ClassVar[str] = "device"

    def __init__(self, name: str = "") -> None:
        self.name = name or type(self).__name__
        self._is_open = False

    # -- lifecycle -------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> Device:
        """Connect to the hardware; opening an open device is a no-op."""
        if not self._is_open:
            self._open_hw()
            self._is_open = True
        return self

    def close(self) -> None:
        """Disconnect; safe to call twice and after a failure."""
        if self._is_open:
            try:
                self._close_hw()
            finally:
                self._is_open = False

    def __enter__(self) -> Device:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if not self._is_open:
            raise DeviceNotOpen(f"{self.name}: device is not open")

    # -- description -----------------------------------------------------------
    def identity(self) -> dict[str, str]:
        """Vendor, model, serial and firmware, as far as the device tells."""
        return {"vendor": "unknown", "model": type(self).__name__, "serial": ""}

    def settings(self) -> dict[str, Any]:
        """A snapshot of every setting that affects a measurement (stored with runs)."""
        return {}

    # -- hooks -----------------------------------------------------------------
    def _open_hw(self) -> None:  # noqa: B027 - optional hook
        """Connect to the hardware."""

    def _close_hw(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware."""


def _check_bounds(name: str, what: str, value: float, bounds: tuple[float, float]) -> float:
    value = float(value)
    lo, hi = bounds
    if not np.isfinite(value) or not (lo <= value <= hi):
        raise OutOfRange(f"{name}: {what} {value!r} is outside [{lo:g}, {hi:g}]")
    return value


class Camera(Device):
    """An area camera that returns 2-D integer frames.

    Subclasses set `resolution` (rows, cols), `bit_depth`, `pixel_pitch_m`,
    `exposure_bounds_s`, `gain_bounds` (before or during `_open_hw`) and
    implement `_grab_hw`; exposure and gain hooks are optional.
    """

    role: ClassVar[str] = "camera"

    def __init__(
        self,
        name: str = "",
        *,
        resolution: tuple[int, int] = (0, 0),
        bit_depth: int = 8,
        pixel_pitch_m: float = 0.0,
        exposure_bounds_s: tuple[float, float] = (1e-6, 10.0),
        gain_bounds: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        super().__init__(name)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.bit_depth = int(bit_depth)
        self.pixel_pitch_m = float(pixel_pitch_m)
        self.exposure_bounds_s = (float(exposure_bounds_s[0]), float(exposure_bounds_s[1]))
        self.gain_bounds = (float(gain_bounds[0]), float(gain_bounds[1]))
        self._exposure_s = self.exposure_bounds_s[0]
        self._gain = self.gain_bounds[0]

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def exposure_s(self) -> float:
        return self._exposure_s

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        value = _check_bounds(self.name, "exposure_s", value, self.exposure_bounds_s)
        if self._is_open:
            self._set_exposure_hw(value)
        self._exposure_s = value

    @property
    def gain(self) -> float:
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        value = _check_bounds(self.name, "gain", value, self.gain_bounds)
        if self._is_open:
            self._set_gain_hw(value)
        self._gain = value

    def grab(self, timeout_s: float = 1.0) -> np.ndarray:
        """One frame, shape `resolution`; raises `DeviceTimeout` after `timeout_s`."""
        self._require_open()
        frame = np.asarray(self._grab_hw(float(timeout_s)))
        if frame.shape != self.resolution:
            raise DeviceError(
                f"{self.name}: frame has shape {frame.shape}, expected {self.resolution}"
            )
        return frame

    def grab_burst(self, count: int, timeout_s: float = 1.0) -> np.ndarray:
        """`count` consecutive frames as one (count, rows, cols) array."""
        if count < 1:
            raise OutOfRange(f"{self.name}: burst count {count} must be >= 1")
        self._require_open()
        return np.stack([self.grab(timeout_s) for _ in range(count)])

    def settings(self) -> dict[str, Any]:
        return {
            "resolution": list(self.resolution),
            "bit_depth": self.bit_depth,
            "pixel_pitch_m": self.pixel_pitch_m,
            "exposure_s": self.exposure_s,
            "exposure_bounds_s": list(self.exposure_bounds_s),
            "gain": self.gain,
            "gain_bounds": list(self.gain_bounds),
        }

    @abstractmethod
    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        """Return one frame or raise DeviceTimeout / DeviceDisconnected."""

    def _set_exposure_hw(self, exposure_s: float) -> None:
        """Send the exposure to the hardware."""

    def _set_gain_hw(self, gain: float) -> None:
        """Send the gain to the hardware."""


class BatchCamera(Camera):
    """Capability: a camera that takes one frame per input pattern in one call.

    Declared by a camera that drives the input modulator itself (the simulated
    bench renders a whole chunk at once; a camera hardware-triggered by a DMD's
    pattern sequence could do the same). The runner and calibration use
    `grab_batch` when ``isinstance(camera, BatchCamera)`` and otherwise show each
    pattern on the input modulator and `grab` a frame.
    """

    @abstractmethod
    def grab_batch(self, input_patterns: np.ndarray,
                   rois: Sequence[tuple[int, int, int, int]] | None = None,
                   timeout_s: float = 1.0) -> np.ndarray:
        """(n, rows, cols) input-modulator gray levels -> (n, *resolution) frames, each taken
        with its pattern shown (exposure and gain as set).

        `rois` (top, left, bottom, right) is a hint of where the caller reads: a camera may use
        it (an ROI read-out; the simulation draws noise there only) or ignore it. A fault part
        way raises the device error with the frames taken before it as ``exc.completed``."""


class InputModulator(Device):
    """Shows gray-level patterns in the input plane: the role ``input`` of a bench.

    Any pixelated modulator can fill it (every `SLM` is one; a DMD or micro-LED
    driver subclasses this directly). It must set `resolution` (rows, cols) and
    `bit_depth`, and `show` must return only once the pattern is displayed
    (after the settle time with ``wait``), because the next frame is taken then.
    """

    role: ClassVar[str] = "input"
    resolution: tuple[int, int]
    bit_depth: int

    @property
    def levels(self) -> int:
        return 1 << self.bit_depth

    @abstractmethod
    def show(self, pattern: np.ndarray, wait: bool = True) -> None:
        """Display a (rows, cols) integer pattern of gray levels in [0, levels)."""


class SLM(InputModulator):
    """A pixelated spatial light modulator showing gray-level patterns.

    `lut[g]` is the response to gray level g: phase in radians for a phase
    SLM, intensity transmission in [0, 1] for an amplitude modulator. The
    pattern is validated here (shape, integer dtype, range) before `_show_hw`.
    """

    role: ClassVar[str] = "slm"

    def __init__(
        self,
        name: str = "",
        *,
        resolution: tuple[int, int] = (0, 0),
        pitch_m: float = 0.0,
        bit_depth: int = 8,
        modulation: str = "phase",
        settle_s: float = 0.0,
        lut: np.ndarray | None = None,
    ) -> None:
        super().__init__(name)
        if modulation not in ("phase", "amplitude"):
            raise ValueError(f"{self.name}: modulation must be 'phase' or 'amplitude', got {modulation!r}")
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.pitch_m = float(pitch_m)
        self.bit_depth = int(bit_depth)
        self.modulation = modulation
        self.settle_s = float(settle_s)
        self._lut = self._default_lut() if lut is None else self._checked_lut(lut)
        self._pattern = np.zeros(self.resolution, dtype=self.dtype)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)

    @property
    def lut(self) -> np.ndarray:
        return self._lut.copy()

    def _default_lut(self) -> np.ndarray:
        g = np.arange(self.levels, dtype=np.float64)
        if self.modulation == "phase":
            return 2 * np.pi * g / self.levels
        return g / (self.levels - 1)

    def _checked_lut(self, lut: np.ndarray) -> np.ndarray:
        lut = np.asarray(lut, dtype=np.float64)
        if lut.shape != (self.levels,) or not np.all(np.isfinite(lut)):
            raise PatternError(
                f"{self.name}: LUT must be {self.levels} finite values, got shape {lut.shape}"
            )
        return lut

    def load_lut(self, lut: np.ndarray) -> None:
        """Replace the gray-level response (after a LUT calibration)."""
        self._lut = self._checked_lut(lut)

    @property
    def pattern(self) -> np.ndarray:
        """The gray levels shown now."""
        return self._pattern.copy()

    def validate_pattern(self, pattern: np.ndarray) -> np.ndarray:
        pattern = np.asarray(pattern)
        if pattern.shape != self.resolution:
            raise PatternError(
                f"{self.name}: pattern shape {pattern.shape} does not match the SLM's {self.resolution}"
            )
        if not np.issubdtype(pattern.dtype, np.integer):
            raise PatternError(
                f"{self.name}: pattern dtype {pattern.dtype} is not an integer type of gray levels"
            )
        if pattern.size and (pattern.min() < 0 or pattern.max() >= self.levels):
            raise PatternError(
                f"{self.name}: gray levels span [{pattern.min()}, {pattern.max()}], "
                f"outside [0, {self.levels - 1}] for {self.bit_depth} bits"
            )
        return pattern.astype(self.dtype, copy=False)

    def show(self, pattern: np.ndarray, wait: bool = True) -> None:
        """Display gray levels; with `wait`, return after the settle time."""
        self._require_open()
        pattern = self.validate_pattern(pattern)
        self._show_hw(pattern)
        self._pattern = pattern.copy()
        if wait and self.settle_s > 0:
            time.sleep(self.settle_s)

    def settings(self) -> dict[str, Any]:
        return {
            "resolution": list(self.resolution),
            "pitch_m": self.pitch_m,
            "bit_depth": self.bit_depth,
            "modulation": self.modulation,
            "settle_s": self.settle_s,
            "lut_min": float(self._lut.min()),
            "lut_max": float(self._lut.max()),
        }

    @abstractmethod
    def _show_hw(self, pattern: np.ndarray) -> None:
        """Send a validated gray-level pattern to the hardware."""


class Shutter(Device):
    """A beam shutter. Closed is the safe state."""

    role: ClassVar[str] = "shutter"

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._shutter_open = False

    @property
    def shutter_open(self) -> bool:
        return self._shutter_open

    def open_shutter(self) -> None:
        self._require_open()
        self._set_shutter_hw(True)
        self._shutter_open = True

    def close_shutter(self) -> None:
        """Close the beam; a no-op on a closed device (nothing to block then)."""
        if not self._is_open:
            return
        self._set_shutter_hw(False)
        self._shutter_open = False

    def confirm_closed(self) -> bool:
        """Ask the hardware whether the beam is blocked (the safety guard does, before
        enabling a laser); a shutter without a position sensor trusts its last command."""
        self._require_open()
        return bool(self._closed_hw())

    def settings(self) -> dict[str, Any]:
        return {"shutter_open": self._shutter_open}

    @abstractmethod
    def _set_shutter_hw(self, open_: bool) -> None:
        """Move the shutter."""

    def _closed_hw(self) -> bool:
        """Whether the hardware reports the shutter closed (override where it can tell)."""
        return not self._shutter_open

    def _close_hw(self) -> None:
        self._set_shutter_hw(False)
        self._shutter_open = False


class LaserController(Device):
    """A laser with an enable line, a power set-point and an interlock. Off is safe."""

    role: ClassVar[str] = "laser"

    def __init__(self, name: str = "", *, power_bounds_w: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(name)
        self.power_bounds_w = (float(power_bounds_w[0]), float(power_bounds_w[1]))
        self._enabled = False
        self._power_w = self.power_bounds_w[0]

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def power_w(self) -> float:
        """The power set-point."""
        return self._power_w

    @power_w.setter
    def power_w(self, value: float) -> None:
        value = _check_bounds(self.name, "power_w", value, self.power_bounds_w)
        self._require_open()
        self._set_power_hw(value)
        self._power_w = value

    def interlock_ok(self) -> bool:
        self._require_open()
        return bool(self._interlock_hw())

    def measured_power_w(self) -> float:
        self._require_open()
        return float(self._measured_power_hw())

    def enable(self) -> None:
        self._require_open()
        self._enable_hw(True)
        self._enabled = True

    def disable(self) -> None:
        """Turn emission off; a no-op on a closed device."""
        if not self._is_open:
            return
        self._enable_hw(False)
        self._enabled = False

    def settings(self) -> dict[str, Any]:
        return {"enabled": self._enabled, "power_w": self._power_w,
                "power_bounds_w": list(self.power_bounds_w)}

    def _close_hw(self) -> None:
        self._enable_hw(False)
        self._enabled = False

    @abstractmethod
    def _enable_hw(self, on: bool) -> None:
        """Switch emission."""

    @abstractmethod
    def _set_power_hw(self, power_w: float) -> None:
        """Send the power set-point."""

    def _interlock_hw(self) -> bool:
        return True

    def _measured_power_hw(self) -> float:
        return self._power_w if self._enabled else 0.0


def describe(device: Device) -> Mapping[str, Any]:
    """Identity, role, open state and settings in one mapping (for `bench info` and runs)."""
    return {
        "name": device.name,
        "role": device.role,
        "class": f"{type(device).__module__}.{type(device).__qualname__}",
        "open": device.is_open,
        "identity": device.identity() if device.is_open else {},
        "settings": device.settings(),
    }

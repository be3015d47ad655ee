"""Simulated devices: the `drivers.base` protocols on top of a shared `SimWorld`.

Registered as entry points (``sim.camera``, ``sim.phase_slm``, ...), so a bench
builds them from a profile exactly as it builds real drivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from drivers.base import SLM, BatchCamera, LaserController, Shutter
from drivers.config import CAMERA_KEYS, MODULATOR_KEYS, Section
from drivers.errors import DeviceError, SafetyError, WriteFailed
from drivers.plugin import DeviceContext
from labrig.optics.system import PixelRect
from sim_backend.world import SimWorld, world_for


def _identity(model: str, world: SimWorld) -> dict[str, str]:
    return {"vendor": "labrig-sim", "model": model, "serial": f"SIM-{world.truth.seed:04d}",
            "truth": "on" if world.truth.enabled else "off"}


class _SimSLM(SLM):
    """Shared by both modulators: validated patterns go to the world."""

    _target = "filter"
    _model = "SimSLM"

    def __init__(self, world: SimWorld, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.world = world

    @classmethod
    def _modulation(cls, world: SimWorld) -> str:
        raise NotImplementedError

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> _SimSLM:
        world = world_for(context.shared, context.profile)
        kwargs = {
            "resolution": section.get_shape("resolution"),
            "pitch_m": section.get_float("pitch_m", positive=True),
            "bit_depth": section.get_int("bit_depth", 8, min=1, max=16),
            "settle_s": section.get_float("settle_s", 0.0, min=0.0),
        }
        section.accept(*MODULATOR_KEYS)
        section.check_unused()
        return cls(world, f"sim {context.role} SLM", modulation=cls._modulation(world), **kwargs)

    def identity(self) -> dict[str, str]:
        return _identity(self._model, self.world)

    def _show_hw(self, pattern: np.ndarray) -> None:
        if self.world.slm_write_fails():
            raise WriteFailed(f"{self.name}: write to the SLM failed (fault injection)")
        if self._target == "filter":
            self.world.show_filter(pattern)
        else:
            self.world.show_input(pattern)


class SimFilterSLM(_SimSLM):
    """The Fourier-plane SLM. Its LUT here is the nominal one; the true response
    (gamma, phase range, crosstalk) lives in the world's hidden truth."""

    _target = "filter"
    _model = "SimPhaseSLM"

    @classmethod
    def _modulation(cls, world: SimWorld) -> str:
        return world.geometry.filter.modulation


class SimInputModulator(_SimSLM):
    """Amplitude modulator in the input plane (gray -> intensity transmission)."""

    _target = "input"
    _model = "SimAmplitudeSLM"

    @classmethod
    def _modulation(cls, world: SimWorld) -> str:
        return "amplitude"


class SimCamera(BatchCamera):
    """A camera that sees the simulated output plane through the true optics; it renders a
    whole chunk of input patterns at once (`BatchCamera`)."""

    def __init__(self, world: SimWorld, **kwargs: Any) -> None:
        super().__init__("sim camera", **kwargs)
        self.world = world

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> SimCamera:
        world = world_for(context.shared, context.profile)
        spec = world.geometry.camera
        section.accept(*CAMERA_KEYS)
        camera = cls(
            world,
            resolution=spec.resolution,
            bit_depth=spec.bit_depth,
            pixel_pitch_m=spec.pitch_m,
            exposure_bounds_s=section.get_range("exposure_range_s", [1e-5, 1.0]),
            gain_bounds=section.get_range("gain_range", [1.0, 16.0]),
        )
        camera.exposure_s = section.get_float("exposure_s", camera.exposure_bounds_s[0])
        camera.gain = section.get_float("gain", camera.gain_bounds[0])
        section.check_unused()
        return camera

    def identity(self) -> dict[str, str]:
        return _identity("SimCamera", self.world)

    def _open_hw(self) -> None:
        self.world.reconnect()

    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        return self.world.grab(self.exposure_s, self.gain, timeout_s)

    def grab_batch(self, input_patterns: np.ndarray, rois: Sequence[PixelRect] | None = None,
                   timeout_s: float = 1.0) -> np.ndarray:
        """Frames for many input-modulator patterns at once (simulation fast path).

        `rois` (top, left, bottom, right): where the caller reads; the simulation draws
        noise there only (the rest of each frame is noise-free). Faults are injected frame
        by frame as on `grab`; the frames before a fault ride on the exception as
        ``exc.completed``."""
        self._require_open()
        patterns = np.asarray(input_patterns)
        expected = self.world.geometry.input.resolution
        if patterns.ndim != 3 or tuple(patterns.shape[1:]) != expected:
            raise DeviceError(f"{self.name}: batch must be (n, {expected[0]}, {expected[1]}), got {patterns.shape}")
        return self.world.render_batch(patterns, self.exposure_s, self.gain, rois, timeout_s)


class SimShutter(Shutter):
    def __init__(self, world: SimWorld) -> None:
        super().__init__("sim shutter")
        self.world = world

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> SimShutter:
        section.check_unused()
        return cls(world_for(context.shared, context.profile))

    def identity(self) -> dict[str, str]:
        return _identity("SimShutter", self.world)

    def _set_shutter_hw(self, open_: bool) -> None:
        self.world.shutter_open = bool(open_)


class SimLaser(LaserController):
    def __init__(self, world: SimWorld, power_w: float, power_bounds_w: tuple[float, float]) -> None:
        super().__init__("sim laser", power_bounds_w=power_bounds_w)
        self.world = world
        self._initial_power_w = power_w

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> SimLaser:
        world = world_for(context.shared, context.profile)
        bounds = section.get_range("power_range_w", [0.0, 0.1])
        power = section.get_float("power_w", bounds[1])
        if not bounds[0] <= power <= bounds[1]:
            raise section.error("power_w", f"{power:g} W is outside power_range_w [{bounds[0]:g}, {bounds[1]:g}]")
        section.check_unused()
        return cls(world, power, bounds)

    def identity(self) -> dict[str, str]:
        return _identity("SimLaser", self.world)

    def _open_hw(self) -> None:
        self.world.laser_power_w = self._initial_power_w
        self._power_w = self._initial_power_w

    def _enable_hw(self, on: bool) -> None:
        if on and not self._interlock_hw():
            raise SafetyError(f"{self.name}: interlock open, emission refused")
        self.world.laser_enabled = bool(on)

    def _set_power_hw(self, power_w: float) -> None:
        self.world.laser_power_w = power_w

    def _interlock_hw(self) -> bool:
        return not self.world.faults.interlock_open

"""Any slmsuite camera as a labrig `Camera`: a second camera path next to GenICam.

For vendors whose SDK slmsuite already wraps (Basler, FLIR, Thorlabs, Allied
Vision, ...) and for slmsuite's `SimulatedCamera`, which images the far field of
a simulated SLM: ``slm = "filter"`` names the bench role whose slmsuite SLM it
looks at (the SLM opens first; the bench opens the camera last)::

    [devices.camera]
    kind = "slmsuite.camera"
    slmsuite_class = "SimulatedCamera"
    slm = "filter"
    slmsuite_args = { resolution = [320, 240], M = [[3000, 0], [0, 3000]], b = [160, 120], gain = 0.5 }

Frames come from slmsuite's ``get_image`` (its flips, rotation and window
applied) as 2-D integer arrays. Exposure goes through slmsuite; gain, where a
class has one, is a constructor argument in ``slmsuite_args``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from drivers.base import Camera
from drivers.config import CAMERA_KEYS, Section
from drivers.errors import DeviceError, DeviceTimeout
from drivers.plugin import DeviceContext
from drivers.vendors.slm import (
    SHARED_KEY,
    SlmsuiteSLM,
    close_slmsuite,
    configured_class,
    constructor_params,
    slmsuite_args,
)

__all__ = ["SlmsuiteCamera"]

log = logging.getLogger(__name__)


class SlmsuiteCamera(Camera):
    """An slmsuite camera; the object is built at open (building connects to the hardware)."""

    def __init__(
        self,
        cls: type,
        args: Mapping[str, Any],
        *,
        name: str = "",
        slm: SlmsuiteSLM | None = None,
        expected_resolution: tuple[int, int] | None = None,
        expected_bit_depth: int | None = None,
        pixel_pitch_m: float = 0.0,
        exposure_s: float | None = None,
        exposure_bounds_s: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(
            name or f"slmsuite {cls.__name__}",
            resolution=expected_resolution or (0, 0),
            bit_depth=expected_bit_depth or 8,
            pixel_pitch_m=pixel_pitch_m,
            exposure_bounds_s=exposure_bounds_s or (1e-6, 10.0),
        )
        self.cls = cls
        self.args = dict(args)
        self.slm = slm
        self.expected_resolution = expected_resolution
        self.expected_bit_depth = expected_bit_depth
        self._profile_bounds = exposure_bounds_s
        self._initial_exposure_s = exposure_s
        self.device: Any = None

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> SlmsuiteCamera:
        section.accept(*CAMERA_KEYS)
        klass = configured_class(section, "cameras")
        name = section.get_str("slmsuite_class")
        args = slmsuite_args(section)
        slm = None
        if "slm" in section:
            role = section.get_str("slm")
            slm = context.shared.get(SHARED_KEY, {}).get(role)
            if slm is None:
                raise section.error("slm", f"no slmsuite.slm device fills the {role!r} role of this bench")
        elif "slm" in constructor_params(klass):
            raise section.error("slm", f"{name} images an slmsuite SLM; name its role (slm = \"filter\")")
        resolution = section.get_shape("resolution") if "resolution" in section else None
        if resolution and "resolution" in constructor_params(klass) and "resolution" not in args:
            args["resolution"] = (resolution[1], resolution[0])  # slmsuite: (width, height)
        bit_depth = section.get_int("bit_depth", min=1, max=32) if "bit_depth" in section else None
        pitch_m = section.get_float("pitch_m", 0.0, min=0.0)
        if pitch_m and "pitch_um" in constructor_params(klass) and "pitch_um" not in args:
            args["pitch_um"] = pitch_m * 1e6
        camera = cls(
            klass,
            args,
            name=f"slmsuite {name} ({context.role})",
            slm=slm,
            expected_resolution=resolution,
            expected_bit_depth=bit_depth,
            pixel_pitch_m=pitch_m,
            exposure_s=section.get_float("exposure_s", positive=True) if "exposure_s" in section else None,
            exposure_bounds_s=section.get_range("exposure_range_s") if "exposure_range_s" in section else None,
        )
        section.check_unused()
        return camera

    # -- lifecycle ----------------------------------------------------------------------------
    def _open_hw(self) -> None:
        args = dict(self.args)
        if self.slm is not None:
            if self.slm.device is None:
                raise DeviceError(f"{self.name}: the SLM it images ({self.slm.name}) is not open")
            args["slm"] = self.slm.device
        try:
            device = self.cls(**args)
        except Exception as exc:
            raise DeviceError(f"{self.name}: {self.cls.__name__}(**slmsuite_args) failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        try:
            self._adopt(device)
        except BaseException:
            close_slmsuite(device, self.name)
            raise
        self.device = device

    def _adopt(self, device: Any) -> None:
        shape = (int(device.shape[0]), int(device.shape[1]))
        bits = int(device.bitdepth)
        if self.expected_resolution is not None and shape != self.expected_resolution:
            raise DeviceError(f"{self.name}: the camera delivers {shape}, the profile's resolution "
                              f"is {self.expected_resolution}")
        if self.expected_bit_depth is not None and bits != self.expected_bit_depth:
            raise DeviceError(f"{self.name}: the camera has {bits} bits, the profile's bit_depth "
                              f"is {self.expected_bit_depth}")
        self.resolution, self.bit_depth = shape, bits
        if getattr(device, "pitch_um", None) is not None and not self.pixel_pitch_m:
            self.pixel_pitch_m = float(np.mean(device.pitch_um)) * 1e-6
        bounds = getattr(device, "exposure_bounds_s", None)
        if bounds is not None:
            lo, hi = float(bounds[0]), float(bounds[1])
            if self._profile_bounds is not None:
                lo, hi = max(lo, self._profile_bounds[0]), min(hi, self._profile_bounds[1])
            if lo > hi:
                raise DeviceError(f"{self.name}: exposure_range_s does not overlap the camera's range")
            self.exposure_bounds_s = (lo, hi)
        self._exposure_s = float(device.exposure_s)
        if self._initial_exposure_s is not None:
            self._write_exposure(device, self._initial_exposure_s)

    def _close_hw(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            close_slmsuite(device, self.name, raise_errors=True)

    # -- hooks --------------------------------------------------------------------------------
    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._write_exposure(self._require_device(), exposure_s)

    def _write_exposure(self, device: Any, exposure_s: float) -> None:
        lo, hi = self.exposure_bounds_s
        if not lo <= exposure_s <= hi:
            raise DeviceError(f"{self.name}: exposure_s {exposure_s:g} is outside [{lo:g}, {hi:g}]")
        try:
            device.set_exposure(exposure_s)
        except Exception as exc:
            raise DeviceError(f"{self.name}: setting the exposure failed: {type(exc).__name__}: {exc}") from exc
        self._exposure_s = float(device.exposure_s)

    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        device = self._require_device()
        try:
            image = device.get_image(timeout_s=timeout_s)
        except TimeoutError as exc:
            raise DeviceTimeout(f"{self.name}: no frame within {timeout_s:g} s: {exc}") from exc
        except Exception as exc:
            raise DeviceError(f"{self.name}: get_image failed: {type(exc).__name__}: {exc}") from exc
        frame = np.asarray(image)
        if frame.ndim != 2 or not np.issubdtype(frame.dtype, np.integer):
            raise DeviceError(f"{self.name}: slmsuite returned a {frame.dtype} array of shape "
                              f"{frame.shape}, not a 2-D integer frame (averaging or HDR on?)")
        return frame

    def _require_device(self) -> Any:
        if self.device is None:
            self._require_open()
            raise DeviceError(f"{self.name}: the camera is not connected")
        return self.device

    # -- description --------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        device = self.device
        return {"vendor": "slmsuite", "model": self.cls.__name__,
                "serial": str(getattr(device, "serial", "") or getattr(device, "sn", "") or ""),
                "name": str(getattr(device, "name", "") or "")}

    def settings(self) -> dict[str, Any]:
        out = {**super().settings(), "slmsuite_class": self.cls.__name__}
        if self.slm is not None:
            out["images_slm"] = self.slm.name
        return out


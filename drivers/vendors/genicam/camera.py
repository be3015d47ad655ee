"""The GenICam camera: a labrig `Camera` on one device of the GenTL producers.

Profile parsing, opening and closing, reapplying the settings after a reconnect,
exposure/gain/ROI/trigger through the nodes, and grabbing frames; the pieces it
builds on (producers, nodes, frames) are the sibling modules. The behaviour is
described in the package docstring (`drivers.vendors.genicam`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import Camera
from drivers.config import CAMERA_KEYS, Section
from drivers.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    FrameDropped,
    OutOfRange,
    Unsupported,
)
from drivers.plugin import DeviceContext
from drivers.vendors.genicam.frames import PIXEL_FORMATS, frame_from_component
from drivers.vendors.genicam.nodes import Feature, NodeAccess, _short, list_features
from drivers.vendors.genicam.producers import (
    _HARVESTERS,
    SELECTOR_KEYS,
    DeviceSelector,
    _describe_device,
    _device_info,
    find_producers,
)

__all__ = [
    "BINNING_NODES",
    "Binning",
    "GenICamCamera",
    "GenICamSettings",
    "Roi",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roi:
    """Sensor window in pixels; None keeps what the camera has."""

    width: int | None = None
    height: int | None = None
    offset_x: int | None = None
    offset_y: int | None = None


#: the SFNC nodes on-camera binning needs (the mode and selector nodes are optional)
BINNING_NODES = ("BinningHorizontal", "BinningVertical")


@dataclass(frozen=True)
class Binning:
    """On-camera binning: blocks of `vertical` rows × `horizontal` columns read as one pixel.

    `mode` is the camera's ``BinningHorizontalMode``/``BinningVerticalMode`` (SFNC: ``Sum``
    or ``Average``); None keeps what the camera does. Whether the sum happens before the
    read-out (one read noise per binned pixel) or after the ADC is the sensor's design;
    the twin models both (`labrig.optics.camera.CameraModel.binned_electrons`).
    """

    horizontal: int = 1
    vertical: int = 1
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.horizontal < 1 or self.vertical < 1:
            raise OutOfRange(f"binning must be >= 1 in each direction, got {self.horizontal} x {self.vertical}")


@dataclass
class GenICamSettings:
    """What a profile asks of the camera; reapplied on every (re)open."""

    pixel_format: str | None = None
    roi: Roi = field(default_factory=Roi)
    exposure_s: float | None = None
    gain: float | None = None
    frame_rate_hz: float | None = None
    trigger_source: str | None = "Software"  # "Software", a line name, or None: free run
    trigger_default: bool = False  # the profile named none: free run if the camera cannot trigger
    features: dict[str, Any] = field(default_factory=dict)
    binning: Binning | None = None  # None: leave the camera's binning as it is


class GenICamCamera(Camera):
    """A GenICam camera through harvesters; see the `drivers.vendors.genicam` docstring for the behaviour."""

    def __init__(
        self,
        name: str = "GenICam camera",
        *,
        cti: Sequence[str | os.PathLike[str]] = (),
        cti_base: Path | None = None,
        selector: DeviceSelector | None = None,
        settings: GenICamSettings | None = None,
        expected_resolution: tuple[int, int] | None = None,
        pixel_pitch_m: float = 0.0,
        exposure_bounds_s: tuple[float, float] | None = None,
        gain_bounds: tuple[float, float] | None = None,
        num_buffers: int = 4,
        reconnect_attempts: int = 0,
        drop_stale_frames: bool = True,
    ) -> None:
        bits = PIXEL_FORMATS.get(settings.pixel_format or "", 8) if settings else 8
        super().__init__(
            name,
            resolution=expected_resolution or (0, 0),
            bit_depth=bits,
            pixel_pitch_m=pixel_pitch_m,
            exposure_bounds_s=exposure_bounds_s or (1e-6, 10.0),
            gain_bounds=gain_bounds or (1.0, 1.0),
        )
        self.cti = list(cti)
        self.cti_base = cti_base
        self.selector = selector or DeviceSelector()
        self.config = settings or GenICamSettings()
        self.expected_resolution = expected_resolution
        self._profile_exposure_bounds = exposure_bounds_s
        self._profile_gain_bounds = gain_bounds
        self.num_buffers = int(num_buffers)
        self.reconnect_attempts = int(reconnect_attempts)
        self.drop_stale_frames = bool(drop_stale_frames)
        self.harvester: Any = None
        self.acquirer: Any = None
        self.nodes: NodeAccess | None = None
        self.producers: list[Path] = []
        self.device_info: dict[str, Any] = {}
        self._gain_db = False
        self._last_meta: dict[str, int | None] = {"timestamp_ns": None, "frame_id": None}
        self.frame_meta: list[dict[str, int | None]] = []
        """Per frame of the last grab or burst: the producer's timestamp (ns) and frame id."""
        self.has_exposure = False
        self.has_gain = False

    # -- profile ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> GenICamCamera:
        section.accept(*CAMERA_KEYS)
        cti = _str_list(section, "cti")
        source = Path(section.source)
        fields = {key: section.get_str(key) for key in SELECTOR_KEYS if key in section}
        index = section.get_int("index", min=0) if "index" in section else None
        resolution = section.get_shape("resolution") if "resolution" in section else None
        fmt = section.get_str("pixel_format") if "pixel_format" in section else None
        if fmt is not None and fmt not in PIXEL_FORMATS:
            raise section.error("pixel_format", f"{fmt!r} cannot be turned into a 2-D array; "
                                f"use one of {', '.join(PIXEL_FORMATS)}")
        if "bit_depth" in section:
            bits = section.get_int("bit_depth", min=1, max=16)
            if fmt is None:
                fmt = f"Mono{bits}"
                if fmt not in PIXEL_FORMATS:
                    raise section.error("bit_depth", f"no Mono pixel format has {bits} bits")
            elif PIXEL_FORMATS[fmt] != bits:
                raise section.error("bit_depth", f"{bits} disagrees with pixel_format {fmt} "
                                    f"({PIXEL_FORMATS[fmt]} bits)")
        roi = Roi(
            width=_opt_int(section, "width", resolution[1] if resolution else None),
            height=_opt_int(section, "height", resolution[0] if resolution else None),
            offset_x=_opt_int(section, "offset_x", None, minimum=0),
            offset_y=_opt_int(section, "offset_y", None, minimum=0),
        )
        if resolution and (roi.height, roi.width) != resolution:
            raise section.error("resolution", f"{list(resolution)} disagrees with height x width "
                                f"{roi.height} x {roi.width}")
        # a triggered frame starts after the patterns are shown; free run can mix two patterns
        trigger_default = "trigger_source" not in section
        trigger = section.get_str("trigger_source", "Software")
        features = section.section("features", required=False).data
        for key, value in features.items():
            if not isinstance(value, bool | int | float | str):
                raise section.error(f"features.{key}", f"expected a number, string or boolean, got {value!r}")
        binning = None
        if "binning" in section:
            section.accept("binning")
            raw = section.data["binning"]
            factors = [raw, raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if not (isinstance(factors, list) and len(factors) == 2
                    and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in factors)):
                raise section.error("binning", f"expected a factor >= 1 or [horizontal, vertical], got {raw!r}")
            mode = section.get_str("binning_mode") if "binning_mode" in section else None
            binning = Binning(factors[0], factors[1], mode)
        settings = GenICamSettings(
            pixel_format=fmt,
            binning=binning,
            roi=roi,
            exposure_s=section.get_float("exposure_s", positive=True) if "exposure_s" in section else None,
            gain=section.get_float("gain", positive=True) if "gain" in section else None,
            frame_rate_hz=section.get_float("frame_rate_hz", positive=True) if "frame_rate_hz" in section else None,
            trigger_source=None if trigger.lower() == "off" else trigger,
            trigger_default=trigger_default,
            features=dict(features),
        )
        camera = cls(
            f"GenICam camera ({context.role})",
            cti=cti,
            cti_base=source.parent if source.is_file() else None,
            selector=DeviceSelector(fields, index),
            settings=settings,
            expected_resolution=resolution,
            pixel_pitch_m=section.get_float("pitch_m", 0.0, min=0.0),
            exposure_bounds_s=section.get_range("exposure_range_s") if "exposure_range_s" in section else None,
            gain_bounds=section.get_range("gain_range") if "gain_range" in section else None,
            num_buffers=section.get_int("num_buffers", 4, min=1, max=64),
            reconnect_attempts=section.get_int("reconnect_attempts", 0, min=0, max=10),
            drop_stale_frames=section.get_bool("drop_stale_frames", True),
        )
        section.check_unused()
        return camera

    # -- lifecycle ----------------------------------------------------------------------------
    def _open_hw(self) -> None:
        try:
            import harvesters.core  # noqa: F401 - fail here, with advice, not deep inside
            from genicam import gentl
        except ImportError as exc:  # pragma: no cover - the hardware extra is not installed
            raise DeviceError(f"{self.name}: harvesters/genicam are not installed "
                              "(pip install labrig[hardware])") from exc
        self.producers = find_producers(self.cti, base=self.cti_base)
        self.harvester = _HARVESTERS.acquire(self.producers)
        try:
            devices = [_device_info(d) for d in self.harvester.device_info_list]
            try:
                index = self.selector.pick(devices)
            except DeviceError as exc:
                raise DeviceError(f"{self.name}: {exc} (producers: "
                                  f"{', '.join(p.name for p in self.producers)})") from None
            self.device_info = devices[index]
            try:
                with _keep_sigint_handler():
                    self.acquirer = self.harvester.create(index)
            except gentl.ResourceInUseException as exc:
                raise DeviceError(f"{self.name}: {_describe_device(self.device_info)} is in use "
                                  "(by another program, or another camera of this process)") from exc
            except gentl.GenericException as exc:
                raise DeviceError(f"{self.name}: opening {_describe_device(self.device_info)} "
                                  f"failed: {_short(exc)}") from exc
            self.nodes = NodeAccess(self.acquirer.remote_device.node_map, self.name)
            self._configure()
            self.acquirer.num_buffers = self.num_buffers
            self.acquirer.start()
        except BaseException:
            self._teardown()
            raise

    def _close_hw(self) -> None:
        self._teardown()

    def _teardown(self) -> None:
        """Stop and destroy the acquirer, hand the harvester back; never raises."""
        acquirer, self.acquirer, self.nodes = self.acquirer, None, None
        harvester, self.harvester = self.harvester, None
        if acquirer is not None:
            try:
                acquirer.stop()
            except Exception as exc:
                log.debug("%s: stopping acquisition: %s", self.name, exc)
            try:
                acquirer.destroy()
            except Exception as exc:
                log.warning("%s: destroying the image acquirer: %s", self.name, exc)
            if harvester is not None and acquirer in harvester.image_acquirers:
                harvester.image_acquirers.remove(acquirer)
        if harvester is not None:
            try:
                _HARVESTERS.release(harvester)
            except Exception as exc:
                log.warning("%s: releasing the harvester: %s", self.name, exc)

    def reconnect(self) -> None:
        """Reopen the same device after it was lost, with the same settings."""
        self._teardown()
        self._is_open = False
        self.open()

    # -- configuration ------------------------------------------------------------------------
    def _node_access(self) -> NodeAccess:
        if self.nodes is None:
            self._require_open()
            raise DeviceDisconnected(f"{self.name}: the camera was lost; reconnect()")
        return self.nodes

    @contextlib.contextmanager
    def _paused(self) -> Iterator[NodeAccess]:
        """Stop streaming while the payload changes (pixel format, window), then restart."""
        nodes = self._node_access()
        acquirer = self.acquirer
        streaming = acquirer is not None and acquirer.is_acquiring()
        if streaming:
            acquirer.stop()
        try:
            yield nodes
        finally:
            if streaming and acquirer is self.acquirer:
                acquirer.start()

    def _configure(self) -> None:
        """Apply `config` to a freshly opened device (also after a reconnect)."""
        nodes = self._node_access()
        cfg = self.config
        if cfg.pixel_format is not None:
            nodes.set("PixelFormat", cfg.pixel_format)
        self._check_pixel_format()
        if cfg.binning is not None:  # before the window: Width/Height count binned pixels
            self._apply_binning(nodes, cfg.binning)
        self._apply_roi(nodes, cfg.roi)
        for name, value in cfg.features.items():
            nodes.set(name, value)
        if cfg.frame_rate_hz is not None:
            self._set_frame_rate(nodes, cfg.frame_rate_hz)
        self._read_exposure_and_gain(nodes)
        if cfg.exposure_s is not None:
            self._set_exposure(nodes, cfg.exposure_s)
        if cfg.gain is not None:
            self._set_gain(nodes, cfg.gain)
        if cfg.trigger_default and cfg.trigger_source == "Software" and not (
                nodes.has("TriggerMode") and nodes.has("TriggerSoftware")):
            log.warning("%s: no software trigger; free run, discarding the frame in flight at every grab", self.name)
            self.config = cfg = replace(cfg, trigger_source=None)
        self._set_trigger(nodes, cfg.trigger_source)
        self._read_geometry()

    def _check_pixel_format(self) -> None:
        nodes = self._node_access()
        fmt = str(nodes.get("PixelFormat"))
        if fmt not in PIXEL_FORMATS:
            usable = [c for c in nodes.choices("PixelFormat") if c in PIXEL_FORMATS]
            raise DeviceError(
                f"{self.name}: PixelFormat is {fmt}, which labrig cannot turn into a 2-D array; "
                + (f"set pixel_format to one the camera offers: {', '.join(usable)}" if usable
                   else "the camera offers no Mono format")
            )
        self.bit_depth = PIXEL_FORMATS[fmt]

    def _apply_roi(self, nodes: NodeAccess, roi: Roi) -> None:
        # offsets to 0 first, so a larger window fits; then size, then the wanted offsets
        for axis in ("OffsetX", "OffsetY"):
            if (roi.offset_x if axis == "OffsetX" else roi.offset_y) is not None and nodes.get(axis) != 0:
                nodes.set(axis, 0)
        if roi.width is not None:
            nodes.set("Width", roi.width)
        if roi.height is not None:
            nodes.set("Height", roi.height)
        if roi.offset_x is not None:
            nodes.set("OffsetX", roi.offset_x)
        if roi.offset_y is not None:
            nodes.set("OffsetY", roi.offset_y)

    def binning_support(self) -> dict[str, Any]:
        """What on-camera binning this camera offers: ``supported``, the ``missing`` nodes,
        the largest factors and the modes (``Sum``/``Average``) it lists."""
        nodes = self._node_access()
        missing = [n for n in BINNING_NODES if not nodes.has(n)]
        if missing:
            return {"supported": False, "missing": missing}
        out: dict[str, Any] = {"supported": True, "missing": []}
        for key, node in (("horizontal_max", "BinningHorizontal"), ("vertical_max", "BinningVertical")):
            try:
                out[key] = int(nodes.bounds(node)[1])
            except DeviceError:
                out[key] = None
        out["modes"] = nodes.choices("BinningHorizontalMode") if nodes.has("BinningHorizontalMode") else ()
        return out

    @property
    def binning(self) -> Binning:
        """The binning the camera reports (1 × 1 on a camera without the nodes)."""
        nodes = self._node_access()
        if not all(nodes.has(n) for n in BINNING_NODES):
            return Binning()
        mode = str(nodes.get("BinningHorizontalMode")) if nodes.has("BinningHorizontalMode") else None
        return Binning(int(nodes.get("BinningHorizontal")), int(nodes.get("BinningVertical")), mode)

    def set_binning(self, horizontal: int, vertical: int | None = None, mode: str | None = None) -> None:
        """Bin on the camera (streaming pauses; `resolution` follows); `Unsupported` naming the
        missing nodes on a camera that cannot, so a caller bins on the host knowingly."""
        binning = Binning(int(horizontal), int(horizontal if vertical is None else vertical), mode)
        with self._paused() as nodes:
            self._apply_binning(nodes, binning)
            self.resolution = (int(nodes.get("Height")), int(nodes.get("Width")))
        self.config = replace(self.config, binning=binning)
        self.expected_resolution = None

    def _apply_binning(self, nodes: NodeAccess, binning: Binning) -> None:
        missing = [n for n in BINNING_NODES if not nodes.has(n)]
        if missing:
            if binning.horizontal == binning.vertical == 1 and binning.mode is None:
                return  # no binning asked of a camera that has none
            raise Unsupported(f"{self.name}: on-camera binning is unsupported: the camera has no "
                              f"{' / '.join(missing)} node (bin on the host, or use a camera that bins)")
        if nodes.has("BinningSelector") and "Sensor" in nodes.choices("BinningSelector"):
            nodes.set("BinningSelector", "Sensor")
        if binning.mode is not None:
            for name in ("BinningHorizontalMode", "BinningVerticalMode"):
                if not nodes.has(name):
                    raise Unsupported(f"{self.name}: binning mode {binning.mode!r} asked, the camera has no "
                                      f"{name} node")
                nodes.set(name, binning.mode)
        nodes.set("BinningHorizontal", binning.horizontal)
        nodes.set("BinningVertical", binning.vertical)

    def _read_geometry(self) -> None:
        nodes = self._node_access()
        self.resolution = (int(nodes.get("Height")), int(nodes.get("Width")))
        if self.expected_resolution is not None and self.resolution != self.expected_resolution:
            raise DeviceError(f"{self.name}: the camera delivers {self.resolution}, the profile's "
                              f"resolution is {self.expected_resolution}")

    def _exposure_node(self, nodes: NodeAccess) -> str:
        return nodes.first("ExposureTime", "ExposureTimeAbs")

    def _read_exposure_and_gain(self, nodes: NodeAccess) -> None:
        """Bounds and current values from the camera, where it has the nodes."""
        self.has_exposure = nodes.has("ExposureTime") or nodes.has("ExposureTimeAbs")
        if self.has_exposure:
            name = self._exposure_node(nodes)
            scale = _time_scale(nodes.unit(name))
            lo, hi = (v * scale for v in nodes.bounds(name))
            self.exposure_bounds_s = self._narrow("exposure_range_s", self._profile_exposure_bounds, (lo, hi))
            self._exposure_s = float(nodes.get(name)) * scale
        self.has_gain = nodes.has("Gain")
        if self.has_gain:
            self._gain_db = nodes.unit("Gain").lower() == "db"
            lo, hi = (self._gain_from_node(v) for v in nodes.bounds("Gain"))
            self.gain_bounds = self._narrow("gain_range", self._profile_gain_bounds, (lo, hi))
            self._gain = self._gain_from_node(float(nodes.get("Gain")))

    def _narrow(self, key: str, profile: tuple[float, float] | None,
                device: tuple[float, float]) -> tuple[float, float]:
        """The profile's range within the camera's (the camera's when the profile gives none)."""
        if profile is None:
            return device
        lo, hi = max(profile[0], device[0]), min(profile[1], device[1])
        if lo > hi:
            raise DeviceError(f"{self.name}: {key} [{profile[0]:g}, {profile[1]:g}] does not overlap "
                              f"the camera's [{device[0]:g}, {device[1]:g}]")
        return lo, hi

    def _gain_from_node(self, value: float) -> float:
        return 10 ** (value / 20) if self._gain_db else value

    def _set_exposure(self, nodes: NodeAccess, exposure_s: float) -> None:
        name = self._exposure_node(nodes)
        nodes.set_if_present("ExposureAuto", "Off")
        scale = _time_scale(nodes.unit(name))
        value = exposure_s / scale
        lo, hi = nodes.bounds(name)
        if math.isclose(value, lo) or math.isclose(value, hi):  # seconds -> us rounding at a bound
            value = min(max(value, lo), hi)
        nodes.set(name, value)
        self._exposure_s = float(nodes.get(name)) * scale

    def _set_gain(self, nodes: NodeAccess, gain: float) -> None:
        nodes.node("Gain")
        nodes.set_if_present("GainAuto", "Off")
        nodes.set("Gain", 20 * math.log10(gain) if self._gain_db else gain)
        self._gain = self._gain_from_node(float(nodes.get("Gain")))

    def _set_frame_rate(self, nodes: NodeAccess, hz: float) -> None:
        name = nodes.first("AcquisitionFrameRate", "AcquisitionFrameRateAbs")
        nodes.set_if_present("AcquisitionFrameRateEnable", True)
        nodes.set(name, hz)

    def _set_trigger(self, nodes: NodeAccess, source: str | None) -> None:
        if source is None:
            if nodes.has("TriggerMode"):
                self._select_frame_start(nodes)
                nodes.set("TriggerMode", "Off")
            return
        nodes.node("TriggerMode")
        self._select_frame_start(nodes)
        nodes.set("TriggerSource", source)
        nodes.set("TriggerMode", "On")
        if source == "Software":
            nodes.node("TriggerSoftware")

    @staticmethod
    def _select_frame_start(nodes: NodeAccess) -> None:
        if nodes.has("TriggerSelector") and "FrameStart" in nodes.choices("TriggerSelector"):
            nodes.set("TriggerSelector", "FrameStart")

    # -- public settings ----------------------------------------------------------------------
    @property
    def pixel_format(self) -> str:
        return str(self._node_access().get("PixelFormat"))

    @pixel_format.setter
    def pixel_format(self, fmt: str) -> None:
        if fmt not in PIXEL_FORMATS:
            raise OutOfRange(f"{self.name}: pixel format {fmt!r} cannot be turned into a 2-D array; "
                             f"use one of {', '.join(PIXEL_FORMATS)}")
        with self._paused() as nodes:
            nodes.set("PixelFormat", fmt)
            self._check_pixel_format()
        self.config = replace(self.config, pixel_format=fmt)

    def set_roi(self, width: int | None = None, height: int | None = None,
                offset_x: int | None = None, offset_y: int | None = None) -> None:
        """Change the sensor window (streaming pauses); `resolution` follows."""
        with self._paused() as nodes:
            self._apply_roi(nodes, Roi(width, height, offset_x, offset_y))
            self.resolution = (int(nodes.get("Height")), int(nodes.get("Width")))
        old = self.config.roi
        self.config = replace(self.config, roi=Roi(
            width if width is not None else old.width,
            height if height is not None else old.height,
            offset_x if offset_x is not None else old.offset_x,
            offset_y if offset_y is not None else old.offset_y,
        ))
        self.expected_resolution = None

    @property
    def roi(self) -> dict[str, int]:
        nodes = self._node_access()
        out = {"width": int(nodes.get("Width")), "height": int(nodes.get("Height"))}
        for key, node in (("offset_x", "OffsetX"), ("offset_y", "OffsetY")):
            if nodes.has(node):
                out[key] = int(nodes.get(node))
        return out

    @property
    def frame_rate_hz(self) -> float:
        nodes = self._node_access()
        return float(nodes.get(nodes.first("AcquisitionFrameRate", "AcquisitionFrameRateAbs")))

    @frame_rate_hz.setter
    def frame_rate_hz(self, hz: float) -> None:
        self._set_frame_rate(self._node_access(), float(hz))
        self.config = replace(self.config, frame_rate_hz=float(hz))

    @property
    def trigger_source(self) -> str | None:
        return self.config.trigger_source

    def set_trigger(self, source: str | None) -> None:
        """None: free run; ``"Software"``: each grab fires TriggerSoftware; a line name: hardware."""
        self._set_trigger(self._node_access(), source)
        self.config = replace(self.config, trigger_source=source)

    def software_trigger(self) -> None:
        self._node_access().execute("TriggerSoftware")

    def features(self, max_visibility: str = "Expert") -> list[Feature]:
        """The camera's user-level features (for a GUI's property panel)."""
        return list_features(self._node_access().node_map, max_visibility)

    def get_feature(self, name: str) -> Any:
        return self._node_access().get(name)

    def set_feature(self, name: str, value: Any) -> None:
        """Write any feature by node name; it is reapplied after a reconnect."""
        with self._paused() as nodes:
            nodes.set(name, value)
        self.config = replace(self.config, features={**self.config.features, name: value})

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._set_exposure(self._node_access(), exposure_s)
        self.config = replace(self.config, exposure_s=exposure_s)

    def _set_gain_hw(self, gain: float) -> None:
        self._set_gain(self._node_access(), gain)
        self.config = replace(self.config, gain=gain)

    # -- description --------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        info = self.device_info
        return {
            "vendor": str(info.get("vendor") or ""),
            "model": str(info.get("model") or ""),
            "serial": str(info.get("serial_number") or ""),
            "device_id": str(info.get("id_") or ""),
            "user_id": str(info.get("user_defined_name") or ""),
            "version": str(info.get("version") or ""),
            "transport": str(info.get("tl_type") or ""),
            "producer": ", ".join(p.name for p in self.producers),
        }

    def settings(self) -> dict[str, Any]:
        out = {
            **super().settings(),
            "selector": self.selector.describe(),
            "trigger_source": self.config.trigger_source or "off",
        }
        if self.nodes is not None:
            if not self.has_exposure:  # no ExposureTime node: the camera decides, labrig cannot tell
                out["exposure_s"] = out["exposure_bounds_s"] = None
            if not self.has_gain:
                out["gain"] = out["gain_bounds"] = None
            out["pixel_format"] = self.pixel_format
            out["roi"] = self.roi
            b = self.binning
            out["binning"] = {"horizontal": b.horizontal, "vertical": b.vertical, "mode": b.mode}
            try:
                out["features"] = {f.name: f.value for f in self.features() if f.kind != "command"}
            except Exception as exc:  # a description must not fail a run
                out["features_error"] = str(exc)
        return out

    # -- frames -------------------------------------------------------------------------------
    def _grab_hw(self, timeout_s: float) -> np.ndarray:
        return self._with_reconnect(lambda: self._grab_fresh(timeout_s, 1)[0])

    def grab_burst(self, count: int, timeout_s: float = 1.0) -> np.ndarray:
        """`count` consecutive frames (stale ones dropped once, before the first)."""
        if count < 1:
            raise OutOfRange(f"{self.name}: burst count {count} must be >= 1")
        self._require_open()
        frames = self._with_reconnect(lambda: self._grab_fresh(float(timeout_s), count))
        for frame in frames:
            if frame.shape != self.resolution:
                raise DeviceError(f"{self.name}: frame has shape {frame.shape}, expected {self.resolution}")
        return np.stack(frames)

    def _with_reconnect(self, grab: Any) -> Any:
        for attempt in range(self.reconnect_attempts + 1):
            try:
                return grab()
            except DeviceDisconnected as exc:
                if attempt == self.reconnect_attempts:
                    raise
                log.warning("%s: %s; reconnecting (%d/%d)", self.name, exc, attempt + 1,
                            self.reconnect_attempts)
                self._teardown()
                self._open_hw()
        raise AssertionError("unreachable")

    def _live_acquirer(self) -> Any:
        acquirer = self.acquirer
        if acquirer is None or not acquirer.is_valid():
            raise DeviceDisconnected(f"{self.name}: the image acquirer is gone (device lost or "
                                     "producer re-enumerated); reconnect()")
        return acquirer

    def _grab_fresh(self, timeout_s: float, count: int) -> list[np.ndarray]:
        acquirer = self._live_acquirer()
        if self.drop_stale_frames:
            self._drop_stale(acquirer)
            if self.config.trigger_source is None:
                # free run: the next frame was already exposing when this grab was asked for (and
                # the SLM changed under it); only the one after it saw the pattern alone
                self._fetch(acquirer, timeout_s)
        frames, meta = [], []
        for _ in range(count):
            if self.config.trigger_source == "Software":
                self.software_trigger()
            frames.append(self._fetch(acquirer, timeout_s))
            meta.append(self._last_meta)
        ids = [m["frame_id"] for m in meta if m["frame_id"] is not None]
        # triggered, every frame asked for is one the camera took: a gap is a lost frame (in free
        # run a gap is only a frame the producer skipped while the buffers were full)
        if self.config.trigger_source is not None and len(ids) == len(meta) and any(
                b != a + 1 for a, b in itertools.pairwise(ids)):
            raise FrameDropped(f"{self.name}: frame ids {ids} are not consecutive: a frame of the burst was lost")
        self.frame_meta = meta
        return frames

    def _drop_stale(self, acquirer: Any) -> None:
        """Hand back frames exposed before now (before the SLM pattern being measured)."""
        for _ in range(self.num_buffers + 2):
            buffer = self._call(lambda: acquirer.try_fetch(timeout=1e-4), 1e-4)
            if buffer is None:
                return
            buffer.queue()

    def _fetch(self, acquirer: Any, timeout_s: float) -> np.ndarray:
        buffer = self._call(lambda: acquirer.fetch(timeout=max(timeout_s, 1e-3)), timeout_s)
        if buffer is None:
            raise FrameDropped(f"{self.name}: the producer delivered an incomplete buffer")
        self._last_meta = _buffer_meta(buffer)
        with buffer:  # always queued back, whatever happens here
            components = buffer.payload.components if buffer.payload is not None else []
            if not components:
                raise FrameDropped(f"{self.name}: buffer without an image component")
            return frame_from_component(components[0], self.name)

    def _call(self, fetch: Any, timeout_s: float) -> Any:
        """Run a harvesters fetch; its exceptions become labrig's (timeout, lost, other)."""
        try:
            return fetch()
        except Exception as exc:
            raise self._fetch_error(exc, timeout_s) from exc

    def _fetch_error(self, exc: Exception, timeout_s: float) -> DeviceError:
        from genicam import genapi, gentl

        if isinstance(exc, gentl.TimeoutException):
            waiting = " (waiting for a hardware trigger)" if self._hardware_trigger() else ""
            return DeviceTimeout(f"{self.name}: no frame within {timeout_s:g} s{waiting}")
        if isinstance(exc, gentl.GenericException | genapi.GenericException | IndexError):
            return DeviceDisconnected(f"{self.name}: acquisition failed ({_short(exc)}); "
                                      "the device may be lost; reconnect()")
        # e.g. a payload harvesters cannot decode
        return DeviceError(f"{self.name}: fetching a frame failed: {type(exc).__name__}: {_short(exc)}")

    def _hardware_trigger(self) -> bool:
        return self.config.trigger_source not in (None, "Software")


# -- helpers ------------------------------------------------------------------------------------
def _buffer_meta(buffer: Any) -> dict[str, int | None]:
    """The buffer's timestamp (ns) and frame id as harvesters (or its GenTL buffer) reports them."""
    def read(*names: str) -> int | None:
        for owner in (buffer, getattr(buffer, "_buffer", None)):
            for name in names:
                try:
                    value = getattr(owner, name, None)
                except Exception:  # a producer that does not implement the info: unknown
                    value = None
                if isinstance(value, int | np.integer) and not isinstance(value, bool):
                    return int(value)
        return None

    return {"timestamp_ns": read("timestamp_ns", "timestamp"), "frame_id": read("frame_id")}




@contextlib.contextmanager
def _keep_sigint_handler() -> Iterator[None]:
    """Undo harvesters' SIGINT handler: creating an acquirer on the main thread replaces the
    process's handler with one that destroys the acquirer and swallows Ctrl-C, which would
    also remove the bench's safety handler (laser off, shutter closed) without a trace."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _time_scale(unit: str) -> float:
    """Seconds per unit of an exposure node (SFNC: microseconds)."""
    return {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}.get(unit.strip(), 1e-6)


def _str_list(section: Section, name: str) -> list[str]:
    if name not in section:
        return []
    value = section.data[name]
    section.accept(name)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise section.error(name, f"expected a list of paths, got {value!r}")
    return list(value)


def _opt_int(section: Section, name: str, default: int | None, minimum: int = 1) -> int | None:
    if name not in section:
        return default
    return section.get_int(name, min=minimum)

"""Any slmsuite SLM as a labrig `SLM`: the filter SLM (phase) or the input modulator (amplitude).

The profile names the class and its constructor arguments::

    [devices.filter]
    kind = "slmsuite.slm"
    slmsuite_class = "Meadowlark"          # or SimulatedSLM, ScreenMirrored, Holoeye, Santec,
    slmsuite_args = { sdk_path = "..." }   # Hamamatsu, PLM, "package.module:Class"

labrig shows gray levels as they are (slmsuite's integer path: no wrapping, no
wavefront correction), so what the SLM displays is exactly the pattern the mask
compiler produced. The LUT says what each gray level does: phase in radians for
a phase SLM, intensity transmission for an amplitude modulator. Its default
comes from slmsuite's own model of the device (its phase sign and range, or its
measured ``gamma``); a calibrated LUT is loaded with ``lut_file`` or
`load_lut`. `phase_to_gray` and `transmission_to_gray` turn wanted values into
gray levels through it.

The slmsuite object is built when the device opens (building one connects to
the hardware) and registered in the bench's shared objects, so a simulated
slmsuite camera can image it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import SLM
from drivers.config import MODULATOR_KEYS, Section
from drivers.errors import ConfigError, DeviceError, PatternError
from drivers.plugin import DeviceContext

__all__ = [
    "SHARED_KEY",
    "SlmsuiteSLM",
    "close_slmsuite",
    "constructor_params",
    "load_lut_file",
    "slmsuite_class",
]

log = logging.getLogger(__name__)

#: context.shared[SHARED_KEY][role] -> the SlmsuiteSLM filling that role
SHARED_KEY = "slmsuite.slms"

SLM_MODULES = {
    "SimulatedSLM": "simulated",
    "ScreenMirrored": "screenmirrored",
    "Meadowlark": "meadowlark",
    "Holoeye": "holoeye",
    "Santec": "santec",
    "Hamamatsu": "hamamatsu",
    "PLM": "texasinstruments",
    "SegmentedSLM": "segmented",
    "RemoteSLM": "remote",
}

CAMERA_MODULES = {
    "SimulatedCamera": "simulated",
    "Basler": "basler",
    "FLIR": "flir",
    "ThorCam": "thorlabs",
    "Thorlabs": "thorlabs:ThorCam",
    "AlliedVision": "alliedvision",
    "ImagingSource": "imagingsource",
    "Instrumental": "instrumental",
    "MindVision": "mindvision",
    "MMCore": "mmcore",
    "PyLabLib": "pylablib",
    "Webcam": "webcam",
    "Cheetah640": "xenics",
    "RemoteCamera": "remote",
}


def slmsuite_class(name: str, kind: str) -> type:
    """The slmsuite class for `name` (``"SimulatedSLM"`` or ``"package.module:Class"``).

    `kind` is ``"slms"`` or ``"cameras"``; the class must derive from slmsuite's
    SLM or Camera base. Raises ValueError with the known names otherwise.
    """
    known = SLM_MODULES if kind == "slms" else CAMERA_MODULES
    if ":" in name or "." in name:
        module_name, _, attr = name.replace(":", ".").rpartition(".")
    elif name in known:
        module, _, attr = known[name].partition(":")
        module_name, attr = f"slmsuite.hardware.{kind}.{module}", attr or name
    else:
        raise ValueError(f"unknown slmsuite class {name!r}; known: {', '.join(sorted(known))} "
                         "(or give 'package.module:Class')")
    try:
        module_obj = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import {module_name} for {name!r}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module_obj, attr, None)
    base_module = importlib.import_module(
        "slmsuite.hardware.slms.slm" if kind == "slms" else "slmsuite.hardware.cameras.camera")
    base = base_module.SLM if kind == "slms" else base_module.Camera
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{name!r} ({module_name}.{attr}) is not an slmsuite {base.__name__} class")
    return cls


def constructor_params(cls: type) -> set[str]:
    """Parameters a class's constructor names explicitly (not those hidden in **kwargs)."""
    return {
        p.name for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }


def configured_class(section: Section, kind: str) -> type:
    """`slmsuite_class` for the profile's ``slmsuite_class`` key; errors name the key."""
    try:
        return slmsuite_class(section.get_str("slmsuite_class"), kind)
    except ValueError as exc:
        raise section.error("slmsuite_class", str(exc)) from None


def slmsuite_args(section: Section) -> dict[str, Any]:
    """The ``slmsuite_args`` table as constructor keyword arguments."""
    return dict(section.section("slmsuite_args", required=False).data)


def load_lut_file(path: Path, levels: int) -> np.ndarray:
    """A LUT of `levels` values from ``.npy`` or a text file (one value per line, or CSV)."""
    try:
        if path.suffix == ".npy":
            lut = np.load(path)
        else:
            lut = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=1)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read LUT: {exc}") from exc
    lut = np.asarray(lut, dtype=np.float64).ravel()
    if lut.shape != (levels,) or not np.all(np.isfinite(lut)):
        raise ConfigError(f"{path}: a LUT needs {levels} finite values, found shape {lut.shape}")
    return lut


class SlmsuiteSLM(SLM):
    """An slmsuite SLM driven with gray levels; see the module docstring."""

    def __init__(
        self,
        cls: type,
        args: Mapping[str, Any],
        *,
        name: str = "",
        modulation: str = "phase",
        resolution: tuple[int, int] | None = None,
        pitch_m: float | None = None,
        bit_depth: int | None = None,
        settle_s: float | None = None,
        lut: np.ndarray | None = None,
    ) -> None:
        super().__init__(
            name or f"slmsuite {cls.__name__}",
            resolution=resolution or (0, 0),
            pitch_m=pitch_m or 0.0,
            bit_depth=bit_depth or 8,
            modulation=modulation,
            settle_s=settle_s or 0.0,
            lut=lut if bit_depth else None,
        )
        self.cls = cls
        self.args = dict(args)
        self.expected = {"resolution": resolution, "pitch_m": pitch_m, "bit_depth": bit_depth}
        self.wavelength_m: float | None = None  # [optics] wavelength, checked against the SLM's
        self._settle_from_profile = settle_s is not None
        self._lut_loaded = lut  # from lut_file or load_lut(); survives a reopen
        self.device: Any = None  # the slmsuite object while open

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> SlmsuiteSLM:
        section.accept(*MODULATOR_KEYS)
        klass = configured_class(section, "slms")
        name = section.get_str("slmsuite_class")
        args = slmsuite_args(section)
        default = "amplitude" if context.role == "input" else "phase"
        modulation = section.get_str("modulation", default, choices=("phase", "amplitude"))
        if context.role == "input" and modulation != "amplitude":
            raise section.error("modulation", "the input modulator is an amplitude modulator")
        resolution = section.get_shape("resolution") if "resolution" in section else None
        pitch_m = section.get_float("pitch_m", positive=True) if "pitch_m" in section else None
        bit_depth = section.get_int("bit_depth", min=1, max=16) if "bit_depth" in section else None
        optics = context.profile.section("optics", required=False)
        wavelength_m = optics.data.get("wavelength_m")
        _fill_args(klass, args, resolution, pitch_m, bit_depth, wavelength_m)
        lut = None
        if "lut_file" in section:
            path = Path(section.get_str("lut_file")).expanduser()
            source = Path(section.source)
            if not path.is_absolute() and source.is_file():
                path = source.parent / path
            if bit_depth is None:
                raise section.error("lut_file", "needs bit_depth, to know how many levels to expect")
            lut = load_lut_file(path, 1 << bit_depth)
        settle = section.get_float("settle_s", min=0.0) if "settle_s" in section else None
        section.check_unused()
        slm = cls(klass, args, name=f"slmsuite {name} ({context.role})", modulation=modulation,
                  resolution=resolution, pitch_m=pitch_m, bit_depth=bit_depth, settle_s=settle,
                  lut=lut)
        if isinstance(wavelength_m, int | float) and not isinstance(wavelength_m, bool):
            slm.wavelength_m = float(wavelength_m)
        context.shared.setdefault(SHARED_KEY, {})[context.role] = slm
        return slm

    # -- lifecycle ----------------------------------------------------------------------------
    def _open_hw(self) -> None:
        try:
            device = self.cls(**self.args)
        except Exception as exc:
            raise DeviceError(f"{self.name}: {self.cls.__name__}(**slmsuite_args) failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        try:
            self._adopt(device)
            self.device = device
            blank = np.zeros(self.resolution, dtype=self.dtype)  # a known pattern, so `pattern` is true
            self._show_hw(blank)
        except BaseException:
            self.device = None
            close_slmsuite(device, self.name)
            raise
        self._pattern = blank

    def _adopt(self, device: Any) -> None:
        """Take geometry, bit depth, settle time and LUT from the device; check the profile's."""
        shape = (int(device.shape[0]), int(device.shape[1]))
        pitch_m = float(np.mean(device.pitch_um)) * 1e-6
        bits = int(device.bitdepth)
        found = {"resolution": shape, "pitch_m": pitch_m, "bit_depth": bits}
        for key, value in self.expected.items():
            want = value
            if want is None:
                continue
            same = math.isclose(want, found[key], rel_tol=1e-6) if key == "pitch_m" else want == found[key]
            if not same:
                raise DeviceError(f"{self.name}: the SLM reports {key} {found[key]}, the profile says {want}")
        wav_um = getattr(device, "wav_um", None)
        if self.wavelength_m is not None and wav_um is not None and not math.isclose(
                float(wav_um) * 1e-6, self.wavelength_m, rel_tol=1e-6):
            raise DeviceError(
                f"{self.name}: the SLM works at wav_um = {float(wav_um):g}, optics.wavelength_m is "
                f"{self.wavelength_m:g}; set slmsuite_args.wav_um (its phase range depends on it)")
        self.resolution, self.pitch_m, self.bit_depth = shape, pitch_m, bits
        if not self._settle_from_profile:
            self.settle_s = float(getattr(device, "settle_time_s", 0.0) or 0.0)
        lut = self._lut_loaded
        self._lut = self._checked_lut(lut) if lut is not None else self._device_lut(device)

    def _device_lut(self, device: Any) -> np.ndarray:
        """slmsuite's model of the gray-level response (its sign and range, or measured gamma)."""
        levels = 1 << int(device.bitdepth)
        if self.modulation == "amplitude":
            return np.arange(levels, dtype=np.float64) / (levels - 1)
        sign = float(getattr(device, "_gamma_sign", 1))
        gamma = getattr(device, "gamma", None)
        if gamma is not None:
            response = sign * 2 * np.pi * np.asarray(_to_numpy(gamma), dtype=np.float64)
        else:
            scaling = float(getattr(device, "phase_scaling", 1.0))
            response = sign * 2 * np.pi * np.arange(levels, dtype=np.float64) / (scaling * levels)
        return np.mod(response, 2 * np.pi)

    def _close_hw(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            close_slmsuite(device, self.name, raise_errors=True)

    # -- patterns -----------------------------------------------------------------------------
    def load_lut(self, lut: np.ndarray) -> None:
        """Replace the gray-level response (after a LUT calibration); kept across reopening."""
        super().load_lut(lut)
        self._lut_loaded = self._lut.copy()

    def _show_hw(self, pattern: np.ndarray) -> None:
        device = self.device
        if device is None:
            raise DeviceError(f"{self.name}: the SLM is not connected")
        data = np.ascontiguousarray(pattern, dtype=device.dtype)
        try:
            device.set_phase(data, settle=False)
        except Exception as exc:
            raise DeviceError(f"{self.name}: writing the pattern failed: {type(exc).__name__}: {exc}") from exc

    def phase_to_gray(self, phase: np.ndarray) -> np.ndarray:
        """Gray levels whose LUT phase is circularly nearest to `phase` (radians)."""
        if self.modulation != "phase":
            raise PatternError(f"{self.name}: an amplitude modulator takes transmissions, not phases")
        phase = np.asarray(phase, dtype=np.float64)
        lut = np.mod(self._lut, 2 * np.pi)
        order = np.argsort(lut)
        ring = lut[order]
        wrapped = np.mod(phase, 2 * np.pi)
        hi = np.searchsorted(ring, wrapped) % len(ring)
        lo = (hi - 1) % len(ring)
        d_hi = np.abs(np.angle(np.exp(1j * (wrapped - ring[hi]))))
        d_lo = np.abs(np.angle(np.exp(1j * (wrapped - ring[lo]))))
        best = np.where(d_lo < d_hi, lo, hi)
        return order[best].astype(self.dtype)

    def transmission_to_gray(self, transmission: np.ndarray) -> np.ndarray:
        """Gray levels whose LUT transmission is nearest to `transmission` in [0, 1]."""
        if self.modulation != "amplitude":
            raise PatternError(f"{self.name}: a phase SLM takes phases, not transmissions")
        t = np.asarray(transmission, dtype=np.float64)
        if t.size and (np.nanmin(t) < 0 or np.nanmax(t) > 1 or not np.all(np.isfinite(t))):
            raise PatternError(f"{self.name}: transmissions must lie in [0, 1]")
        order = np.argsort(self._lut)
        ring = self._lut[order]
        hi = np.clip(np.searchsorted(ring, t), 0, len(ring) - 1)
        lo = np.clip(hi - 1, 0, len(ring) - 1)
        best = np.where(np.abs(t - ring[lo]) <= np.abs(t - ring[hi]), lo, hi)
        return order[best].astype(self.dtype)

    # -- description --------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        device = self.device
        return {
            "vendor": "slmsuite",
            "model": self.cls.__name__,
            "serial": str(getattr(device, "serial_number", "") or ""),
            "name": str(getattr(device, "name", "") or ""),
            "slmsuite": _slmsuite_version(),
        }

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "slmsuite_class": self.cls.__name__,
                "slmsuite_args": {k: _plain(v) for k, v in self.args.items()}}


def _fill_args(klass: type, args: dict[str, Any], resolution: tuple[int, int] | None,
               pitch_m: float | None, bit_depth: int | None, wavelength_m: Any) -> None:
    """Pass the profile's geometry to constructors that ask for it and were not told."""
    params = constructor_params(klass)
    derived = {
        "resolution": (resolution[1], resolution[0]) if resolution else None,  # slmsuite: (w, h)
        "pitch_um": pitch_m * 1e6 if pitch_m else None,
        "bitdepth": bit_depth,
        "wav_um": float(wavelength_m) * 1e6 if isinstance(wavelength_m, int | float) else None,
    }
    for key, value in derived.items():
        if key in params and key not in args and value is not None:
            args[key] = value


def close_slmsuite(device: Any, name: str, raise_errors: bool = False) -> None:
    """Close an slmsuite object; after a failure, a close error is logged, not raised."""
    try:
        device.close()
    except Exception as exc:
        if raise_errors:
            raise DeviceError(f"{name}: closing failed: {type(exc).__name__}: {exc}") from exc
        log.warning("%s: closing after a failure: %s", name, exc)


def _to_numpy(array: Any) -> np.ndarray:
    get = getattr(array, "get", None)  # cupy
    return np.asarray(get() if callable(get) else array)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def _slmsuite_version() -> str:
    try:
        from importlib.metadata import version

        return version("slmsuite")
    except Exception:
        return ""

"""The named, differentiable imperfections of a bench, declared once in `TABLE`.

One parameterisation serves three masters (DESIGN.md): the simulated bench's
hidden truth is a set of values for these parameters (its ``[truth]`` table is
parsed from `TABLE`), calibration estimates them (each entry names the routine
that does), and the twin uses whatever it was given (`Imperfections` builds its
parameters from `TABLE`). A new imperfection is one new `Imperfection` row
here, used in `system.Twin`, and so enters all three at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from labrig.optics.aberrations import ZERNIKE_NAMES
from labrig.optics.specs import BenchGeometry

if TYPE_CHECKING:  # the profile reader lives on the drivers' floor; only its type is needed here
    from drivers.config import Section


def ideal_phase_lut(levels: int, dtype=torch.float64) -> torch.Tensor:
    """Gray level g -> 2 pi g / levels: the LUT of a perfectly calibrated phase SLM."""
    return 2 * math.pi * torch.arange(levels, dtype=dtype) / levels


def gamma_phase_lut(levels: int, max_phase_rad: float, gamma: float, dtype=torch.float64) -> torch.Tensor:
    """A typical uncalibrated LCoS response: phase(g) = max_phase (g / levels) ** gamma."""
    g = torch.arange(levels, dtype=dtype) / levels
    return max_phase_rad * g**gamma


def ideal_intensity_lut(levels: int, dtype=torch.float64) -> torch.Tensor:
    """Gray level g -> intensity transmission g / (levels - 1)."""
    return torch.arange(levels, dtype=dtype) / (levels - 1)


def gamma_intensity_lut(levels: int, gamma: float, dtype=torch.float64) -> torch.Tensor:
    """An amplitude SLM's uncalibrated response: transmission(g) = (g / (levels - 1)) ** gamma."""
    return ideal_intensity_lut(levels, dtype) ** gamma


def ideal_lut(geometry: BenchGeometry, dtype=torch.float64) -> torch.Tensor:
    """The filter SLM's LUT when perfectly calibrated (phase or intensity, by its modulation)."""
    levels = geometry.filter.levels
    return ideal_phase_lut(levels, dtype) if geometry.filter.modulation == "phase" else ideal_intensity_lut(levels, dtype)


# -- profile readers: a [truth] table -> one imperfection's value ---------------------------------------

#: reads an imperfection's value from a profile's [truth] table (None: key absent, use the default)
ProfileReader = Callable[["Section", BenchGeometry, int], Any]


def _scalar(key: str, *, to_twin: Callable[[float], float] = float, min: float | None = None,
            positive: bool = False) -> ProfileReader:
    def read(table: Section, geometry: BenchGeometry, seed: int) -> Any:
        if key not in table:
            table.accept(key)
            return None
        return to_twin(table.get_float(key, min=min, positive=positive))
    read.keys = (key,)  # type: ignore[attr-defined]
    return read


def _pair(key: str) -> ProfileReader:
    def read(table: Section, geometry: BenchGeometry, seed: int) -> Any:
        if key not in table:
            table.accept(key)
            return None
        return table.get_floats(key, 2)
    read.keys = (key,)  # type: ignore[attr-defined]
    return read


def _read_zernike(table: Section, geometry: BenchGeometry, seed: int) -> Any:
    from labrig.optics.aberrations import zernike_from_names

    if "zernike_rad" not in table:
        table.accept("zernike_rad")
        return None
    zern = table.section("zernike_rad")
    try:
        return zernike_from_names({k: zern.get_float(k) for k in zern.data})
    except ValueError as exc:
        raise table.error("zernike_rad", f"{exc}") from None


_read_zernike.keys = ("zernike_rad",)  # type: ignore[attr-defined]


def _read_lut(table: Section, geometry: BenchGeometry, seed: int) -> Any:
    levels = geometry.filter.levels
    gamma = table.get_float("slm_lut_gamma", 1.0, positive=True)
    if geometry.filter.modulation == "phase":
        return gamma_phase_lut(levels, table.get_float("slm_max_phase_rad", 2 * math.pi, positive=True), gamma)
    table.accept("slm_max_phase_rad")
    return gamma_intensity_lut(levels, gamma)


_read_lut.keys = ("slm_lut_gamma", "slm_max_phase_rad")  # type: ignore[attr-defined]


def hot_pixel_map(geometry: BenchGeometry, fraction: float, rate_e_per_s: float, seed: int) -> torch.Tensor | None:
    """A seeded map of hot pixels (their dark rate in e-/s; 0 elsewhere), or None when there are none."""
    if fraction <= 0:
        return None
    gen = torch.Generator().manual_seed(seed + 1)
    mask = torch.rand(geometry.camera.resolution, generator=gen, dtype=torch.float64) < fraction
    return mask.to(torch.float64) * rate_e_per_s


def _read_hot(table: Section, geometry: BenchGeometry, seed: int) -> Any:
    return hot_pixel_map(
        geometry,
        table.get_float("hot_pixel_fraction", 0.0, min=0.0, max=1.0),
        table.get_float("hot_pixel_e_per_s", 5e5, min=0.0),
        seed,
    )


_read_hot.keys = ("hot_pixel_fraction", "hot_pixel_e_per_s")  # type: ignore[attr-defined]


# -- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imperfection:
    """One named imperfection: what it is, its shape and unit, where a profile sets it, who measures it.

    `shape` is a tuple, or ``"lut"`` (one value per filter gray level) or
    ``"camera"`` (one value per camera pixel). `default` is the ideal bench's
    value (a number, a list, or a function of the geometry). `profile_keys` are
    the keys of a simulated bench's ``[truth]`` table that set it and `read`
    turns them into the twin's units (e.g. degrees -> radians). `routine` is
    the calibration routine that estimates it. A buffer (``trainable=False``)
    is never fitted by gradient (the hot pixel map).
    """

    name: str
    shape: tuple[int, ...] | str
    default: Any
    unit: str
    description: str
    routine: str
    read: ProfileReader
    trainable: bool = True

    @property
    def profile_keys(self) -> tuple[str, ...]:
        return tuple(getattr(self.read, "keys", ()))

    def default_value(self, geometry: BenchGeometry, dtype: torch.dtype = torch.float64) -> Any:
        return self.default(geometry, dtype) if callable(self.default) else self.default

    def expected_shape(self, geometry: BenchGeometry) -> tuple[int, ...]:
        if self.shape == "lut":
            return (geometry.filter.levels,)
        if self.shape == "camera":
            return tuple(geometry.camera.resolution)
        return tuple(self.shape)  # type: ignore[arg-type]


TABLE: tuple[Imperfection, ...] = (
    Imperfection("input_shift_px", (2,), [0.0, 0.0], "input px",
                 "lateral shift (row, col) of the input modulator relative to the optical axis",
                 "registration", _pair("input_shift_px")),
    Imperfection("input_rotation_rad", (), 0.0, "rad", "rotation of the input modulator about the axis",
                 "registration", _scalar("input_rotation_deg", to_twin=math.radians)),
    Imperfection("filter_shift_px", (2,), [0.0, 0.0], "filter px",
                 "lateral shift (row, col) of the filter SLM relative to the Fourier-plane centre",
                 "registration", _pair("filter_shift_px")),
    Imperfection("camera_shift_px", (2,), [0.0, 0.0], "camera px",
                 "lateral shift (row, col) of the camera relative to the image of the axis",
                 "registration", _pair("camera_shift_px")),
    Imperfection("camera_rotation_rad", (), 0.0, "rad", "rotation of the camera about the axis",
                 "fourier", _scalar("camera_rotation_deg", to_twin=math.radians)),
    Imperfection("camera_scale", (), 1.0, "1", "magnification error of the imaging lens (1 = as designed)",
                 "fourier", _scalar("camera_scale", positive=True)),
    Imperfection("zernike_rad", (len(ZERNIKE_NAMES),), [0.0] * len(ZERNIKE_NAMES), "rad",
                 f"Noll Zernike coefficients over the Fourier plane ({', '.join(ZERNIKE_NAMES)})",
                 "aberrations", _read_zernike),
    Imperfection("slm_crosstalk_px", (), 0.0, "filter px", "width of the filter SLM's pixel crosstalk (fringing)",
                 "crosstalk", _scalar("slm_crosstalk_px", min=0.0)),
    Imperfection("illumination_waist_m", (), math.inf, "m", "1/e^2 radius of the Gaussian illumination (inf = flat)",
                 "illumination", _scalar("illumination_waist_m", positive=True)),
    Imperfection("illumination_center_m", (2,), [0.0, 0.0], "m", "centre (y, x) of the illumination on the input",
                 "illumination", _pair("illumination_center_m")),
    Imperfection("input_contrast", (), math.inf, "1", "input modulator contrast (on/off; inf = perfect black)",
                 "illumination", _scalar("input_contrast", min=1.0)),
    Imperfection("camera_gain", (), 1.0, "1", "camera conversion gain relative to the spec's conversion_dn_per_e",
                 "camera", _scalar("camera_gain_error", positive=True)),
    Imperfection("camera_offset_dn", (), 0.0, "DN", "camera black level relative to the spec's offset_dn",
                 "camera", _scalar("camera_offset_error_dn")),
    Imperfection("slm_lut", "lut", ideal_lut, "rad (phase) or 1 (amplitude)",
                 "filter SLM response per gray level", "slm_lut", _read_lut),
    Imperfection("hot_pixels_e_per_s", "camera", None, "e-/s", "extra dark rate of hot camera pixels (None = none)",
                 "camera", _read_hot, trainable=False),
)

BY_NAME: dict[str, Imperfection] = {entry.name: entry for entry in TABLE}
NAMES: tuple[str, ...] = tuple(BY_NAME)
#: every [truth] key the table reads (the simulator's parser accepts these and its own)
PROFILE_KEYS: tuple[str, ...] = tuple(k for entry in TABLE for k in entry.profile_keys)


def _checked(entry: Imperfection, value: Any, geometry: BenchGeometry, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value, dtype=np.float64) if not torch.is_tensor(value) else value,
                             dtype=dtype).clone()
    expected = entry.expected_shape(geometry)
    if tuple(tensor.shape) != expected:
        raise ValueError(f"imperfection {entry.name!r}: expected shape {expected}, got {tuple(tensor.shape)}")
    return tensor


class Imperfections(nn.Module):
    """Parameter values for every imperfection in `TABLE`; `ideal()` gives a perfect bench.

    All are `nn.Parameter`s with ``requires_grad=False``: calibration turns on
    the ones it fits (the hot pixel map is a buffer). Units are in the names
    (px = pixels of the plane named).
    """

    SCALARS = tuple(e.name for e in TABLE if e.shape == ())
    VECTORS = tuple(e.name for e in TABLE if isinstance(e.shape, tuple) and len(e.shape) == 1)

    def __init__(self, geometry: BenchGeometry, dtype: torch.dtype = torch.float64, **values: Any) -> None:
        super().__init__()
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise ValueError(f"unknown imperfection(s): {sorted(unknown)}; known: {', '.join(NAMES)}")
        for entry in TABLE:
            value = values.get(entry.name)
            if value is None:
                value = entry.default_value(geometry, dtype)
            if entry.trainable:
                setattr(self, entry.name, nn.Parameter(_checked(entry, value, geometry, dtype), requires_grad=False))
            else:
                self.register_buffer(entry.name, None if value is None else _checked(entry, value, geometry, dtype))

    @classmethod
    def ideal(cls, geometry: BenchGeometry, dtype: torch.dtype = torch.float64) -> Imperfections:
        return cls(geometry, dtype)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists/floats) for storing in calibration files and run snapshots."""
        out: dict[str, Any] = {}
        for name, p in self.named_parameters():
            out[name] = p.detach().cpu().tolist()
        if self.hot_pixels_e_per_s is not None:
            out["hot_pixel_count"] = int((self.hot_pixels_e_per_s > 0).sum())
        return out

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """Every imperfection's current tensor (detached), by name, in `TABLE` order."""
        return {e.name: (None if (t := getattr(self, e.name)) is None else t.detach()) for e in TABLE}


def apply_values(imperfections: Imperfections, values: Mapping[str, Any]) -> Imperfections:
    """Write estimates (a `RoutineResult.values`, table units) into `imperfections` in place.

    Unknown names and wrong shapes are errors naming the imperfection, so a
    routine that estimates something the table lacks fails loudly instead of
    being silently ignored. Returns `imperfections` for chaining.
    """
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown imperfection(s): {unknown}; known: {', '.join(NAMES)}")
    any_tensor = imperfections.camera_gain
    dtype, device = any_tensor.dtype, any_tensor.device
    for name, value in values.items():
        entry = BY_NAME[name]
        current = getattr(imperfections, name)
        if value is None:
            if entry.trainable:
                raise ValueError(f"imperfection {name!r}: None is only allowed for buffers")
            setattr(imperfections, name, None)
            continue
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64) if not torch.is_tensor(value) else value,
                                 dtype=dtype).to(device)
        expected = tuple(current.shape) if current is not None else None
        if expected is not None and tuple(tensor.shape) != expected:
            raise ValueError(f"imperfection {name!r}: expected shape {expected}, got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all() and name not in ("illumination_waist_m", "input_contrast"):
            raise ValueError(f"imperfection {name!r}: estimate is not finite: {value!r}")
        with torch.no_grad():
            if current is None or not entry.trainable:
                setattr(imperfections, name, tensor.clone())
            else:
                current.copy_(tensor)
    return imperfections


def read_profile_values(table: Section, geometry: BenchGeometry, seed: int) -> dict[str, Any]:
    """Every imperfection a profile's [truth] table sets (twin units); absent keys are left out.

    Marks the table's keys as read, so the caller's ``check_unused`` names typos.
    """
    out: dict[str, Any] = {}
    for entry in TABLE:
        value = entry.read(table, geometry, seed)
        if value is not None:
            out[entry.name] = value
    return out


__all__ = [
    "BY_NAME",
    "NAMES",
    "PROFILE_KEYS",
    "TABLE",
    "Imperfection",
    "Imperfections",
    "apply_values",
    "gamma_intensity_lut",
    "gamma_phase_lut",
    "hot_pixel_map",
    "ideal_intensity_lut",
    "ideal_lut",
    "ideal_phase_lut",
    "read_profile_values",
]

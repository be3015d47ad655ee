"""The bench program: everything a bench shows and reads to run one student.

A `Program` is plain data (numpy arrays and JSON-able values, no torch modules),
so it loads and runs without the training code. It is what `compile_program`
makes, what `labrig.deploy.store` writes to HDF5 and what the runner executes.
Its `digest()` hashes the content, so a run file can name the exact program it
ran and a corrupted file is caught on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from labrig.optics.specs import BenchGeometry, CameraSpec, ModulatorSpec

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "BackendProgram",
    "BenchConstraints",
    "FilterPatterns",
    "InputEncoding",
    "Multiplexing",
    "Program",
    "Readout",
    "Reference",
    "flatten",
    "geometry_from_dict",
    "geometry_to_dict",
    "unflatten",
]

FORMAT = "labrig-program"
#: bump when a field changes meaning or layout; readers refuse other versions
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchConstraints:
    """What the program assumes of the bench; checked against a bench before a run."""

    profile: str
    """The profile compiled for, as given (embedded name or file path): the default bench to run on."""
    slm_resolution: tuple[int, int]
    slm_bit_depth: int
    slm_modulation: str
    input_resolution: tuple[int, int]
    input_bit_depth: int
    camera_resolution: tuple[int, int]
    camera_bit_depth: int
    illumination: str


@dataclass(frozen=True)
class Multiplexing:
    """How the channels share the camera: all on one frame (spatial) or in groups (time)."""

    mode: str
    """``spatial`` (one frame) or ``time`` (several frames, one filter pattern each)."""
    reason: str
    """Why, in words (shown by ``labrig program show``)."""
    channels: int
    """Tiles in all (the student's channels; twice that for signed incoherent)."""
    per_frame: int
    capacity: int
    """Tiles of this size the filter grid holds on one frame, clear of the zero order
    and the double-phase residuals."""
    gap: int
    """Samples between neighbouring tiles (the layout's lattice spacing is tile + gap)."""

    @property
    def frames(self) -> int:
        return -(-self.channels // self.per_frame)

    def groups(self) -> list[list[int]]:
        """Channel indices shown on each frame."""
        return [list(range(s, min(s + self.per_frame, self.channels))) for s in range(0, self.channels, self.per_frame)]


@dataclass(frozen=True, eq=False)
class FilterPatterns:
    """What the filter SLM shows, one pattern per frame."""

    encoding: str
    """``double_phase`` (phase SLM, complex mask) or ``amplitude`` (|H| only)."""
    gray: np.ndarray
    """(F, N, N) gray levels."""
    lut: np.ndarray
    """(levels,) SLM response the gray levels were chosen for (phase rad or intensity)."""
    masks: np.ndarray
    """(F, N, N) complex64: the wanted multiplexed masks after normalisation (|H| <= 1)."""
    peak: np.ndarray
    """(F,) max |H| of each frame's mask before normalisation (undone in the readout)."""
    kernels: np.ndarray
    """(T, S, S) the kernels on the filter (PSF amplitudes for incoherent light)."""


@dataclass(frozen=True, eq=False)
class InputEncoding:
    """Images in [0, 1] -> input-modulator gray levels: scale, place, look up."""

    image_shape: tuple[int, int]
    modulator_shape: tuple[int, int]
    origin: tuple[int, int]
    """Modulator pixel of the image's top-left corner (the image is centred on the axis)."""
    scale: float
    """Images are multiplied by this (and clipped to [0, 1]) before encoding."""
    quantity: str
    """``amplitude`` (coherent: the image is the field amplitude) or ``intensity``."""
    lut: np.ndarray
    """(levels,) intensity transmission of each gray level."""


@dataclass(frozen=True, eq=False)
class Readout:
    """Camera settings and how tiles become the back end's input."""

    tile_shape: tuple[int, int]
    offsets: tuple[tuple[int, int], ...]
    """Centre of each tile of a frame, in output-grid samples from the axis."""
    rois: tuple[tuple[int, int, int, int], ...]
    """Camera pixels (top, left, bottom, right) of each tile of a frame."""
    exposure_s: tuple[float, ...]
    """Per frame: the brightest calibration tile at `exposure_fill` of the usable range."""
    gain: float
    laser_power_w: float
    dark_dn: tuple[float, ...]
    """Per frame: the reading with no light (offset plus dark current)."""
    scale: tuple[float, ...]
    """Per frame: signal units (|x ⊛ h|², the student's scale) per DN above dark."""
    exposure_fill: float
    exposure_note: str
    pair_subtract: bool
    """Signed incoherent kernels: tiles k and K + k are subtracted."""
    correction: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Per tile, a K x K filter ``weight`` (T, K, K) and offset ``bias`` (T,) applied in student
    units after `scale` (`labrig.deploy.correction`); empty: none (the ideal bench needs none)."""


@dataclass(frozen=True, eq=False)
class BackendProgram:
    """The electronic back end as data: rebuilt with `labrig.models.ElectronicBackend`."""

    config: dict[str, Any]
    in_channels: int
    num_classes: int
    state: dict[str, np.ndarray]
    classes: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Reference:
    """A few images with what the (ideal) twin says the bench will give for them."""

    images: np.ndarray
    """(R, H, W) float32 in [0, 1]."""
    tiles: np.ndarray
    """(R, C, th, tw) float32: the back end's input the twin predicts."""
    logits: np.ndarray
    """(R, classes) float32."""


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled student for one bench (see the module docstring)."""

    profile: str
    constraints: BenchConstraints
    geometry: dict[str, Any]
    detection: str
    source: dict[str, Any]
    """Where the student came from: model kind, config, state hash, checkpoint path."""
    multiplexing: Multiplexing
    filter: FilterPatterns
    input: InputEncoding
    readout: Readout
    backend: BackendProgram
    reference: Reference
    created: str
    schema_version: int = SCHEMA_VERSION

    @property
    def frames(self) -> int:
        return self.multiplexing.frames

    @property
    def out_channels(self) -> int:
        """Channels the back end reads (after pair subtraction)."""
        m = self.multiplexing.channels
        return m // 2 if self.readout.pair_subtract else m

    def bench_geometry(self) -> BenchGeometry:
        return geometry_from_dict(self.geometry)

    def digest(self) -> str:
        """SHA-256 of the content (metadata and every array), stable across save/load."""
        meta, arrays = flatten(self)
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for path in sorted(arrays):
            a = np.ascontiguousarray(arrays[path])
            h.update(f"\0{path}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(a.tobytes())
        return h.hexdigest()


# -- plain data <-> dataclasses ---------------------------------------------------------------


def geometry_to_dict(geometry: BenchGeometry) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(geometry)))


def geometry_from_dict(data: dict[str, Any]) -> BenchGeometry:
    def spec(cls: type, d: dict[str, Any]) -> Any:
        return cls(**{**d, "resolution": tuple(d["resolution"])})

    return BenchGeometry(**{
        **data,
        "input": spec(ModulatorSpec, data["input"]),
        "filter": spec(ModulatorSpec, data["filter"]),
        "camera": spec(CameraSpec, data["camera"]),
    })


def _is_array(tp: Any) -> bool:
    return tp is np.ndarray


def _is_array_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict and typing.get_args(tp)[1:] == (np.ndarray,)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def flatten(obj: Any, prefix: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A program (or part) -> (JSON-able metadata, arrays), both keyed by '/'-paths."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        path, value, tp = f"{prefix}{f.name}", getattr(obj, f.name), hints[f.name]
        if _is_array(tp):
            arrays[path] = np.asarray(value)
        elif _is_array_dict(tp):
            for key, a in value.items():
                arrays[f"{path}/{key}"] = np.asarray(a)
        elif dataclasses.is_dataclass(tp):
            m, a = flatten(value, f"{path}/")
            meta.update(m)
            arrays.update(a)
        else:
            meta[path] = _plain(value)
    return meta, arrays


def non_finite(program: Program) -> list[str]:
    """The '/'-paths of every array or number in `program` holding NaN or infinity: masks,
    patterns, back-end weights, readout constants. A program with any is not runnable."""
    meta, arrays = flatten(program)
    bad = [name for name, a in sorted(arrays.items())
           if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all()]

    def numbers(value: Any) -> list[float]:
        if isinstance(value, bool):
            return []
        if isinstance(value, int | float):
            return [float(value)]
        if isinstance(value, list | tuple):
            return [x for v in value for x in numbers(v)]
        return []

    bad += [name for name, value in sorted(meta.items())
            if not name.startswith(("source/", "geometry")) and not all(np.isfinite(numbers(value)))]
    return bad


def _typed(tp: Any, value: Any) -> Any:
    """JSON lists back into the (nested) tuples a field is annotated with."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        return tuple(_typed(a, v) for a, v in zip(args, value, strict=True))
    return value


def unflatten(cls: type, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "") -> Any:
    """Inverse of `flatten`; a missing key raises KeyError naming its path."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path, tp = f"{prefix}{f.name}", hints[f.name]
        if _is_array(tp):
            kwargs[f.name] = arrays[path]
        elif _is_array_dict(tp):
            start = f"{path}/"
            kwargs[f.name] = {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}
        elif dataclasses.is_dataclass(tp):
            kwargs[f.name] = unflatten(tp, meta, arrays, f"{path}/")
        elif path in meta:
            kwargs[f.name] = _typed(tp, meta[path])
        elif f.default is dataclasses.MISSING:
            raise KeyError(path)
    return cls(**kwargs)

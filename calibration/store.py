"""Calibration files: what each routine measured, with where, when and on what it was measured.

One HDF5 file per calibration, written atomically (`labrig.io.atomic_write`).
Layout: root attributes ``format``, ``schema_version``, ``calibration_hash``,
``labrig_version``, ``saved`` and ``provenance`` (JSON: the profile's name,
source, hash and merged TOML; device identities and settings; the geometry);
one group per routine under ``routines/<name>`` (in the order they ran) with
attributes (title, residual, frames, time, duration, its own provenance, the
non-array products as JSON) and datasets ``values/<imperfection>``,
``products/<key>`` and ``plot/<key>``.

A calibration is *fresh* for a bench while it is younger than `max_age_s` and
the bench's profile hash and device identities are those it was measured on;
`check_fresh` says why not (`StaleCalibration`), and compile/run/fine-tune call
it with an override flag. `Calibration.twin(geometry)` is the calibrated twin.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.base import RoutineResult
from drivers.errors import LabrigError

if TYPE_CHECKING:
    import torch

    from labrig.bench.bench import Bench
    from labrig.optics.imperfections import Imperfections
    from labrig.optics.specs import BenchGeometry
    from labrig.optics.system import Twin
    from labrig.profiles import Profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMAT = "labrig-calibration"
SCHEMA_VERSION = 1
#: default staleness age: a bench drifts; recalibrate at least daily
DEFAULT_MAX_AGE_S = 24 * 3600.0

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "Calibration",
    "CalibrationFileError",
    "RoutineRecord",
    "StaleCalibration",
    "bench_provenance",
    "calibration_hash",
    "check_fresh",
    "load_calibration",
    "profile_hash",
    "save_calibration",
    "staleness",
]


class CalibrationFileError(LabrigError):
    """A calibration file is missing, unreadable, foreign or of another schema version."""


class StaleCalibration(LabrigError):
    """The calibration no longer describes this bench (too old, other profile, other devices)."""

    def __init__(self, path: str, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(
            f"calibration {path} is stale: " + "; ".join(reasons)
            + " (run `labrig calibrate`, or pass the override flag to use it anyway)"
        )


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


# -- provenance ---------------------------------------------------------------------------------------


def profile_hash(profile: Profile) -> str:
    """SHA-256 of a profile's merged settings (its description left out): what makes it the same bench."""
    data = profile.as_dict()
    data.get("bench", {}).pop("description", None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def bench_provenance(bench: Bench) -> dict[str, Any]:
    """Profile (name, source, hash, merged TOML), device identities and settings, geometry."""
    from dataclasses import asdict

    from labrig.geometry import geometry_from_profile

    described = bench.describe()
    try:
        geometry: dict[str, Any] | None = json.loads(json.dumps(asdict(geometry_from_profile(bench.profile.root))))
    except LabrigError:
        geometry = None  # a bench without the twin's devices still gets a provenance
    return {
        "profile": {**described["profile"], "hash": profile_hash(bench.profile)},
        "profile_toml": bench.profile.to_toml_snapshot(),
        "devices": {
            role: {"kind": d.get("kind", ""), "identity": d.get("identity", {}), "settings": d.get("settings", {})}
            for role, d in described["devices"].items()
        },
        "geometry": geometry,
    }


# -- in memory ----------------------------------------------------------------------------------------


@dataclass
class RoutineRecord:
    """One routine's `RoutineResult` as stored: plus when, how long, and on which bench."""

    result: RoutineResult
    time: str
    duration_s: float
    provenance: dict[str, Any] = field(default_factory=dict)
    title: str = ""

    @property
    def name(self) -> str:
        return self.result.routine

    def age_s(self, now: _dt.datetime | None = None) -> float:
        return ((now or _now()) - _dt.datetime.fromisoformat(self.time)).total_seconds()


@dataclass
class Calibration:
    """Every routine's latest good result for one bench, with provenance; `path` once saved/loaded."""

    provenance: dict[str, Any]
    routines: dict[str, RoutineRecord] = field(default_factory=dict)
    saved: str = ""
    path: Path | None = None

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def empty(cls, bench: Bench) -> Calibration:
        return cls(bench_provenance(bench))

    def with_result(self, result: RoutineResult, *, duration_s: float, provenance: Mapping[str, Any] | None = None,
                    title: str = "", when: _dt.datetime | None = None) -> Calibration:
        """A copy with `result` replacing the routine's previous record (moved to the end: run order)."""
        routines = {k: v for k, v in self.routines.items() if k != result.routine}
        prov = dict(provenance) if provenance is not None else self.provenance
        routines[result.routine] = RoutineRecord(result, _iso(when or _now()), float(duration_s), prov, title)
        return replace(self, routines=routines, provenance=prov)

    # -- reading ----------------------------------------------------------------------------------
    @property
    def profile_name(self) -> str:
        return str(self.provenance.get("profile", {}).get("name", ""))

    @property
    def profile_hash(self) -> str:
        return str(self.provenance.get("profile", {}).get("hash", ""))

    @property
    def frames(self) -> int:
        return sum(r.result.frames for r in self.routines.values())

    @property
    def hash(self) -> str:
        return calibration_hash(self)

    def result(self, routine: str) -> RoutineResult:
        if routine not in self.routines:
            raise KeyError(f"calibration has no result for routine {routine!r} (has: {', '.join(self.routines) or 'none'})")
        return self.routines[routine].result

    def product(self, routine: str, key: str) -> Any:
        """One product of one routine (e.g. ``product("slm_lut", "inverse_lut")``), with a clear KeyError."""
        products = self.result(routine).products
        if key not in products:
            raise KeyError(f"routine {routine!r} stored no product {key!r} (has: {', '.join(products) or 'none'})")
        return products[key]

    def values(self) -> dict[str, Any]:
        """Every estimated imperfection, later routines overriding earlier ones (the order they ran)."""
        out: dict[str, Any] = {}
        for record in self.routines.values():
            out.update(record.result.values)
        return out

    def geometry(self) -> BenchGeometry:
        """The bench geometry the calibration was measured on (from its stored profile)."""
        from drivers.config import Section
        from labrig.geometry import geometry_from_profile

        text = self.provenance.get("profile_toml")
        if not text:
            raise CalibrationFileError("the calibration stores no bench profile; pass the geometry")
        return geometry_from_profile(Section(tomllib.loads(text), "", f"<calibration {self.path or ''}>"))

    def imperfections(self, geometry: BenchGeometry | None = None, dtype: torch.dtype | None = None) -> Imperfections:
        """The ideal imperfections with every estimate written in (`apply_values`), routine by routine."""
        import torch

        from labrig.optics.imperfections import Imperfections, apply_values

        geometry = geometry or self.geometry()
        imp = Imperfections.ideal(geometry, dtype or torch.float64)
        for record in self.routines.values():
            try:
                apply_values(imp, record.result.values)
            except ValueError as exc:
                raise CalibrationFileError(
                    f"calibration {self.path or ''}: routine {record.name!r}: {exc} "
                    "(was it measured on a bench of another geometry?)"
                ) from exc
        return imp

    def twin(self, geometry: BenchGeometry | None = None, dtype: torch.dtype | None = None) -> Twin:
        """The calibrated twin: the bench as measured (geometry defaults to the stored profile's)."""
        import torch

        from labrig.optics.system import Twin

        geometry = geometry or self.geometry()
        dtype = dtype or torch.float32
        return Twin(geometry, self.imperfections(geometry, dtype), dtype=dtype)


# -- hashing ------------------------------------------------------------------------------------------


def _feed(h: Any, value: Any) -> None:
    if value is None:
        h.update(b"N")
    elif isinstance(value, Mapping):
        for k in sorted(value):
            h.update(str(k).encode() + b"=")
            _feed(h, value[k])
    elif isinstance(value, str | bytes):
        h.update(value.encode() if isinstance(value, str) else value)
    else:
        a = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        if a.dtype.kind == "c":
            a = np.ascontiguousarray(a, dtype=np.complex128).view(np.float64)
        if a.dtype.kind in "biuf":
            a = np.ascontiguousarray(a, dtype=np.float64)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(a.tolist(), sort_keys=True, default=str).encode())


def calibration_hash(cal: Calibration) -> str:
    """SHA-256 of what a calibration says about the bench: each routine's values and products, and
    the profile hash. Programs compiled through a calibration record it, and `run` compares it."""
    h = hashlib.sha256()
    h.update(cal.profile_hash.encode())
    for name, record in cal.routines.items():
        h.update(b"|" + name.encode())
        _feed(h, record.result.values)
        _feed(h, record.result.products)
    return h.hexdigest()


# -- staleness ----------------------------------------------------------------------------------------


def _target(bench_or_profile: Bench | Profile | None) -> tuple[str | None, dict[str, dict[str, Any]] | None]:
    """(profile hash, device identities by role) of a bench, or (hash, None) of a profile."""
    if bench_or_profile is None:
        return None, None
    if hasattr(bench_or_profile, "devices") and hasattr(bench_or_profile, "profile"):
        described = bench_or_profile.describe()
        identities = {role: d.get("identity", {}) for role, d in described["devices"].items()}
        return profile_hash(bench_or_profile.profile), identities
    return profile_hash(bench_or_profile), None


def staleness(
    cal: Calibration,
    bench_or_profile: Bench | Profile | None = None,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
    *,
    now: _dt.datetime | None = None,
    routines: Iterable[str] | None = None,
) -> list[str]:
    """Why `cal` does not describe the bench now (empty list: fresh).

    `routines` limits the check to those (a missing one is a reason); age is
    the oldest checked routine's; a changed profile hash or device identity
    (vendor, model, serial) is a reason, each named.
    """
    names = list(routines) if routines is not None else list(cal.routines)
    reasons = [f"routine {n!r} was never run" for n in names if n not in cal.routines]
    records = [cal.routines[n] for n in names if n in cal.routines]
    if not cal.routines:
        reasons.append("it holds no routine results")
    if max_age_s is not None and records and math.isfinite(max_age_s):
        oldest = max(records, key=lambda r: r.age_s(now))
        age = oldest.age_s(now)
        if age > max_age_s:
            reasons.append(f"routine {oldest.name!r} is {_human(age)} old (limit {_human(max_age_s)})")
    want_hash, identities = _target(bench_or_profile)
    for record in records or [None]:
        prov = record.provenance if record is not None else cal.provenance
        label = f"routine {record.name!r}" if record is not None else "it"
        if want_hash is not None and prov.get("profile", {}).get("hash") != want_hash:
            reasons.append(f"{label} was measured with another profile "
                           f"({prov.get('profile', {}).get('name', '?')!r}, hash {str(prov.get('profile', {}).get('hash'))[:8]}; "
                           f"now {want_hash[:8]})")
        if identities is not None:
            for role, stored in prov.get("devices", {}).items():
                now_id = identities.get(role)
                if now_id is None:
                    reasons.append(f"{label}: the bench has no {role} device now")
                elif stored.get("identity", {}) != now_id:
                    reasons.append(f"{label}: the {role} device changed ({_ident(stored.get('identity', {}))} -> "
                                   f"{_ident(now_id)})")
    return list(dict.fromkeys(reasons))  # one line per distinct reason


def check_fresh(
    cal: Calibration,
    bench_or_profile: Bench | Profile | None = None,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
    *,
    now: _dt.datetime | None = None,
    routines: Iterable[str] | None = None,
) -> None:
    """Raise `StaleCalibration` naming every reason `cal` is stale for the bench (see `staleness`)."""
    reasons = staleness(cal, bench_or_profile, max_age_s, now=now, routines=routines)
    if reasons:
        raise StaleCalibration(str(cal.path or "<unsaved>"), reasons)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _ident(identity: Mapping[str, Any]) -> str:
    return " ".join(str(identity.get(k, "")) for k in ("vendor", "model", "serial") if identity.get(k)) or "unknown"


# -- file I/O -----------------------------------------------------------------------------------------


def _split(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Plain JSON-able entries and numeric arrays (stored as datasets)."""
    plain: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for k, v in mapping.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray) and v.dtype.kind in "biufc" and v.ndim > 0:
            arrays[k] = v
        elif isinstance(v, np.generic):
            plain[k] = v.item()
        elif isinstance(v, Mapping):
            plain[k] = json.loads(json.dumps(v, default=_json_default))
        else:
            plain[k] = json.loads(json.dumps(v, default=_json_default))
    return plain, arrays


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "detach"):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a calibration file")


def _h5_name(name: Any, what: str) -> str:
    """A name HDF5 stores as one member (a '/' would nest groups the loader cannot read back)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"{what} {name!r} cannot be an HDF5 name (empty, '.', or with '/' or NUL)")
    return name


def _write_mapping(group: Any, name: str, mapping: Mapping[str, Any]) -> None:
    plain, arrays = _split(mapping)
    for k in arrays:
        _h5_name(k, f"{group.name}: {name} key")
    group.attrs[f"{name}_json"] = json.dumps(plain, sort_keys=True, allow_nan=True)
    if arrays:
        sub = group.create_group(name)
        for k, a in arrays.items():
            sub.create_dataset(k, data=a, compression="gzip" if a.size > 4096 else None)


def _read_mapping(group: Any, name: str) -> dict[str, Any]:
    out: dict[str, Any] = _json(group.attrs.get(f"{name}_json", "{}"), f"{group.name}: {name}", dict)
    if name in group:
        for k, ds in group[name].items():
            out[k] = ds[()]
            if not isinstance(out[k], np.ndarray) or out[k].dtype.kind not in "biufc":
                raise TypeError(f"{group.name}/{name}/{k} is not a numeric array")
    return out


def save_calibration(cal: Calibration, path: str | Path) -> Calibration:
    """Write `cal` to `path` atomically (temporary file, then rename); returns it with `path` set."""
    import h5py

    import labrig
    from labrig.io import atomic_write

    path = Path(path)
    if not path.parent.is_dir():
        raise CalibrationFileError(f"cannot write calibration {path}: folder {path.parent} does not exist")
    saved = _iso(_now())
    digest = calibration_hash(cal)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["schema_version"] = SCHEMA_VERSION
            h5.attrs["calibration_hash"] = digest
            h5.attrs["labrig_version"] = labrig.__version__
            h5.attrs["saved"] = saved
            h5.attrs["provenance"] = json.dumps(cal.provenance, sort_keys=True, default=_json_default)
            h5.attrs["order"] = json.dumps(list(cal.routines))
            routines = h5.create_group("routines")
            for name, record in cal.routines.items():
                g = routines.create_group(_h5_name(name, "routine name"))
                r = record.result
                g.attrs["title"] = record.title
                g.attrs["residual"] = float(r.residual)
                g.attrs["residual_unit"] = r.residual_unit
                g.attrs["frames"] = int(r.frames)
                g.attrs["notes"] = r.notes
                g.attrs["time"] = record.time
                g.attrs["duration_s"] = float(record.duration_s)
                g.attrs["provenance"] = json.dumps(record.provenance, sort_keys=True, default=_json_default)
                _write_mapping(g, "values", r.values)
                _write_mapping(g, "products", r.products)
                _write_mapping(g, "plot", r.plot)

    try:
        atomic_write(path, write)  # removes its temporary file on any failure
    except (TypeError, ValueError, OSError, RuntimeError) as exc:
        # an unstorable product (an object, text arrays), a routine name HDF5 refuses, a full disk
        raise CalibrationFileError(f"cannot write calibration {path}: {type(exc).__name__}: {exc}") from exc
    return replace(cal, saved=saved, path=path)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file; a missing, corrupt, foreign or newer file is a `CalibrationFileError`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise CalibrationFileError(f"calibration file {path} does not exist")
    try:
        h5 = h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError) as exc:
        raise CalibrationFileError(f"calibration file {path} is not a readable HDF5 file: {exc}") from exc
    with h5:
        try:
            cal, stored = _read_file(h5, path)
        except CalibrationFileError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, OSError, RuntimeError) as exc:
            # h5py reports a damaged object, attribute or chunk as any of these
            raise CalibrationFileError(f"calibration file {path} is incomplete or corrupt: "
                                       f"{type(exc).__name__}: {exc}") from exc
    try:
        digest = calibration_hash(cal)
    except (TypeError, ValueError) as exc:
        raise CalibrationFileError(f"calibration file {path} holds values of the wrong kind: {exc}") from exc
    if digest != stored:
        raise CalibrationFileError(f"calibration file {path}: content does not match its hash (corrupted?)")
    return cal


def _text(value: Any, what: str) -> str:
    """An HDF5 string attribute as `str`; anything else (a number, an array, bytes) is corrupt."""
    if not isinstance(value, str):
        raise TypeError(f"{what} is a {type(value).__name__}, not text")
    return value


def _json(value: Any, what: str, kind: type) -> Any:
    out = json.loads(_text(value, what))
    if not isinstance(out, kind):
        raise TypeError(f"{what} is not a JSON {kind.__name__}")
    return out


def _number(value: Any, what: str, kind: type) -> Any:
    if isinstance(value, str | bytes) or np.ndim(value) != 0:
        raise TypeError(f"{what} is not a number")
    return kind(value)


def _read_file(h5: Any, path: Path) -> tuple[Calibration, str]:
    """The calibration in an open file and its stored hash; raises on anything missing or malformed."""
    if h5.attrs.get("format") != FORMAT:
        raise CalibrationFileError(f"{path} is not a labrig calibration (no {FORMAT!r} marker)")
    version = h5.attrs.get("schema_version", -1)
    if isinstance(version, str | bytes) or np.ndim(version) != 0 or int(version) != SCHEMA_VERSION:
        raise CalibrationFileError(f"{path}: calibration schema version {version!r}; this labrig reads "
                                   f"{SCHEMA_VERSION} (recalibrate with `labrig calibrate`)")
    routines: dict[str, RoutineRecord] = {}
    order = _json(h5.attrs["order"], "the routine order", list)
    for name in order:
        g = h5["routines"][_text(name, "a routine name")]
        where = f"routine {name!r}"
        result = RoutineResult(
            routine=name,
            values=_read_mapping(g, "values"),
            residual=_number(g.attrs["residual"], f"{where}: residual", float),
            residual_unit=_text(g.attrs["residual_unit"], f"{where}: residual unit"),
            frames=_number(g.attrs["frames"], f"{where}: frames", int),
            products=_read_mapping(g, "products"),
            plot=_read_mapping(g, "plot"),
            notes=_text(g.attrs["notes"], f"{where}: notes"),
        )
        time = _text(g.attrs["time"], f"{where}: time")
        if _dt.datetime.fromisoformat(time).tzinfo is None:
            raise ValueError(f"{where}: time {time!r} has no time zone")
        routines[name] = RoutineRecord(result, time, _number(g.attrs["duration_s"], f"{where}: duration", float),
                                       _json(g.attrs["provenance"], f"{where}: provenance", dict),
                                       _text(g.attrs["title"], f"{where}: title"))
    provenance = _json(h5.attrs["provenance"], "the provenance", dict)
    if not isinstance(provenance.get("profile", {}), dict):
        raise TypeError("the provenance's profile is not a table")
    for record in routines.values():
        if not isinstance(record.provenance.get("profile", {}), dict) or not isinstance(
                record.provenance.get("devices", {}), dict):
            raise TypeError(f"routine {record.name!r}: provenance profile/devices are not tables")
    cal = Calibration(provenance, routines, _text(h5.attrs["saved"], "the save time"), path)
    return cal, _text(h5.attrs["calibration_hash"], "the calibration hash")

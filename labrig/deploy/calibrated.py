"""Which calibration a program is compiled for, and refusing to run it on another.

`compile_program(..., calibration=...)` takes a calibration file (engineer A's
`calibration.store`), a loaded `Calibration`, or an `Imperfections` object (for
scripts and tests that know the bench's values). `resolve_calibration` turns
any of them into the calibrated imperfections, a content hash and a lineage
record, enforcing the store's staleness check (`check_fresh`) unless told not
to. The program keeps the lineage in ``source["calibration"]``: the hash, where
it came from, and the calibrated values, so the program's twin
(`ProgramTwin`) is the bench as measured.

`check_calibration(program, calibration_hash)` is what `run` calls: a program
compiled for one calibration does not run with another, nor with none, and a
program compiled without one does not run with one, unless told
(``ignore=True``, ``--ignore-calibration``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labrig.deploy.errors import ProgramError
from labrig.optics.imperfections import NAMES, Imperfections
from labrig.optics.specs import BenchGeometry

__all__ = [
    "CalibrationMismatch",
    "CompileCalibration",
    "calibration_identity",
    "check_calibration",
    "imperfections_hash",
    "load_calibration_file",
    "program_calibration",
    "program_imperfections",
    "resolve_calibration",
]

#: the key of `Program.source` that holds the calibration's lineage
SOURCE_KEY = "calibration"


class CalibrationMismatch(ProgramError):
    """A program compiled for one calibration is about to run with another (or with none)."""


@dataclass(frozen=True)
class CompileCalibration:
    """The calibrated imperfections a program is compiled for, and where they came from."""

    imperfections: Imperfections
    hash: str
    lineage: dict[str, Any]


def imperfections_hash(imperfections: Imperfections) -> str:
    """SHA-256 of every imperfection's value (names, shapes, values): the identity of an
    in-memory calibration that has no file."""
    h = hashlib.sha256()
    for name, t in imperfections.tensors().items():
        if t is None:
            h.update(f"\0{name}\0none".encode())
            continue
        a = np.ascontiguousarray(t.detach().cpu().to(torch.float64).numpy())
        h.update(f"\0{name}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _values(imperfections: Imperfections) -> dict[str, Any]:
    """The values a program keeps to rebuild the calibrated twin (the hot pixel map is left out:
    it is per camera pixel and the readout does not use it)."""
    return {name: t.detach().cpu().to(torch.float64).tolist()
            for name, t in imperfections.tensors().items() if t is not None and name != "hot_pixels_e_per_s"}


def load_calibration_file(path: str | Path) -> Any:
    """A calibration file through `calibration.store`, as a clear `ProgramError` when it cannot be read."""
    try:
        from calibration.store import load_calibration
    except ImportError as exc:  # pragma: no cover - the store ships with labrig
        raise ProgramError(f"cannot read calibration {path}: calibration.store is not available ({exc})") from exc
    return load_calibration(path)  # a missing or corrupt file is the store's CalibrationFileError


def _checked_calibration(calibration: Any, bench_or_profile: Any, allow_stale: bool,
                         max_age_s: float | None) -> tuple[Any, str | None, str | None]:
    """(loaded `Calibration`, its path or None, the staleness overridden or None); a stale
    calibration is a `ProgramError` unless `allow_stale`."""
    path = None
    if isinstance(calibration, str | Path):
        path = str(calibration)
        calibration = load_calibration_file(calibration)
    from calibration import store

    if bench_or_profile is None:
        return calibration, path, None
    kwargs: dict[str, Any] = {} if max_age_s is None else {"max_age_s": max_age_s}
    try:
        store.check_fresh(calibration, bench_or_profile, **kwargs)
    except store.StaleCalibration as exc:
        if not allow_stale:
            raise ProgramError(f"{exc} [the override: --allow-stale-calibration, or allow_stale=True]") from exc
        return calibration, path, str(exc)
    return calibration, path, None


def resolve_calibration(
    calibration: Any,
    geometry: BenchGeometry,
    *,
    bench_or_profile: Any = None,
    allow_stale: bool = False,
    max_age_s: float | None = None,
) -> CompileCalibration:
    """Calibrated imperfections, hash and lineage from a file path, a `Calibration` or an `Imperfections`.

    A file or `Calibration` is checked for staleness against `bench_or_profile` (the store's
    `check_fresh`: age, profile, device identities); `allow_stale` skips that check and says so
    in the lineage.
    """
    if isinstance(calibration, Imperfections):
        imp = copy.deepcopy(calibration).to(torch.float64)  # Module.to works in place: never on the caller's
        digest = imperfections_hash(imp)
        return CompileCalibration(imp, digest, {"hash": digest, "kind": "imperfections", "path": None,
                                                "values": _values(imp)})
    from calibration import store

    calibration, path, stale_note = _checked_calibration(calibration, bench_or_profile, allow_stale, max_age_s)
    imp = calibration.imperfections(geometry).to(torch.float64)
    digest = store.calibration_hash(calibration)
    lineage: dict[str, Any] = {"hash": digest, "kind": "file", "path": path,
                               "profile": _plain(getattr(calibration, "profile_name", None)),
                               "saved": _plain(getattr(calibration, "saved", None)),
                               "frames": _plain(getattr(calibration, "frames", None)),
                               "values": _values(imp)}
    if stale_note is not None:
        lineage["stale_override"] = stale_note
    return CompileCalibration(imp, digest, lineage)


def calibration_identity(calibration: Any, bench: Any, *, allow_stale: bool = False) -> str | None:
    """The hash a run compares with its program's: None for no calibration; a file or
    `Calibration` is first checked for staleness against the open `bench`."""
    if calibration is None:
        return None
    if isinstance(calibration, Imperfections):
        return imperfections_hash(calibration)
    from calibration import store

    calibration, _, _ = _checked_calibration(calibration, bench, allow_stale, None)
    return store.calibration_hash(calibration)


def _plain(value: Any) -> Any:
    """A JSON-able form of a provenance field (strings stay, anything else is its str)."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def program_calibration(program: Any) -> dict[str, Any] | None:
    """The lineage of the calibration a program was compiled for, or None."""
    value = program.source.get(SOURCE_KEY) if isinstance(program.source, dict) else None
    return value if isinstance(value, dict) else None


def program_imperfections(program: Any, geometry: BenchGeometry) -> Imperfections | None:
    """The calibrated imperfections a program was compiled for (None: compiled for the ideal bench)."""
    lineage = program_calibration(program)
    if lineage is None or not lineage.get("values"):
        return None
    values = {k: v for k, v in lineage["values"].items() if k in NAMES}
    return Imperfections(geometry, **values)


def check_calibration(program: Any, calibration_hash: str | None, *, ignore: bool = False) -> str | None:
    """Refuse (`CalibrationMismatch`) a run whose calibration is not the program's; returns a
    warning instead when `ignore`, None when they agree."""
    lineage = program_calibration(program)
    compiled = None if lineage is None else lineage.get("hash")
    if compiled == calibration_hash:
        return None
    if compiled is None:
        problem = (f"the program was compiled for the ideal bench (no calibration) but the bench is calibrated "
                   f"({calibration_hash[:12]}): recompile it with `labrig compile --calibration`")
    elif calibration_hash is None:
        problem = (f"the program was compiled for calibration {compiled[:12]} but no calibration was given: "
                   "pass the bench's current calibration (--calibration)")
    else:
        problem = (f"the program was compiled for calibration {compiled[:12]} but the bench's calibration is "
                   f"{calibration_hash[:12]}: recompile it with this calibration")
    if ignore:
        return problem + " (ignored as asked)"
    raise CalibrationMismatch(problem + "; or pass --ignore-calibration to run it anyway")

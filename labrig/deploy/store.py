"""Program files: one HDF5 file per compiled program, written atomically.

Layout: root attributes ``format``, ``schema_version``, ``program_hash``,
``labrig_version`` and ``meta`` (every non-array field as JSON); every array
is a dataset at its field path (``filter/gray``, ``backend/state/bn.weight``).
Reading checks format, schema version and the content hash, so a truncated,
corrupted or foreign file is a `ProgramError` that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import labrig
from labrig.deploy.errors import ProgramError
from labrig.deploy.program import FORMAT, SCHEMA_VERSION, Program, flatten, non_finite, unflatten
from labrig.io import atomic_write

__all__ = ["load_program", "program_hash", "save_program"]


def save_program(program: Program, path: str | Path) -> Path:
    """Write `program` to `path` (HDF5) atomically; returns the path."""
    import h5py

    meta, arrays = flatten(program)
    digest = program.digest()

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["schema_version"] = int(program.schema_version)
            h5.attrs["program_hash"] = digest
            h5.attrs["labrig_version"] = labrig.__version__
            h5.attrs["meta"] = json.dumps(meta, sort_keys=True)
            for name, a in arrays.items():
                h5.create_dataset(name, data=a)

    return atomic_write(Path(path), write)


def program_hash(path: str | Path) -> str:
    """The content hash stored in a program file (cheap: reads one attribute)."""

    with _open(Path(path)) as h5:
        try:
            return str(h5.attrs.get("program_hash", ""))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise ProgramError(f"program file {path} is corrupt: {type(exc).__name__}: {exc}") from exc


def _open(path: Path):
    import h5py

    if not path.is_file():
        raise ProgramError(f"program file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ProgramError(
            f"program file {path} is not a readable HDF5 file (corrupt or truncated): {exc}"
        ) from exc


def load_program(path: str | Path) -> Program:
    """Read and verify a program file (format, schema version, content hash)."""
    import h5py

    path = Path(path)
    with _open(path) as h5:
        try:
            marker, version = h5.attrs.get("format"), int(h5.attrs.get("schema_version", -1))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ProgramError(f"program file {path} is corrupt (its attributes cannot be read): "
                               f"{type(exc).__name__}: {exc}") from exc
        if marker != FORMAT:
            raise ProgramError(f"{path} is not a labrig program (no '{FORMAT}' marker)")
        if version != SCHEMA_VERSION:
            raise ProgramError(
                f"{path}: program schema version {version}; this labrig reads version "
                f"{SCHEMA_VERSION} (recompile it with `labrig compile`)"
            )
        try:
            meta = json.loads(h5.attrs["meta"])
            arrays: dict[str, np.ndarray] = {}

            def collect(name: str, node: object) -> None:
                if isinstance(node, h5py.Dataset):
                    arrays[name] = node[()]

            h5.visititems(collect)
            stored = str(h5.attrs["program_hash"])
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ProgramError(f"program file {path} is corrupt or truncated: {type(exc).__name__}: {exc}") from exc
    try:
        program = unflatten(Program, meta, {k: np.asarray(v) for k, v in arrays.items()})
    except KeyError as exc:
        raise ProgramError(f"program file {path} lacks {exc.args[0]!r} (corrupt or not a program)") from exc
    except (TypeError, ValueError) as exc:
        raise ProgramError(f"program file {path} is malformed: {exc}") from exc
    if program.digest() != stored:
        raise ProgramError(f"program file {path}: content does not match its hash (the file is corrupt)")
    bad = non_finite(program)
    if bad:
        raise ProgramError(f"program file {path} holds non-finite values (NaN or inf) in {', '.join(bad)}: "
                           "recompile it from a sound checkpoint")
    return program

"""Fuzzing (issue 16): profiles, programs, checkpoints and IDX files, mutated by hypothesis.
Every case is a clear error (a `LabrigError`, or `DataError` for data) or a correct result:
never a traceback of another type, never a partial file left behind.

The number of cases per test is LABRIG_FUZZ_EXAMPLES (default 100 in CI; set it to
thousands on demand: ``LABRIG_FUZZ_EXAMPLES=5000 pytest tests/test_reliability_fuzz.py``).
"""

from __future__ import annotations

import copy
import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from deploy_helpers import program, trained_student
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import LabrigError
from labrig.bench import Bench
from labrig.data.errors import DataError
from labrig.data.idx import IDX_DTYPES, read_idx
from labrig.deploy import load_program, save_program
from labrig.distill.checkpoint import read_checkpoint, save_checkpoint
from labrig.profiles import load_profile
from labrig.profiles.profile import _dump_toml

EXAMPLES = int(os.environ.get("LABRIG_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


def _leaf_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


BASE = load_profile("sim-ideal").as_dict()
PATHS = [*_leaf_paths(BASE), ("faults", "frame_timeout_prob"), ("faults", "disconnect_after_frames"),
         ("truth", "enabled"), ("devices", "camera", "nonsense"), ("optics", "extra")]

scalars = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.integers(-5, 200_000), min_size=2, max_size=2),
                   st.dictionaries(st.text(min_size=1, max_size=6), scalars, max_size=2))
mutation = st.tuples(st.sampled_from(PATHS), st.one_of(st.none(), values))


def _mutate(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


@pytest.fixture(scope="module")
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="labrig-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _no_leftovers(folder: Path, keep: set[str]) -> None:
    extra = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    assert not extra, f"partial files left behind: {extra}"


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=3))
def test_fuzzed_profiles_open_or_fail_clearly(workdir: Path, mutations: list) -> None:
    data = copy.deepcopy(BASE)
    data["bench"]["name"] = "fuzz"
    for path, value in mutations:
        _mutate(data, path, value)
    try:
        text = _dump_toml(data)
    except (TypeError, ValueError):
        return  # not expressible as TOML: nothing a user could write
    path = workdir / "fuzz.toml"
    path.write_text(text)
    try:
        with Bench.open(path) as bench:
            assert bench.profile.name == data["bench"].get("name", bench.profile.name)
            assert not bench.laser.enabled and not bench.shutter.shutter_open
    except LabrigError as exc:
        assert str(exc).strip()  # a message, naming what
    _no_leftovers(workdir, {"fuzz.toml"})


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_as_a_profile_is_a_clear_error(workdir: Path, text: str) -> None:
    path = workdir / "random.toml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        Bench.open(path).close()
    except LabrigError as exc:
        assert str(exc).strip()


def _flip(blob: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(blob)
    for offset, value in edits:
        data[offset % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=6)
cuts = st.one_of(st.none(), st.integers(0, 1 << 20))


@pytest.fixture(scope="module")
def program_blob(workdir: Path) -> tuple[bytes, str]:
    path = save_program(program(), workdir / "good-program.h5")
    return path.read_bytes(), program().digest()


@FUZZ
@given(change=edits, cut=cuts)
def test_corrupted_programs_load_exactly_or_fail_clearly(workdir: Path, program_blob, change, cut) -> None:
    blob, digest = program_blob
    path = workdir / "p.h5"
    path.write_bytes(_flip(blob, change, cut))
    try:
        loaded = load_program(path)
    except LabrigError as exc:
        assert str(path) in str(exc)
        return
    assert loaded.digest() == digest  # whatever changed was not content (padding, free space)


@pytest.fixture(scope="module")
def checkpoint_blob(workdir: Path) -> tuple[bytes, dict[str, torch.Tensor]]:
    path = save_checkpoint(workdir / "good.pt", trained_student(), metrics={"accuracy": 0.5})
    return path.read_bytes(), {k: v.clone() for k, v in trained_student().state_dict().items()}


@FUZZ
@given(change=edits, cut=cuts)
def test_corrupted_checkpoints_load_exactly_or_fail_clearly(workdir: Path, checkpoint_blob, change, cut) -> None:
    blob, state = checkpoint_blob
    path = workdir / "c.pt"
    path.write_bytes(_flip(blob, change, cut))
    try:
        loaded = read_checkpoint(path, kind="student")
    except LabrigError as exc:
        assert str(path) in str(exc)
        return
    assert loaded.state_dict.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded.state_dict[name], tensor), name


@FUZZ
@given(code=st.sampled_from([*IDX_DTYPES, 0x07, 0x0A]), dims=st.lists(st.integers(0, 2**32 - 1), min_size=0,
       max_size=4), payload=st.integers(0, 4096), gz=st.booleans(), magic=st.sampled_from([b"\0\0", b"\0\1", b"PK"]))
def test_idx_files_with_any_header_load_exactly_or_fail_clearly(workdir: Path, code, dims, payload, gz, magic) -> None:
    header = magic + bytes([code, len(dims)]) + np.array(dims, ">u4").tobytes()
    body = np.random.default_rng(payload).integers(0, 256, payload, dtype=np.uint8).tobytes()
    path = workdir / ("x.idx.gz" if gz else "x.idx")
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(header + body)
    else:
        path.write_bytes(header + body)
    try:
        array = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    dtype = IDX_DTYPES[code]
    assert magic == b"\0\0" and array.shape == tuple(dims)
    assert array.size * dtype.itemsize == payload
    np.testing.assert_array_equal(array.reshape(-1), np.frombuffer(body, dtype).reshape(-1))


# -- calibration files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration_blob(workdir: Path):
    """A real (small) calibration: the dark offset and a lit spot on the quarter-size bench."""
    from cal_fakes import Offset, Spot
    from cal_helpers import small_profile, small_truth

    from calibration.session import calibrate

    folder = workdir / "cal-bench"
    folder.mkdir()
    with Bench.open(small_profile(folder, small_truth(4))) as bench:
        cal = calibrate(bench, "all", out=folder / "good.h5", registry={"offset": Offset, "spot": Spot})
    return _Quiet(((folder / "good.h5").read_bytes(), cal))


class _Quiet(tuple):
    """A fixture value hypothesis would otherwise print in full (190 kB) with every failure."""

    def __repr__(self) -> str:
        return "<calibration blob>"


def _assert_loads_exactly(loaded, cal) -> None:
    from calibration.store import staleness

    assert list(loaded.routines) == list(cal.routines) and loaded.hash == cal.hash
    staleness(loaded)  # usable: ages, provenance and profile hash readable


@FUZZ
@given(change=edits, cut=cuts)
def test_corrupted_calibrations_load_exactly_or_fail_clearly(workdir: Path, calibration_blob, change, cut) -> None:
    from calibration.store import load_calibration

    blob, cal = calibration_blob
    path = workdir / "cal.h5"
    path.write_bytes(_flip(blob, change, cut))
    try:
        loaded = load_calibration(path)
    except LabrigError as exc:
        assert str(path) in str(exc)
        return
    _assert_loads_exactly(loaded, cal)


#: (where, attribute) pairs a calibration file stores; "" is the root, else a routine's group
CAL_ATTRS = [("", a) for a in ("format", "schema_version", "calibration_hash", "saved", "provenance", "order")] + [
    (f"routines/{r}", a) for r in ("offset", "spot")
    for a in ("title", "residual", "residual_unit", "frames", "notes", "time", "duration_s", "provenance",
              "values_json", "products_json", "plot_json")]
attr_values = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=30),
                        st.binary(max_size=12), st.lists(st.integers(-5, 5), min_size=1, max_size=3),
                        st.sampled_from(['["offset", "nope"]', '{"a": 1}', "[1, 2]", "null", "[]", '["spot"]',
                                         "labrig-calibration", "2026-13-45T99:00:00", '{"profile": 3}']))
cal_edit = st.one_of(st.tuples(st.sampled_from(CAL_ATTRS), attr_values),
                     st.tuples(st.just(("routines", "drop")), st.sampled_from(["offset", "spot", "offset/values"])),
                     st.tuples(st.just(("dataset", "replace")),
                               st.sampled_from(["routines/offset/products/dark_dn", "routines/offset/values",
                                                "routines/offset/products/dark_spectrum"])))


def _edit_h5(path: Path, where: tuple[str, str], value: Any) -> None:
    import h5py

    with h5py.File(path, "r+") as h5:
        if where == ("routines", "drop"):
            if value in h5["routines"]:
                del h5["routines"][value]
        elif where == ("dataset", "replace"):
            if value in h5:
                del h5[value]
            h5[value] = np.array(["text"], dtype=object) if "spectrum" in value else np.zeros((0, 3))
        elif not where[0] or where[0] in h5:
            node = h5[where[0]] if where[0] else h5
            if value is None:
                node.attrs.pop(where[1], None)
            else:
                try:
                    node.attrs[where[1]] = value
                except (TypeError, ValueError):
                    pass  # HDF5 cannot store it (text with a NUL): no file could hold it


@FUZZ
@given(changes=st.lists(cal_edit, min_size=1, max_size=3))
def test_edited_calibrations_load_exactly_or_fail_clearly(workdir: Path, calibration_blob, changes) -> None:
    from calibration.store import load_calibration

    blob, cal = calibration_blob
    path = workdir / "edited.h5"
    path.write_bytes(blob)
    for where, value in changes:
        _edit_h5(path, where, value)
    try:
        loaded = load_calibration(path)
    except LabrigError as exc:
        assert str(path) in str(exc)
        return
    _assert_loads_exactly(loaded, cal)


h5_names = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["a/b", "/0", ".", "x\0y"]))
products = st.dictionaries(h5_names, st.one_of(
    st.floats(), st.text(max_size=8), st.none(), st.just(object()), st.just(np.zeros(3, "U2")),
    st.just(np.arange(6.0).reshape(2, 3)), st.just(np.array([1 + 2j]))), max_size=3)


@FUZZ
@given(name=h5_names, extra=products, folder_exists=st.booleans())
def test_saving_any_calibration_writes_it_whole_or_nothing(workdir: Path, calibration_blob, name, extra,
                                                           folder_exists) -> None:
    from dataclasses import replace as dc_replace

    from calibration.base import RoutineResult
    from calibration.store import load_calibration, save_calibration

    _, cal = calibration_blob
    result = RoutineResult(name, {"camera_offset_dn": 1.0}, 0.1, "DN", 1, products=extra)
    changed = cal.with_result(result, duration_s=0.5)
    folder = workdir / "save"
    shutil.rmtree(folder, ignore_errors=True)
    if folder_exists:
        folder.mkdir()
    path = folder / "cal.h5"
    try:
        saved = save_calibration(changed, path)
    except LabrigError as exc:
        assert str(path) in str(exc)
        assert not folder.exists() or not any(folder.iterdir()), "a failed save left a file behind"
        return
    loaded = load_calibration(saved.path)
    assert loaded.hash == dc_replace(changed, path=path).hash and list(loaded.routines) == list(changed.routines)
    _no_leftovers(folder, {"cal.h5"})

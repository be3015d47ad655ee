"""Bench programs: what the compiler decides, the HDF5 round trip, and every way a
program file or a program/bench pair can be wrong (each refused with a message
that says which)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from deploy_helpers import fault_profile, make_student, program, train_set, trained_student

from labrig.bench import Bench
from labrig.deploy import (
    ProgramError,
    ProgramMismatch,
    check_fits,
    compile_program,
    load_program,
    run_program,
    save_program,
)
from labrig.deploy.program import flatten
from labrig.models import OpticsConfig, SCLCConfig, StudentConfig, StudentModel


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    p = program()
    path = save_program(p, tmp_path / "p.h5")
    q = load_program(path)
    assert q.digest() == p.digest()
    meta_p, arrays_p = flatten(p)
    meta_q, arrays_q = flatten(q)
    assert meta_q == meta_p
    assert arrays_q.keys() == arrays_p.keys()
    for name, a in arrays_p.items():
        np.testing.assert_array_equal(arrays_q[name], a, err_msg=name)
        assert arrays_q[name].dtype == a.dtype, name
    assert q.multiplexing == p.multiplexing and q.constraints == p.constraints
    assert isinstance(q.readout.rois[0], tuple) and q.bench_geometry() == p.bench_geometry()


def test_program_contents() -> None:
    p = program()
    assert p.profile == "sim-ideal" and p.constraints.slm_resolution == (256, 256)
    assert p.filter.gray.shape == (1, 256, 256) and p.filter.gray.dtype == np.uint8
    assert p.multiplexing.mode == "spatial" and "all 4 channels on one frame" in p.multiplexing.reason
    assert len(p.readout.rois) == 4 and p.readout.tile_shape == (20, 20)
    assert p.backend.in_channels == 4 and p.backend.num_classes == 10 and any(k.startswith("classifier.") for k in p.backend.state)
    assert p.reference.tiles.shape == (8, 4, 20, 20) and p.reference.logits.shape == (8, 10)
    assert p.source["state_sha256"] and p.source["config"]["frontend"]["channels"] == [4, 4]


def test_exposure_uses_the_bit_depth_without_saturating() -> None:
    """On the calibration (training) images the brightest tile pixel sits at the fill
    fraction of the usable signal: well into the bit depth, never saturated."""
    p = program()
    images = train_set().prepare(train_set().images)[:, 0].numpy()
    with Bench.open("sim-ideal") as bench:
        result = run_program(bench, p, images, None, progress=False)
    peak = result.tiles.max()
    cam = p.bench_geometry().camera
    assert peak < cam.max_dn
    usable = min(cam.full_well_e * cam.conversion_dn_per_e, cam.max_dn - cam.offset_dn)
    assert abs((peak - cam.offset_dn) / usable - p.readout.exposure_fill) < 0.01


def test_program_computes_what_the_optics_aware_student_computes() -> None:
    """Same plan, masks, encoding, quantisation and readout scale as `OpticalPath.measure`
    (noise off, the program's exposure): the twin's reference tiles equal the student's."""
    p, student = program(), trained_student()
    cfg = student.config
    aware = StudentModel(dataclasses.replace(
        cfg, frontend=dataclasses.replace(cfg.frontend, mode="optics_aware"),
        optics=OpticsConfig(profile="sim-ideal", noise=False, exposure_s=p.readout.exposure_s[0]))).double()
    aware.load_state_dict(student.state_dict())
    with torch.no_grad():
        tiles = aware.front(torch.from_numpy(p.reference.images).double()[:, None]).numpy()
    assert np.linalg.norm(tiles - p.reference.tiles) / np.linalg.norm(tiles) < 1e-6


def _calibration() -> torch.Tensor:
    return train_set().prepare(train_set().images[:32])


def test_time_multiplexing_is_chosen_and_explained() -> None:
    capped = make_student(max_per_frame=2)
    p = compile_program(capped, "sim-ideal", _calibration(), n_reference=2)
    assert p.multiplexing.mode == "time" and p.frames == 2 and p.filter.gray.shape[0] == 2
    assert "max_per_frame" in p.multiplexing.reason and len(p.readout.exposure_s) == 2
    per_channel = compile_program(make_student(layout="per_channel"), "sim-ideal", _calibration(), n_reference=2)
    assert per_channel.frames == 4 and "per_channel" in per_channel.multiplexing.reason
    # a grid too small for all 12 tiles of 20x20 at once: the compiler says so
    many = StudentModel(StudentConfig(frontend=SCLCConfig(channels=(4, 30), kernel_sizes=(3, 3)),
                                      input_size=(16, 16), optics=OpticsConfig(profile="sim-ideal")))
    p = compile_program(many, "sim-ideal", _calibration(), n_reference=1)
    assert p.multiplexing.mode == "time" and p.multiplexing.per_frame == p.multiplexing.capacity == 24
    assert "because the 256x256 filter grid holds 24 tiles" in p.multiplexing.reason


def test_linear_detection_is_refused() -> None:
    model = StudentModel(StudentConfig(frontend=SCLCConfig(channels=(2, 2), kernel_sizes=(3, 3), detection="linear"),
                                       input_size=(16, 16)))
    with pytest.raises(ProgramError, match="linear detection"):
        compile_program(model, "sim-ideal", _calibration())


# -- bad files -------------------------------------------------------------------------------


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match=r"nowhere\.h5 does not exist"):
        load_program(tmp_path / "nowhere.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5 at all\n" * 100)
    with pytest.raises(ProgramError, match=r"text\.h5 is not a readable HDF5 file"):
        load_program(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("x", data=[1, 2])
    with pytest.raises(ProgramError, match=r"other\.h5 is not a labrig program"):
        load_program(other)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_program(program(), tmp_path / "p.h5")
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 1000, 2000):
        cut = tmp_path / f"cut{keep}.h5"
        cut.write_bytes(data[:keep])
        with pytest.raises(ProgramError, match=f"cut{keep}.h5"):
            load_program(cut)


def test_corrupted_bytes_are_caught(tmp_path: Path) -> None:
    """Flipped bytes in the array data change the content hash; in the metadata, HDF5 fails."""
    path = save_program(program(), tmp_path / "p.h5")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(4):
        bad = bytearray(data)
        start = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
        bad[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        target = tmp_path / f"bad{trial}.h5"
        target.write_bytes(bytes(bad))
        with pytest.raises(ProgramError, match=f"bad{trial}.h5"):
            load_program(target)


def test_other_schema_version_is_refused_on_load(tmp_path: Path) -> None:
    path = save_program(program(), tmp_path / "p.h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 99
    with pytest.raises(ProgramError, match=r"p\.h5: program schema version 99; this labrig reads version 1"):
        load_program(path)


# -- program vs bench -------------------------------------------------------------------------


def _with(p, **changes):
    groups: dict[str, dict] = {}
    top = {}
    for key, value in changes.items():
        group, _, field = key.partition("__")
        if field:
            groups.setdefault(group, {})[field] = value
        else:
            top[key] = value
    return dataclasses.replace(p, **top, **{g: dataclasses.replace(getattr(p, g), **kw) for g, kw in groups.items()})


@pytest.mark.parametrize(("changes", "which"), [
    ({"schema_version": 2}, "schema version: the program has 2"),
    ({"constraints__slm_resolution": (512, 512)}, "SLM size: the program is for 512x512, this bench's filter SLM is 256x256"),
    ({"constraints__slm_bit_depth": 10}, "SLM bit depth: the program is for 10 bits"),
    ({"constraints__camera_bit_depth": 16}, "camera bit depth: the program is for 16 bits"),
    ({"multiplexing__per_frame": 30}, "channel count: the program puts 30 tiles of 20x20 on a frame; this bench's 256x256 filter grid holds 24"),
    ({"backend__in_channels": 6}, "channel count: the back end reads 6 channels, the optics deliver 4"),
])
def test_a_program_that_does_not_fit_is_refused_naming_the_misfit(changes: dict, which: str) -> None:
    bad = _with(program(), **changes)
    with Bench.open("sim-ideal") as bench:
        with pytest.raises(ProgramMismatch) as info:
            check_fits(bad, bench)
    assert which in str(info.value)
    assert any(which in p for p in info.value.problems)
    assert "bench 'sim-ideal'" in str(info.value)


@pytest.mark.parametrize(("table", "which"), [
    ("[devices.filter]\nresolution = [512, 512]", "SLM size: the program is for 256x256, this bench's filter SLM is 512x512"),
    ("[devices.filter]\nbit_depth = 10", "SLM bit depth: the program is for 8 bits, this bench's filter SLM has 10"),
    ("[devices.camera]\nbit_depth = 10", "camera bit depth: the program is for 12 bits, this bench's camera has 10"),
])
def test_another_bench_is_refused_before_any_light(tmp_path: Path, table: str, which: str) -> None:
    """Refused by `run_program` itself: nothing shown, no light, no run file."""
    path = tmp_path / "other.toml"
    path.write_text(f'[bench]\nname = "other"\nextends = "sim-ideal"\n\n{table}\n')
    out = tmp_path / "run.h5"
    with Bench.open(path) as bench:
        with pytest.raises(ProgramMismatch, match=which):
            run_program(bench, program(), train_set(), out, progress=False)
        assert not bench.shutter.shutter_open and not bench.laser.enabled
        assert int(bench.filter.pattern.max()) == 0
    assert not out.exists()


def test_a_fitting_bench_passes(tmp_path: Path) -> None:
    with Bench.open(fault_profile(tmp_path, "")) as bench:
        check_fits(program(), bench)

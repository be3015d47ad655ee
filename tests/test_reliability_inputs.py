"""Bad inputs (issue 16, findings 7-13): programs on other optics, non-finite checkpoints and
programs, forged IDX headers and absurd profiles, random-byte checkpoints, GenICam free run,
and a file lock that works without fcntl. Each is a clear error naming what and where."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import held_out, program, train_set, trained_student

from drivers.errors import ConfigError, FrameDropped
from labrig.bench import Bench
from labrig.data.errors import DataError
from labrig.data.idx import read_idx
from labrig.deploy import (
    ProgramError,
    ProgramMismatch,
    compile_program,
    load_program,
    run_program,
    save_program,
)
from labrig.distill.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from labrig.filelock import FileLock, LockHeld
from labrig.geometry import geometry_from_profile
from labrig.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]


def _profile(tmp_path: Path, body: str, name: str = "other.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[bench]\nname = "other"\nextends = "sim-ideal"\n\n{body}\n')
    return path


# -- finding 7 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "key"), [
    ("[optics]\nwavelength_m = 633e-9", "optics wavelength_m: the program is for 5.32e-07, this bench has 6.33e-07"),
    ("[optics]\nfocal1_m = 0.05", "optics focal1_m"),
    ("[optics]\nfocal2_m = 0.04", "optics focal2_m"),
])
def test_a_program_refuses_a_bench_with_other_optics(tmp_path: Path, body: str, key: str) -> None:
    with Bench.open(_profile(tmp_path, body)) as bench:
        with pytest.raises(ProgramMismatch, match="does not fit bench 'other'") as info:
            run_program(bench, program(), held_out(), None, progress=False, limit=8)
        assert not bench.laser.enabled
    assert any(key in p for p in info.value.problems), info.value.problems


def test_the_same_optics_under_another_name_still_fit(tmp_path: Path) -> None:
    with Bench.open(_profile(tmp_path, "")) as bench:
        assert run_program(bench, program(), held_out(), None, progress=False, limit=8).status == "complete"


# -- finding 8 ----------------------------------------------------------------------------------------

def _nan_student() -> torch.nn.Module:
    student = trained_student()
    nan = type(student)(student.config)
    nan.load_state_dict(student.state_dict())
    name = next(n for n, p in nan.named_parameters() if "back" in n)
    with torch.no_grad():
        dict(nan.named_parameters())[name].view(-1)[0] = float("nan")
    return nan.eval(), name


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    student, name = _nan_student()
    path = save_checkpoint(tmp_path / "nan.pt", student)
    with pytest.raises(CheckpointError, match=rf"nan\.pt: tensor\(s\) '{name}' hold non-finite"):
        read_checkpoint(path)
    with pytest.raises(ProgramError, match=rf"weights are not finite.*{name}"):
        compile_program(student, "sim-ideal", train_set(), n_reference=1)


def test_a_program_with_nan_masks_is_refused_naming_the_array(tmp_path: Path) -> None:
    good = program()
    masks = good.filter.masks.copy()
    masks[0, 0, 0] = np.nan
    bad = dataclasses.replace(good, filter=dataclasses.replace(good.filter, masks=masks))
    path = save_program(bad, tmp_path / "nan.h5")
    with pytest.raises(ProgramError, match=r"nan\.h5 holds non-finite values .* filter/masks"):
        load_program(path)


def test_random_bytes_are_not_a_checkpoint_and_do_not_claim_code(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="is not a checkpoint") as info:
        read_checkpoint(path)
    assert "could run code" not in str(info.value)


# -- finding 9 ----------------------------------------------------------------------------------------

def test_a_forged_gzip_idx_header_fails_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    header = bytes([0, 0, 0x08, 3]) + np.array([2**31 - 1, 28, 28], ">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + bytes(28 * 28 * 4))
    t = time.perf_counter()
    with pytest.raises(DataError, match=r"forged or corrupt header"):
        read_idx(path)
    assert time.perf_counter() - t < 1.0  # no gigabytes allocated first


def test_an_absurd_resolution_is_that_key_s_error(tmp_path: Path) -> None:
    path = _profile(tmp_path, "[devices.input]\nresolution = [100000, 100000]")
    with pytest.raises(ConfigError, match=r"devices\.input.*resolution.*beyond any device") as info:
        Bench.open(path)
    assert "devices.laser" not in str(info.value)


# -- finding 11 ---------------------------------------------------------------------------------------

def test_genicam_triggers_by_default_and_free_run_discards_the_frame_in_flight() -> None:
    from test_drivers_genicam import FakeBuffer, _fake_camera

    from drivers.config import Section
    from drivers.plugin import DeviceContext
    from drivers.vendors.genicam.camera import GenICamCamera, GenICamSettings

    camera = GenICamCamera.from_config(Section({}, "devices.camera"),
                                       DeviceContext(Section({}), "camera"))
    assert camera.config.trigger_source == "Software"
    free = _fake_camera(GenICamSettings(trigger_source=None))
    assert int(free.grab()[0, 0]) == 4  # frames 1, 2 stale, 3 was exposing when asked: dropped
    ids = iter([10, 11, 13])
    original = FakeBuffer.__init__

    def numbered(self, acquirer, frame):
        original(self, acquirer, frame)
        self.frame_id, self.timestamp_ns = next(ids, 99), 1_000

    FakeBuffer.__init__ = numbered
    try:
        triggered = _fake_camera(GenICamSettings(trigger_source="Software"))
        triggered.acquirer.stale = 0
        with pytest.raises(FrameDropped, match=r"frame ids \[10, 11, 13\] are not consecutive"):
            triggered.grab_burst(3)
    finally:
        FakeBuffer.__init__ = original


def test_genicam_without_a_software_trigger_falls_back_to_free_run(caplog: pytest.LogCaptureFixture) -> None:
    from test_drivers_genicam import _fake_camera, fake_node_map

    from drivers.vendors.genicam.camera import GenICamSettings

    nm = fake_node_map()
    del nm.TriggerSoftware
    with caplog.at_level(logging.WARNING):
        camera = _fake_camera(GenICamSettings(trigger_default=True), nm)
    assert camera.config.trigger_source is None and "free run" in caplog.text


# -- finding 13 ---------------------------------------------------------------------------------------

def test_jobs_import_without_fcntl() -> None:
    """Windows has no fcntl: the experiments (and the demo) must still import."""
    code = "import sys; sys.modules['fcntl'] = None; import labrig.experiments.jobs, labrig.filelock; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_file_lock_names_its_holder_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; from labrig.filelock import FileLock; "
                               f"FileLock({str(lock)!r}, what='the holder').acquire(); print('held', flush=True); "
                               "time.sleep(60)"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=rf"locked by process {holder.pid} on .* \(the holder\)"):
            FileLock(lock).acquire()
    finally:
        holder.kill()
        holder.wait()
    with FileLock(lock, what="next") as again:  # the kernel dropped the dead holder's lock
        assert again.held


def test_profiles_load_quickly_enough_for_fuzzing() -> None:
    geometry_from_profile(load_profile("sim-ideal").root)

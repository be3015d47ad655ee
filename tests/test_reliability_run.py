"""A run under faults (issue 16, findings 1-6): no frame without light is data, faults on the
batched path are injected and survived, a disconnect loses nothing, a full disk and a second
writer stop cleanly, special files are never replaced. Real files, signals and subprocesses."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_helpers import write_idx_split
from deploy_helpers import fault_profile, held_out, program, train_set
from model_helpers import toy_dataset

from labrig.bench import Bench
from labrig.deploy import (
    RunAborted,
    RunFileError,
    read_run,
    run_program,
    save_program,
)
from labrig.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def _clean(limit: int | None = None) -> np.ndarray:
    with Bench.open("sim-ideal") as bench:
        return run_program(bench, program(), held_out(), None, progress=False, limit=limit).predictions


# -- finding 1: a run never goes on in the dark ---------------------------------------------------

def test_make_safe_from_another_thread_aborts_the_run_and_resume_completes(tmp_path: Path) -> None:
    """The console's Make safe button: another thread calls `bench.make_safe()` mid-run."""
    out = tmp_path / "run.h5"
    with Bench.open("sim-ideal") as bench:
        def press_make_safe(done: int, total: int, metrics: dict) -> None:
            if done >= 32 and bench.guard.armed:
                t = threading.Thread(target=bench.make_safe)
                t.start()
                t.join()

        with pytest.raises(RunAborted, match=r"made safe during the run.*not measured") as info:
            run_program(bench, program(), held_out(), out, batch=32, progress=False, on_progress=press_make_safe,
                        pipelined=False)
        assert not bench.shutter.shutter_open and not bench.laser.enabled
    result = info.value.result
    assert result.status == "light-off" and result.images == 32 and result.not_measured == [32, 64]
    run = read_run(out)
    assert run["status"] == "light-off" and run["done"] == 32
    with Bench.open("sim-ideal") as bench:
        resumed = run_program(bench, program(), held_out(), out, batch=32, progress=False)
    assert resumed.status == "complete" and resumed.images == 160
    np.testing.assert_array_equal(read_run(out)["predictions"], _clean())


def test_light_lost_behind_the_guards_back_is_caught_at_the_dark_level(tmp_path: Path) -> None:
    """The laser stops emitting without the driver knowing (a trip, a power cut): the frames
    sit at the dark level, and the chunk is refused."""
    out = tmp_path / "run.h5"
    with Bench.open("sim-ideal") as bench:
        def trip(done: int, total: int, metrics: dict) -> None:
            bench.camera.world.laser_enabled = False  # the light is gone; laser.enabled still says on

        with pytest.raises(RunAborted, match=r"dark level") as info:
            run_program(bench, program(), held_out(), out, batch=32, progress=False, on_progress=trip,
                        pipelined=False)
    assert info.value.result.status == "light-off"
    assert read_run(out)["done"] == 32  # the first, lit chunk only


def test_a_dark_bench_records_nothing(tmp_path: Path) -> None:
    with Bench.open("sim-ideal") as bench:
        bench.laser.power_w = 0.0  # an armed bench whose laser gives no light
        bench.camera.world.laser_power_w = 0.0
        original = type(bench.laser)._set_power_hw
        type(bench.laser)._set_power_hw = lambda self, p: None  # the compiled power never arrives
        try:
            with pytest.raises(RunAborted, match=r"dark level"):
                run_program(bench, program(), held_out(), tmp_path / "d.h5", batch=32, progress=False)
        finally:
            type(bench.laser)._set_power_hw = original
    assert read_run(tmp_path / "d.h5")["done"] == 0


def _cli_data(tmp_path: Path, n: int) -> Path:
    data = tmp_path / "toy"
    test = toy_dataset(n, seed=7)
    write_idx_split(data, train_set().images[:16, 0].numpy(), train_set().labels[:16].numpy().astype("u1"), "train")
    write_idx_split(data, test.images[:, 0].numpy(), test.labels.numpy().astype("u1"), "test")
    return data


def _labrig(*args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen([sys.executable, "-m", "labrig.cli", *args], env=env, cwd=ROOT, preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


def _started(run_file: Path, timeout_s: float = 60.0) -> None:
    """Wait until the run file holds a first chunk (read without HDF5's lock: the run has it open)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if run_file.exists():
            try:
                with h5py.File(run_file, "r", locking=False) as h5:
                    if int(h5["done"][0]) > 0:
                        return
            except (OSError, KeyError):
                pass
        time.sleep(0.1)
    raise AssertionError("the run never wrote a chunk")


def test_cli_sigint_while_sigint_is_inherited_ignored_stops_the_run(tmp_path: Path) -> None:
    """`labrig run ... &` from a script: SIGINT arrives while inherited as ignored. The guard makes
    the bench safe, and the run must stop (not end "complete" with dark images)."""
    data = _cli_data(tmp_path, 1200)
    prog = save_program(program(), tmp_path / "prog.h5")
    report = tmp_path / "r.json"
    proc = _labrig("run", "--program", str(prog), "--data", str(data), "--report", str(report), "--batch", "16",
                   "--no-progress", ignore_sigint=True)
    try:
        _started(tmp_path / "r.h5")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert "made safe during the run (signal SIGINT received)" in err and "Traceback" not in err
    run = read_run(tmp_path / "r.h5")
    assert run["status"] == "light-off" and 0 < run["done"] < 1200 and run["done"] % 16 == 0
    assert json.loads(report.read_text())["status"] == "light-off"


# -- finding 2: faults are injected (and survived) on the batched path ------------------------------

def test_batched_path_injects_and_survives_every_transient_fault(tmp_path: Path) -> None:
    profile = fault_profile(tmp_path, "seed = 4\nframe_timeout_prob = 0.03\ndropped_frame_prob = 0.03\n"
                                      "slm_write_error_prob = 0.03")
    with Bench.open(profile) as bench:
        result = run_program(bench, program(), held_out(), None, batch=64, progress=False, timeout_s=0.01, retries=4)
    assert result.status == "complete"
    assert {"DeviceTimeout", "FrameDropped", "WriteFailed"} <= set(result.faults), result.faults
    assert result.timing["retried_frames"] == sum(result.faults.values()) > 0
    np.testing.assert_array_equal(result.predictions, _clean())


# -- finding 3: a disconnect with the default batch keeps every image and reconnects ---------------

def test_disconnect_with_batch_64_reconnects_and_loses_nothing(tmp_path: Path) -> None:
    profile = fault_profile(tmp_path, "disconnect_after_frames = 100")
    with Bench.open(profile) as bench:
        result = run_program(bench, program(), held_out(), tmp_path / "r.h5", batch=64, progress=False,
                             reconnect_wait_s=0)
    assert result.status == "complete" and result.images == 160
    assert result.timing["reconnects"] == 1 and result.faults == {"DeviceDisconnected": 1}
    np.testing.assert_array_equal(read_run(tmp_path / "r.h5")["predictions"], _clean())


def test_permanent_disconnect_with_batch_64_keeps_the_images_before_it(tmp_path: Path) -> None:
    profile = fault_profile(tmp_path, "disconnect_after_frames = 100\ndisconnect_permanent = true")
    out = tmp_path / "r.h5"
    for _ in range(3):  # every resume makes progress, however the batch and the fault line up
        with Bench.open(profile) as bench, pytest.raises(RunAborted, match="did not come back"):
            run_program(bench, program(), held_out(), out, batch=64, progress=False, reconnect_wait_s=0,
                        reconnects=1)
        if read_run(out)["done"] >= 100:
            break
    assert read_run(out)["done"] == 100
    with Bench.open(profile) as bench:
        assert run_program(bench, program(), held_out(), out, batch=64, progress=False).status == "complete"
    np.testing.assert_array_equal(read_run(out)["predictions"], _clean())


# -- finding 4: a full disk stops the run cleanly ---------------------------------------------------

def test_an_oserror_on_write_stops_cleanly_with_the_file_valid_to_the_last_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected on the writer: h5py's dataset write raises ENOSPC on the third chunk."""
    out = tmp_path / "run.h5"
    calls = {"n": 0}
    original = h5py.Dataset.__setitem__

    def full_disk(self, key, value):
        if self.name == "/tiles":
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    with Bench.open("sim-ideal") as bench:
        with pytest.raises(RunAborted, match=r"writing run file .*run\.h5 failed \(the disk is full\).*64 of 160"):
            run_program(bench, program(), held_out(), out, batch=32, progress=False)
        assert not bench.shutter.shutter_open and not bench.laser.enabled
    monkeypatch.setattr(h5py.Dataset, "__setitem__", original)
    run = read_run(out)
    assert run["done"] == 64 and run["status"] == "fault"
    with Bench.open("sim-ideal") as bench:
        assert run_program(bench, program(), held_out(), out, batch=32, progress=False).images == 160
    np.testing.assert_array_equal(read_run(out)["predictions"], _clean())


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root (or a user namespace) to mount a small tmpfs")
def test_a_real_full_disk_refuses_before_the_light_and_a_disk_filled_mid_run_loses_nothing(tmp_path: Path) -> None:
    """A real tmpfs (in a private mount namespace): too small for the run -> a clear error before
    any light; filled by someone else mid-run -> the reserved space carries the run to the end."""
    data = _cli_data(tmp_path, 1200)
    prog = save_program(program(), tmp_path / "prog.h5")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = (f"{sys.executable} -m labrig.cli run --program {prog} --data {data} --report {mnt}/r.json "
           "--batch 32 --no-progress")
    script = f"""
mount -t tmpfs -o size={{size}} tmpfs {mnt}
{run} &
p=$!
{{fill}}
wait $p; echo "rc=$?"
[ -f {mnt}/r.h5 ] && {sys.executable} -c "from labrig.deploy import read_run; r = read_run('{mnt}/r.h5'); print('done', r['done'], r['status'])"
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    small = subprocess.run(["unshare", "-m", "sh", "-c", script.format(size="512k", fill="")], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert "rc=2" in small.stdout and "need" in small.stderr and "MB free" in small.stderr, small.stderr
    assert "Traceback" not in small.stderr
    # r.h5 appears by rename, its space already reserved: fill at once (a fast machine ends the run
    # within a second of the file appearing, before a later filler would)
    fill = f"while [ ! -f {mnt}/r.h5 ]; do sleep 0.05; done; dd if=/dev/zero of={mnt}/filler bs=64k 2>/dev/null"
    filled = subprocess.run(["unshare", "-m", "sh", "-c", script.format(size="8m", fill=fill)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert "done 1200 complete" in filled.stdout, filled.stdout + filled.stderr
    assert "Traceback" not in filled.stderr and "Segmentation" not in filled.stderr
    assert "No space left on device" in filled.stderr and "r.json" in filled.stderr  # only the report did not fit


_FILLED_BEFORE_THE_SESSION = """
import json, subprocess, sys
import numpy as np
from labrig.deploy.runfile import Chunk, RunFile, RunLayout, read_run
mnt = sys.argv[1]
layout = RunLayout(total=96, classes=10, tiles=(4, 8, 8), frames=(1, 32, 32), frame_dtype="uint16",
                   save_frames=False, twin=False)
run = RunFile.open(f"{mnt}/r.h5", layout, np.arange(96) % 10, {"program_hash": "p", "data_digest": "d"})
subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/filler", "bs=4k"], capture_output=True)  # the disk is full
run.begin_session({"profile": "sim", "devices": {"camera": {"exposure_us": 1000}}, "notes": "x" * 20000})
for s in range(0, 96, 32):
    run.append(Chunk(s, np.full(32, 3), np.zeros((32, 10), np.float32), np.ones((32, 4, 8, 8), np.uint16)))
run.finish("complete", None, {"timing": {"wall_s": 1.5}})
r = read_run(f"{mnt}/r.h5")
print("read", r["done"], r["status"], json.dumps(r["sessions"][0]["devices"]), r["sessions"][0]["timing"]["wall_s"])
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root (or a user namespace) to mount a small tmpfs")
def test_a_disk_filled_before_the_session_starts_still_records_every_image_and_the_session(tmp_path: Path) -> None:
    """The race the CLI test above leaves to chance, made certain: no write after the run file's
    creation may need new space, not even the session's record (HDF5 does not survive a failed
    metadata write, so a group or attribute written then would corrupt the file)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_FILLED_BEFORE_THE_SESSION)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4m tmpfs {mnt} && "
                          f"{sys.executable} {script} {mnt} && df -k {mnt}"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert 'read 96 complete {"camera": {"exposure_us": 1000}} 1.5' in out.stdout, out.stdout + out.stderr
    assert " 0 100% " in out.stdout, out.stdout  # the disk really was full throughout


# -- finding 5: one writer per run file ---------------------------------------------------------------

def test_a_second_run_into_the_same_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data = _cli_data(tmp_path, 1200)
    prog = save_program(program(), tmp_path / "prog.h5")
    report = tmp_path / "r.json"
    first = _labrig("run", "--program", str(prog), "--data", str(data), "--report", str(report), "--batch", "16",
                    "--no-progress")
    try:
        _started(tmp_path / "r.h5")
        second = _labrig("run", "--program", str(prog), "--data", str(data), "--report", str(report),
                         "--no-resume", "--no-progress")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert f"is in use by process {first.pid} on" in err and "labrig run" in err, err
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert read_run(tmp_path / "r.h5")["done"] > 0


# -- finding 6: reports never replace special files -----------------------------------------------------

def test_report_refuses_a_special_file_and_leaves_it_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    from labrig.cli import main

    data = _cli_data(tmp_path, 16)
    prog = save_program(program(), tmp_path / "prog.h5")
    assert main(["run", "--program", str(prog), "--data", str(data), "--report", str(fifo),
                 "--out", str(tmp_path / "r.h5"), "--no-progress"]) == 2
    assert fifo.is_fifo() and not (tmp_path / "r.h5").exists()
    with pytest.raises(FileExistsError, match="named pipe"):
        atomic_write(fifo, lambda tmp: tmp.write_text("{}"))
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path, lambda tmp: tmp.write_text("{}"))
    assert fifo.is_fifo()


def test_run_file_refuses_a_special_file(tmp_path: Path) -> None:
    fifo = tmp_path / "run.h5"
    os.mkfifo(fifo)
    with Bench.open("sim-ideal") as bench, pytest.raises(FileExistsError, match="named pipe"):
        run_program(bench, program(), held_out(), fifo, progress=False, limit=8)
    assert fifo.is_fifo()


def test_bad_batch_and_limit_are_clear_errors(tmp_path: Path) -> None:
    from labrig.cli import main

    prog = save_program(program(), tmp_path / "prog.h5")
    for bad in (["--batch", "0"], ["--limit", "-5"], ["--batch", "x"], ["--timeout", "0"]):
        assert main(["run", "--program", str(prog), "--report", str(tmp_path / "r.json"), *bad]) == 2
    with Bench.open("sim-ideal") as bench:
        with pytest.raises(ValueError, match="batch must be"):
            run_program(bench, program(), held_out(), None, batch=0, progress=False)
        with pytest.raises(ValueError, match="limit must be"):
            run_program(bench, program(), held_out(), None, limit=-5, progress=False)
    assert not (tmp_path / "r.json").exists()


def test_two_opens_in_one_process_are_refused_too(tmp_path: Path) -> None:
    """The lock is per open, not per process: a console holding a run file open refuses a second."""
    from labrig.deploy.runfile import RunFile, RunLayout

    layout = RunLayout(total=4, classes=2, tiles=(1, 2, 2), frames=(1, 4, 4), frame_dtype="uint16",
                       save_frames=False, twin=False)
    ident = {"program_hash": "p", "data_digest": "d"}
    first = RunFile.open(tmp_path / "x.h5", layout, np.zeros(4, np.int64), ident)
    try:
        with pytest.raises(RunFileError, match=rf"in use by process {os.getpid()}"):
            RunFile.open(tmp_path / "x.h5", layout, np.zeros(4, np.int64), ident, resume=False)
    finally:
        first.close()
    RunFile.open(tmp_path / "x.h5", layout, np.zeros(4, np.int64), ident).close()  # free again

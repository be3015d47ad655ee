"""Running a program on the simulated bench: equal to the twin with the truth off, an
honest gap with it on, and a valid, resumable run file after a fault, Ctrl-C or cancel."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import (
    fault_profile,
    held_out,
    make_student,
    program,
    train_set,
    trained_student,
)

from labrig.bench import Bench
from labrig.deploy import (
    RunAborted,
    RunFileError,
    compile_program,
    read_run,
    run_program,
    write_report,
)
from labrig.deploy.readout import TileReader
from labrig.deploy.result import REPORT_KEYS
from labrig.distill import evaluate


def test_sim_ideal_bench_equals_the_twin(tmp_path: Path) -> None:
    p = program()
    with Bench.open("sim-ideal") as bench:
        result = run_program(bench, p, held_out(), tmp_path / "run.h5", twin=True, progress=False)
    assert result.status == "complete" and result.images == result.total == len(held_out())
    assert result.accuracy is not None and result.accuracy > 0.6  # a trained student, well above chance
    assert abs(result.accuracy - result.twin_accuracy) <= 0.002
    assert result.twin_tile_rel_error < 1e-3 and result.twin_tile_rel_error_max < 1e-3
    # and the twin through the program is the student through its optics-aware path
    digital = evaluate(trained_student(), held_out(), device="cpu")["accuracy"]
    assert abs(digital - result.accuracy) < 0.1
    # the reference images the compiler stored come out as the twin said
    with Bench.open("sim-ideal") as bench:
        ref = run_program(bench, p, p.reference.images, None, progress=False)
    measured = TileReader(p).signal(ref.tiles)
    assert np.linalg.norm(measured - p.reference.tiles) / np.linalg.norm(p.reference.tiles) < 1e-3
    np.testing.assert_array_equal(ref.predictions, p.reference.logits.argmax(1))


def test_sim_with_truth_on_measures_the_gap(tmp_path: Path) -> None:
    """No calibration yet: the misaligned, aberrated, noisy bench departs from the twin,
    and the run says by how much."""
    with Bench.open("sim") as bench:
        result = run_program(bench, program(), held_out(), tmp_path / "sim.h5", twin=True, progress=False, limit=64)
    assert result.twin_tile_rel_error > 0.05
    assert result.accuracy_drop_vs_twin == pytest.approx(result.twin_accuracy - result.accuracy)
    report = result.to_report()
    assert report["accuracy_drop_vs_twin"] is not None and report["profile"] == "sim"


def test_report_keys_and_run_file_contents(tmp_path: Path) -> None:
    with Bench.open("sim-ideal") as bench:
        result = run_program(bench, program(), held_out(), tmp_path / "r.h5", progress=False, limit=40, batch=16,
                             save_frames=True)
    write_report(result, tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert tuple(report) == REPORT_KEYS
    assert {"wall_s", "device_s", "software_s", "software_per_frame_ms"} <= set(report["timing"])
    assert report["images"] == 40 and report["frames"] == 40 and report["program_hash"] == program().digest()
    run = read_run(tmp_path / "r.h5")
    assert run["status"] == "complete" and run["done"] == 40 and run["program_hash"] == program().digest()
    assert len(run["sessions"]) == 1 and run["sessions"][0]["devices"]["camera"]["settings"]
    import h5py

    with h5py.File(tmp_path / "r.h5") as h5:
        assert h5["tiles"].shape == (40, 4, 20, 20) and h5["frames"].shape == (40, 1, 256, 256)
        assert h5["logits"].shape == (40, 10)


def test_device_fault_closes_the_shutter_keeps_the_file_and_resume_completes(tmp_path: Path) -> None:
    profile = fault_profile(tmp_path, "disconnect_after_frames = 100\ndisconnect_permanent = true")
    out = tmp_path / "run.h5"
    with Bench.open(profile) as bench:
        with pytest.raises(RunAborted, match=r"DeviceDisconnected.*shutter is closed; 100 of 160 images done") as info:
            run_program(bench, program(), held_out(), out, batch=32, progress=False, reconnect_wait_s=0)
        assert not bench.shutter.shutter_open and not bench.laser.enabled
    partial = read_run(out)  # the 4 images of the last chunk grabbed before the fault are kept too
    assert partial["status"] == "fault" and partial["done"] == 100 and len(partial["predictions"]) == 100
    assert info.value.result.images == 100 and info.value.result.status == "fault"
    assert info.value.result.not_measured == [100, 128]
    with Bench.open(profile) as bench:  # reconnected: a fresh bench, same profile
        resumed = run_program(bench, program(), held_out(), out, batch=32, progress=False)
    assert resumed.status == "complete" and resumed.images == 160 and resumed.session_images == 60
    with Bench.open("sim-ideal") as bench:
        clean = run_program(bench, program(), held_out(), None, batch=32, progress=False)
    np.testing.assert_array_equal(read_run(out)["predictions"], clean.predictions)
    assert [s["status"] for s in read_run(out)["sessions"]] == ["fault", "complete"]


def test_ctrl_c_mid_run_leaves_a_valid_file(tmp_path: Path) -> None:
    out = tmp_path / "run.h5"

    def interrupt(done: int, total: int, metrics: dict) -> None:
        if done >= 64:
            raise KeyboardInterrupt

    with Bench.open("sim-ideal") as bench:
        with pytest.raises(KeyboardInterrupt, match=r"run interrupted: the shutter is closed; \d+ of 160 images done"):
            run_program(bench, program(), held_out(), out, batch=32, progress=False, on_progress=interrupt)
        assert not bench.shutter.shutter_open and not bench.laser.enabled
    run = read_run(out)
    assert run["status"] == "interrupted" and 64 <= run["done"] < 160 and run["done"] % 32 == 0
    with Bench.open("sim-ideal") as bench:
        assert run_program(bench, program(), held_out(), out, batch=32, progress=False).images == 160


def test_cancel_stops_between_chunks(tmp_path: Path) -> None:
    stop = threading.Event()
    seen = []

    def progress(done: int, total: int, metrics: dict) -> None:
        seen.append((done, total, metrics.get("accuracy")))
        stop.set()

    with Bench.open("sim-ideal") as bench:
        result = run_program(bench, program(), held_out(), tmp_path / "c.h5", batch=32, progress=False,
                             cancel=stop, on_progress=progress)
        assert not bench.shutter.shutter_open
    assert result.status == "cancelled" and 0 < result.images < 160
    assert seen[0][1] == 160 and seen[-1][0] == result.images
    assert read_run(tmp_path / "c.h5")["status"] == "cancelled"


def test_frame_by_frame_path_retries_dropped_frames_and_equals_the_batched_one(tmp_path: Path) -> None:
    profile = fault_profile(tmp_path, "seed = 3\ndropped_frame_prob = 0.15")
    with Bench.open(profile) as bench:
        slow = run_program(bench, program(), held_out(), None, batched=False, pipelined=False, progress=False,
                           limit=48, retries=5)
    with Bench.open("sim-ideal") as bench:
        fast = run_program(bench, program(), held_out(), None, progress=False, limit=48)
    assert slow.timing["retried_frames"] > 0
    np.testing.assert_array_equal(slow.tiles, fast.tiles)
    np.testing.assert_array_equal(slow.predictions, fast.predictions)


def test_time_multiplexed_program_runs_with_one_exposure_per_frame(tmp_path: Path) -> None:
    student = make_student(max_per_frame=2)
    student.load_state_dict(trained_student().state_dict())
    p = compile_program(student.eval(), "sim-ideal", train_set().prepare(train_set().images[:64]), n_reference=2)
    assert p.frames == 2
    with Bench.open("sim-ideal") as bench:
        result = run_program(bench, p, held_out(), tmp_path / "t.h5", twin=True, progress=False, limit=48)
    assert result.frames == 96 and result.frames_per_image == 2
    assert result.twin_tile_rel_error < 1e-3 and result.accuracy == result.twin_accuracy


def test_resume_refuses_another_program(tmp_path: Path) -> None:
    out = tmp_path / "run.h5"
    with Bench.open("sim-ideal") as bench:
        run_program(bench, program(), held_out(), out, progress=False, limit=32)
        other = compile_program(trained_student(), "sim-ideal", held_out(), exposure_fill=0.5, n_reference=1)
        with pytest.raises(RunFileError, match=r"run\.h5 was made with other program"):
            run_program(bench, other, held_out(), out, progress=False, limit=32)
        fresh = run_program(bench, other, held_out(), out, progress=False, limit=32, resume=False)
    assert fresh.images == 32 and read_run(out)["program_hash"] == other.digest()


def test_a_full_journal_trims_the_oldest_sessions_bulk_and_keeps_their_counts() -> None:
    """The journal has a fixed size (it is rewritten in place); many resumed sessions with big
    device records drop the bulk of the oldest ones first, never their start and status."""
    from labrig.deploy.runfile import JOURNAL_BYTES, _encode_journal

    sessions = [{"start": i, "status": "fault", "profile_toml": "x" * (JOURNAL_BYTES // 8)} for i in range(12)]
    journal = json.loads(_encode_journal({"status": "running", "error": "", "sessions": sessions}))
    kept = journal["sessions"]
    assert [s["start"] for s in kept] == list(range(12)) and all(s["status"] == "fault" for s in kept)
    assert kept[0].get("trimmed") and "profile_toml" not in kept[0]
    assert "profile_toml" in kept[-1] and not kept[-1].get("trimmed")

"""Compiling through a calibration: masks made for the bench as measured beat the ideal bench's
masks on that bench, and a program runs only with the calibration it was compiled for.

The compiler is tested alone here: the calibration it compiles through is built directly from
the simulated bench's known truth (an `Imperfections`), not measured by the routines (their own
tests cover that), so a failure here is the compiler's.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from cal_helpers import INPUT_PITCH_M, WAVELENGTH_M, small_profile
from deploy_helpers import program
from model_helpers import toy_dataset

from labrig.bench import Bench
from labrig.data import ImageDataset
from labrig.deploy import compile_program, run_program
from labrig.deploy.calibrated import CalibrationMismatch, check_calibration, imperfections_hash
from labrig.deploy.errors import ProgramError
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.deploy.readout import TileReader
from labrig.deploy.refine import RefineConfig, shift_mask
from labrig.deploy.twin import ProgramTwin
from labrig.distill import TrainConfig, Trainer, seed_everything
from labrig.models import OpticsConfig, SCLCConfig, StudentConfig, StudentModel
from labrig.optics.imperfections import Imperfections
from labrig.optics.resample import affine_warp

#: a 96 x 96 filter and camera: room for four 12 x 12 tiles (8 x 8 images, collapsed 5 x 5 kernels)
N, IMAGE = 96, 8
FOCAL1_M = INPUT_PITCH_M * N * 8e-6 / WAVELENGTH_M
TRUTH = {
    "noise": False, "seed": 3,
    "camera_shift_px": [0.8, -0.6], "camera_rotation_deg": 0.3, "camera_scale": 1.002,
    "filter_shift_px": [0.5, -0.3], "slm_crosstalk_px": 0.45, "slm_lut_gamma": 1.12, "slm_max_phase_rad": 6.0,
    "zernike_rad": {"defocus": 0.3, "astig_oblique": 0.1}, "camera_offset_error_dn": 5.0,
    "camera_gain_error": 1.04,
}


def _bench(tmp_path: Path, truth: dict | bool, name: str, unmodelled: bool | dict = False) -> Path:
    return small_profile(tmp_path, truth, name=name, optics={"focal1_m": FOCAL1_M, "focal2_m": FOCAL1_M / 2},
                         filter={"resolution": [N, N]}, camera={"resolution": [N, N]}, unmodelled=unmodelled)


def _student_and_truth(tmp_path: Path, real_profile: Path):
    """(student trained on the ideal bench, train, test, the real bench's named truth, the ideal program)."""
    student = _student(str(_bench(tmp_path, False, "ideal")))
    train, test = _data()
    with Bench.open(real_profile) as bench:
        truth = bench.shared["sim.world"].truth.imperfections  # the known truth stands in for a calibration
    return student, train, test, truth, compile_program(student, real_profile, train, classes=train.classes)


def _small(data: ImageDataset) -> ImageDataset:
    """The toy task at 8 x 8 (2 x 2 average pooling keeps the class squares)."""
    images = torch.nn.functional.avg_pool2d(data.images.float(), 2).round().to(torch.uint8)
    return ImageDataset(images, data.labels, data.classes, name="toy8")


@functools.lru_cache(maxsize=1)
def _data() -> tuple[ImageDataset, ImageDataset]:
    return _small(toy_dataset(320)), _small(toy_dataset(128, seed=5))


@functools.lru_cache(maxsize=1)
def _student(profile: str) -> StudentModel:
    seed_everything(0)
    model = StudentModel(StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                                       input_size=(IMAGE, IMAGE), optics=OpticsConfig(profile=profile)))
    Trainer(model, TrainConfig(epochs=4, batch_size=32, lr=3e-3, progress=False, seed=1, device="cpu")).fit(_data()[0])
    return model.eval()


def _tile_error(bench_profile: Path, prog, target_prog, images: ImageDataset,
                calibration: Imperfections | None = None) -> tuple[float, float]:
    """(relative tile error against the ideal program on the ideal twin, accuracy) of `prog` on a bench."""
    with Bench.open(bench_profile) as bench:
        result = run_program(bench, prog, images, None, progress=False, calibration=calibration)
    measured = TileReader(prog).signal(result.tiles).astype(np.float64)
    reader = TileReader(target_prog)
    x = ImageSource(images, target_prog.input.image_shape).batch(0, len(images))
    expected = reader.signal(reader.cut(ProgramTwin(target_prog).frames(encode_images(target_prog.input, x))),
                             np.float64)
    return float(np.linalg.norm(measured - expected) / np.linalg.norm(expected)), float(result.accuracy)


def test_compiling_through_the_calibration_beats_the_ideal_compile(tmp_path: Path) -> None:
    ideal_profile = _bench(tmp_path, False, "ideal")
    real_profile = _bench(tmp_path, TRUTH, "real")
    student = _student(str(ideal_profile))
    train, test = _data()
    with Bench.open(real_profile) as bench:
        truth = bench.shared["sim.world"].truth.imperfections  # the known truth stands in for a calibration
    plain = compile_program(student, real_profile, train, classes=train.classes)
    calibrated = compile_program(student, real_profile, train, classes=train.classes, calibration=truth,
                                 refine=RefineConfig(steps=40, probes=32, batch=16))
    lineage = calibrated.source["calibration"]
    assert truth.camera_gain.dtype == torch.float32  # the caller's object is left as it was
    assert lineage["hash"] == imperfections_hash(truth)
    report = lineage["refine"]
    assert report["error_final"] < report["error_analytic"] <= report["error_plain"]  # each stage earns its place
    # whole-pixel ROIs follow the shifted camera
    assert calibrated.readout.rois != plain.readout.rois
    err_ideal, acc_ideal = _tile_error(ideal_profile, plain, plain, test)
    err_plain, acc_plain = _tile_error(real_profile, plain, plain, test)
    err_cal, acc_cal = _tile_error(real_profile, calibrated, plain, test, truth)
    assert err_ideal < 1e-3
    assert err_cal < 0.5 * err_plain, (err_cal, err_plain)
    assert acc_cal >= acc_plain and acc_cal >= acc_ideal - 0.1, (acc_cal, acc_plain, acc_ideal)
    # the program's own twin is the calibrated one: it predicts this bench (unmodelled effects off)
    with Bench.open(real_profile) as bench:
        twinned = run_program(bench, calibrated, test, None, progress=False, twin=True, calibration=truth, limit=32)
    assert twinned.twin_tile_rel_error < 0.02


def test_the_readout_correction_takes_the_tiles_closer_than_the_patterns_alone(tmp_path: Path) -> None:
    real_profile = _bench(tmp_path, TRUTH, "real")
    student, train, test, truth, plain = _student_and_truth(tmp_path, real_profile)
    refine = RefineConfig(steps=20, probes=32, batch=16)
    without = compile_program(student, real_profile, train, classes=train.classes, calibration=truth,
                              refine=dataclasses.replace(refine, readout_kernel=0))
    corrected = compile_program(student, real_profile, train, classes=train.classes, calibration=truth,
                                refine=refine)
    assert without.readout.correction == {} and "readout_correction" not in without.source["calibration"]
    report = corrected.source["calibration"]["readout_correction"]
    assert report["kept"] and report["error_after"] < report["error_before"], report
    assert report["probes"] == refine.readout_probes and report["held_back"] == refine.readout_probes // 4
    channels = corrected.multiplexing.channels
    assert corrected.readout.correction["weight"].shape == (channels, channels, 3, 3)  # mixing, the default
    assert report["mix"] is True
    np.testing.assert_array_equal(corrected.filter.gray, without.filter.gray)  # the patterns are the same
    from labrig.deploy.show import format_program

    assert ("per-tile correction: 3x3 filter of every tile and offset fitted on the calibrated twin's tiles"
            in format_program(corrected))
    err_without, _ = _tile_error(real_profile, without, plain, test, truth)
    err_corrected, _ = _tile_error(real_profile, corrected, plain, test, truth)
    assert err_corrected < 0.9 * err_without, (err_corrected, err_without)
    # mixing the tiles contains the per-tile filter: on the held-back probes it is at least as close
    alone = compile_program(student, real_profile, train, classes=train.classes, calibration=truth,
                            refine=dataclasses.replace(refine, readout_mix=False))
    assert alone.readout.correction["weight"].shape == (channels, 3, 3)
    alone_report = alone.source["calibration"]["readout_correction"]
    assert alone_report["mix"] is False and report["error_after"] <= 1.05 * alone_report["error_after"], alone_report
    assert "3x3 filter of its own tile and offset" in format_program(alone)


def test_a_readout_correction_measured_on_the_bench_takes_in_what_the_twin_cannot_model(tmp_path: Path) -> None:
    unmodelled = {"enabled": True, "slm_phase_error_waves_rms": 0.1, "slm_phase_error_correlation_px": 6.0,
                  "ghost_fraction": 0.02, "ghost_shift_px": [3, 2]}
    real_profile = _bench(tmp_path, TRUTH, "real-unmodelled", unmodelled)
    student, train, test, truth, plain = _student_and_truth(tmp_path, real_profile)  # the named truth only
    refine = RefineConfig(steps=20, probes=32, batch=16, readout_probes=128)
    with pytest.raises(Exception, match="needs an open bench"):
        compile_program(student, real_profile, train, calibration=truth,
                        refine=dataclasses.replace(refine, bench_readout=True))
    twin_fit = compile_program(student, real_profile, train, classes=train.classes, calibration=truth, refine=refine)
    with Bench.open(real_profile) as bench:
        bench_fit = compile_program(student, real_profile, train, classes=train.classes, calibration=truth,
                                    refine=dataclasses.replace(refine, bench_readout=True), bench=bench)
    report = bench_fit.source["calibration"]["readout_correction"]
    assert report["tiles"] == "bench" and report["kept"]
    assert report["frames"] == 128 * bench_fit.frames  # every probe frame is counted
    assert twin_fit.source["calibration"]["readout_correction"]["frames"] == 0
    err_twin, _ = _tile_error(real_profile, twin_fit, plain, test, truth)
    err_bench, _ = _tile_error(real_profile, bench_fit, plain, test, truth)
    assert err_bench < 0.9 * err_twin, (err_bench, err_twin)


def test_shift_mask_moves_the_pattern_like_the_twin_does() -> None:
    y, x = torch.meshgrid(torch.arange(64.0) - 32, torch.arange(64.0) - 32, indexing="ij")
    mask = (torch.exp(-(y**2 + x**2) / 90) * torch.exp(0.2j * x)).to(torch.complex128)
    moved = shift_mask(mask, (0.6, -0.4))
    warped = affine_warp(mask, torch.tensor([0.6, -0.4], dtype=torch.float64))
    assert float((moved - warped).abs().max()) < 0.02  # bilinear vs exact: same direction and size


def _with_calibration(prog, digest: str | None):
    source = {k: v for k, v in prog.source.items() if k != "calibration"}
    if digest is not None:
        source["calibration"] = {"hash": digest, "kind": "imperfections", "path": None, "values": {}}
    return dataclasses.replace(prog, source=source)


def test_a_program_runs_only_with_its_calibration() -> None:
    prog = _with_calibration(program(), "a" * 64)
    assert check_calibration(prog, "a" * 64) is None
    with pytest.raises(CalibrationMismatch, match="compiled for calibration aaaaaaaaaaaa but the bench's "
                                                  "calibration is bbbbbbbbbbbb"):
        check_calibration(prog, "b" * 64)
    with pytest.raises(CalibrationMismatch, match="no calibration was given"):
        check_calibration(prog, None)
    with pytest.raises(CalibrationMismatch, match="compiled for the ideal bench"):
        check_calibration(_with_calibration(program(), None), "c" * 64)
    assert "ignored as asked" in check_calibration(prog, None, ignore=True)


def test_run_refuses_another_calibration_before_any_light(tmp_path: Path) -> None:
    prog = _with_calibration(program(), "a" * 64)
    with Bench.open("sim-ideal") as bench:
        other = Imperfections.ideal(bench.shared["sim.world"].geometry)
        with pytest.raises(CalibrationMismatch, match="--ignore-calibration"):
            run_program(bench, prog, program().reference.images, tmp_path / "run.h5", progress=False,
                        calibration=other)
        with pytest.raises(CalibrationMismatch, match="no calibration was given"):
            run_program(bench, prog, program().reference.images, None, progress=False)
        assert bench.shared["sim.world"].frames == 0  # refused before a frame was taken
        assert not (tmp_path / "run.h5").exists()
        with pytest.warns(UserWarning, match="ignored as asked"):
            result = run_program(bench, prog, program().reference.images, None, progress=False,
                                 ignore_calibration=True)
    assert result.status == "complete"


def _calibration_file(bench, path: Path, truth: Imperfections, when=None) -> Path:
    """A calibration file holding the known truth as one routine's result (a stand-in for the
    routines: this tests the compiler and the runner, not the measurement)."""
    from calibration.base import RoutineResult
    from calibration.store import Calibration, save_calibration

    values = {k: v.tolist() for k, v in truth.tensors().items() if v is not None and k != "hot_pixels_e_per_s"}
    result = RoutineResult("truth", values, 0.0, "rad", 0, notes="the simulated bench's known truth (test)")
    save_calibration(Calibration.empty(bench).with_result(result, duration_s=0.0, when=when), path)
    return path


def test_stale_or_foreign_calibration_files_are_refused_unless_overridden(tmp_path: Path) -> None:
    import datetime as dt

    from labrig.deploy import ProgramError

    ideal_profile, real_profile = _bench(tmp_path, False, "ideal"), _bench(tmp_path, TRUTH, "real")
    student, (train, test) = _student(str(ideal_profile)), _data()
    with Bench.open(ideal_profile) as bench:  # measured on another bench (profile)
        foreign = _calibration_file(bench, tmp_path / "foreign.h5", bench.shared["sim.world"].truth.imperfections)
    with Bench.open(real_profile) as bench:
        truth = bench.shared["sim.world"].truth.imperfections
        fresh = _calibration_file(bench, tmp_path / "fresh.h5", truth)
        old = _calibration_file(bench, tmp_path / "old.h5", truth,
                                when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    quick = RefineConfig(steps=0, probes=8)
    with pytest.raises(ProgramError, match=r"another profile.*--allow-stale-calibration"):
        compile_program(student, real_profile, train, calibration=foreign, refine=quick)
    with pytest.raises(ProgramError, match="old"):
        compile_program(student, real_profile, train, calibration=old, refine=quick)
    overridden = compile_program(student, real_profile, train, calibration=old, refine=quick, allow_stale=True)
    assert "old" in overridden.source["calibration"]["stale_override"]
    prog = compile_program(student, real_profile, train, calibration=fresh, refine=quick)
    assert prog.source["calibration"]["path"] == str(fresh) and prog.source["calibration"]["kind"] == "file"
    with Bench.open(real_profile) as bench:
        with pytest.raises(ProgramError, match="old"):  # run enforces staleness too, before any light
            run_program(bench, overridden, test, None, progress=False, calibration=old)
        assert bench.shared["sim.world"].frames == 0
        with pytest.raises(CalibrationMismatch):  # another bench's calibration, even when staleness is overridden
            run_program(bench, prog, test, None, progress=False, calibration=foreign, allow_stale=True)
        result = run_program(bench, prog, test, None, progress=False, calibration=fresh, limit=16)
    assert result.status == "complete"


def test_cli_run_refuses_a_calibration_the_program_was_not_compiled_for(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from data_helpers import write_idx_split
    from deploy_helpers import held_out

    from labrig.cli import main
    from labrig.deploy import save_program

    data = tmp_path / "toy"
    write_idx_split(data, held_out().images[:16, 0].numpy(), held_out().labels[:16].numpy().astype("u1"), "test")
    prog = save_program(program(), tmp_path / "prog.h5")  # compiled for the ideal sim-ideal bench
    with Bench.open("sim-ideal") as bench:
        cal = _calibration_file(bench, tmp_path / "cal.h5", Imperfections.ideal(bench.shared["sim.world"].geometry))
    args = ["run", "--program", str(prog), "--data", str(data), "--report", str(tmp_path / "r.json"),
            "--no-progress", "--calibration", str(cal)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "compiled for the ideal bench" in err and "--ignore-calibration" in err
    assert not (tmp_path / "r.json").exists()
    with pytest.warns(UserWarning, match="ignored as asked"):
        assert main([*args, "--ignore-calibration"]) == 0


def test_cli_compile_measures_the_readout_on_the_bench_when_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from data_helpers import write_idx_split
    from deploy_helpers import train_set, trained_student

    from labrig.cli import main
    from labrig.deploy import load_program
    from labrig.distill.checkpoint import save_checkpoint

    data = tmp_path / "toy"
    write_idx_split(data, train_set().images[:, 0].numpy(), train_set().labels.numpy().astype("u1"), "train")
    model = save_checkpoint(tmp_path / "student.pt", trained_student(), metrics={"accuracy": 0.8})
    with Bench.open("sim") as bench:
        cal = _calibration_file(bench, tmp_path / "cal.h5", bench.shared["sim.world"].truth.imperfections)
    out = tmp_path / "prog.h5"
    base = ["compile", "--model", str(model), "--profile", "sim", "--data", str(data), "--calibration-images", "64",
            "--refine-steps", "5", "--readout-probes", "32", "--out", str(out)]
    with pytest.raises(SystemExit, match="give --calibration"):
        main([*base, "--bench-readout"])
    assert main([*base, "--calibration", str(cal), "--bench-readout", "--readout-kernel", "1"]) == 0
    report = load_program(out).source["calibration"]["readout_correction"]
    assert report["tiles"] == "bench" and report["kernel"] == 1 and report["probes"] == 32
    assert report["frames"] == 32 * load_program(out).frames


def test_a_pair_subtracted_student_is_refused_clearly_when_compiled_through_a_calibration(tmp_path: Path) -> None:
    real_profile = _bench(tmp_path, TRUTH, "real")
    seed_everything(0)
    student = StudentModel(StudentConfig(
        frontend=SCLCConfig(channels=(2, 2), kernel_sizes=(3, 3), detection="incoherent"),
        input_size=(IMAGE, IMAGE), optics=OpticsConfig(profile=str(_bench(tmp_path, False, "ideal"))))).eval()
    train, _ = _data()
    with Bench.open(real_profile) as bench:
        truth = bench.shared["sim.world"].truth.imperfections
    assert compile_program(student, real_profile, train).readout.pair_subtract  # the ideal compile works
    with pytest.raises(ProgramError, match=r"coherent detection.*tile differences"):
        compile_program(student, real_profile, train, calibration=truth, refine=RefineConfig(steps=2, probes=8))

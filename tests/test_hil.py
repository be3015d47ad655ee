"""In-situ fine-tuning (labrig.hil): the physics-aware gradient is the twin's, a short
fine-tune on a bench with unmodelled effects helps, resume is bit-identical, and every
guard (rollback, light lost, frame budget, cancel, device fault) does what it says."""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import train_set, trained_student
from hil_helpers import small_profile, unmodelled_table, write_toy_data
from model_helpers import toy_dataset

from labrig.bench import Bench
from labrig.deploy import Program, compile_program, load_program, save_program
from labrig.deploy.backend import build_backend
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.hil import BenchMeter, BenchTiles, FineTuneConfig, FineTuner, SaturatedFrames, TwinTiles
from labrig.optics.imperfections import Imperfections
from labrig.optics.system import Twin

BIG = {"filter_px": 128, "input_px": 32}  # a 4-channel toy student fits one frame of 128 px


@functools.lru_cache(maxsize=1)
def _program_and_dir() -> tuple[Program, Path]:
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="hil-"))
    ideal = small_profile(where, name="ideal", **BIG)
    student = trained_student()  # trains on first use: not under no_grad
    with torch.no_grad():
        program = compile_program(student, ideal, train_set(), classes=train_set().classes)
    return program, where


def _program() -> Program:
    return _program_and_dir()[0]


def _ideal_twin(program: Program) -> Twin:
    geometry = program.bench_geometry()
    return Twin(geometry, Imperfections(geometry, slm_lut=torch.as_tensor(program.filter.lut)), dtype=torch.float32)


def _truth_twin(bench: Bench, program: Program) -> Twin:
    """A perfect calibration of the modelled truth (tests may read the truth; labrig.hil never does)."""
    truth = copy.deepcopy(bench.shared["sim.world"].truth.imperfections)  # not the world's own (it drifts)
    return Twin(program.bench_geometry(), truth, dtype=torch.float32)


def _real(tmp_path: Path, name: str = "real", unmodelled: str = "enabled = true", truth: str = "") -> Path:
    return small_profile(tmp_path, name=name, truth="enabled = true\ndrift_px_per_s = [0.0, 0.0]\n" + truth,
                         unmodelled=unmodelled, **BIG)


def _deterministic(tmp_path: Path, name: str = "det", faults: str = "") -> Path:
    """Truth and unmodelled effects on, but no noise, no laser fluctuation: frames repeat exactly."""
    path = _real(tmp_path, name, unmodelled=unmodelled_table(pixel_aperture="true", ghost_fraction="0.01",
                                                             ghost_shift_px="[5, 3]"), truth="noise = false")
    if faults:
        path.write_text(path.read_text() + f"\n[faults]\n{faults}\n")
    return path


@pytest.mark.parametrize("corrected", [False, True], ids=["plain", "readout-corrected"])
def test_bench_gradient_equals_the_twins_exact_gradient_on_an_ideal_bench(tmp_path: Path, corrected: bool) -> None:
    program = _program()
    if corrected:  # a compiler's readout correction sits between the tiles and the back end, in both passes
        g = np.random.default_rng(0)
        weight = np.zeros((program.multiplexing.channels, 3, 3), np.float32)
        weight[:, 1, 1] = 1
        weight += g.normal(0, 0.1, weight.shape).astype(np.float32)
        correction = {"weight": weight, "bias": g.normal(0, 0.05, len(weight)).astype(np.float32)}
        program = dataclasses.replace(program, readout=dataclasses.replace(program.readout, correction=correction))
    twin = _ideal_twin(program)
    tiles_fn = TwinTiles(program, twin)
    lut = twin.imperfections.slm_lut.detach()
    backend = build_backend(program.backend)
    images = toy_dataset(24, seed=3)
    x = ImageSource(images, program.input.image_shape).batch(0, len(images))
    gray = torch.from_numpy(encode_images(program.input, x).astype(np.int64))
    labels = images.labels
    phase0 = lut[torch.as_tensor(program.filter.gray.astype(np.int64))].clone()
    with Bench.open(small_profile(tmp_path, name="ideal2", **BIG)) as bench:
        bench.guard.arm()
        meter = BenchMeter(bench, program)
        p_bench = phase0.clone().requires_grad_(True)
        measured = BenchTiles.apply(p_bench, gray, meter, tiles_fn, lut, None)
        torch.nn.functional.cross_entropy(backend(measured), labels).backward()
        bench.guard.make_safe()
    p_twin = phase0.clone().requires_grad_(True)
    predicted = tiles_fn(p_twin, gray)
    torch.nn.functional.cross_entropy(backend(predicted), labels).backward()
    assert meter.frames == 24 * program.frames
    np.testing.assert_allclose(measured.detach().numpy(), predicted.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert float(p_twin.grad.abs().max()) > 0
    np.testing.assert_allclose(p_bench.grad.numpy(), p_twin.grad.numpy(), rtol=1e-5, atol=1e-9)


def test_short_physics_aware_finetune_improves_bench_accuracy(tmp_path: Path) -> None:
    program = _program()
    with Bench.open(_real(tmp_path)) as bench:
        tuner = FineTuner(program, _truth_twin(bench, program), toy_dataset(320, seed=1), bench=bench,
                          eval_data=toy_dataset(96, seed=5),
                          config=FineTuneConfig(mode="pat", steps=12, batch=16, eval_every=0, lr_backend=3e-3))
        result = tuner.run()
        assert not bench.guard.armed  # safe after the run
    before, after = result.evals[0]["bench_accuracy"], result.evals[-1]["bench_accuracy"]
    assert result.status == "complete" and result.frames == 12 * 16 + 16  # + the exposure probe batch
    assert after >= before + 0.2, (before, after)
    lineage = result.program.source["finetune"]
    assert lineage["parent_digest"] == program.digest() and lineage["mode"] == "pat"
    assert lineage["frames"] == result.frames and len(lineage["metrics"]) == 12
    saved = load_program(save_program(result.program, tmp_path / "ft.h5"))
    assert saved.source["finetune"]["frames"] == result.frames
    assert not np.array_equal(saved.filter.gray, program.filter.gray)  # the masks moved


def _tuner(bench: Bench, out: Path, steps: int, **kw) -> FineTuner:
    program = _program()
    cfg = FineTuneConfig(mode=kw.pop("mode", "pat"), steps=steps, batch=8, eval_every=0, checkpoint_every=2,
                         lr_backend=3e-3, **kw)
    return FineTuner(program, _truth_twin(bench, program), toy_dataset(64, seed=1), bench=bench, config=cfg,
                     out_dir=out)


def _same_state(a: FineTuner, b: FineTuner) -> None:
    assert torch.equal(a.phase, b.phase)
    for (k, x), (_, y) in zip(a.backend.state_dict().items(), b.backend.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.frames == b.frames


def test_resume_after_a_fault_is_bit_identical(tmp_path: Path) -> None:
    with Bench.open(_deterministic(tmp_path)) as bench:
        straight = _tuner(bench, tmp_path / "a", 6)
        assert straight.run().status == "complete"
    # the camera disconnects for good after 4 steps' frames (probe batch 8 + 4 x 8): the run stops as a
    # fault (a camera that comes back is reopened by the acquirer and the fine-tune goes on)
    faulty = _deterministic(tmp_path, "faulty", faults="disconnect_after_frames = 44\ndisconnect_permanent = true")
    with Bench.open(faulty) as bench:
        first = _tuner(bench, tmp_path / "b", 6).run()
        assert first.status == "fault" and "disconnect" in first.error.lower()
        assert not bench.guard.armed
    assert first.steps == 4 and (tmp_path / "b" / "checkpoint.pt").exists()
    with Bench.open(_deterministic(tmp_path, "again")) as bench:
        resumed = _tuner(bench, tmp_path / "b", 6)
        assert resumed.step == 4  # from the checkpoint written on the way out
        assert resumed.run().status == "complete"
    _same_state(straight, resumed)


def test_changed_settings_refuse_to_resume(tmp_path: Path) -> None:
    with Bench.open(_deterministic(tmp_path)) as bench:
        _tuner(bench, tmp_path / "c", 2).run()
        with pytest.raises(Exception, match="changed settings"):
            _tuner(bench, tmp_path / "c", 4, lr_mask=0.5)


def test_a_saturated_step_and_a_nan_loss_are_rolled_back(tmp_path: Path, monkeypatch) -> None:
    with Bench.open(_deterministic(tmp_path)) as bench:
        tuner = _tuner(bench, tmp_path / "r", 5)
        real_measure, calls = tuner.meter.measure, {"n": 0}

        def measure(gray, inputs):
            calls["n"] += 1
            if calls["n"] == 4:  # the probe, steps 1 and 2, then step 3's frames come back saturated
                raise SaturatedFrames("0.5% of the tile pixels are saturated", 0.005)
            return real_measure(gray, inputs)

        monkeypatch.setattr(tuner.meter, "measure", measure)
        real_forward, seen = tuner.backend.forward, {"n": 0}

        def forward(x):
            seen["n"] += 1
            out = real_forward(x)
            return out * float("nan") if seen["n"] == 5 else out

        monkeypatch.setattr(tuner.backend, "forward", forward)
        result = tuner.run()
    kinds = [e["kind"] for e in result.events]
    assert kinds.count("rollback") == 2 and result.status == "complete" and result.steps == 5
    assert "saturated" in result.events[kinds.index("rollback")]["message"]
    assert tuner.mask_lr_scale == 0.25
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert torch.isfinite(tuner.phase).all()


def test_light_lost_stops_the_finetune_and_the_bench_is_safe(tmp_path: Path, monkeypatch) -> None:
    with Bench.open(_deterministic(tmp_path)) as bench:
        tuner = _tuner(bench, tmp_path / "l", 5)
        real_measure, calls = tuner.meter.measure, {"n": 0}

        def measure(gray, inputs):
            calls["n"] += 1
            if calls["n"] == 3:
                bench.guard.make_safe()  # the shutter closes under the measurement
            return real_measure(gray, inputs)

        monkeypatch.setattr(tuner.meter, "measure", measure)
        result = tuner.run()
        assert result.status == "fault" and "light" in result.error and result.steps == 1
        assert not bench.guard.armed


def test_frame_budget_cancel_and_twin_mode(tmp_path: Path) -> None:
    with Bench.open(_deterministic(tmp_path)) as bench:
        budget = _tuner(bench, tmp_path / "f", 50, frames=40).run()
        assert budget.status == "budget" and budget.frames <= 40 and budget.steps == 4
        stop = threading.Event()
        cancelled = _tuner(bench, tmp_path / "x", 50).run(progress=lambda s, n, m: stop.set() if s == 2 else None,
                                                          cancel=stop)
        assert cancelled.status == "cancelled" and cancelled.steps == 2
        assert (tmp_path / "x" / "checkpoint.pt").exists()
        twin = _tuner(bench, tmp_path / "t", 3, mode="twin").run()
        assert twin.status == "complete" and twin.frames == 0


def test_bench_meter_refuses_dark_batches(tmp_path: Path) -> None:
    program = _program()
    with Bench.open(_deterministic(tmp_path)) as bench:
        meter = BenchMeter(bench, program)
        gray = encode_images(program.input, ImageSource(toy_dataset(4), program.input.image_shape).batch(0, 4))
        with pytest.raises(Exception, match="light is off"):
            meter.measure(program.filter.gray, gray)  # never armed: the light is off
        raw = np.full((4, 4, 20, 20), 4095.0)
        with pytest.raises(SaturatedFrames):
            meter.check(raw)


def test_cli_finetunes_resumes_and_records_lineage(tmp_path: Path, capsys) -> None:
    from labrig.cli import main

    data = write_toy_data(tmp_path / "toy", n_test=32)
    parent = save_program(_program(), tmp_path / "parent.h5")
    bench = _real(tmp_path)
    out = tmp_path / "ft"
    args = ["finetune", "--program", str(parent), "--profile", str(bench), "--data", str(data), "--out", str(out),
            "--mode", "backend", "--batch", "8", "--eval-images", "16", "--eval-every", "2", "--no-progress"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4", "--frames", "1000"]) == 0  # resumes at step 2
    printed = capsys.readouterr().out
    assert "complete: 4 steps" in printed
    program = load_program(out / "program.h5")
    lineage = program.source["finetune"]
    assert lineage["parent_path"] == str(parent) and lineage["mode"] == "backend" and lineage["steps"] == 4
    assert lineage["calibration_hash"] is None and [m["step"] for m in lineage["metrics"]] == [1, 2, 3, 4]
    assert any(e["kind"] == "resumed" for e in lineage["events"])
    assert np.array_equal(program.filter.gray, _program().filter.gray)  # backend mode: the masks stay


def test_drift_is_followed_by_reregistration_from_the_frames_taken(tmp_path: Path) -> None:
    pytest.importorskip("calibration.reregister")
    drifting = _real(tmp_path, "drift", unmodelled="enabled = false", truth="noise = false")
    drifting.write_text(drifting.read_text().replace("drift_px_per_s = [0.0, 0.0]", "drift_px_per_s = [8.0, -4.0]"))
    with Bench.open(drifting) as bench:
        world = bench.shared["sim.world"]
        program = _program()
        twin = _truth_twin(bench, program)
        start = twin.imperfections.camera_shift_px.detach().clone()
        tuner = FineTuner(program, twin, toy_dataset(64, seed=1), bench=bench,
                          config=FineTuneConfig(mode="backend", steps=6, batch=8, eval_every=0, checkpoint_every=0,
                                                reregister_every=3))
        result = tuner.run()
        moved = (world.twin.imperfections.camera_shift_px.detach() - start).numpy()
        found = tuner.meter.tracker.displacement
        scale = float(world.twin.imperfections.camera_scale)
    events = [e for e in result.events if e["kind"] == "reregister"]
    assert len(events) == 2 and "displacement_px" in events[0]["message"]
    # the twin is not moved: the frames are registered back to its ROIs. The image moves by
    # -1/scale px per px of camera shift; the last re-registration saw the frames of step 6
    assert torch.equal(twin.imperfections.camera_shift_px.detach(), start)
    assert float(np.hypot(*moved)) > 0.3
    np.testing.assert_allclose(found, -moved / scale, atol=0.35 * float(np.hypot(*moved)))


def test_a_bench_its_twin_matches_raises_no_drift_alarm(tmp_path: Path) -> None:
    """Twin = bench, no noise: the tile residual is ~0, and 0.000 > 2 x 0.000 must not count as drift."""
    still = _real(tmp_path, "still", unmodelled="enabled = false", truth="noise = false")
    with Bench.open(still) as bench:
        program = _program()
        tuner = FineTuner(program, _truth_twin(bench, program), toy_dataset(64, seed=1), bench=bench,
                          config=FineTuneConfig(mode="pat", steps=8, batch=8, eval_every=0, checkpoint_every=0))
        result = tuner.run()
    assert max(tuner.residuals.values) < 0.01
    assert not [e for e in result.events if e["kind"] in ("drift", "reregister")]


def test_periodic_twin_refit_from_frames_taken_moves_the_twin_toward_the_bench(tmp_path: Path) -> None:
    pytest.importorskip("calibration.twinfit")
    bench_profile = _real(tmp_path, "refit", unmodelled="enabled = false", truth="noise = false")
    fresh = toy_dataset(16, seed=9)
    with Bench.open(bench_profile) as bench:
        program = _program()
        twin = _truth_twin(bench, program)
        with torch.no_grad():  # a twin whose aberrations are off by 0.15 rad each (a stale calibration)
            twin.imperfections.zernike_rad += 0.15
        tuner = FineTuner(program, twin, toy_dataset(64, seed=1), bench=bench,
                          config=FineTuneConfig(mode="backend", steps=2, batch=8, eval_every=0, checkpoint_every=0,
                                                refit_every=2))
        x = ImageSource(fresh, program.input.image_shape).batch(0, len(fresh))
        gray = torch.from_numpy(encode_images(program.input, x).astype(np.int64))

        def tile_error() -> float:  # the twin's tiles against the bench's, on images never fitted
            bench.guard.arm()
            measured = tuner.twin_tiles.signal(torch.from_numpy(tuner.meter.measure(tuner._gray(), gray.numpy())).double())
            bench.guard.make_safe()
            with torch.no_grad():
                predicted = tuner.twin_tiles(tuner.phase, gray).double()
            return float((measured - predicted).norm() / measured.norm())

        before = tile_error()
        frames0 = tuner.meter.frames
        result = tuner.run()
        used = tuner.meter.frames - frames0
        after = tile_error()
    refits = [e for e in result.events if e["kind"] == "refit"]
    assert len(refits) == 1 and "kept=True" in refits[0]["message"], refits
    assert after < 0.6 * before, (before, after, refits)
    assert used == 2 * 8 + 8  # no frame taken for the refit (2 steps + the exposure probe batch)


def test_refit_settings_are_checked() -> None:
    from labrig.hil import FineTuneError

    with pytest.raises(FineTuneError, match="nope"):
        FineTuneConfig(refit_every=5, refit_params=("zernike_rad", "nope"))
    with pytest.raises(FineTuneError, match="camera_shift_px"):
        FineTuneConfig(refit_every=5, refit_params=("camera_shift_px",))
    with pytest.raises(FineTuneError, match="refit_every"):
        FineTuneConfig(refit_every=-1)


def test_cosine_schedule_decays_both_learning_rates_step_by_step() -> None:
    import math

    from labrig.hil import FineTuneError

    program = _program()
    cfg = FineTuneConfig(mode="twin", steps=4, batch=8, eval_every=0, checkpoint_every=0, lr_mask=0.01,
                         lr_backend=2e-3, lr_schedule="cosine", lr_final=0.1)
    tuner = FineTuner(program, _ideal_twin(program), toy_dataset(64, seed=1), config=cfg)
    used: list[tuple[float, float]] = []
    tuner.run(progress=lambda s, n, m: used.append((tuner.opt_mask.param_groups[0]["lr"],
                                                    tuner.opt_backend.param_groups[0]["lr"])))
    decay = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]  # update k runs at step k
    assert [m for m, _ in used] == pytest.approx([0.01 * d for d in decay])
    assert [b for _, b in used] == pytest.approx([2e-3 * d for d in decay])
    assert used[0][0] == pytest.approx(0.01) and all(a[0] > b[0] for a, b in itertools.pairwise(used))
    with pytest.raises(FineTuneError, match="lr_schedule"):
        FineTuneConfig(lr_schedule="step")
    with pytest.raises(FineTuneError, match="lr_final"):
        FineTuneConfig(lr_final=1.5)

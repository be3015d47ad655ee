"""The twin's learned residual (labrig.optics.residual, labrig.hil.residual_fit): zero is the
calibrated twin exactly, a fit to frames from a bench with unmodelled pupil effects brings the
twin's tiles toward the bench's on held-back images, a fit that does not help is refused, and a
fine-tune that fits one and pre-trains through the twin counts its frames and resumes bit-identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hil_helpers import unmodelled_table, write_toy_data
from model_helpers import toy_dataset
from test_hil import _program, _real, _same_state, _truth_twin

from labrig.bench import Bench
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.hil import FineTuneConfig, FineTuneError, FineTuner, TwinTiles
from labrig.hil.measure import BenchMeter
from labrig.hil.residual_fit import fit_residual, tile_error
from labrig.optics.residual import TwinResidual

PUPIL_EFFECTS = unmodelled_table(pixel_aperture="true", slm_phase_error_waves_rms="0.1",
                                 extra_zernike_rad="{ trefoil_vertical = 0.3, secondary_astig_oblique = -0.2 }")


def _pupil_bench(tmp_path: Path, name: str = "pupil") -> Path:
    return _real(tmp_path, name, unmodelled=PUPIL_EFFECTS, truth="noise = false")


def _measured_batches(bench: Bench, program, twin_tiles: TwinTiles, n_batches: int, seed: int = 2):
    data = toy_dataset(8 * n_batches, seed=seed)
    x = ImageSource(data, program.input.image_shape).batch(0, len(data))
    meter = BenchMeter(bench, program)
    bench.guard.arm()
    try:
        out = []
        for b in range(n_batches):
            gin = encode_images(program.input, x[8 * b : 8 * b + 8])
            raw = meter.measure(program.filter.gray, gin)
            out.append((_phase(program, twin_tiles.twin), torch.from_numpy(gin.astype(np.int64)), torch.from_numpy(raw)))
        return out
    finally:
        bench.guard.make_safe()


def _phase(program, twin) -> torch.Tensor:
    return twin.imperfections.slm_lut.detach()[torch.as_tensor(program.filter.gray.astype(np.int64))].to(twin.dtype)


def test_an_untrained_residual_is_the_calibrated_twin_exactly(tmp_path: Path) -> None:
    program = _program()
    with Bench.open(_pupil_bench(tmp_path)) as bench:
        twin = _truth_twin(bench, program)
    tiles = TwinTiles(program, twin)
    phase = _phase(program, twin)
    gin = torch.from_numpy(encode_images(program.input, ImageSource(toy_dataset(4, seed=1),
                                                                      program.input.image_shape).batch(0, 4)).astype(np.int64))
    with torch.no_grad():
        plain = tiles.raw(phase, gin)
        twin.residual = TwinResidual()
        zero = tiles.raw(phase, gin)
        twin.residual.phase[3, 5] = 0.5
        moved = tiles.raw(phase, gin)
    assert torch.equal(plain, zero)
    assert not torch.equal(plain, moved)
    state = TwinResidual.from_state(twin.residual.state())
    assert torch.equal(state.phase, twin.residual.phase)
    with pytest.raises(ValueError, match="lacks"):
        TwinResidual.from_state({"phase": [[0.0, 0.0], [0.0, 0.0]]})


def test_a_residual_fit_brings_the_twin_toward_a_bench_with_unmodelled_pupil_effects(tmp_path: Path) -> None:
    program = _program()
    with Bench.open(_pupil_bench(tmp_path)) as bench:
        twin = _truth_twin(bench, program)  # the modelled truth exactly: what is left is unmodelled
        tiles = TwinTiles(program, twin)
        batches = _measured_batches(bench, program, tiles, 6)
        unseen = _measured_batches(bench, program, tiles, 2, seed=11)
    before = tile_error(tiles, unseen)
    _, fit = fit_residual(tiles, batches, iterations=80)
    after = tile_error(tiles, unseen)
    assert fit.kept and twin.residual is not None
    assert before > 0.05, before  # the effects are there to be learned
    assert after < 0.25 * before, (before, after, fit)
    assert not any(p.requires_grad for p in twin.residual.parameters())  # frozen once fitted


def test_a_residual_fit_that_does_not_help_is_refused(tmp_path: Path) -> None:
    program = _program()
    with Bench.open(_pupil_bench(tmp_path)) as bench:
        twin = _truth_twin(bench, program)
        tiles = TwinTiles(program, twin)
        batches = _measured_batches(bench, program, tiles, 3)
    _, fit = fit_residual(tiles, batches, iterations=2, lr=5.0)  # jumps far off
    assert not fit.kept and fit.held_error_after > fit.held_error_before
    assert twin.residual is None  # the twin is left as it was
    with pytest.raises(ValueError, match="two measured batches"):
        fit_residual(tiles, batches[:1])


def test_residual_settings_are_checked() -> None:
    with pytest.raises(FineTuneError, match="needs the bench"):
        FineTuneConfig(mode="twin", residual_images=32)
    with pytest.raises(FineTuneError, match="pretrain_steps"):
        FineTuneConfig(pretrain_steps=-1)


def _tuner(bench: Bench, out: Path) -> FineTuner:
    program = _program()
    cfg = FineTuneConfig(mode="pat", steps=3, pretrain_steps=3, residual_images=16, residual_iterations=10,
                         residual_refit_every=2,
                         batch=8, eval_every=0, checkpoint_every=1, lr_backend=3e-3, lr_schedule="cosine")
    return FineTuner(program, _truth_twin(bench, program), toy_dataset(64, seed=1), bench=bench, config=cfg,
                     out_dir=out)


def test_finetune_fits_a_residual_pretrains_through_the_twin_and_resumes_bit_identically(tmp_path: Path) -> None:
    with Bench.open(_pupil_bench(tmp_path)) as bench:
        straight = _tuner(bench, tmp_path / "a")
        result = straight.run()
    assert result.status == "complete" and result.steps == 6
    # frames: the exposure probe (8), the residual's 16 images before training and 16 more at its refit
    # while pre-training (step 2), 3 bench steps of 8; none for the pre-training steps themselves, none
    # for the refit on the bench (step 4: it reuses the steps' frames)
    assert result.frames == 8 + 16 + 16 + 3 * 8
    fits = [e for e in result.events if e["kind"] == "residual"]
    assert [e["step"] for e in fits] == [0, 2, 4], fits
    lineage = result.program.source["finetune"]
    assert lineage["residual_fit"]["fits"] == 3 and lineage["twin_residual"] is not None
    assert lineage["residual_fit"]["images"] == 16 + 16 + 8  # the last fit: every batch measured so far
    with Bench.open(_pupil_bench(tmp_path, "again")) as bench:
        tuner = _tuner(bench, tmp_path / "b")
        assert tuner.run(cancel=lambda: tuner.step >= 4).status == "cancelled"
    with Bench.open(_pupil_bench(tmp_path, "third")) as bench:
        resumed = _tuner(bench, tmp_path / "b")
        assert resumed.step == 4 and resumed.twin.residual is not None
        assert resumed.run().status == "complete"
    _same_state(straight, resumed)
    assert torch.equal(straight.twin.residual.phase, resumed.twin.residual.phase)


def test_cli_fits_the_residual_and_pretrains_and_refuses_a_residual_without_a_bench(tmp_path: Path, capsys) -> None:
    from labrig.cli import main
    from labrig.deploy import load_program, save_program

    data = write_toy_data(tmp_path / "toy", n_test=16)
    parent = save_program(_program(), tmp_path / "parent.h5")
    args = ["finetune", "--program", str(parent), "--profile", str(_pupil_bench(tmp_path)), "--data", str(data),
            "--batch", "8", "--eval-images", "0", "--no-progress", "--steps", "2", "--residual-images", "16",
            "--pretrain-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "ft")]) == 0
    lineage = load_program(tmp_path / "ft" / "program.h5").source["finetune"]
    assert lineage["steps"] == 4 and lineage["config"]["pretrain_steps"] == 2
    assert lineage["residual_fit"]["images"] == 16 and lineage["frames"] == 8 + 16 + 2 * 8
    capsys.readouterr()
    assert main([*args, "--mode", "twin", "--out", str(tmp_path / "tw")]) != 0
    assert "needs the bench" in capsys.readouterr().err

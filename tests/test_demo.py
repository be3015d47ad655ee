"""The main job end to end on real Fashion-MNIST: train (tiny), compile, run on both benches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labrig.cli import main
from labrig.demo import format_summary, run_demo
from labrig.distill import TrainConfig
from labrig.experiments.classification import ClassificationConfig
from labrig.models import BackendConfig, SCLCConfig, StudentConfig
from labrig.models.optical import OpticsConfig
from labrig.models.teacher import TeacherConfig
from labrig.paths import find_default_data_dir

DATA = find_default_data_dir(Path(__file__).parent) or Path("/nonexistent")
pytestmark = pytest.mark.skipif(not (DATA / "t10k-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST not found")


def tiny() -> ClassificationConfig:
    steps = TrainConfig(epochs=1, batch_size=64, max_steps_per_epoch=8, lr=5e-3)
    return ClassificationConfig(
        train_limit=600, val_limit=100, test_limit=100, seeds=(0,),
        teacher=TeacherConfig(width=4, blocks=1, hidden=16), teacher_train=steps,
        student=StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                              backend=BackendConfig(kind="fc", pool=3, norm="scale_log1p"),
                              optics=OpticsConfig(profile="sim", max_per_frame=4)),
        student_train=steps, optical_finetune=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=1))


def test_the_chain_runs_and_the_ideal_bench_equals_the_twin(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, DATA, n_images=48, progress=False, config=tiny(), log=lambda _: None)
    ideal, real = summary["runs"]
    assert ideal["profile"] == "sim-ideal" and real["profile"] == "sim"
    assert ideal["images"] == real["images"] == 48
    # truth off: the camera reads what the twin predicts, so the accuracies agree
    assert ideal["accuracy"] == pytest.approx(ideal["twin_accuracy"], abs=0.002)
    assert ideal["twin_tile_rel_error"] < 1e-3
    # truth on, uncalibrated: the tiles are far off the twin, and that is measured
    assert real["twin_tile_rel_error"] > 0.1
    for name in ("program.h5", "program.png", "run-sim-ideal.h5", "run-sim.h5", "run-sim.json",
                 "experiment/report.json", "experiment/report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "summary.json").read_text())["experiment"]["kd"] == summary["experiment"]["kd"]
    assert "sim-ideal" in format_summary(summary)


def test_demo_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "nowhere" in capsys.readouterr().err

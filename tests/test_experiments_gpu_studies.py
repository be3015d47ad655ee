"""The studies written for a GPU session: the 5-seed headline grid reuses the full grid's
jobs, and the single-layer recipes change only what they name."""

from __future__ import annotations

from labrig.experiments.kd_study import StudyConfig, study_jobs
from labrig.experiments.single_layer import RECIPES, SingleLayerConfig


def test_headline_grid_is_the_full_grids_full_budget_cells_over_five_seeds() -> None:
    head = study_jobs(StudyConfig.headline())
    assert len(head) == 5 * 2 * 3  # seeds x back ends x (no KD + two KD settings)
    full = {j.key for j in study_jobs(StudyConfig()) if j.tags.get("budget") == "full" and j.tags["group"] == "grid"}
    assert {j.key for j in head if j.tags["seed"] < 3} == full  # a shared run folder reuses the 3-seed runs


def test_single_layer_recipes() -> None:
    config = SingleLayerConfig()
    base = config.job("baseline (16 ch, 9², 6 ep)", 0, 10, "cpu")
    wide = config.job("64 ch, 17², 60 ep, aug, KD T=4 α=0.9 (consistent teacher)", 1, 10, "cpu")
    assert base.model["frontend"]["channels"] == [16, 16] and base.train.epochs == 6
    assert wide.model["frontend"]["channels"] == [64, 64] and wide.model["frontend"]["kernel_sizes"] == [9, 9]
    assert wide.train.epochs == 60 and wide.train.augment.hflip and wide.distill.temperature == 4.0
    assert RECIPES["17² kernels"].collapsed_kernel == 17
    # the baseline recipe is the classification experiment's no-KD student: its runs are reused
    assert base.settings()["model"] == base.model and base.model["backend"]["kind"] == "mlp"

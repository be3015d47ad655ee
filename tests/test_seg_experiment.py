"""The segmentation experiment end to end on a tiny IDX item set: the report has every
key the issue names, the figure is written, finished runs are reused, and an output
folder refuses data it was not made with."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_idx_split
from model_helpers import toy_dataset
from PIL import Image

from labrig.cli import main
from labrig.data import DataError
from labrig.data.segmentation import SceneConfig
from labrig.distill import TrainConfig, Trainer
from labrig.experiments.jobs import load_job_model
from labrig.experiments.report import get_dotted
from labrig.experiments.seg_data import SegDataConfig, load_seg_splits
from labrig.experiments.segmentation import SegmentationConfig, run_segmentation, teacher_job
from labrig.experiments.setup import LOGITS
from labrig.models.optical import OpticsConfig
from labrig.models.sclc import SCLCConfig
from labrig.models.segmentation import DecoderConfig, SegStudentConfig
from labrig.models.unet import UNetConfig


def items(folder: Path) -> Path:
    for split, n, seed in (("train", 200, 0), ("test", 40, 5)):
        ds = toy_dataset(n, seed)
        write_idx_split(folder, ds.images[:, 0].numpy(), ds.labels.numpy().astype(np.uint8), split)
    return folder


def tiny() -> SegmentationConfig:
    steps = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, max_steps_per_epoch=3, lr=5e-3)
    return SegmentationConfig(
        data=SegDataConfig(size=16, train=24, val=8, test=8, scenes=SceneConfig(items=(1, 2), item_scale=(0.5, 0.9))),
        seeds=(0, 1),
        teacher=UNetConfig(width=4, depth=1), teacher_train=steps,
        student=SegStudentConfig(frontend=SCLCConfig(channels=(2, 2), kernel_sizes=(3, 3)),
                                 decoder=DecoderConfig(widths=(4,), dilations=(1,), downsample=1),
                                 optics=OpticsConfig(profile="sim")),
        student_train=steps, optical_finetune=replace(steps, max_steps_per_epoch=1),
        optical_test_limit=4, figure_images=2)


def run(data: Path, out: Path, config: SegmentationConfig | None = None) -> dict:
    return run_segmentation(data, out, config or tiny(), device="cpu", progress=False, log=lambda _: None)


def test_report_keys_figure_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, out = items(tmp_path / "items"), tmp_path / "runs"
    report = run(data, out)
    for arm in ("teacher", "linear", "kd", "kd_optical", "linear_optical"):
        assert 0.0 <= get_dotted(report, f"{arm}.miou") <= 1.0
        assert 0.0 <= get_dotted(report, f"{arm}.pixel_accuracy") <= 1.0
    assert report["linear"]["seeds"] == [0, 1] and len(report["kd"]["mious"]) == 2
    assert report["kd_vs_linear"]["verdict"] in ("better", "worse", "no difference beyond the spread")
    assert report["kd_optical"]["finetuned"] and report["kd_optical"]["test_images"] == 4
    assert report["linear_optical"]["finetuned"] and report["linear_optical"]["student"] == "linear"
    best = report["targets"]["best_student"]
    assert best in ("linear", "kd")  # its own optical version is held to the 2-point target
    assert report["targets"]["optical_arm"] == f"{best}_optical"
    assert report["targets"]["optical_gap_points"] == pytest.approx(
        100 * (report[best]["as_trained_ideal_optics"]["miou"] - report[f"{best}_optical"]["miou"]))
    assert report["linear"]["electronic_flops"] < report["teacher"]["electronic_flops"]
    assert report["data"]["classes"][0] == "background" and report["data"]["test"] == 8
    assert "| SCLC, KD |" in (out / "report.md").read_text()
    with Image.open(out / "predictions.png") as png:  # input, truth, teacher, no KD, KD and both through optics
        assert png.width > 7 * 16 and png.height > 2 * 16
    # a finished experiment re-reports without training anything
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = run(data, out)
    assert again["kd"]["mious"] == report["kd"]["mious"]
    assert json.loads((out / "report.json").read_text())["kd"]["miou"] == report["kd"]["miou"]


def test_an_output_folder_refuses_other_data_settings(tmp_path: Path) -> None:
    data, out = items(tmp_path / "items"), tmp_path / "runs"
    config = replace(tiny(), seeds=(0,), optical_finetune=None)
    run(data, out, config)
    with pytest.raises(DataError, match="other data"):
        run(data, out, replace(config, data=replace(config.data, train=16)))


def test_cli_segmentation_writes_report_table_and_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = items(tmp_path / "items")
    monkeypatch.setattr(SegmentationConfig, "quick", classmethod(lambda cls: replace(tiny(), seeds=(0,))))
    code = main(["experiment", "segmentation", "--quick", "--data", str(data), "--no-progress", "--device", "cpu",
                 "--report", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kd_vs_linear"]["verdict"] == "too few seeds to tell"
    assert (tmp_path / "r.md").is_file() and (tmp_path / "r.png").is_file()
    assert (tmp_path / "r-runs" / "data.json").is_file()


def test_workers_train_the_same_students_as_one_process(tmp_path: Path) -> None:
    """Spawned single-thread workers (sharing the memory-mapped teacher logits) give the
    very scores the in-process run gives: the seeds, not the scheduling, decide a run."""
    data = items(tmp_path / "items")
    config = replace(tiny(), seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = run(data, tmp_path / "here", config)
    finally:
        torch.set_num_threads(threads)
    pooled = run_segmentation(data, tmp_path / "pooled", config, device="cpu", workers=2, progress=False,
                              log=lambda _: None)
    for arm in ("linear", "kd", "linear_optical", "kd_optical"):
        assert pooled[arm]["mious"] == here[arm]["mious"], arm


def test_dense_teacher_logits_are_cached_in_half_precision(tmp_path: Path) -> None:
    data, out = items(tmp_path / "items"), tmp_path / "runs"
    run(data, out, replace(tiny(), seeds=(0,), optical_finetune=None))
    cached = torch.load(out / LOGITS, weights_only=True)["logits"]
    assert cached.dtype == torch.float16 and cached.shape == (24, 11, 16, 16)  # every pixel of every train scene
    train, _, _ = load_seg_splits(data, tiny().data, cache_dir=out / "data")
    teacher = load_job_model(out, teacher_job(tiny(), 11, "cpu", False)).eval()
    with torch.no_grad():
        live = teacher(train.prepare(train.images))
    torch.testing.assert_close(cached.float(), live, atol=2e-3, rtol=1e-3)

"""The experiments: statistics, cached soft targets, resumable jobs, the KD-study
grid's fairness, the efficiency crossover, and a tiny end-to-end classification run."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_idx_split
from model_helpers import SIZE, student, toy_dataset

from labrig.cli import main
from labrig.distill import AugmentConfig, DistillConfig, TrainConfig, Trainer, teacher_logits_for
from labrig.experiments.classification import ClassificationConfig, run_classification
from labrig.experiments.efficiency import crossover, fft_conv_flops, run_efficiency
from labrig.experiments.jobs import Job, JobData, job_dir, run_job
from labrig.experiments.kd_study import StudyConfig, study_jobs, summarise
from labrig.experiments.report import get_dotted
from labrig.experiments.stats import compare, spread
from labrig.models import BackendConfig, SCLCConfig, StudentConfig
from labrig.models.errors import ModelConfigError
from labrig.models.optical import OpticsConfig
from labrig.models.serialize import config_to_dict
from labrig.models.teacher import TeacherCNN, TeacherConfig


# -- statistics ---------------------------------------------------------------------------------
def test_spread_is_mean_and_sample_std() -> None:
    s = spread([0.90, 0.91, 0.92])
    assert s.mean == pytest.approx(0.91)
    assert s.std == pytest.approx(0.01)
    assert s.n == 3


def test_compare_states_an_effect_only_at_welch_significance() -> None:
    clear = compare([0.900, 0.901, 0.899], [0.910, 0.911, 0.909])
    assert clear.verdict == "better"
    assert clear.difference == pytest.approx(0.01)
    assert clear.standard_error == pytest.approx(math.sqrt(2 * 0.001**2 / 3))
    assert "KD beats no KD" in clear.sentence() and "p = " in clear.sentence()
    noisy = compare([0.90, 0.92, 0.88], [0.905, 0.925, 0.885])
    assert noisy.verdict == "no difference beyond the spread"
    assert compare([0.91, 0.912, 0.911], [0.90, 0.901, 0.899]).verdict == "worse"
    few = compare([0.9], [0.95])
    assert few.verdict == "too few seeds to tell" and "too few seeds" in few.sentence()


def test_compare_matches_scipy_welch_on_fixed_numbers() -> None:
    from scipy import stats as st

    control, treated = [0.912, 0.905, 0.918, 0.909, 0.911], [0.921, 0.915, 0.925]
    c = compare(control, treated)
    ref = st.ttest_ind(treated, control, equal_var=False)
    assert c.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert c.interval == pytest.approx((float(ci.low), float(ci.high)), rel=1e-9)
    assert c.dof == pytest.approx(float(ref.df), rel=1e-9)
    assert c.verdict == ("better" if ref.pvalue < 0.05 else "no difference beyond the spread")


def test_two_standard_errors_at_three_seeds_is_no_longer_called_an_effect() -> None:
    """The old rule (|d| > 2 SE) fired here although p is about 0.1."""
    c = compare([0.900, 0.910, 0.920], [0.9165, 0.9265, 0.9365])
    assert c.difference > 2 * c.standard_error
    assert 0.05 < c.p_value < 0.2
    assert c.verdict == "no difference beyond the spread"
    assert c.interval[0] < 0 < c.interval[1]


# -- cached soft targets -------------------------------------------------------------------------
def _toy_teacher() -> TeacherCNN:
    torch.manual_seed(3)
    return TeacherCNN(TeacherConfig(width=4, blocks=1, hidden=8, input_size=(SIZE, SIZE), dropout=0.0))


def test_precomputed_teacher_logits_train_exactly_like_a_live_teacher() -> None:
    data = toy_dataset(96)
    teacher = _toy_teacher().double()
    cfg = TrainConfig(epochs=1, batch_size=32, dtype="float64", progress=False)
    kd = DistillConfig(method="kd", temperature=4.0, alpha=0.7)
    live, cached = student(0).double(), student(0).double()
    Trainer(live, cfg, teacher=teacher, distill=kd).fit(data)
    logits = teacher_logits_for(teacher, data, dtype="float64")
    Trainer(cached, cfg, distill=kd, teacher_logits=logits).fit(data)
    for a, b in zip(live.state_dict().values(), cached.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_precomputed_teacher_logits_are_refused_where_they_would_be_wrong() -> None:
    logits = torch.zeros(96, 10)
    kd = DistillConfig(method="kd")
    with pytest.raises(ModelConfigError, match="without augmentation"):
        Trainer(student(), TrainConfig(augment=AugmentConfig(hflip=True)), distill=kd, teacher_logits=logits)
    with pytest.raises(ModelConfigError, match="hint"):
        Trainer(student(), TrainConfig(), distill=DistillConfig(method="hint"), teacher_logits=logits)
    trainer = Trainer(student(), TrainConfig(epochs=1, progress=False), distill=kd, teacher_logits=logits[:10])
    with pytest.raises(ModelConfigError, match="10 rows for 96"):
        trainer.fit(toy_dataset(96))


# -- jobs ------------------------------------------------------------------------------------------
def _toy_job(name: str = "s", epochs: int = 1) -> Job:
    model = config_to_dict(StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                                         backend=BackendConfig(), input_size=(SIZE, SIZE), optics=None))
    return Job(name, "student", model, TrainConfig(epochs=epochs, batch_size=32, progress=False))


def test_a_finished_job_is_loaded_not_retrained_unless_its_settings_change(tmp_path: Path) -> None:
    data = JobData(toy_dataset(96), toy_dataset(40, seed=1), toy_dataset(40, seed=2))
    first = run_job(_toy_job(), data, tmp_path)
    assert first is not None and 0.0 <= first["test_accuracy"] <= 1.0
    assert first["params"]["electronic"] > 0 and first["electronic_flops"] > 0
    path = job_dir(tmp_path, _toy_job()) / "result.json"
    stored = path.stat().st_mtime_ns
    again = run_job(_toy_job("same settings, other name"), data, tmp_path)
    assert again == json.loads(path.read_text())
    assert path.stat().st_mtime_ns == stored
    quiet = _toy_job()
    quiet = replace(quiet, train=replace(quiet.train, progress=not quiet.train.progress))
    assert quiet.key == _toy_job().key  # progress bars do not decide a result: --no-progress reuses runs
    changed = run_job(_toy_job(epochs=2), data, tmp_path)
    assert changed["epochs_run"] == 2


# -- the KD study grid --------------------------------------------------------------------------------
def test_every_study_comparison_is_between_equally_trained_arms() -> None:
    config = StudyConfig(seeds=(0, 1, 2))
    jobs = {j.name: j for j in study_jobs(config)}
    names = list(jobs)
    for job in jobs.values():
        if job.init_from is not None:  # the protocol's stage 2 starts from a finished no-KD student
            stage1 = next(j for j in jobs.values() if j.key == job.init_from)
            assert stage1.distill.method == "none" and names.index(stage1.name) < names.index(job.name)
    grid = [j for j in jobs.values() if j.tags["group"] == "grid"]
    for job in grid:  # KD and no-KD arms of a cell share everything but the loss
        control = jobs[job.name.replace(f"/{job.tags['arm']}/", "/none/")]
        assert control.train == job.train and control.model == job.model
    assert {j.tags["backend"] for j in grid} == {"fc", "mlp"}
    assert {j.tags["budget"] for j in grid} == {"short", "full"}
    assert {j.tags["arm"] for j in grid} >= {"none", "kd_T10_a0.5", "kd_T4_a0.9", "hint_T10_a0.5_w1"}
    assert all(len([j for j in grid if j.name.rsplit("/seed", 1)[0] == k]) == 3
               for k in {j.name.rsplit("/seed", 1)[0] for j in grid})
    detection = [j for j in jobs.values() if j.tags["group"] == "detection"]
    assert detection and all(j.model["frontend"]["detection"] == "incoherent" for j in detection)


def test_study_summary_reports_every_comparison_with_its_verdict() -> None:
    config = StudyConfig(seeds=(0, 1, 2), hint=None, protocol_epochs=None, detection_ablation=False,
                         budgets=(("short", 1),))
    jobs = study_jobs(config)
    rng = np.random.default_rng(0)
    results = {}
    for job in jobs:  # KD arms 2 points better on fc, no better on mlp
        lift = 0.02 if job.tags["backend"] == "fc" and job.tags["arm"] != "none" else 0.0
        results[job.name] = {"test_accuracy": 0.88 + lift + rng.normal(0, 0.001)}
    study = summarise(config, jobs, results, {"test_accuracy": 0.93})
    verdicts = {(c["what"].split()[0], c["treated_arm"]): c["verdict"] for c in study["comparisons"]}
    assert verdicts[("fc", "kd_T10_a0.5")] == "better"
    assert verdicts[("mlp", "kd_T10_a0.5")] == "no difference beyond the spread"
    assert len(study["comparisons"]) == 4


# -- efficiency ----------------------------------------------------------------------------------------
def test_fft_flops_grow_as_n_squared_log_n() -> None:
    small, large = fft_conv_flops(1, 16, 100, 9), fft_conv_flops(1, 16, 1000, 9)
    assert 100 < large / small < 200  # ~ (1000/100)^2 * log ratio


def test_crossover_is_where_the_hybrid_stays_cheaper() -> None:
    points = [{"size": n, "m": {"hybrid": 1.0, "teacher": t, "sclc_direct": d, "sclc_fft": f}}
              for n, t, d, f in ((28, 0.5, 0.1, 2.0), (64, 2.0, 0.5, 0.5), (128, 4.0, 2.0, 3.0))]
    assert crossover(points, "m") == {"teacher": 64, "sclc_direct": 128, "sclc_fft": 128}


def test_efficiency_writes_json_and_plot(tmp_path: Path) -> None:
    tiny = ClassificationConfig(teacher=TeacherConfig(width=4, hidden=8))
    result = run_efficiency(tmp_path, sizes=(28, 40), repeats=1, device="cpu", config=tiny, binning=(2, 8),
                            progress=lambda _: None)
    assert [p["size"] for p in result["points"]] == [28, 40]
    for point in result["points"]:
        assert point["flops"]["hybrid"] < point["flops"]["sclc_direct"]  # the optics do the convolution
        assert point["latency_s"]["hybrid"] >= result["bench_frame"]["frame_s"]
        # 2x2 binning: a quarter of the pixels to read; the back end's pooling then sees fewer inputs
        assert point["flops"]["hybrid_bin2"] < point["flops"]["hybrid"]
        assert point["energy_j"]["hybrid"]["total"] > point["energy_j"]["hybrid"]["laser"] > 0
    # 8x8 binning of a 36-px tile leaves 4 px, under the back end's 6x6 pooling grid: not tried
    assert "hybrid_bin8" not in result["points"][0]["flops"]
    assert (tmp_path / "efficiency.png").stat().st_size > 10_000
    stored = json.loads((tmp_path / "efficiency.json").read_text())
    assert {"flops", "latency", "energy", "flops_bin2"} <= stored["crossover"].keys()
    assert {row["key"] for row in stored["powers"]} == {"laser", "input", "filter", "camera", "host"}
    counted = run_efficiency(tmp_path / "n", sizes=(28,), repeats=1, device="cpu", config=tiny, binning=(2,),
                             latency=False, progress=lambda _: None)
    assert "latency_s" not in counted["points"][0] and "latency" not in counted["crossover"]
    assert counted["points"][0]["flops"] == result["points"][0]["flops"]  # counting needs no timing


# -- the classification experiment, end to end on a tiny IDX dataset -------------------------------------
def _toy_idx(folder: Path) -> Path:
    for split, n, seed in (("train", 400, 0), ("test", 60, 5)):
        ds = toy_dataset(n, seed)
        write_idx_split(folder, ds.images[:, 0].numpy(), ds.labels.numpy().astype(np.uint8), split)
    return folder


def tiny_config() -> ClassificationConfig:
    steps = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=4, lr=5e-3)
    return ClassificationConfig(
        input_size=SIZE, val_fraction=0.2, seeds=(0,),
        teacher=TeacherConfig(width=4, blocks=1, hidden=8), teacher_train=steps,
        student=StudentConfig(frontend=SCLCConfig(channels=(2, 2), kernel_sizes=(3, 3)),
                              backend=BackendConfig(kind="fc", pool=2), optics=OpticsConfig(profile="sim")),
        student_train=steps, optical_finetune=replace(steps, max_steps_per_epoch=1))


def test_classification_report_has_every_key_the_issue_names(tmp_path: Path) -> None:
    data = _toy_idx(tmp_path / "toy")
    report = run_classification(data, tmp_path / "runs", tiny_config(), device="cpu", progress=False, log=lambda _: None)
    for key in ("teacher.accuracy", "linear.accuracy", "kd.accuracy", "kd_optical.accuracy"):
        assert 0.0 <= get_dotted(report, key) <= 1.0
    for key in ("teacher", "linear", "kd"):
        assert report[key]["params"]["total"] > 0 and report[key]["electronic_flops"] > 0
    assert report["linear"]["electronic_flops"] < report["teacher"]["electronic_flops"]
    best = report["best_optical"]  # the better of no-KD and KD, through the optics
    assert best["arm"] in ("linear", "kd")
    assert best["ideal_accuracy"] == max(report["linear"]["accuracy"], report["kd"]["accuracy"])
    assert best["gap_points"] == pytest.approx(100 * (best["ideal_accuracy"] - best["accuracy"]))
    assert report["config"]["kd"] == {"method": "kd", "temperature": 10.0, "alpha": 0.5, "hint_weight": 1.0,
                                      "hint_layer": None}
    assert report["wall_seconds"] > 0
    assert "| SCLC, KD |" in (tmp_path / "runs" / "report.md").read_text()
    assert json.loads((tmp_path / "runs" / "report.json").read_text())["kd"]["accuracy"] == report["kd"]["accuracy"]


def test_cli_classification_reuses_finished_runs_and_a_given_teacher(tmp_path: Path, monkeypatch) -> None:
    data = _toy_idx(tmp_path / "toy")
    first = run_classification(data, tmp_path / "first", tiny_config(), device="cpu", progress=False,
                               log=lambda _: None)
    monkeypatch.setattr(ClassificationConfig, "quick", classmethod(lambda cls: tiny_config()))
    code = main(["experiment", "classification", "--quick", "--data", str(data), "--no-progress",
                 "--teacher", first["teacher"]["checkpoint"],
                 "--report", str(tmp_path / "r.json"), "--out", str(tmp_path / "first")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["teacher_checkpoint"].endswith("best.pt")
    assert (tmp_path / "r.md").is_file()


def test_classification_refuses_a_teacher_for_another_resolution(tmp_path: Path) -> None:
    data = _toy_idx(tmp_path / "toy")
    first = run_classification(data, tmp_path / "a", tiny_config(), device="cpu", progress=False,
                               log=lambda _: None)
    other = replace(tiny_config(), input_size=20)
    with pytest.raises(ModelConfigError, match="takes"):
        run_classification(data, tmp_path / "b", other, teacher_checkpoint=first["teacher"]["checkpoint"],
                           device="cpu", progress=False, log=lambda _: None)


def test_the_classification_students_are_cells_of_the_kd_study() -> None:
    from labrig.experiments.classification import _student_jobs

    study = {j.name: j.key for j in study_jobs(StudyConfig(), device="auto")}
    for seed in (0, 1, 2):
        jobs = _student_jobs(ClassificationConfig(), seed, "auto")
        assert jobs["linear"].key == study[f"mlp/full/none/seed{seed}"]
        assert jobs["kd"].key == study[f"mlp/full/kd_T10_a0.5/seed{seed}"]


def _ddp_experiment(rank: int, init_file: str, data: str, out: str) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    from labrig.distill import ddp

    ddp.init_distributed(init_method=f"file://{init_file}", rank=rank, world_size=2, device="cpu")
    try:
        report = run_classification(data, out, tiny_config(), device="cpu", progress=False, log=lambda _: None)
        Path(out, f"rank{rank}.json").write_text(json.dumps(report["kd"]["accuracy"]))
    finally:
        ddp.cleanup()


def test_the_experiment_runs_data_parallel_and_only_rank_0_writes(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    data = _toy_idx(tmp_path / "toy")
    out = tmp_path / "runs"
    out.mkdir()
    mp.spawn(_ddp_experiment, args=(str(tmp_path / "init"), str(data), str(out)), nprocs=2, join=True)
    assert json.loads((out / "rank0.json").read_text()) == json.loads((out / "rank1.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["kd_optical"]["accuracy"] <= 1.0


def test_a_job_shared_by_two_concurrent_experiments_is_trained_once(tmp_path: Path) -> None:
    import threading

    data = JobData(toy_dataset(96), toy_dataset(40, seed=1), toy_dataset(40, seed=2))
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(run_job(_toy_job(epochs=2), data, tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]  # the second waited and loaded the first's result

"""``labrig experiment classification``: teacher, no-KD linear student, KD student,
and the KD student through the `sim` bench's optics, on one dataset.

Every student shares the optimiser, schedule, data and epochs; KD and no-KD
differ only in the loss. ``kd_optical`` is the KD student run through the twin
of the bench with its physical limits (normalised double-phase mask on the
quantised phase-only SLM, camera shot/read noise and ADC), first as trained
and then after a short optics-aware fine-tune of the masks and back end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.data.base import ImageDataset
from labrig.distill import AugmentConfig, DistillConfig, TrainConfig, evaluate
from labrig.distill.trainer import Cancel
from labrig.experiments.jobs import (
    Job,
    JobData,
    is_main_process,
    job_dir,
    load_job_model,
    run_job,
    write_json,
)
from labrig.experiments.report import machine_info, markdown_table
from labrig.experiments.setup import limit_dataset, prepare_teacher, splits_for
from labrig.experiments.stats import spread
from labrig.models.backends import BackendConfig
from labrig.models.errors import ModelConfigError
from labrig.models.optical import OpticsConfig
from labrig.models.sclc import SCLCConfig
from labrig.models.serialize import config_to_dict
from labrig.models.student import StudentConfig
from labrig.models.teacher import TeacherConfig

#: training images the default budgets are stated for: Fashion-MNIST's 60,000 less validation
FULL_TRAIN = 55_000
#: the same for `ClassificationConfig.quick`
QUICK_TRAIN = 6_000


@dataclass(frozen=True)
class ClassificationConfig:
    """One experiment. `seeds` repeat the students (the teacher is trained once).

    Budgets are optimisation steps, stated as epochs of the full Fashion-MNIST training
    split (`FULL_TRAIN`): on a smaller dataset (`--data` a lab's own, or `train_limit`)
    the epochs grow to the same steps (`TrainConfig.reference_train_size`).
    """

    input_size: int = 28
    val_fraction: float = 5000 / 60000
    split_seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=18, reference_train_size=FULL_TRAIN, lr=2e-3, weight_decay=5e-4, warmup_epochs=0.5,
        augment=AugmentConfig(crop_padding=2, hflip=True)))
    student: StudentConfig = field(default_factory=lambda: StudentConfig(
        frontend=SCLCConfig(channels=(16, 16), kernel_sizes=(5, 5)),
        backend=BackendConfig(kind="mlp", pool=6, norm="scale_log1p", hidden=(256,)),
        optics=OpticsConfig(profile="sim", max_per_frame=4)))
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=6, reference_train_size=FULL_TRAIN, lr=3e-3))
    kd: DistillConfig = field(default_factory=lambda: DistillConfig(method="kd", temperature=10.0, alpha=0.5))
    optical_finetune: TrainConfig | None = field(default_factory=lambda: TrainConfig(
        epochs=1, lr=3e-4, batch_size=64, max_steps_per_epoch=40))
    """Optics-aware fine-tune of the KD student (None: evaluate through the optics as trained)."""
    as_trained_test_limit: int | None = 2000
    """Test images for the secondary score of the students through the optics *before*
    the fine-tune (the twin is slow; None: all). Headline scores use the whole test split."""

    @classmethod
    def quick(cls) -> ClassificationConfig:
        """A small version for CI and demos: minutes on a laptop CPU, not the paper's numbers."""
        return cls(
            train_limit=QUICK_TRAIN, val_limit=1000, test_limit=1000, seeds=(0,),
            teacher=TeacherConfig(width=16, hidden=128),
            teacher_train=TrainConfig(epochs=2, reference_train_size=QUICK_TRAIN, lr=3e-3,
                                      augment=AugmentConfig()),
            student=replace(cls().student, frontend=SCLCConfig(channels=(8, 8), kernel_sizes=(5, 5)),
                            backend=BackendConfig(kind="mlp", pool=4, norm="scale_log1p", hidden=(64,))),
            student_train=TrainConfig(epochs=3, reference_train_size=QUICK_TRAIN, lr=5e-3),
            optical_finetune=TrainConfig(epochs=1, lr=3e-4, max_steps_per_epoch=5, batch_size=64),
            as_trained_test_limit=500,
        )


    def with_train_fraction(self, fraction: float) -> ClassificationConfig:
        """The same experiment on a seeded random `fraction` of the training split: the
        budgets, stated in steps, make the epochs grow to match."""
        if not 0.0 < fraction <= 1.0:
            raise ModelConfigError(f"--train-fraction must be in (0, 1], got {fraction}")
        size = self.train_limit or self.student_train.reference_train_size or FULL_TRAIN
        return replace(self, train_limit=None if fraction == 1.0 else max(1, round(fraction * size)))


def _student_jobs(config: ClassificationConfig, seed: int, device: str) -> dict[str, Job]:
    train = replace(config.student_train, seed=seed, device=device, progress=False)
    model = config_to_dict(config.student)
    jobs = {
        "linear": Job(f"linear/seed{seed}", "student", model, train, tags={"seed": seed}),
        "kd": Job(f"kd/seed{seed}", "student", model, train, config.kd, tags={"seed": seed}),
    }
    if config.optical_finetune is not None:
        jobs["kd_optical"] = _optical_job(config, jobs["kd"], "kd_optical", seed, device)
    return jobs


def _optical_job(config: ClassificationConfig, source: Job, name: str, seed: int, device: str) -> Job:
    """A short optics-aware fine-tune of `source` (same loss), scored through the bench optics."""
    assert config.optical_finetune is not None
    aware = config_to_dict(replace(config.student, frontend=replace(config.student.frontend, mode="optics_aware")))
    tune = replace(config.optical_finetune, seed=seed, device=device, progress=False)
    return Job(f"{name}/seed{seed}", "student", aware, tune, source.distill, init_from=source.key,
               eval_modes=("optics_aware",), validate=False, tags={"seed": seed})


def _optical_eval(job: Job, test: ImageDataset, out: Path, seed: int, device: str) -> float:
    """A finished student as trained, scored through the bench optics (no fine-tune);
    kept beside the job, as the twin is slow."""
    cache = job_dir(out, job) / "test-optics_aware.json"
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("test_images") == len(test) and stored.get("seed") == seed:
            return float(stored["accuracy"])
    model = load_job_model(out, job)
    model.mode = "optics_aware"
    accuracy = evaluate(model, test, batch_size=128, device=device, seed=seed)["accuracy"]
    if is_main_process():
        write_json(cache, {"accuracy": accuracy, "test_images": len(test), "seed": seed})
    return accuracy



def teacher_job_for(config: ClassificationConfig, num_classes: int, device: str,
                    progress: bool | None = None) -> Job:
    """The teacher's job for a classification config: its model sized to the data, its budget
    on `device` (`progress` left as configured when None). One place, so every study that
    shares a teacher finds the same job (and checkpoint)."""
    model = replace(config.teacher, input_size=(config.input_size,) * 2, num_classes=num_classes)
    train = replace(config.teacher_train, device=device)
    if progress is not None:
        train = replace(train, progress=progress)
    return Job("teacher", "teacher", config_to_dict(model), train)

def run_classification(
    data_dir: str | Path,
    out: str | Path,
    config: ClassificationConfig | None = None,
    *,
    teacher_checkpoint: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    cancel: Cancel | None = None,
    log: Any = print,
) -> dict[str, Any] | None:
    """Run (or resume) the experiment; returns the report (None if cancelled).

    Writes ``report.json`` and ``report.md`` into `out`.
    """
    config = config or ClassificationConfig()
    out = Path(out)
    started = time.perf_counter()
    train, val, test = splits_for(data_dir, config)
    data = JobData(train, val, test)
    teacher_job = teacher_job_for(config, train.num_classes, device, progress)
    log(f"teacher: {'loading ' + str(teacher_checkpoint) if teacher_checkpoint else 'training'}")
    teacher = prepare_teacher(data, out, teacher_job, checkpoint=teacher_checkpoint, device=device,
                              cancel=cancel)
    if teacher is None:
        return None
    log(f"teacher: test accuracy {100 * teacher['test_accuracy']:.2f} %")
    results: dict[str, list[dict[str, Any]]] = {"linear": [], "kd": [], "kd_optical": []}
    as_trained: list[float] = []
    for seed in config.seeds:
        for key, job in _student_jobs(config, seed, device).items():
            log(f"{job.name}: training")
            result = run_job(job, data, out, device=device, cancel=cancel)
            if result is None:
                return None
            results[key].append(result)
            log(f"{job.name}: test accuracy {100 * result['test_accuracy']:.2f} %")
        as_trained.append(_optical_eval(_student_jobs(config, seed, device)["kd"], _as_trained_test(config, data),
                                        out, seed, device))
    best = _best_through_optics(config, data, out, results, device, cancel, log)
    if best is None:
        return None
    report = build_report(config, teacher, results, as_trained, data, data_dir, teacher_checkpoint)
    report["best_optical"] = best
    report["wall_seconds"] = time.perf_counter() - started
    if is_main_process():
        write_json(out / "report.json", report)
        (out / "report.md").write_text(report_markdown(report))
    return report


def _as_trained_test(config: ClassificationConfig, data: JobData) -> ImageDataset:
    return limit_dataset(data.test, config.as_trained_test_limit, config.split_seed + 3)


def _best_through_optics(config: ClassificationConfig, data: JobData, out: Path,
                         results: dict[str, list[dict[str, Any]]], device: str,
                         cancel: Cancel | None, log: Any) -> dict[str, Any] | None:
    """The better ideal student (no KD or KD, by mean test accuracy) through the bench optics:
    the paper's claim is about the best student, whichever recipe made it."""
    arm = max(("linear", "kd"), key=lambda k: spread([r["test_accuracy"] for r in results[k]]).mean)
    ideal = spread([r["test_accuracy"] for r in results[arm]])
    tuned: list[float] = []
    as_trained: list[float] = []
    for seed in config.seeds:
        source = _student_jobs(config, seed, device)[arm]
        as_trained.append(_optical_eval(source, _as_trained_test(config, data), out, seed, device))
        if config.optical_finetune is None:
            continue
        job = _optical_job(config, source, f"{arm}_optical", seed, device)
        log(f"{job.name}: training")
        result = run_job(job, data, out, device=device, cancel=cancel)
        if result is None:
            return None
        tuned.append(result["test_accuracy"])
    optical = spread(tuned or as_trained)
    return {"arm": arm, "ideal_accuracy": ideal.mean, "ideal_accuracy_std": ideal.std,
            "accuracy": optical.mean, "accuracy_std": optical.std, "accuracies": list(optical.values),
            "accuracy_as_trained": spread(as_trained).mean, "finetuned": bool(tuned),
            "gap_points": 100 * (ideal.mean - optical.mean)}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = spread([r["test_accuracy"] for r in runs])
    first = runs[0]
    return {"accuracy": accs.mean, "accuracy_std": accs.std, "seeds": [r["tags"].get("seed") for r in runs],
            "accuracies": list(accs.values), "val_accuracy": first.get("val_accuracy"),
            "params": first["params"], "electronic_flops": first["electronic_flops"],
            "digital_frontend_flops": first.get("digital_frontend_flops"),
            "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs),
            "checkpoint": first.get("checkpoint")}


def build_report(
    config: ClassificationConfig,
    teacher: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
    as_trained: list[float],
    data: JobData,
    data_dir: str | Path,
    teacher_checkpoint: str | Path | None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "teacher": {"accuracy": teacher["test_accuracy"], "val_accuracy": teacher.get("val_accuracy"),
                    "params": teacher["params"], "electronic_flops": teacher["electronic_flops"],
                    "train_seconds": teacher.get("train_seconds"), "checkpoint": teacher.get("checkpoint")},
        "linear": _summary(results["linear"]),
        "kd": _summary(results["kd"]),
    }
    optical = spread(as_trained)
    kd_optical = {"accuracy_as_trained": optical.mean, "accuracy_as_trained_std": optical.std,
                  "profile": config.student.optics.profile if config.student.optics else None,
                  "test_images": min(len(data.test), config.as_trained_test_limit or len(data.test))}
    if results["kd_optical"]:
        kd_optical = {**_summary(results["kd_optical"]), **kd_optical, "finetuned": True}
    else:
        kd_optical = {**kd_optical, "accuracy": optical.mean, "accuracy_std": optical.std, "finetuned": False}
    kd_optical["gap_to_kd_points"] = 100 * (report["kd"]["accuracy"] - kd_optical["accuracy"])
    report["kd_optical"] = kd_optical
    report["data"] = {"dir": str(data_dir), "train": len(data.train), "val": len(data.val), "test": len(data.test),
                      "classes": data.train.classes}
    report["config"] = config_to_dict(config)
    report["teacher_checkpoint"] = str(teacher_checkpoint) if teacher_checkpoint else None
    report["machine"] = machine_info()
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The results table: accuracy (mean ± std over seeds), parameters, electronic FLOPs."""
    def acc(entry: dict[str, Any]) -> str:
        std = entry.get("accuracy_std")
        return f"{100 * entry['accuracy']:.2f}" + (f" ± {100 * std:.2f}" if std else "")

    rows = []
    names = {"teacher": "teacher (nonlinear CNN)", "linear": "SCLC, no KD", "kd": "SCLC, KD",
             "kd_optical": f"SCLC, KD, through `{report['kd_optical'].get('profile')}` optics"}
    for key, label in names.items():
        entry = report[key]
        params = entry.get("params", {})
        rows.append([label, acc(entry), f"{params.get('total', '')}", f"{params.get('electronic', params.get('total', ''))}",
                     f"{entry.get('electronic_flops', '')}"])
    table = markdown_table(["model", "test accuracy %", "parameters", "electronic parameters",
                            "electronic FLOPs/image"], rows)
    kd_opt = report["kd_optical"]
    notes = [f"Data: {report['data']['train']} train / {report['data']['val']} val / {report['data']['test']} test images "
             f"from {report['data']['dir']}; seeds {report['linear']['seeds']}.",
             f"KD student through the optics before the fine-tune: {100 * kd_opt['accuracy_as_trained']:.2f} % "
             f"on {kd_opt['test_images']} test images; after it (whole test split), "
             f"{kd_opt['gap_to_kd_points']:.2f} points below the ideal KD student.",
             *([f"Best ideal student ({'KD' if report['best_optical']['arm'] == 'kd' else 'no KD'}, "
                f"{100 * report['best_optical']['ideal_accuracy']:.2f} %) through the optics: "
                f"{100 * report['best_optical']['accuracy']:.2f} ± {100 * report['best_optical']['accuracy_std']:.2f} % "
                f"(gap {report['best_optical']['gap_points']:.2f} points; as trained "
                f"{100 * report['best_optical']['accuracy_as_trained']:.2f} %)."] if "best_optical" in report else []),
             f"Wall time {report.get('wall_seconds', 0):.0f} s."]
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"

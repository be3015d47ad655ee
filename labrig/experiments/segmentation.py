"""``labrig experiment segmentation``: U-Net teacher, SCLC students with and without
dense KD, and the KD student through the bench optics, on real-image scenes.

Per seed, on one data set with one optimiser, schedule and budget:

- ``linear``: the SCLC segmentation student (optical encoder + electronic
  decoder) trained on labels only: the no-KD baseline;
- ``kd``: the same student trained with per-pixel KD from the teacher;
- ``kd_optical`` and ``linear_optical``: each student run through the twin of
  the bench with its physical limits (normalised double-phase mask on the
  quantised phase-only SLM, camera shot/read noise and ADC), after a short
  optics-aware fine-tune with its own loss; both students as trained are also
  scored through the ideal twin and the physical one, so the cost of the
  optics is visible on its own. Whichever student is better ideally, its
  optical version is the one held to the "within 2 points" target.

The KD effect is stated against the seed spread (`stats.compare`), never
beyond it. Every training run is a `Job` keyed by its settings, so the
experiment resumes where it stopped and re-reports instantly when done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from labrig.data.segmentation import SegmentationDataset
from labrig.distill import evaluate, load_model
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
from labrig.experiments.pool import run_pool
from labrig.experiments.seg_config import SegmentationConfig
from labrig.experiments.seg_data import (
    check_data_record,
    data_record,
    load_seg_splits,
)
from labrig.experiments.seg_figure import segmentation_figure
from labrig.experiments.seg_report import build_report, report_markdown
from labrig.experiments.setup import LOGITS, cached_logits
from labrig.models.errors import ModelConfigError
from labrig.models.runtime import resolve_device
from labrig.models.segmentation import SegmentationStudent, SegStudentConfig
from labrig.models.serialize import config_to_dict

SCORES = "seg_test.json"
ARMS = ("linear", "kd", "kd_hint", "linear_optical", "kd_optical")
OPTICAL_ARMS = {"linear_optical": "linear", "kd_optical": "kd"}
"""Optics-aware fine-tunes and the student each starts from."""

# -- jobs -----------------------------------------------------------------------------------------
def teacher_job(config: SegmentationConfig, num_classes: int, device: str, progress: bool) -> Job:
    teacher = replace(config.teacher, input_size=(config.data.size,) * 2, num_classes=num_classes)
    return Job("teacher", "unet", config_to_dict(teacher),
               replace(config.teacher_train, device=device, progress=progress))


def student_config(config: SegmentationConfig, num_classes: int) -> SegStudentConfig:
    return replace(config.student, input_size=(config.data.size,) * 2, num_classes=num_classes)


def student_jobs(config: SegmentationConfig, num_classes: int, seed: int, device: str) -> dict[str, Job]:
    """The seed's student runs: same model, data and budget; only the loss differs."""
    train = replace(config.student_train, seed=seed, device=device, progress=False)
    student = student_config(config, num_classes)
    model = config_to_dict(student)
    tags = {"seed": seed}
    jobs = {"linear": Job(f"linear/seed{seed}", "seg_student", model, train, tags=tags),
            "kd": Job(f"kd/seed{seed}", "seg_student", model, train, config.kd, tags=tags)}
    if config.hint is not None:
        jobs["kd_hint"] = Job(f"kd_hint/seed{seed}", "seg_student", model, train, config.hint, tags=tags)
    if config.optical_finetune is not None:
        aware = config_to_dict(replace(student, frontend=replace(student.frontend, mode="optics_aware")))
        tune = replace(config.optical_finetune, seed=seed, device=device, progress=False)
        for arm, base in OPTICAL_ARMS.items():
            jobs[arm] = Job(f"{arm}/seed{seed}", "seg_student", aware, tune, jobs[base].distill,
                            init_from=jobs[base].key, eval_modes=("optics_aware",), validate=False, tags=tags)
    return jobs


def _limit(dataset: SegmentationDataset, limit: int | None) -> SegmentationDataset:
    return dataset if limit is None or limit >= len(dataset) else dataset.subset(torch.arange(limit))


# -- scoring --------------------------------------------------------------------------------------
def score_modes(model: torch.nn.Module, test: SegmentationDataset, modes: dict[str, int | None], *,
                device: str, seed: int, batch_size: int) -> dict[str, dict[str, float]]:
    """mIoU and pixel accuracy per front-end mode (teachers: mode ``""``), each on the first
    `modes[mode]` test images (None: all)."""
    scores = {}
    model = model.to(resolve_device(device))
    keep = getattr(model, "mode", None)
    try:
        for mode, limit in modes.items():
            if mode:
                model.mode = mode
            part = _limit(test, limit)
            m = evaluate(model, part, batch_size=batch_size, device=device, seed=seed)
            scores[mode or "test"] = {"miou": m["miou"], "pixel_accuracy": m["accuracy"], "loss": m["loss"],
                                      "images": len(part)}
    finally:
        if keep is not None:
            model.mode = keep
    return scores


def job_scores(out: Path, job: Job, test: SegmentationDataset, modes: dict[str, int | None], data: dict,
               *, device: str, seed: int, batch_size: int) -> dict[str, dict[str, float]]:
    """`score_modes` of a finished job's best weights, stored beside its result."""
    path = job_dir(out, job) / SCORES
    stamp = json.loads(json.dumps({"settings": job.settings(), "data": data, "modes": modes}))
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if {k: stored.get(k) for k in stamp} == stamp:
                return stored["scores"]
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    model = load_job_model(out, job, device="cpu")
    scores = score_modes(model, test, modes, device=device, seed=seed, batch_size=batch_size)
    if is_main_process():
        write_json(path, {**stamp, "scores": scores})
    return scores


# -- the run ---------------------------------------------------------------------------------------
def run_segmentation(
    data_dir: str | Path,
    out: str | Path,
    config: SegmentationConfig | None = None,
    *,
    teacher_checkpoint: str | Path | None = None,
    device: str = "auto",
    workers: int = 1,
    progress: bool = True,
    cancel: Cancel | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any] | None:
    """Run (or resume) the experiment; returns the report (None if cancelled).

    The teacher trains here; the students then train in `workers` processes of
    one thread each (1: here, in order, honouring `cancel`). Writes
    ``report.json``, ``report.md`` and ``predictions.png`` into `out`.
    """
    config = config or SegmentationConfig()
    out = Path(out)
    started = time.perf_counter()
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        check_data_record(out, data_record(data_dir, config.data))
    state = _prepare(data_dir, config, out, teacher_checkpoint, device, progress, cancel, log)
    if state is None:
        return None
    data, teacher_result = state.data, state.teacher_result
    train = data.train
    jobs = [job for seed in config.seeds for job in student_jobs(config, train.num_classes, seed, device).values()]
    by_name = run_pool(jobs, _student_work, workers=workers, setup=_worker_state,
                       setup_args=(str(data_dir), config, str(out), teacher_checkpoint, device),
                       local_state=replace(state, cancel=cancel), cost=_cost, progress=progress,
                       desc="segmentation students", describe=_describe)
    if len(by_name) < len(jobs):
        return None
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for job in jobs:
        result = by_name[job.name]
        results[_arm(job)].append(result)
        log(f"{job.name}: {_describe(job, result)}")
    encoder = replace(student_config(config, train.num_classes), optics=None)
    report = build_report(config, teacher_result, results, data, data_dir, teacher_checkpoint,
                          digital_encoder_flops=SegmentationStudent(encoder).digital_frontend_flops())
    report["wall_seconds"] = time.perf_counter() - started
    report["workers"] = workers
    if is_main_process():
        figure = out / "predictions.png"
        predictions_figure(figure, config, data, out, device)
        report["figure"] = str(figure)
        write_json(out / "report.json", report)
        (out / "report.md").write_text(report_markdown(report))
    return report


# -- the student jobs, here or in worker processes ------------------------------------------------
@dataclass
class _State:
    """What every student job needs: data (with the teacher and its cached logits) and where to write."""

    data: JobData
    optical_data: JobData
    out: Path
    config: SegmentationConfig
    record: dict[str, Any]
    device: str
    teacher_result: dict[str, Any]
    cancel: Cancel | None = None


def _prepare(data_dir: str | Path, config: SegmentationConfig, out: Path, teacher_checkpoint: str | Path | None,
             device: str, progress: bool, cancel: Cancel | None, log: Callable[[str], Any]) -> _State | None:
    """Splits (generated once, then read from the cache), the teacher (trained once) and its
    per-pixel training logits (computed once, float16, memory-mapped: workers share the pages)."""
    record = data_record(data_dir, config.data)
    train, val, test = load_seg_splits(data_dir, config.data, cache_dir=out / "data")
    log(f"data: {len(train)} train / {len(val)} val / {len(test)} test images of {config.data.size} px, "
        f"{train.num_classes} classes ({record['kind']})")
    data = JobData(train, val, test)  # type: ignore[arg-type]
    t_job = teacher_job(config, train.num_classes, device, progress)
    teacher_result = _teacher(t_job, data, out, record, teacher_checkpoint, device, cancel, log)
    if teacher_result is None:
        return None
    optical_data = JobData(train, val, _limit(test, config.optical_test_limit),  # type: ignore[arg-type]
                           teacher=data.teacher, teacher_logits=data.teacher_logits)
    return _State(data, optical_data, out, config, record, device, teacher_result)


def _worker_state(data_dir: str, config: SegmentationConfig, out: str, teacher_checkpoint: str | None,
                  device: str) -> _State:
    state = _prepare(data_dir, config, Path(out), teacher_checkpoint, device, False, None, lambda _: None)
    assert state is not None  # nothing cancels a worker's set-up
    return state


def _arm(job: Job) -> str:
    return job.name.split("/", 1)[0]


def _student_work(state: _State, job: Job) -> dict[str, Any] | None:
    """Train (or load) one student and score it in its arm's modes; None if cancelled."""
    arm = _arm(job)
    result = run_job(job, state.optical_data if arm in OPTICAL_ARMS else state.data, state.out,
                     device=state.device, cancel=state.cancel)
    if result is None:
        return None
    result["scores"] = job_scores(state.out, job, state.data.test, _modes(arm, state.config), state.record,  # type: ignore[arg-type]
                                  device=state.device, seed=job.tags["seed"], batch_size=_eval_batch(state.config, arm))
    return result


def _cost(job: Job) -> float:
    """Relative cost: the optics-aware fine-tune runs the twin, tens of times slower per image."""
    steps = job.train.epochs * (job.train.max_steps_per_epoch or 1000)
    return steps * (30 if _arm(job) in OPTICAL_ARMS else 1)


def _describe(job: Job, result: dict[str, Any]) -> str:
    return ", ".join(f"{mode} mIoU {100 * s['miou']:.2f} %" for mode, s in result["scores"].items())


def _modes(arm: str, config: SegmentationConfig) -> dict[str, int | None]:
    if arm in OPTICAL_ARMS:
        return {"optics_aware": config.optical_test_limit}
    if arm in OPTICAL_ARMS.values():  # as trained: digital, ideal twin, physical twin
        return {"collapsed": None, "optical": config.optical_test_limit, "optics_aware": config.optical_test_limit}
    return {"collapsed": None}


def _eval_batch(config: SegmentationConfig, arm: str) -> int:
    """The twin's batch for anything scored through it (its 1024² FFTs are memory-hungry)."""
    if "optics_aware" in _modes(arm, config) and config.optical_finetune is not None:
        return config.optical_finetune.eval_batch_size
    return config.student_train.eval_batch_size


def _teacher(job: Job, data: JobData, out: Path, record: dict[str, Any], checkpoint: str | Path | None,
             device: str, cancel: Cancel | None, log: Callable[[str], Any]) -> dict[str, Any] | None:
    """Train the teacher (or load `checkpoint`), put it into `data`, return its result with scores."""
    if checkpoint is not None:
        log(f"teacher: loading {checkpoint}")
        teacher, ck = load_model(checkpoint, kind="unet")
        size = tuple(data.train.image_shape[1:])
        if tuple(ck.config.get("input_size", ())) != size or ck.config.get("num_classes") != data.train.num_classes:
            raise ModelConfigError(f"teacher {checkpoint} takes {ck.config.get('input_size')} images and "
                                   f"{ck.config.get('num_classes')} classes; the data is {size}, "
                                   f"{data.train.num_classes} classes")
        result: dict[str, Any] = {"name": "teacher", "checkpoint": str(checkpoint), "loaded": True,
                                  "params": teacher.param_count(), "electronic_flops": int(teacher.flops())}
        scores = score_modes(teacher, data.test, {"": None}, device=device, seed=0, batch_size=job.train.eval_batch_size)  # type: ignore[arg-type]
    else:
        log("teacher: training (or loading)")
        result = run_job(job, data, out, device=device, cancel=cancel)
        if result is None:
            return None
        teacher = load_job_model(out, job)
        scores = job_scores(out, job, data.test, {"": None}, record, device=device, seed=0,  # type: ignore[arg-type]
                            batch_size=job.train.eval_batch_size)
    result["scores"] = scores
    data.teacher = teacher
    data.teacher_logits = cached_logits(teacher, data.train, out / LOGITS, device, store_dtype=torch.float16,
                                        batch_size=job.train.eval_batch_size)
    log(f"teacher: test mIoU {100 * scores['test']['miou']:.2f} %, pixel accuracy "
        f"{100 * scores['test']['pixel_accuracy']:.2f} %")
    return result


def predictions_figure(path: Path, config: SegmentationConfig, data: JobData, out: Path, device: str) -> Path | None:
    """Inputs, ground truth, and the first seed's predictions: teacher, students, students through the optics."""
    n = min(config.figure_images, len(data.test))
    if n < 1 or not config.seeds:
        return None
    test: SegmentationDataset = data.test  # type: ignore[assignment]
    x = test.prepare(test.images[:n])
    jobs = student_jobs(config, test.num_classes, config.seeds[0], device)
    models: dict[str, tuple[torch.nn.Module, str | None]] = {"teacher": (data.teacher, None)}  # type: ignore[dict-item]
    labels = {"linear": "no KD", "kd": "KD"}
    for arm, label in labels.items():
        models[label] = (load_job_model(out, jobs[arm]), "collapsed")
    for arm, base in OPTICAL_ARMS.items():  # fine-tuned if it was, else as trained
        models[f"{labels[base]}, optics"] = (load_job_model(out, jobs.get(arm, jobs[base])), "optics_aware")
    predictions = {}
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for name, (model, mode) in models.items():
            model = model.to("cpu").eval()
            if mode is not None:
                model.mode = mode
            predictions[name] = model(x.to(next(model.parameters()).dtype)).argmax(1)
    return segmentation_figure(path, test.images[:n], test.masks[:n], predictions, test.classes)

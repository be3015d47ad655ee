"""When does knowledge distillation help the SCLC student? An honest grid.

Arms, each over the same seeds, with the same optimiser, data and epochs on
both sides of every comparison:

- per back end (``fc``: one linear layer on the pooled tiles; ``mlp``) and per
  budget (``short``, ``full``): no KD against each KD setting;
- feature hints (KD + hint) against plain KD and no KD (short budget: the
  teacher runs live for its features);
- the paper's protocol: from the full no-KD student, freeze the optics and
  train the back end further with KD, against the same continuation on labels;
- detection: the same no-KD student with linear-in-intensity (incoherent)
  detection against the coherent square-law camera.

Each comparison gets a verdict from `stats.compare`; the report states it, never
a conclusion the spread does not carry. Jobs run in worker processes (one
torch thread each) and resume from their stored results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.distill import DistillConfig
from labrig.experiments.classification import ClassificationConfig, teacher_job_for
from labrig.experiments.jobs import Job, JobData, load_result, run_job, write_json
from labrig.experiments.pool import run_pool
from labrig.experiments.report import markdown_table
from labrig.experiments.setup import prepare_teacher, splits_for
from labrig.experiments.stats import (
    ALPHA,
    COMPARISON_COLUMNS,
    Comparison,
    compare,
    comparison_row,
    spread,
)
from labrig.models.backends import BackendConfig
from labrig.models.serialize import config_to_dict

KD_SETTINGS: tuple[DistillConfig, ...] = (
    DistillConfig(method="kd", temperature=10.0, alpha=0.5),  # the paper's
    DistillConfig(method="kd", temperature=4.0, alpha=0.9),
)


@dataclass(frozen=True)
class StudyConfig:
    """The grid. `base` supplies data, teacher, front end and optimiser settings."""

    base: ClassificationConfig = field(default_factory=ClassificationConfig)
    backends: tuple[tuple[str, BackendConfig], ...] = (
        ("fc", BackendConfig(kind="fc", pool=6, norm="scale_log1p")),
        ("mlp", BackendConfig(kind="mlp", pool=6, norm="scale_log1p", hidden=(256,))),
    )
    kd_settings: tuple[DistillConfig, ...] = KD_SETTINGS
    budgets: tuple[tuple[str, int], ...] = (("short", 1), ("full", 6))
    """The full budget equals the classification experiment's student epochs, so its
    no-KD and KD students are this grid's (mlp, full) cells."""
    seeds: tuple[int, ...] = (0, 1, 2)
    hint: DistillConfig | None = field(default_factory=lambda: DistillConfig(
        method="hint", temperature=10.0, alpha=0.5, hint_weight=1.0, hint_layer="block1"))
    hint_budget: str = "short"
    protocol_epochs: int | None = 1
    detection_ablation: bool = True

    @classmethod
    def headline(cls, seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> StudyConfig:
        """The headline comparisons only: KD against no KD at the full budget with both back
        ends, over `seeds` (its jobs are the full grid's, so a shared run folder reuses them)."""
        return cls(budgets=(("full", 6),), seeds=seeds, hint=None, protocol_epochs=None, detection_ablation=False)

    @classmethod
    def quick(cls) -> StudyConfig:
        base = ClassificationConfig.quick()
        small = (("fc", BackendConfig(kind="fc", pool=4, norm="scale_log1p")),
                 ("mlp", BackendConfig(kind="mlp", pool=4, norm="scale_log1p", hidden=(64,))))
        return cls(base=base, backends=small, budgets=(("short", 1), ("full", 2)), seeds=(0, 1),
                   protocol_epochs=1)


def arm_name(distill: DistillConfig) -> str:
    if distill.method == "none":
        return "none"
    name = f"{distill.method}_T{distill.temperature:g}_a{distill.alpha:g}"
    return name + (f"_w{distill.hint_weight:g}" if distill.method == "hint" else "")


def study_jobs(config: StudyConfig, device: str = "cpu") -> list[Job]:
    """Every job of the grid, dependencies (protocol stage 1) before their dependants."""
    base = config.base
    none = DistillConfig()
    budgets = dict(config.budgets)
    jobs: list[Job] = []

    def student(backend: BackendConfig, detection: str | None = None) -> dict[str, Any]:
        front = base.student.frontend if detection is None else replace(base.student.frontend, detection=detection)
        return config_to_dict(replace(base.student, frontend=front, backend=backend))

    def train(epochs: int, seed: int):
        return replace(base.student_train, epochs=epochs, seed=seed, device=device, progress=False)

    for seed in config.seeds:
        for bname, backend in config.backends:
            for budget, epochs in config.budgets:
                arms = [none, *config.kd_settings]
                if config.hint is not None and budget == config.hint_budget:
                    arms.append(config.hint)
                for arm in arms:
                    tags = {"group": "grid", "backend": bname, "budget": budget, "arm": arm_name(arm), "seed": seed}
                    jobs.append(Job(f"{bname}/{budget}/{arm_name(arm)}/seed{seed}", "student", student(backend),
                                    train(epochs, seed), arm, tags=tags))
        if config.detection_ablation:
            bname, backend = config.backends[0]
            for arm in (none,):
                tags = {"group": "detection", "backend": bname, "budget": "full", "arm": arm_name(arm),
                        "detection": "incoherent", "seed": seed}
                jobs.append(Job(f"incoherent/{bname}/full/{arm_name(arm)}/seed{seed}", "student",
                                student(backend, "incoherent"), train(budgets["full"], seed), arm, tags=tags))
    if config.protocol_epochs:
        by_name = {j.name: j for j in jobs}
        for seed in config.seeds:
            for bname, backend in config.backends:
                stage1 = by_name[f"{bname}/full/none/seed{seed}"].key
                for arm in (none, config.kd_settings[0]):
                    label = "labels" if arm.method == "none" else arm_name(arm)
                    tags = {"group": "protocol", "backend": bname, "arm": label, "seed": seed}
                    jobs.append(Job(f"{bname}/protocol/{label}/seed{seed}", "student", student(backend),
                                    train(config.protocol_epochs, seed), arm, init_from=stage1,
                                    freeze_optics=True, tags=tags))
    return jobs


# -- worker processes --------------------------------------------------------------------------
def _worker_state(data_dir: str, config: StudyConfig, out: str, teacher: str | None,
                  device: str) -> tuple[JobData, Path, str]:
    """A worker's data and teacher (with its cached logits), loaded once."""
    train, val, test = splits_for(data_dir, config.base)
    data = JobData(train, val, test)
    prepare_teacher(data, Path(out), _teacher_job(config, data, device), checkpoint=teacher, device=device)
    return data, Path(out), device


def _work(state: tuple[JobData, Path, str], job: Job) -> dict[str, Any]:
    data, out, device = state
    result = run_job(job, data, out, device=device)
    assert result is not None
    return result


def _teacher_job(config: StudyConfig, data: JobData, device: str) -> Job:
    return teacher_job_for(config.base, data.train.num_classes, device)


def run_study(
    data_dir: str | Path,
    out: str | Path,
    config: StudyConfig | None = None,
    *,
    teacher_checkpoint: str | Path | None = None,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    status_only: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the study; writes ``study.json`` and ``study.md`` into `out`.

    `status_only` trains nothing: it summarises the jobs finished so far (e.g. while
    the study runs elsewhere) into ``study-status.json`` / ``study-status.md``.
    """
    config = config or StudyConfig()
    out = Path(out)
    started = time.perf_counter()
    base = config.base
    train, val, test = splits_for(data_dir, base)
    data = JobData(train, val, test)
    if status_only:
        return _status(config, out, data, device)
    log("teacher: " + (f"loading {teacher_checkpoint}" if teacher_checkpoint else "training (or resuming)"))
    teacher = prepare_teacher(data, out, _teacher_job(config, data, device), checkpoint=teacher_checkpoint,
                              device=device)
    assert teacher is not None
    jobs = study_jobs(config, device)
    results = _run_all(jobs, data, out, data_dir, config, teacher_checkpoint, workers, device, progress)
    study = summarise(config, jobs, results, teacher)
    study["wall_seconds"] = time.perf_counter() - started
    study["workers"] = workers
    write_json(out / "study.json", study)
    (out / "study.md").write_text(study_markdown(study))
    return study


def _status(config: StudyConfig, out: Path, data: JobData, device: str) -> dict[str, Any]:
    teacher = load_result(out, _teacher_job(config, data, device))
    if teacher is None and (out / "teacher.json").is_file():
        teacher = json.loads((out / "teacher.json").read_text())
    jobs = study_jobs(config, device)
    results = {j.name: r for j in jobs if (r := load_result(out, j)) is not None}
    done = [j for j in jobs if j.name in results]
    study = summarise(config, done, results, teacher or {"test_accuracy": float("nan")})
    study["finished_jobs"], study["total_jobs"] = len(done), len(jobs)
    write_json(out / "study-status.json", study)
    (out / "study-status.md").write_text(f"{len(done)} of {len(jobs)} jobs finished.\n\n" + study_markdown(study))
    return study


def _cost(job: Job) -> float:
    """Rough relative cost of a job: epochs, doubled when the teacher runs live (hints)."""
    return job.train.epochs * (2 if job.distill.method == "hint" else 1)


def _run_all(jobs: list[Job], data: JobData, out: Path, data_dir: str | Path, config: StudyConfig,
             teacher: str | Path | None, workers: int, device: str, progress: bool) -> dict[str, dict[str, Any]]:
    return run_pool(jobs, _work, workers=workers, setup=_worker_state,
                    setup_args=(str(data_dir), config, str(out), str(teacher) if teacher else None, device),
                    local_state=(data, out, device), cost=_cost, progress=progress, desc="study jobs",
                    describe=lambda job, r: f"{job.name}: {100 * r['test_accuracy']:.2f} %")


# -- the summary ---------------------------------------------------------------------------------
def _accs(results: dict[str, dict[str, Any]], jobs: list[Job], **tags: Any) -> list[float]:
    return [results[j.name]["test_accuracy"] for j in jobs
            if all(j.tags.get(k) == v for k, v in tags.items())]


def summarise(config: StudyConfig, jobs: list[Job], results: dict[str, dict[str, Any]],
              teacher: dict[str, Any]) -> dict[str, Any]:
    """Per-arm spreads and every comparison with its verdict."""
    arms: dict[str, Any] = {}
    for job in jobs:
        key = job.name.rsplit("/seed", 1)[0]
        arms.setdefault(key, {"tags": {k: v for k, v in job.tags.items() if k != "seed"}, "accuracies": []})
        arms[key]["accuracies"].append(results[job.name]["test_accuracy"])
    for arm in arms.values():
        s = spread(arm["accuracies"])
        arm.update(mean=s.mean, std=s.std, n=s.n)
    comparisons: list[dict[str, Any]] = []

    def add(what: str, control: list[float], treated: list[float], treated_name: str, control_name: str) -> None:
        if control and treated:
            c: Comparison = compare(control, treated)
            comparisons.append({"what": what, "treated_arm": treated_name, "control_arm": control_name, **c.as_dict(),
                                "sentence": c.sentence(treated_name, control_name)})

    kd0 = arm_name(config.kd_settings[0])
    for bname, _ in config.backends:
        for budget, epochs in config.budgets:
            none = _accs(results, jobs, group="grid", backend=bname, budget=budget, arm="none")
            for kd in config.kd_settings:
                add(f"{bname} back end, {budget} budget ({epochs} epochs)", none,
                    _accs(results, jobs, group="grid", backend=bname, budget=budget, arm=arm_name(kd)),
                    arm_name(kd), "no KD")
            if config.hint is not None and budget == config.hint_budget:
                hint = _accs(results, jobs, group="grid", backend=bname, budget=budget, arm=arm_name(config.hint))
                add(f"{bname} back end, {budget} budget, feature hints", none, hint, arm_name(config.hint), "no KD")
                add(f"{bname} back end, {budget} budget, feature hints", _accs(
                    results, jobs, group="grid", backend=bname, budget=budget, arm=kd0), hint,
                    arm_name(config.hint), kd0)
        add(f"{bname} back end, paper protocol (+{config.protocol_epochs} epochs, optics frozen)",
            _accs(results, jobs, group="protocol", backend=bname, arm="labels"),
            _accs(results, jobs, group="protocol", backend=bname, arm=kd0), kd0, "labels only")
    if config.detection_ablation:
        bname = config.backends[0][0]
        add(f"detection ({bname} back end, full budget, no KD)",
            _accs(results, jobs, group="grid", backend=bname, budget="full", arm="none"),
            _accs(results, jobs, group="detection", arm="none"), "incoherent (linear in intensity)",
            "coherent (square law)")
    return {"teacher_accuracy": teacher["test_accuracy"], "arms": arms, "comparisons": comparisons,
            "config": {"base": config_to_dict(config.base),
                       "backends": {n: config_to_dict(b) for n, b in config.backends},
                       "kd_settings": [config_to_dict(k) for k in config.kd_settings],
                       "budgets": dict(config.budgets), "seeds": list(config.seeds),
                       "hint": config_to_dict(config.hint) if config.hint else None,
                       "hint_budget": config.hint_budget, "protocol_epochs": config.protocol_epochs,
                       "detection_ablation": config.detection_ablation}}


def study_markdown(study: dict[str, Any]) -> str:
    arms = markdown_table(
        ["arm", "test accuracy % (mean ± std)", "seeds"],
        [[name, f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f}", a["n"]] for name, a in study["arms"].items()])
    comps = markdown_table(
        COMPARISON_COLUMNS, [comparison_row(c) for c in study["comparisons"]])
    return (f"Teacher: {100 * study['teacher_accuracy']:.2f} % test accuracy.\n\n## Arms\n\n{arms}\n\n"
            f"## Comparisons (Welch's t-test; verdict at p < {ALPHA})\n\n{comps}\n")

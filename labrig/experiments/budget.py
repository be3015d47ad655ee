"""``labrig experiment budget``: budgets that follow the data, shown.

The same teacher and students (no KD, KD) are trained three ways:

- ``subset/epochs``: a `fraction` of the training split with the budget counted
  in epochs (the old rule): a 10 % subset gets a tenth of the optimisation steps;
- ``subset/steps``: the same subset with the budget counted in optimisation
  steps on the full split (`TrainConfig.reference_train_size`, the new rule):
  it runs as many steps as the full set, in more epochs (capped at `max_epochs`);
- ``full``: the whole training split, where both rules give the same steps.

Everything else (model, optimiser, schedule, batch, seeds, validation and test
split) is the classification experiment's; the budget is stated in epochs of the
full split (`teacher_epochs`, `student_epochs`) so a CPU run can scale it down
honestly. Each arm has its own folder (its own teacher and teacher logits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.distill import TrainConfig
from labrig.distill.trainer import Cancel
from labrig.experiments.classification import FULL_TRAIN, ClassificationConfig, teacher_job_for
from labrig.experiments.jobs import Job, JobData, load_result, run_job, write_json
from labrig.experiments.report import machine_info, markdown_table
from labrig.experiments.setup import prepare_teacher, splits_for
from labrig.experiments.stats import compare, spread
from labrig.models.errors import ModelConfigError
from labrig.models.serialize import config_to_dict

ARMS = ("subset/epochs", "subset/steps", "full")


@dataclass(frozen=True)
class BudgetConfig:
    """The demonstration. `teacher_epochs`/`student_epochs` are epochs of the full training
    split (`reference_train_size`), the unit both rules are stated in."""

    fraction: float = 0.1
    teacher_epochs: int = 18
    student_epochs: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)
    val_limit: int | None = None
    test_limit: int | None = None
    reference_train_size: int = FULL_TRAIN
    base: ClassificationConfig = field(default_factory=ClassificationConfig)
    kd_seeds: tuple[int, ...] | None = None
    """Seeds of the KD students (None: every seed); fewer when time is short."""
    student_steps_per_epoch: int | None = None
    """Under the steps rule, cap a student budget epoch at this many steps (the budget is then
    `student_epochs` × this many steps, on every set; None: a full pass of the full split)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ModelConfigError(f"budget fraction must be in (0, 1), got {self.fraction}")
        if self.teacher_epochs < 1 or self.student_epochs < 1:
            raise ModelConfigError("teacher_epochs and student_epochs must be >= 1")

    @classmethod
    def quick(cls) -> BudgetConfig:
        """Minutes on a CPU: the quick classification models on a few thousand images."""
        base = ClassificationConfig.quick()
        return cls(teacher_epochs=1, student_epochs=2, seeds=(0,), val_limit=500, test_limit=1000,
                   reference_train_size=base.train_limit or FULL_TRAIN, base=base)

    def train_config(self, which: TrainConfig, epochs: int, rule: str) -> TrainConfig:
        """`which` with the budget `epochs` counted by `rule` (``epochs`` or ``steps``)."""
        reference = self.reference_train_size if rule == "steps" else None
        return replace(which, epochs=epochs, reference_train_size=reference,
                       max_epochs=max(which.max_epochs, epochs))

    def arm(self, name: str) -> tuple[ClassificationConfig, str]:
        """The classification settings and the budget rule of one arm."""
        size = self.base.train_limit or self.reference_train_size
        limit = round(self.fraction * size) if name.startswith("subset") else self.base.train_limit
        rule = "epochs" if name == "subset/epochs" else "steps"
        student = self.train_config(self.base.student_train, self.student_epochs, rule)
        if rule == "steps" and self.student_steps_per_epoch is not None:
            student = replace(student, max_steps_per_epoch=self.student_steps_per_epoch)
        base = replace(self.base, train_limit=limit, val_limit=self.val_limit or self.base.val_limit,
                       test_limit=self.test_limit or self.base.test_limit, seeds=self.seeds,
                       teacher_train=self.train_config(self.base.teacher_train, self.teacher_epochs, rule),
                       student_train=student)
        return base, rule


def _steps(result: dict[str, Any], train: TrainConfig, n_train: int) -> int:
    per_epoch = max(1, n_train // train.batch_size)
    if train.max_steps_per_epoch:
        per_epoch = min(per_epoch, train.max_steps_per_epoch)
    return int(result["epochs_run"]) * per_epoch


def run_arm(name: str, config: BudgetConfig, data_dir: Path, out: Path, *, device: str, progress: bool,
            cancel: Cancel | None, log: Any, students: tuple[str, ...] = ("linear", "kd"),
            finished_only: bool = False) -> dict[str, Any] | None:
    """Teacher and students of one arm; None if cancelled. `finished_only`: train nothing,
    summarise the runs already finished (each entry then says how many seeds it has)."""
    cls, rule = config.arm(name)
    folder = out / name.replace("/", "-")
    train, val, test = splits_for(data_dir, cls)
    data = JobData(train, val, test)
    teacher_job = teacher_job_for(cls, train.num_classes, device, progress)
    log(f"{name}: teacher on {len(train)} images ({rule} rule)")
    if finished_only:
        teacher = load_result(folder, teacher_job)
    else:
        teacher = prepare_teacher(data, folder, teacher_job, device=device, cancel=cancel)
        if teacher is None:
            return None
    arms: dict[str, list[dict[str, Any]]] = {"linear": [], "kd": []}
    for seed in cls.seeds:
        student = replace(cls.student_train, seed=seed, device=device, progress=False)
        for key, distill in (("linear", None), ("kd", cls.kd)):
            if key not in students or (key == "kd" and config.kd_seeds is not None and seed not in config.kd_seeds):
                continue
            job = Job(f"{key}/seed{seed}", "student", config_to_dict(cls.student), student,
                      **({"distill": distill} if distill else {}), tags={"seed": seed})
            log(f"{name}: {job.name}")
            if finished_only:
                if (done := load_result(folder, job)) is not None:
                    arms[key].append(done)
                continue
            result = run_job(job, data, folder, device=device, cancel=cancel)
            if result is None:
                return None
            arms[key].append(result)
    n = len(train)
    if not finished_only and not all(arms.values()):  # a process that trained only some students
        return {"arm": name, "partial": True}

    def summary(runs: list[dict[str, Any]], train_cfg: TrainConfig) -> dict[str, Any] | None:
        runs = [r for r in runs if r is not None]
        if not runs:
            return None
        acc = spread([r["test_accuracy"] for r in runs])
        return {"accuracy": acc.mean, "accuracy_std": acc.std, "accuracies": list(acc.values),
                "epochs": runs[0]["epochs_run"], "steps": _steps(runs[0], train_cfg, n),
                "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs)}

    return {"arm": name, "rule": rule, "train_images": n, "val_images": len(val), "test_images": len(test),
            "teacher": summary([teacher], cls.teacher_train), "linear": summary(arms["linear"], cls.student_train),
            "kd": summary(arms["kd"], cls.student_train),
            "promised_steps": {"teacher": cls.teacher_train.reference_steps(),
                               "student": cls.student_train.reference_steps()}}


def run_budget(data_dir: str | Path, out: str | Path, config: BudgetConfig | None = None, *,
               device: str = "auto", progress: bool = True, cancel: Cancel | None = None,
               log: Any = print, arms_only: tuple[str, ...] | None = None,
               students: tuple[str, ...] = ("linear", "kd"), finished_only: bool = False) -> dict[str, Any] | None:
    """All three arms (resumable: finished jobs are loaded), then the report. `arms_only`
    trains just those arms and writes no report (several processes can share the work;
    a last call without it loads them all and reports)."""
    config = config or BudgetConfig()
    out = Path(out)
    started = time.perf_counter()
    arms = {}
    for name in arms_only or ARMS:
        if name not in ARMS:
            raise ModelConfigError(f"unknown budget arm {name!r}; known: {', '.join(ARMS)}")
        arm = run_arm(name, config, Path(data_dir), out, device=device, progress=progress, cancel=cancel, log=log,
                      students=students if arms_only else ("linear", "kd"), finished_only=finished_only)
        if arm is None:
            return None
        arms[name] = arm
    if arms_only:
        return {"arms": arms, "partial": True}
    report = {"arms": arms, "comparisons": _comparisons(arms), "config": config_to_dict(config),
              **({"finished_only": True} if finished_only else {}),
              "data_dir": str(data_dir), "machine": machine_info(), "wall_seconds": time.perf_counter() - started}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report))
    return report


def _comparisons(arms: dict[str, Any]) -> list[dict[str, Any]]:
    """Students: steps rule against epochs rule on the subset (needs 2+ seeds a side)."""
    found = []
    for key, label in (("linear", "no KD"), ("kd", "KD")):
        if not (arms["subset/steps"].get(key) and arms["subset/epochs"].get(key)):
            continue
        a, b = arms["subset/steps"][key]["accuracies"], arms["subset/epochs"][key]["accuracies"]
        if min(len(a), len(b)) >= 2:
            c = compare(b, a)
            found.append({"what": f"{label} student on the subset", "treated_arm": "steps rule",
                          "control_arm": "epochs rule", **c.as_dict(),
                          "sentence": c.sentence("steps rule", "epochs rule")})
    return found


def report_markdown(report: dict[str, Any]) -> str:
    """One row per arm: data, budget in epochs and steps, accuracies."""
    def acc(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return "not finished"
        n = len(entry["accuracies"])
        return f"{100 * entry['accuracy']:.2f}" + (f" ± {100 * entry['accuracy_std']:.2f}" if n > 1 else "") + \
            (f" (n={n})" if n > 1 or report.get("finished_only") else "")

    def budget(entry: dict[str, Any] | None) -> str:
        return "–" if entry is None else f"{entry['epochs']} / {entry['steps']}"

    rows = []
    for name, a in report["arms"].items():
        student = a["linear"] or a["kd"]
        rows.append([name, a["train_images"], a["rule"], budget(a["teacher"]), acc(a["teacher"]),
                     budget(student), acc(a["linear"]), acc(a["kd"])])
    return markdown_table(["arm", "train images", "budget rule", "teacher epochs / steps", "teacher test %",
                           "student epochs / steps", "SCLC no KD test %", "SCLC KD test %"], rows) + "\n"

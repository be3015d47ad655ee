"""``labrig experiment single-layer``: how close can one optical layer and a small back end
come to the teacher, and at what cost?

Every student here is one optical layer (the SCLC stack collapses to one
Fourier-plane mask per channel, one 4f pass) and the classification
experiment's small `mlp` back end; the recipes change one thing at a time
from the classification student and then combine them:

- wider: more optical channels (camera tiles);
- larger kernels (a larger collapsed mask);
- longer schedules (budget in steps on the full split);
- augmentation (random crop and flip);
- KD variants with a chance here: the gentler T = 4, α = 0.9, and
  consistent-teacher ("function matching") KD — the teacher scores the very
  augmented view the student sees, live, over a long schedule.

The neural-tangent-kernel KD of arXiv 2508.08421 is not implemented. Each
recipe reports its test accuracy over seeds, the gap to the teacher, its
parameters, host FLOPs per image, training time, and a Welch comparison with
the baseline recipe. Jobs are the classification experiment's `Job`s, so a
shared run folder reuses the runs other experiments made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.distill import AugmentConfig, DistillConfig
from labrig.distill.trainer import Cancel
from labrig.experiments.classification import ClassificationConfig
from labrig.experiments.jobs import Job, JobData, run_job, write_json
from labrig.experiments.report import machine_info, markdown_table
from labrig.experiments.setup import prepare_teacher, splits_for
from labrig.experiments.stats import compare, spread
from labrig.models.serialize import config_to_dict


@dataclass(frozen=True)
class Recipe:
    """A student and its training, as changes to the classification experiment's."""

    channels: int = 16
    layer_kernels: tuple[int, ...] = (5, 5)
    epochs: int = 6
    augment: bool = False
    distill: DistillConfig = field(default_factory=DistillConfig)

    @property
    def collapsed_kernel(self) -> int:
        return sum(self.layer_kernels) - len(self.layer_kernels) + 1


KD_GENTLE = DistillConfig(method="kd", temperature=4.0, alpha=0.9)

RECIPES: dict[str, Recipe] = {
    "baseline (16 ch, 9², 6 ep)": Recipe(),
    "32 channels": Recipe(channels=32),
    "64 channels": Recipe(channels=64),
    "13² kernels": Recipe(layer_kernels=(7, 7)),
    "17² kernels": Recipe(layer_kernels=(9, 9)),
    "24 epochs": Recipe(epochs=24),
    "24 epochs + augmentation": Recipe(epochs=24, augment=True),
    "64 ch, 17², 24 ep, aug": Recipe(channels=64, layer_kernels=(9, 9), epochs=24, augment=True),
    "64 ch, 17², 24 ep, aug, KD T=4 α=0.9 (consistent teacher)": Recipe(
        channels=64, layer_kernels=(9, 9), epochs=24, augment=True, distill=KD_GENTLE),
    "64 ch, 17², 60 ep, aug, KD T=4 α=0.9 (consistent teacher)": Recipe(
        channels=64, layer_kernels=(9, 9), epochs=60, augment=True, distill=KD_GENTLE),
}
"""Augmented KD runs the teacher live on each augmented batch (cached logits need the
un-augmented images), which is consistent-teacher KD."""


@dataclass(frozen=True)
class SingleLayerConfig:
    base: ClassificationConfig = field(default_factory=ClassificationConfig)
    recipes: tuple[str, ...] = tuple(RECIPES)
    seeds: tuple[int, ...] = (0, 1, 2)

    @classmethod
    def quick(cls) -> SingleLayerConfig:
        return cls(base=ClassificationConfig.quick(), recipes=("baseline (16 ch, 9², 6 ep)", "32 channels"),
                   seeds=(0,))

    def job(self, name: str, seed: int, num_classes: int, device: str) -> Job:
        recipe = RECIPES[name]
        base = self.base
        student = replace(base.student, num_classes=num_classes,
                          frontend=replace(base.student.frontend, channels=(recipe.channels,) * len(recipe.layer_kernels),
                                           kernel_sizes=recipe.layer_kernels))
        quick_scale = base.student_train.epochs / 6  # the quick config's budgets scale with it
        train = replace(base.student_train, epochs=max(1, round(recipe.epochs * quick_scale)), seed=seed,
                        device=device, progress=False,
                        augment=AugmentConfig(crop_padding=2, hflip=True) if recipe.augment else AugmentConfig())
        return Job(f"{name}/seed{seed}", "student", config_to_dict(student), train, recipe.distill, tags={"seed": seed})


def run_single_layer(data_dir: str | Path, out: str | Path, config: SingleLayerConfig | None = None, *,
                     teacher_checkpoint: str | Path | None = None, device: str = "auto", progress: bool = True,
                     cancel: Cancel | None = None, log: Callable[[str], Any] = print) -> dict[str, Any] | None:
    """Every recipe over the seeds (resumable), then report.json/report.md in `out`."""
    config = config or SingleLayerConfig()
    out = Path(out)
    started = time.perf_counter()
    base = config.base
    train, val, test = splits_for(data_dir, base)
    data = JobData(train, val, test)
    teacher_model = replace(base.teacher, input_size=(base.input_size,) * 2, num_classes=train.num_classes)
    teacher_job = Job("teacher", "teacher", config_to_dict(teacher_model),
                      replace(base.teacher_train, device=device, progress=progress))
    teacher = prepare_teacher(data, out, teacher_job, checkpoint=teacher_checkpoint, device=device, cancel=cancel)
    if teacher is None:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for name in config.recipes:
        runs = []
        for seed in config.seeds:
            job = config.job(name, seed, train.num_classes, device)
            log(f"{job.name}: training (or loading)")
            result = run_job(job, data, out, device=device, cancel=cancel)
            if result is None:
                return None
            runs.append(result)
        acc = spread([r["test_accuracy"] for r in runs])
        rows[name] = {"accuracy": acc.mean, "accuracy_std": acc.std, "accuracies": list(acc.values),
                      "gap_to_teacher_points": 100 * (teacher["test_accuracy"] - acc.mean),
                      "params": runs[0]["params"], "electronic_flops": runs[0]["electronic_flops"],
                      "recipe": config_to_dict(RECIPES[name]), "epochs": runs[0]["epochs_run"],
                      "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs)}
    first = config.recipes[0]
    comparisons = []
    for name in config.recipes[1:]:
        c = compare(rows[first]["accuracies"], rows[name]["accuracies"])
        comparisons.append({"what": name, "treated_arm": name, "control_arm": first, **c.as_dict(),
                            "sentence": c.sentence(name, first)})
    report = {"teacher": {"accuracy": teacher["test_accuracy"], "params": teacher["params"],
                          "electronic_flops": teacher["electronic_flops"]},
              "recipes": rows, "comparisons": comparisons, "target_accuracy": teacher["test_accuracy"] - 0.02,
              "config": config_to_dict(config), "machine": machine_info(),
              "wall_seconds": time.perf_counter() - started}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict[str, Any]) -> str:
    rows = [[name, f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}", f"{r['gap_to_teacher_points']:.2f}",
             r["params"].get("optical", 0), r["params"]["electronic"], f"{r['electronic_flops']:,}",
             f"{r['train_seconds']:.0f}"] for name, r in report["recipes"].items()]
    return markdown_table(["recipe (one optical layer, mlp back end)", "test accuracy %", "points below teacher",
                           "optical params", "electronic params", "host FLOPs/image", "train s (all seeds)"],
                          rows) + "\n" + "\n".join(f"- {c['sentence']}" for c in report["comparisons"]) + "\n"

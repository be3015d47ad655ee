"""``labrig experiment seg-frontier``: segmentation accuracy against host work.

The hybrid trades accuracy for electronic work. Each variant of the SCLC
segmentation student widens what an output pixel sees or what the optics
compute — more decoder dilation, a pooled (pyramid) context branch, more
optical channels, larger optical kernels, all of them at once — and is
trained on labels with the *same* data, optimiser and budget as the baseline
(retrained here at that budget, so like is compared with like). Each is
placed by test mIoU against electronic MFLOPs per image (camera read-out plus
decoder) beside the U-Net teacher: one frontier plot.

The teacher, data, scoring and job machinery are the segmentation
experiment's (`labrig.experiments.segmentation`); runs are `Job`s keyed by
their settings, so the experiment resumes and re-reports instantly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labrig.data.segmentation import SceneConfig
from labrig.distill import TrainConfig
from labrig.distill.trainer import Cancel
from labrig.experiments.jobs import Job, is_main_process, run_job, write_json
from labrig.experiments.report import machine_info, markdown_table
from labrig.experiments.seg_config import SegmentationConfig
from labrig.experiments.seg_data import SegDataConfig, check_data_record, data_record
from labrig.experiments.segmentation import _prepare, job_scores, student_config
from labrig.experiments.stats import spread
from labrig.models.segmentation import SegmentationStudent, SegStudentConfig
from labrig.models.serialize import config_to_dict
from labrig.models.unet import UNet, UNetConfig

Variant = Callable[[SegStudentConfig], SegStudentConfig]


def _dilate(s: SegStudentConfig) -> SegStudentConfig:
    """One more layer with twice the last dilation (1, 2, 4 -> 1, 2, 4, 8)."""
    d = s.decoder
    return replace(s, decoder=replace(d, widths=(*d.widths, d.widths[-1]), dilations=(*d.dilations, 2 * d.dilations[-1])))


def _channels(s: SegStudentConfig) -> SegStudentConfig:
    """Twice the optical channels (Fourier masks, camera tiles)."""
    f = s.frontend
    return replace(s, frontend=replace(f, channels=(*f.channels[:-1], 2 * f.channels[-1])))


def _kernels(s: SegStudentConfig) -> SegStudentConfig:
    """Optical layers of 13×13 instead of 9×9 (collapsed kernels of 25² instead of 17²)."""
    f = s.frontend
    return replace(s, frontend=replace(f, kernel_sizes=tuple(k + 4 for k in f.kernel_sizes)))


def _context(s: SegStudentConfig) -> SegStudentConfig:
    return replace(s, decoder=replace(s.decoder, context_bins=(1, 2, 4)))


def _all(s: SegStudentConfig) -> SegStudentConfig:
    return _context(_dilate(_channels(_kernels(s))))


VARIANTS: dict[str, Variant] = {
    "baseline": lambda s: s,
    "dilation +1 layer (…, 8)": _dilate,
    "pooled context (1, 2, 4 bins)": _context,
    "2× optical channels": _channels,
    "larger optical kernels (+4 px a layer)": _kernels,
    "all four": _all,
}


@dataclass(frozen=True)
class FrontierConfig:
    """The experiment: `base` gives data, teacher, the baseline student and the one budget."""

    base: SegmentationConfig = field(default_factory=lambda: SegmentationConfig(optical_finetune=None))
    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def cpu(cls) -> FrontierConfig:
        """A budget a shared, loaded 2-core CPU affords in under an hour: a quarter of the
        training scenes (1000), 250 validation and test scenes, 3 epochs for teacher and
        students (the results page's runs: 4000 scenes, 12 and 10 epochs)."""
        base = SegmentationConfig(optical_finetune=None)
        return cls(base=replace(
            base, data=replace(base.data, train=1000, val=250, test=250),
            teacher_train=replace(base.teacher_train, epochs=3),
            student_train=replace(base.student_train, epochs=3)),
            variants=tuple(v for v in VARIANTS if v != "all four"))

    @classmethod
    def quick(cls) -> FrontierConfig:
        """Minutes: the quick segmentation settings, three variants."""
        quick = SegmentationConfig.quick()
        return cls(base=replace(quick, optical_finetune=None,
                                data=SegDataConfig(size=64, train=256, val=64, test=64,
                                                   scenes=SceneConfig(items=(1, 3), item_scale=(0.35, 0.6))),
                                teacher=UNetConfig(width=8, depth=2),
                                teacher_train=TrainConfig(epochs=2, batch_size=16, eval_batch_size=64, lr=5e-3),
                                student_train=TrainConfig(epochs=2, batch_size=16, eval_batch_size=64, lr=5e-3)),
                   variants=("baseline", "pooled context (1, 2, 4 bins)", "2× optical channels"))

    def student(self, variant: str, num_classes: int) -> SegStudentConfig:
        if variant not in VARIANTS:
            raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        return VARIANTS[variant](student_config(self.base, num_classes))


def receptive_field_px(student: SegStudentConfig) -> int | None:
    """Input pixels one output pixel sees: the collapsed optical kernel, the decoder's pool
    and dilated convolutions at its resolution; None when a pooled context branch with
    a 1-bin stage sees the whole image."""
    if student.decoder.context_bins and 1 in student.decoder.context_bins:
        return None
    f, d = student.frontend, student.decoder
    optical = sum(f.kernel_sizes) - len(f.kernel_sizes) + 1
    decoder = (d.downsample - 1) + sum((d.kernel_size - 1) * dil * d.downsample for dil in d.dilations)
    return optical + decoder


def plan(config: FrontierConfig | None = None, num_classes: int = 11) -> dict[str, Any]:
    """What each design costs the host and what an output pixel sees, before any training
    (the frontier's x axis): MFLOPs per image, optical channels and kernel, field."""
    config = config or FrontierConfig()
    size = (config.base.data.size,) * 2
    rows = {}
    for variant in config.variants:
        student = config.student(variant, num_classes)
        model = SegmentationStudent(replace(student, optics=None))
        rows[variant] = {"electronic_mflops": model.flops() / 1e6,
                         "digital_encoder_mflops": model.digital_frontend_flops() / 1e6,
                         "optical_channels": student.frontend.channels[-1],
                         "collapsed_kernel": sum(student.frontend.kernel_sizes) - len(student.frontend.kernel_sizes) + 1,
                         "receptive_field_px": receptive_field_px(student)}
    teacher = UNet(replace(config.base.teacher, input_size=size, num_classes=num_classes))
    return {"size": size[0], "teacher_mflops": teacher.flops() / 1e6, "variants": rows}


def plan_markdown(p: dict[str, Any]) -> str:
    rows = [["teacher (U-Net)", f"{p['teacher_mflops']:.1f}", "", "", "whole image", ""]]
    for name, v in p["variants"].items():
        field_px = v["receptive_field_px"]
        rows.append([name, f"{v['electronic_mflops']:.1f}", v["optical_channels"], f"{v['collapsed_kernel']}²",
                     "whole image" if field_px is None else f"{field_px} px", f"{v['digital_encoder_mflops']:.1f}"])
    return markdown_table(["design", "host MFLOPs/image", "optical channels", "optical kernel",
                           "field of an output pixel", "encoder MFLOPs if electronic"], rows) + "\n"


def run_frontier(data_dir: str | Path, out: str | Path, config: FrontierConfig | None = None, *,
                 teacher_checkpoint: str | Path | None = None, device: str = "auto", progress: bool = True,
                 cancel: Cancel | None = None, log: Callable[[str], Any] = print,
                 train_only: bool = False) -> dict[str, Any] | None:
    """Train (or load) the teacher and every variant, score them, write report.json/.md and
    frontier.png into `out`; None if cancelled. `train_only`: no report (a process sharing
    the variants with others; a last call without it reports them all)."""
    config = config or FrontierConfig()
    out = Path(out)
    started = time.perf_counter()
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        check_data_record(out, data_record(data_dir, config.base.data))
    state = _prepare(data_dir, config.base, out, teacher_checkpoint, device, progress, cancel, log)
    if state is None:
        return None
    n_classes = state.data.train.num_classes
    rows: dict[str, dict[str, Any]] = {}
    for variant in config.variants:
        student = config.student(variant, n_classes)
        runs = []
        for seed in config.seeds:
            train = replace(config.base.student_train, seed=seed, device=device, progress=False)
            job = Job(f"{variant}/seed{seed}", "seg_student", config_to_dict(student), train, tags={"seed": seed})
            log(f"{job.name}: training (or loading)")
            result = run_job(job, state.data, out, device=device, cancel=cancel)
            if result is None:
                return None
            result["scores"] = job_scores(out, job, state.data.test, {"collapsed": None}, state.record,  # type: ignore[arg-type]
                                          device=device, seed=seed, batch_size=train.eval_batch_size)
            runs.append(result)
            log(f"{job.name}: test mIoU {100 * result['scores']['collapsed']['miou']:.2f} %")
        miou = spread([r["scores"]["collapsed"]["miou"] for r in runs])
        pixel = spread([r["scores"]["collapsed"]["pixel_accuracy"] for r in runs])
        model = SegmentationStudent(replace(student, optics=None))
        rows[variant] = {
            "miou": miou.mean, "miou_std": miou.std, "mious": list(miou.values),
            "pixel_accuracy": pixel.mean, "seeds": list(config.seeds),
            "electronic_mflops": model.flops() / 1e6,
            "digital_encoder_mflops": model.digital_frontend_flops() / 1e6,
            "params": runs[0]["params"], "optical_channels": student.frontend.channels[-1],
            "collapsed_kernel": sum(student.frontend.kernel_sizes) - len(student.frontend.kernel_sizes) + 1,
            "decoder": config_to_dict(student.decoder), "receptive_field_px": receptive_field_px(student),
            "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs),
            "best_epoch": runs[0].get("best_epoch"), "epochs_run": runs[0].get("epochs_run"),
        }
    if train_only:
        return {"variants": rows, "partial": True}
    t = state.teacher_result
    teacher_model = UNet(replace(config.base.teacher, input_size=(config.base.data.size,) * 2, num_classes=n_classes))
    report = {
        "teacher": {"miou": t["scores"]["test"]["miou"], "pixel_accuracy": t["scores"]["test"]["pixel_accuracy"],
                    "electronic_mflops": teacher_model.flops() / 1e6, "params": t.get("params"),
                    "train_seconds": t.get("train_seconds"), "epochs_run": t.get("epochs_run")},
        "variants": rows,
        "data": {"dir": str(data_dir), "size": config.base.data.size, "train": len(state.data.train),
                 "val": len(state.data.val), "test": len(state.data.test), "classes": n_classes},
        "config": config_to_dict(config), "machine": machine_info(),
        "wall_seconds": time.perf_counter() - started,
    }
    if is_main_process():
        plot_frontier(report, out / "frontier.png")
        report["figure"] = str(out / "frontier.png")
        write_json(out / "report.json", report)
        (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """One row per design: mIoU, host work, what it changes."""
    t = report["teacher"]
    rows = [["teacher (U-Net)", f"{100 * t['miou']:.2f}", f"{100 * t['pixel_accuracy']:.2f}",
             f"{t['electronic_mflops']:.1f}", "", "", "whole image", f"{t.get('train_seconds') or 0:.0f}"]]
    for name, v in report["variants"].items():
        field_px = v["receptive_field_px"]
        rows.append([name, f"{100 * v['miou']:.2f}" + (f" ± {100 * v['miou_std']:.2f}" if len(v["mious"]) > 1 else ""),
                     f"{100 * v['pixel_accuracy']:.2f}", f"{v['electronic_mflops']:.1f}", v["optical_channels"],
                     f"{v['collapsed_kernel']}²", "whole image" if field_px is None else f"{field_px} px",
                     f"{v['train_seconds']:.0f}"])
    return markdown_table(["design", "test mIoU %", "pixel accuracy %", "host MFLOPs/image", "optical channels",
                           "optical kernel", "field of an output pixel", "train s"], rows) + "\n"


def plot_frontier(report: dict[str, Any], path: Path) -> None:
    """mIoU against host MFLOPs per image (log x): every student design and the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    t = report["teacher"]
    ax.scatter([t["electronic_mflops"]], [100 * t["miou"]], marker="*", s=180, color="k", label="teacher (U-Net)")
    ax.annotate("teacher", (t["electronic_mflops"], 100 * t["miou"]), xytext=(-8, 6), textcoords="offset points",
                ha="right", fontsize=8)
    ax.axhline(100 * t["miou"] - 8, color="k", ls=":", lw=1, label="teacher − 8 points (target)")
    for name, v in report["variants"].items():
        err = 100 * v["miou_std"] if len(v["mious"]) > 1 else None
        ax.errorbar([v["electronic_mflops"]], [100 * v["miou"]], yerr=err, fmt="o", ms=6, capsize=3)
        ax.annotate(name, (v["electronic_mflops"], 100 * v["miou"]), xytext=(5, -3), textcoords="offset points",
                    fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("electronic MFLOPs per image (host: camera read-out + decoder)")
    ax.set_ylabel("test mIoU %")
    c = report["config"]["base"]
    ax.set_title(f"{report['data']['size']} px scenes, {report['data']['train']} training images, "
                 f"students {c['student_train']['epochs']} epochs, teacher {c['teacher_train']['epochs']}",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""``labrig experiment classification | kd-study | segmentation | efficiency``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from labrig.commands import common_options

__all__ = ["add_parser"]


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (default: $LABRIG_DATA, else shared/data/fashion-mnist in the working directory or above)")


def _training_options(parser: argparse.ArgumentParser) -> None:
    _data_option(parser)
    parser.add_argument("--quick", action="store_true", help="a small version (minutes on a CPU; not the paper's numbers)")
    parser.add_argument("--teacher", type=Path, default=None, metavar="CKPT",
                        help="use this teacher checkpoint instead of training one")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="student seeds (default: 0 1 2; quick: 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    exp = subparsers.add_parser("experiment", help="the paper's experiments (classification, KD study, efficiency)")
    sub = exp.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    cls = sub.add_parser("classification", parents=[common_options()],
                         help="teacher, no-KD and KD SCLC students, KD through the sim optics")
    _training_options(cls)
    _report_options(cls, "a .md table is written beside it")
    cls.add_argument("--train-fraction", type=float, default=None, metavar="F",
                     help="train on a seeded random fraction F of the training split (budgets stay in steps)")
    cls.set_defaults(handler=cmd_classification)

    bud = sub.add_parser("budget", parents=[common_options()],
                         help="budgets that follow the data: a subset with epoch- and step-counted budgets, and the full set")
    _training_options(bud)
    _report_options(bud, "a .md table is written beside it")
    bud.add_argument("--fraction", type=float, default=None, help="the subset's share of the training split (default 0.1)")
    bud.add_argument("--teacher-epochs", type=int, default=None,
                     help="teacher budget in epochs of the full split (default 18; quick: 1)")
    bud.add_argument("--student-epochs", type=int, default=None,
                     help="student budget in epochs of the full split (default 6; quick: 2)")
    bud.add_argument("--student-steps", type=int, default=None, metavar="STEPS",
                     help="steps rule: students get --student-epochs x STEPS optimisation steps (default: full passes)")
    bud.add_argument("--val-limit", type=int, default=None, help="validation images (default: all)")
    bud.add_argument("--teacher-width", type=int, default=None,
                     help="the teacher's width (default: the classification teacher's, 32)")
    bud.add_argument("--status", action="store_true",
                     help="train nothing: report the runs finished so far (entries say how many seeds)")
    bud.add_argument("--kd-seeds", type=int, nargs="+", default=None, help="seeds of the KD students (default: all)")
    bud.add_argument("--students", nargs="+", default=["linear", "kd"], choices=["linear", "kd"],
                     help="with --arms: which students this process trains")
    bud.add_argument("--arms", nargs="+", default=None, metavar="ARM",
                     help="train only these arms (subset/epochs subset/steps full), no report: "
                          "to share the work between processes")
    bud.set_defaults(handler=cmd_budget)

    study = sub.add_parser("kd-study", parents=[common_options()],
                           help="when does KD help? seeds x back ends x KD settings x budgets, protocol, hints, detection")
    _training_options(study)
    study.add_argument("--out", type=Path, required=True, help="folder for runs, study.json and study.md")
    study.add_argument("--workers", type=int, default=1, help="parallel training processes (one thread each)")
    study.add_argument("--headline", action="store_true",
                       help="only KD against no KD at the full budget, both back ends (default seeds: 0-4)")
    study.add_argument("--status", action="store_true",
                       help="train nothing: summarise the jobs finished so far (study-status.json/.md)")
    study.set_defaults(handler=cmd_kd_study)

    seg = sub.add_parser("segmentation", parents=[common_options()],
                         help="U-Net teacher, SCLC segmentation students with and without dense KD, KD through the optics")
    _training_options(seg)
    _report_options(seg, ".md table and .png figure beside it")
    seg.add_argument("--size", type=int, default=None, help="image side in px (default 128; quick: 64)")
    seg.add_argument("--hints", action="store_true", help="add a KD + feature-hint arm")
    seg.add_argument("--workers", type=int, default=1,
                     help="train the students in N processes of one thread each (the teacher trains first, here)")
    seg.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: 1 with --quick, whose small tensors gain nothing from more "
                          "and lose much on a busy CPU; else torch's choice)")
    seg.set_defaults(handler=cmd_segmentation)

    front = sub.add_parser("seg-frontier", parents=[common_options()],
                           help="segmentation: mIoU against host MFLOPs for student variants and the teacher")
    _training_options(front)
    _report_options(front, ".md table and .png plot beside it")
    front.add_argument("--cpu", action="store_true",
                       help="the reduced budget a shared CPU affords (1000 scenes, 3 epochs); default: the full one")
    front.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                       help="train only these variants and write no report (to share the work between processes)")
    front.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    front.set_defaults(handler=cmd_seg_frontier)

    single = sub.add_parser("single-layer", parents=[common_options()],
                            help="one optical layer near the teacher: wider, larger kernels, longer, augmented, KD")
    _training_options(single)
    _report_options(single, "a .md table beside it")
    single.add_argument("--recipes", nargs="+", default=None, metavar="NAME", help="only these recipes (default: all)")
    single.set_defaults(handler=cmd_single_layer)

    eff = sub.add_parser("efficiency", parents=[common_options()],
                         help="electronic FLOPs and latency against input resolution; crossover plot")
    eff.add_argument("--out", type=Path, default=Path("runs/efficiency"), help="folder for efficiency.json/.png")
    eff.add_argument("--sizes", type=int, nargs="+", default=None, help="input sizes (default: 28 ... 1024)")
    eff.add_argument("--profile", default="sim", help="bench whose frame time bounds the optical latency")
    eff.add_argument("--repeats", type=int, default=7, help="latency repeats per point (median reported)")
    eff.add_argument("--device", default="auto", help="where the electronic parts are timed")
    eff.add_argument("--binning", type=int, nargs="*", default=None,
                     help="on-camera binning factors of the binned hybrid arms (default: 2 4 8; none: no arm)")
    eff.add_argument("--no-latency", action="store_true",
                     help="count FLOPs and energy only (latency on a loaded machine measures the load)")
    eff.set_defaults(handler=cmd_efficiency)


def _data_dir(path: Path | None) -> Path:
    from labrig.paths import default_data_dir

    return path if path is not None else default_data_dir()


def _join_torchrun() -> bool:
    """Under ``torchrun --nproc_per_node=N``, join the process group (data-parallel
    training); returns whether this process is the one that writes and prints."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    from labrig.distill import ddp

    return ddp.init_distributed().is_main


def cmd_classification(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labrig.experiments.classification import ClassificationConfig, run_classification

    main_process = _join_torchrun()
    config = ClassificationConfig.quick() if args.quick else ClassificationConfig()
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    if args.train_fraction is not None:
        config = config.with_train_fraction(args.train_fraction)
    out = args.out or args.report.parent / (args.report.stem + "-runs")
    report = run_classification(_data_dir(args.data), out, config, teacher_checkpoint=args.teacher,
                                device=args.device, progress=not args.no_progress)
    if report is None:
        return 130
    if main_process:
        _publish(args.report, out, report)
    return 0


def _publish(path: Path, out: Path, report: dict, figure: str | None = None) -> None:
    """Copy an experiment's report (JSON, its markdown table, a figure) to `path`, print the table."""
    import shutil

    from labrig.experiments.jobs import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    table = (out / "report.md").read_text()
    path.with_suffix(".md").write_text(table)
    written = [path, path.with_suffix(".md")]
    if figure:
        shutil.copyfile(figure, path.with_suffix(".png"))
        written.append(path.with_suffix(".png"))
    print(table)
    print("wrote " + ", ".join(str(p) for p in written))


def cmd_budget(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labrig.experiments.budget import BudgetConfig, run_budget

    if args.teacher is not None:
        from labrig.models.errors import ModelConfigError

        raise ModelConfigError("experiment budget trains each arm's own teacher on that arm's data: drop --teacher")
    config = BudgetConfig.quick() if args.quick else BudgetConfig()
    given = {"seeds": tuple(args.seeds) if args.seeds else None, "fraction": args.fraction,
             "teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
             "val_limit": args.val_limit, "kd_seeds": tuple(args.kd_seeds) if args.kd_seeds else None,
             "student_steps_per_epoch": args.student_steps}
    config = replace(config, **{k: v for k, v in given.items() if v is not None})
    if args.teacher_width:
        config = replace(config, base=replace(config.base, teacher=replace(config.base.teacher,
                                                                            width=args.teacher_width)))
    out = args.out or args.report.parent / (args.report.stem + "-runs")
    report = run_budget(_data_dir(args.data), out, config, device=args.device, progress=not args.no_progress,
                        arms_only=tuple(args.arms) if args.arms else None, students=tuple(args.students),
                        finished_only=args.status)
    if report is None:
        return 130
    if args.arms:
        return 0
    _publish(args.report, out, report)
    for c in report["comparisons"]:
        print(f"- {c['what']}: {c['sentence']}")
    return 0


def cmd_kd_study(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labrig.experiments.kd_study import StudyConfig, run_study
    from labrig.models.errors import ModelConfigError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ModelConfigError("kd-study trains many small jobs side by side: use --workers N, not torchrun")

    config = StudyConfig.quick() if args.quick else StudyConfig.headline() if args.headline else StudyConfig()
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    study = run_study(_data_dir(args.data), args.out, config, teacher_checkpoint=args.teacher,
                      workers=args.workers, device=args.device, progress=not args.no_progress,
                      status_only=args.status)
    print((args.out / ("study-status.md" if args.status else "study.md")).read_text())
    for c in study["comparisons"]:
        print(f"- {c['what']}: {c['sentence']}")
    return 0


def cmd_segmentation(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labrig.experiments.segmentation import SegmentationConfig, run_segmentation

    threads = args.threads or (1 if args.quick else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    main_process = _join_torchrun()
    config = SegmentationConfig.quick() if args.quick else SegmentationConfig()
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    if args.size:
        config = replace(config, data=replace(config.data, size=args.size))
    if args.hints:
        config = replace(config, hint=replace(config.kd, method="hint", hint_layer="dec0"))
    out = args.out or args.report.parent / (args.report.stem + "-runs")
    report = run_segmentation(_data_dir(args.data), out, config, teacher_checkpoint=args.teacher,
                              device=args.device, workers=args.workers, progress=not args.no_progress)
    if report is None:
        return 130
    if main_process:
        _publish(args.report, out, report, report.get("figure"))
    return 0


def cmd_seg_frontier(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from labrig.experiments.seg_frontier import FrontierConfig, run_frontier

    torch.set_num_threads(args.threads)
    config = FrontierConfig.quick() if args.quick else FrontierConfig.cpu() if args.cpu else FrontierConfig()
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    if args.variants:
        config = replace(config, variants=tuple(args.variants))
    out = args.out or args.report.parent / (args.report.stem + "-runs")
    report = run_frontier(_data_dir(args.data), out, config, teacher_checkpoint=args.teacher, device=args.device,
                          progress=not args.no_progress, train_only=bool(args.variants))
    if report is None:
        return 130
    if args.variants:
        return 0
    _publish(args.report, out, report, report.get("figure"))
    return 0


def cmd_single_layer(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labrig.experiments.single_layer import SingleLayerConfig, run_single_layer

    config = SingleLayerConfig.quick() if args.quick else SingleLayerConfig()
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    if args.recipes:
        config = replace(config, recipes=tuple(args.recipes))
    out = args.out or args.report.parent / (args.report.stem + "-runs")
    report = run_single_layer(_data_dir(args.data), out, config, teacher_checkpoint=args.teacher, device=args.device,
                              progress=not args.no_progress)
    if report is None:
        return 130
    _publish(args.report, out, report)
    return 0


def cmd_efficiency(args: argparse.Namespace) -> int:
    from labrig.experiments.efficiency import DEFAULT_BINNING, DEFAULT_SIZES, run_efficiency

    binning = DEFAULT_BINNING if args.binning is None else tuple(args.binning)
    result = run_efficiency(args.out, sizes=tuple(args.sizes or DEFAULT_SIZES), profile=args.profile,
                            repeats=args.repeats, device=args.device, binning=binning, latency=not args.no_latency)
    print(json.dumps(result["crossover"], indent=2))
    print(f"wrote {args.out / 'efficiency.json'} and {args.out / 'efficiency.png'}")
    return 0


def _report_options(parser: argparse.ArgumentParser, beside: str) -> None:
    """--report and --out, as every report-writing experiment takes them."""
    parser.add_argument("--report", type=Path, required=True, help=f"report JSON path ({beside})")
    parser.add_argument("--out", type=Path, default=None,
                        help="checkpoints and per-run results (default: beside the report)")

"""``labrig compile``, ``labrig program show`` and ``labrig run``: a student onto a bench and through it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labrig.commands import add_profile_option, common_options

__all__ = ["add_parser", "cmd_compile", "cmd_run", "cmd_show"]

EXIT_INTERRUPTED = 130


def _data_option(parser: argparse.ArgumentParser, split: str) -> None:
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help=f"dataset folder, its {split} split is used "
                             "(default: $LABRIG_DATA, else shared/data/fashion-mnist in the working directory or above)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    comp = subparsers.add_parser("compile", parents=[common_options()],
                                 help="compile a trained student into a bench program (HDF5)")
    comp.add_argument("--model", "-m", type=Path, required=True, metavar="STUDENT.pt", help="student checkpoint")
    add_profile_option(comp)
    comp.add_argument("--out", "-o", type=Path, required=True, metavar="PROGRAM.h5", help="program file to write")
    _data_option(comp, "train")
    comp.add_argument("--calibration-images", type=_positive_int, default=512, metavar="N",
                      help="training images the exposure is chosen on (default: 512)")
    comp.add_argument("--exposure-fill", type=float, default=None, metavar="F",
                      help="brightest calibration tile pixel at this fraction of the camera's range (default: 0.85)")
    comp.add_argument("--calibration", type=Path, default=None, metavar="CAL.h5",
                      help="compile for the bench as this calibration measured it (masks optimised through the "
                           "calibrated twin; ROIs, dark level and exposure from it)")
    comp.add_argument("--refine-steps", type=int, default=None, metavar="N",
                      help="gradient steps on the masks through the calibrated twin (default: 120; 0: analytic only)")
    comp.add_argument("--readout-kernel", type=int, default=None, metavar="K",
                      help="per-tile readout correction fitted after the masks: a K x K filter and an offset "
                           "(default: 3; 1: gain and offset; 0: none)")
    comp.add_argument("--bench-readout", action="store_true",
                      help="fit the readout correction on the bench's own frames of the probe images (opens the "
                           "bench of --profile; takes readout-probes x frames-per-image frames) instead of the "
                           "calibrated twin's: it then takes in what the twin does not model")
    comp.add_argument("--no-readout-mix", dest="readout_mix", action="store_false", default=None,
                      help="correct each tile from itself only (default: each corrected tile reads every tile of "
                           "the image, which recovers some of what the SLM's fringing took from one channel, for "
                           "T times the host work)")
    comp.add_argument("--readout-probes", type=_positive_int, default=None, metavar="N",
                      help="training images the readout correction is fitted on (default: 256)")
    _stale_option(comp)
    comp.set_defaults(handler=cmd_compile)

    program = subparsers.add_parser("program", help="inspect a compiled bench program")
    sub = program.add_subparsers(dest="program_command", metavar="COMMAND", required=True)
    show = sub.add_parser("show", parents=[common_options()],
                          help="print a program and optionally draw its masks and tile layout")
    show.add_argument("program", type=Path, metavar="PROGRAM.h5")
    show.add_argument("--png", type=Path, default=None, metavar="OUT.png",
                      help="save a picture of the masks (magnitude, phase, gray levels) and the tile layout")
    show.set_defaults(handler=cmd_show)

    run = subparsers.add_parser("run", parents=[common_options()],
                                help="run a program on a bench over a test set; resumable run file + report")
    run.add_argument("--program", type=Path, required=True, metavar="PROGRAM.h5")
    run.add_argument("--profile", "-p", default=None, metavar="P",
                     help="bench profile (default: the one the program was compiled for)")
    _data_option(run, "test")
    run.add_argument("--report", type=Path, required=True, metavar="R.json", help="JSON report to write")
    run.add_argument("--out", type=Path, default=None, metavar="RUN.h5",
                     help="run file (default: the report's name with .h5); an unfinished one is resumed")
    run.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="only the first N images")
    run.add_argument("--device", default="auto", help="torch device of the back end (default: auto = CUDA if present)")
    run.add_argument("--batch", type=_positive_int, default=64, metavar="B", help="images per chunk (default: 64)")
    run.add_argument("--twin", action="store_true",
                     help="also run every image through the ideal twin: its accuracy and the tile error")
    run.add_argument("--save-frames", action="store_true", help="keep the camera frames in the run file")
    run.add_argument("--no-tiles", action="store_true",
                     help="do not keep each image's tiles in the run file (41 kB per image for 16 36x36 tiles)")
    run.add_argument("--no-resume", action="store_true", help="start the run file afresh")
    run.add_argument("--timeout", type=_positive_float, default=1.0, metavar="S", help="frame timeout (default: 1 s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--calibration", type=Path, default=None, metavar="CAL.h5",
                     help="the bench's current calibration; must be the one the program was compiled for")
    run.add_argument("--ignore-calibration", action="store_true",
                     help="run even if the program was compiled for another calibration (or none)")
    run.add_argument("--reregister-every", type=int, default=0, metavar="N",
                     help="follow the bench's drift: re-register the frames against the program's twin every N "
                          "images (sooner when the residual grows), from frames the run takes anyway (default: 0 = off)")
    _stale_option(run)
    run.set_defaults(handler=cmd_run)


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a usage error, not a traceback, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _stale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-stale-calibration", action="store_true",
                        help="use the calibration even if it is stale (too old, another profile or device)")


def _default_data(path: Path | None) -> Path:
    from labrig.paths import default_data_dir

    return path if path is not None else default_data_dir()


def cmd_compile(args: argparse.Namespace) -> int:
    from labrig.bench import open_bench
    from labrig.deploy import compile_checkpoint, save_program
    from labrig.deploy.refine import RefineConfig
    from labrig.deploy.show import format_program

    given = {"steps": args.refine_steps, "readout_kernel": args.readout_kernel,
             "readout_probes": args.readout_probes, "bench_readout": args.bench_readout or None,
             "readout_mix": args.readout_mix}
    refine = RefineConfig(**{k: v for k, v in given.items() if v is not None})
    if args.bench_readout and args.calibration is None:
        raise SystemExit("labrig compile: --bench-readout corrects a program compiled through a calibration: "
                         "give --calibration CAL.h5")

    def compile_on(bench: Any) -> Any:
        return compile_checkpoint(args.model, args.profile, _default_data(args.data),
                                  calibration_images=args.calibration_images, exposure_fill=args.exposure_fill,
                                  calibration=args.calibration, refine=refine,
                                  allow_stale=args.allow_stale_calibration, bench=bench)

    if args.bench_readout:
        with open_bench(args.profile if args.profile is not None else "sim") as bench:
            program = compile_on(bench)
    else:
        program = compile_on(None)
    save_program(program, args.out)
    print(format_program(program, args.out))
    print(f"\nwrote {args.out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from labrig.deploy import load_program
    from labrig.deploy.show import format_program, save_program_png

    program = load_program(args.program)
    print(format_program(program, args.program))
    if args.png is not None:
        save_program_png(program, args.png)
        print(f"\nwrote {args.png}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from labrig.bench import open_bench
    from labrig.deploy import load_program, run_and_report
    from labrig.deploy.engine import check_run_targets
    from labrig.deploy.result import format_result
    from labrig.deploy.track import DriftConfig

    if args.reregister_every < 0:
        raise SystemExit(f"labrig run: --reregister-every must be >= 0 (images), got {args.reregister_every}")
    drift = DriftConfig(every=args.reregister_every) if args.reregister_every else None
    out = args.out if args.out is not None else args.report.with_suffix(".h5")
    check_run_targets(out, args.report)  # before the bench opens
    program = load_program(args.program)
    profile = args.profile if args.profile is not None else program.constraints.profile
    with open_bench(profile) as bench:
        outcome = run_and_report(
            bench, program, _default_data(args.data), out, split="test", report=args.report, device=args.device,
            batch=args.batch, resume=not args.no_resume, bar=not args.no_progress, limit=args.limit,
            save_frames=args.save_frames, save_tiles=not args.no_tiles, twin=args.twin, timeout_s=args.timeout,
            calibration=args.calibration, ignore_calibration=args.ignore_calibration,
            allow_stale=args.allow_stale_calibration, drift=drift,
        )
    if outcome.failure is not None:
        print(format_result(outcome.result), file=sys.stderr)
        if isinstance(outcome.failure, KeyboardInterrupt):
            print(f"labrig: {outcome.failure}", file=sys.stderr)
            return EXIT_INTERRUPTED
        outcome.raise_failure()
    print(format_result(outcome.result))
    print(f"\nwrote {args.report}")
    return 0

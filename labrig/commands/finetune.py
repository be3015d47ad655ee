"""``labrig finetune``: fine-tune a bench program in situ (physics-aware training, labrig.hil)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labrig.commands import common_options

__all__ = ["add_parser", "cmd_finetune"]

EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune", parents=[common_options()],
        help="fine-tune a program on the bench: masks and/or back end trained with measured frames")
    p.add_argument("--program", type=Path, required=True, metavar="P.h5", help="the program to start from")
    p.add_argument("--calibration", type=Path, default=None, metavar="CAL.h5",
                   help="calibration whose twin gives the backward pass (default: none, the nominal twin)")
    p.add_argument("--profile", "-p", default=None, metavar="B",
                   help="bench profile (default: the one the program was compiled for)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="dataset folder: train split to fine-tune on, test split to evaluate "
                        "(default: $LABRIG_DATA or ../shared/data/fashion-mnist)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for the new program.h5, finetune.json and the checkpoint (resumed if there)")
    p.add_argument("--mode", choices=("backend", "pat", "twin"), default="pat",
                   help="backend: back end on measured tiles; pat: masks + back end, physics-aware (default); "
                        "twin: retrain through the calibrated twin only (control, no bench frames)")
    p.add_argument("--frames", type=int, default=30_000, metavar="N", help="bench frame budget (default: 30000)")
    p.add_argument("--steps", type=int, default=300, metavar="S", help="training steps (default: 300)")
    p.add_argument("--batch", type=int, default=32, metavar="B", help="images (frames) per step (default: 32)")
    p.add_argument("--lr-mask", type=float, default=None, metavar="LR", help="mask phase learning rate")
    p.add_argument("--lr-backend", type=float, default=None, metavar="LR", help="back-end learning rate")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: both learning rates decay to 5 %% of their start over the run (steps or frame "
                        "budget, whichever ends first); default constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=None, metavar="N", help="first N training images only")
    p.add_argument("--eval-images", type=int, default=500, metavar="N",
                   help="test images measured every --eval-every steps (0: no evaluation; default 500)")
    p.add_argument("--eval-every", type=int, default=50, metavar="S")
    p.add_argument("--reregister-every", type=int, default=0, metavar="S",
                   help="re-register every S steps (0: only when the bench-vs-twin residual grows)")
    p.add_argument("--refit-every", type=int, default=0, metavar="S",
                   help="refit a few twin parameters (Zernike terms, filter shift) on the frames already measured "
                        "every S steps (0: never)")
    p.add_argument("--residual-images", type=int, default=0, metavar="N",
                   help="bench modes: first measure N training images through the compiled masks and fit the twin's "
                        "learned residual to them (what calibration has no name for; frames count against the "
                        "budget; ~128 suffice; default 0: none)")
    p.add_argument("--residual-refit-every", type=int, default=0, metavar="S",
                   help="refit the residual every S steps so it follows the masks (while pre-training on "
                        "--residual-images new images each time; on the bench on the steps' own frames; default 0: once)")
    p.add_argument("--pretrain-steps", type=int, default=0, metavar="S",
                   help="steps through the (residual-corrected) twin before the --steps on the bench: no bench "
                        "frames, host time only (default 0)")
    p.add_argument("--ignore-stale", action="store_true", help="use a stale calibration anyway")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if DIR has a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from labrig.data import load_dataset
    from labrig.hil import FineTuneConfig
    from labrig.hil.api import finetune, tqdm_progress
    from labrig.paths import default_data_dir

    data_dir = args.data if args.data is not None else default_data_dir()
    cfg = FineTuneConfig(mode=args.mode, steps=args.steps, batch=args.batch, frames=args.frames, seed=args.seed,
                         eval_every=args.eval_every, reregister_every=args.reregister_every,
                         refit_every=args.refit_every, lr_schedule=args.lr_schedule,
                         residual_images=args.residual_images, residual_refit_every=args.residual_refit_every,
                         pretrain_steps=args.pretrain_steps)
    rates = {k: v for k, v in (("lr_mask", args.lr_mask), ("lr_backend", args.lr_backend)) if v is not None}
    cfg = dataclasses.replace(cfg, **rates)
    train = load_dataset(data_dir, split="train")
    test = load_dataset(data_dir, split="test") if args.eval_images else None
    progress, close = tqdm_progress(args.pretrain_steps + args.steps, f"finetune {args.mode}", disable=args.no_progress)
    try:
        result = finetune(args.program, args.calibration, train, args.out, profile=args.profile, eval_data=test,
                          config=cfg, train_limit=args.train_images, eval_limit=args.eval_images or None,
                          resume=not args.no_resume, ignore_stale=args.ignore_stale, progress=progress)
    finally:
        close()
    acc = result.bench_accuracy
    print(f"{result.status}: {result.steps} steps, {result.frames} bench frames for training "
          f"(+{result.eval_frames} to evaluate)" + (f", bench accuracy {100 * acc:.2f} %" if acc is not None else ""))
    for event in result.events:
        if event["kind"] in ("rollback", "exposure", "drift", "reregister", "fault", "diverged"):
            print(f"  step {event['step']}: {event['kind']}: {event['message']}")
    print(f"wrote {args.out / 'program.h5'} and {args.out / 'finetune.json'}")
    if result.status == "cancelled":
        return EXIT_INTERRUPTED
    if result.status in ("fault", "diverged"):
        print(f"labrig: error: {result.error} -- run the same command again to resume", file=sys.stderr)
        return 2
    return 0

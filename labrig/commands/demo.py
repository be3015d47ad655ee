"""``labrig demo``: the whole chain on the simulated bench, in a couple of minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from labrig.commands import common_options

__all__ = ["add_parser", "cmd_demo"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", parents=[common_options()],
                                 help="the main job: quick training, compile, run on sim-ideal and sim")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    demo.add_argument("--data", type=Path, default=None,
                      help="Fashion-MNIST folder (default: $LABRIG_DATA, else shared/data/fashion-mnist in the working directory or above)")
    demo.add_argument("--images", type=int, default=1000, help="test images to run on each bench (default: 1000)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from labrig.demo import format_summary, run_demo

    summary = run_demo(args.out, args.data, args.images, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"\nwrote {args.out}/: summary.json, experiment/report.{{json,md}}, program.h5, program.png, "
          "run-<bench>.h5 and run-<bench>.json")
    return 0

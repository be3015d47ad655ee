"""``labrig calibrate`` and ``labrig calibration show``: measure the bench, look at what was measured.

Thin faces over `calibration.session.calibrate` and `calibration.show`: they
collect arguments, draw progress bars and print results. Ctrl-C (or any
failure) leaves the bench safe and the calibration file as it was: the engine
writes `--out` only once every requested routine has succeeded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labrig.commands import add_profile_option, common_options

__all__ = ["TqdmProgress", "add_parser", "cmd_calibrate", "cmd_show"]

EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cal = subparsers.add_parser(
        "calibrate", parents=[common_options()],
        help="measure the bench's imperfections and write a calibration file",
        description="Run calibration routines (in dependency order) on a bench and write the results "
                    "to an HDF5 calibration file. Routines not rerun keep their results from --previous "
                    "(default: the --out file when it exists).",
    )
    cal.add_argument("routines", nargs="*", default=["all"], metavar="ROUTINE",
                     help="routine names, or 'all' (default); see --list")
    add_profile_option(cal)
    cal.add_argument("--out", "-o", type=Path, default=None, metavar="FILE",
                     help="calibration file to write (HDF5; required unless --list)")
    cal.add_argument("--previous", type=Path, default=None, metavar="FILE",
                     help="start from this calibration (default: --out, when it exists)")
    cal.add_argument("--fresh", action="store_true", help="ignore any previous calibration")
    cal.add_argument("--partial", action="store_true",
                     help="write after each routine that succeeds (default: only when all succeed)")
    cal.add_argument("--no-progress", action="store_true", help="no progress bars")
    cal.add_argument("--list", action="store_true", help="list the routines in run order and exit")
    cal.set_defaults(handler=cmd_calibrate)

    show_group = subparsers.add_parser("calibration", help="inspect calibration files")
    sub = show_group.add_subparsers(dest="calibration_command", metavar="COMMAND", required=True)
    show = sub.add_parser("show", parents=[common_options()],
                          help="print a calibration's provenance and estimates; optionally plot each routine")
    show.add_argument("file", type=Path, metavar="FILE", help="calibration file (.h5)")
    show.add_argument("--png", type=Path, default=None, metavar="FILE", help="also write a figure, a panel per routine")
    show.add_argument("--profile", "-p", default=None, metavar="P",
                      help="also check staleness against this bench profile (default: age only)")
    show.set_defaults(handler=cmd_show)


class TqdmProgress:
    """A `Progress` that keeps one tqdm bar per routine (a new bar when the routine changes)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.routine = ""

    def __call__(self, done: int, total: int, message: str) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        routine, _, detail = message.partition(": ")
        if routine != self.routine or self.bar is None:
            self.close()
            self.routine = routine
            self.bar = tqdm(total=max(total, 1), desc=routine, unit="step", leave=True, file=sys.stderr)
        if total > 0 and total != self.bar.total:
            self.bar.total = total
        self.bar.n = min(max(done, 0), self.bar.total)
        self.bar.set_postfix_str(detail[:40], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _list_routines() -> str:
    from calibration.session import BROKEN, ROUTINES

    rows = [f"{'routine':14s} {'frames':>6s}  after           estimates"]
    for name, cls in ROUTINES.items():
        rows.append(f"{name:14s} {cls.frames_hint:6d}  {','.join(cls.after) or '-':15s} {', '.join(cls.estimates)}")
    rows += [f"BROKEN {module}: {error}" for module, error in BROKEN.items()]
    return "\n".join(rows) if ROUTINES or BROKEN else "no calibration routines are installed"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.session import calibrate
    from calibration.show import format_value
    from drivers.errors import LabrigError
    from labrig.bench import open_bench

    if args.list:
        print(_list_routines())
        return 0
    if args.out is None:
        raise LabrigError("labrig calibrate: --out FILE is required (the calibration file to write)")
    previous = None
    if not args.fresh:
        previous = args.previous if args.previous is not None else (args.out if args.out.exists() else None)
    bar = TqdmProgress(enabled=not args.no_progress)
    try:
        with open_bench(args.profile) as bench:
            cal = calibrate(bench, args.routines, out=args.out, previous=previous, progress=bar, partial=args.partial)
    except KeyboardInterrupt:
        bar.close()
        state = "holds the routines that succeeded" if args.partial else "is unchanged"
        print(f"labrig: interrupted; the bench was made safe and {args.out} {state}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    for name, record in cal.routines.items():
        r = record.result
        estimates = ", ".join(f"{k}={format_value(v)}" for k, v in r.values.items())
        print(f"{name:14s} {r.frames:5d} frames {record.duration_s:6.1f} s  residual {r.residual:.3g} "
              f"{r.residual_unit}  {estimates}")
    print(f"wrote {args.out}: {len(cal.routines)} routines, {cal.frames} frames, hash {cal.hash[:12]}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from calibration.show import format_calibration, save_calibration_png
    from calibration.store import load_calibration

    cal = load_calibration(args.file)
    profile = None
    if args.profile is not None:
        from labrig.bench import load_profile

        profile = load_profile(args.profile)
    print(format_calibration(cal, bench_or_profile=profile))
    if args.png is not None:
        save_calibration_png(cal, args.png)
        print(f"\nwrote {args.png}")
    return 0

"""A long run on a drifting bench, with and without re-registration: does accuracy hold?

    python benchmarks/drift_run.py --program P.h5 [--calibration cal.h5] [--profile sim]
        [--images 10000] [--reregister-every 500 | --no-track] --json out.json

Runs `P.h5` over the first `--images` test images through the engine the CLI
and the console share (`labrig.deploy.engine.run_and_report`), following the
bench's drift (`--reregister-every N`, as `labrig run --reregister-every N`) or
not (`--no-track`), and reports the accuracy of every block of 1,000 images, the
first 1,000 against the whole run (the issue's test: within 0.5 points), and the
re-registrations (the image's displacement from the program's ROIs over time).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from labrig.bench import Bench
from labrig.deploy import load_program
from labrig.deploy.engine import run_and_report
from labrig.deploy.track import DriftConfig
from labrig.paths import default_data_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--program", type=Path, required=True)
    p.add_argument("--calibration", type=Path, default=None)
    p.add_argument("--profile", default="sim")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--block", type=int, default=1_000)
    p.add_argument("--reregister-every", type=int, default=500)
    p.add_argument("--no-track", action="store_true")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    program = load_program(args.program)
    drift = None if args.no_track else DriftConfig(every=args.reregister_every)
    t0 = time.perf_counter()
    with Bench.open(args.profile) as bench:
        world = bench.shared.get("sim.world")
        outcome = run_and_report(bench, program, args.data or default_data_dir(), None, limit=args.images,
                                 calibration=args.calibration, allow_stale=True, drift=drift)
        moved = None if world is None else float(world.time_s)
    outcome.raise_failure()
    r = outcome.result
    correct = (r.predictions == r.labels).astype(np.float64)
    blocks = [float(correct[s : s + args.block].mean()) for s in range(0, len(correct), args.block)]
    first, whole = blocks[0], float(correct.mean())
    report = {
        "program": str(args.program), "profile": args.profile, "images": len(correct),
        "tracking": None if drift is None else {"every": drift.every, "sample": drift.sample},
        "accuracy": whole, "first_block": first, "last_block": blocks[-1], "blocks": blocks,
        "whole_minus_first_points": 100 * (whole - first), "last_minus_first_points": 100 * (blocks[-1] - first),
        "bench_seconds_simulated": moved, "wall_s": time.perf_counter() - t0,
        "reregistrations": r.drift or [],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"{'tracked' if drift else 'not tracked'}: whole {100 * whole:.2f} %, first {args.block} {100 * first:.2f} %, "
          f"last {100 * blocks[-1]:.2f} % ({100 * (whole - first):+.2f} points whole vs first); blocks "
          + " ".join(f"{100 * b:.1f}" for b in blocks))


if __name__ == "__main__":
    main()

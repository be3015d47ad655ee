"""A student compiled through a calibration, run on a simulated bench (docs/calibration.md, "Deployment").

    python benchmarks/deploy_calibrated.py --checkpoint runs/demo/experiment/jobs/<kd>/best.pt \
        --profile sim --calibration cal.h5 --images 500 --out runs/deploy/sim

compiles the student twice, for the ideal bench and through the calibration
(`compile_program(..., calibration=...)`, no retraining), and runs the first
`--images` test images through the ideal program on `sim-ideal` (the ideal-twin
accuracy: the target), the ideal program on the bench (uncalibrated) and the
calibrated program on the bench. ``--calibration truth`` compiles through the
bench's hidden truth instead of a measured calibration: the compiler's upper
bound (a benchmark may read the truth; calibration and deployment code never do).
Writes ``<out>.json`` (accuracies, compile time, the refinement's tile errors)
and ``<out>-calibrated.h5`` (the program).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, run_program, save_program
from labrig.deploy.refine import RefineConfig
from labrig.deploy.track import DriftConfig
from labrig.distill import load_model
from labrig.paths import default_data_dir

IDEAL = "sim-ideal"


def _run(profile: str, program: Any, test: Any, images: int, calibration: Any, reregister_every: int = 0) -> float:
    drift = DriftConfig(every=reregister_every) if reregister_every else None
    with Bench.open(profile) as bench:
        result = run_program(bench, program, test, None, limit=images, progress=False, calibration=calibration,
                             drift=drift)
    return float(result.accuracy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path, help="student checkpoint")
    ap.add_argument("--profile", default="sim", help="the bench (embedded name or .toml)")
    ap.add_argument("--calibration", required=True, help="calibration file, or 'truth' (the bench's hidden truth)")
    ap.add_argument("--images", type=int, default=500, help="test images per run (the first N)")
    ap.add_argument("--steps", type=int, default=RefineConfig.steps, help="refinement steps")
    ap.add_argument("--readout-kernel", type=int, default=RefineConfig.readout_kernel,
                    help="per-tile readout correction size (1: gain and offset, 0: none)")
    ap.add_argument("--no-readout-mix", dest="readout_mix", action="store_false",
                    help="per-tile correction only (RefineConfig.readout_mix off)")
    ap.add_argument("--readout-probes", type=int, default=RefineConfig.readout_probes,
                    help="training images the readout correction is fitted on")
    ap.add_argument("--bench-readout", action="store_true",
                    help="fit the readout correction on the bench's frames (its frames counted) instead of the twin's")
    ap.add_argument("--reregister-every", type=int, default=500,
                    help="the calibrated run re-registers against drift every N images (`labrig run "
                         "--reregister-every`; 0: never)")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--allow-stale", action="store_true")
    ap.add_argument("--skip-ideal", action="store_true", help="do not run the ideal program (saves two runs)")
    ap.add_argument("--out", required=True, type=Path, help="output prefix")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    student, _ = load_model(a.checkpoint, kind="student")
    data = a.data or default_data_dir()
    train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
    images = train.subset(range(min(2000, len(train))))  # as `labrig demo` compiles
    if a.calibration == "truth":
        with Bench.open(a.profile) as bench:
            calibration: Any = bench.shared["sim.world"].truth.imperfections
    else:
        calibration = a.calibration
    out: dict[str, Any] = {"profile": a.profile, "calibration": a.calibration, "images": a.images,
                           "steps": a.steps, "readout_kernel": a.readout_kernel,
                           "bench_readout": a.bench_readout, "readout_probes": a.readout_probes,
                           "readout_mix": a.readout_mix,
                           "reregister_every": a.reregister_every, "checkpoint": str(a.checkpoint), "load_avg_start": os.getloadavg()[0]}
    t = time.perf_counter()
    ideal = compile_program(student, a.profile, images, classes=tuple(train.classes))
    out["compile_ideal_s"] = time.perf_counter() - t
    t = time.perf_counter()
    refine = RefineConfig(steps=a.steps, readout_kernel=a.readout_kernel, bench_readout=a.bench_readout,
                          readout_probes=a.readout_probes, readout_mix=a.readout_mix)
    with Bench.open(a.profile) if a.bench_readout else contextlib.nullcontext() as bench:  # a bench only to measure
        calibrated = compile_program(student, a.profile, images, classes=tuple(train.classes), calibration=calibration,
                                     refine=refine, allow_stale=a.allow_stale, bench=bench)
    out["compile_calibrated_s"] = time.perf_counter() - t
    out["refine"] = calibrated.source["calibration"]["refine"]
    out["readout_correction"] = calibrated.source["calibration"].get("readout_correction")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_program(calibrated, a.out.with_name(a.out.name + "-calibrated.h5"))
    if not a.skip_ideal:
        out["ideal_twin_accuracy"] = _run(IDEAL, ideal, test, a.images, None)
        out["uncalibrated_accuracy"] = _run(a.profile, ideal, test, a.images, None)
    out["calibrated_accuracy"] = _run(a.profile, calibrated, test, a.images, calibration, a.reregister_every)
    out["load_avg_end"] = os.getloadavg()[0]
    a.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

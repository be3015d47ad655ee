"""What one physics-aware fine-tuning step costs, against what it must cost.

    python benchmarks/finetune_step.py --checkpoint STUDENT.pt [--profile sim] [--batches 8 16 32]
        [--repeats 3] [--json out.json]

A step measures a batch of frames on the bench and runs one backward pass of
the calibrated twin over the same batch; everything else (encoding, the back
end, Adam, the guards) should be small beside those two. For each batch size:
the median time of (1) the bench frames alone (`BenchMeter.measure`), (2) the
twin's forward + backward alone (`TwinTiles` and `torch.autograd.grad`), and
(3) a whole ``pat`` step (`FineTuner._train_step`); the ratio (3) / ((1) + (2))
is the target (<= 1, up to timing noise). The twin here has the program's
nominal imperfections: the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.distill import load_model
from labrig.hil import FineTuneConfig, FineTuner
from labrig.hil.api import calibrated_twin
from labrig.paths import default_data_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--profile", default="sim")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    train = load_dataset(args.data or default_data_dir(), split="train").subset(range(512))
    student, _ = load_model(args.checkpoint, kind="student")
    program = compile_program(student.eval(), args.profile, train, classes=tuple(train.classes))
    rows = []
    with Bench.open(args.profile) as bench:
        twin, info = calibrated_twin(program, None)
        for batch in args.batches:
            tuner = FineTuner(program, twin, train, bench=bench,
                              config=FineTuneConfig(mode="pat", steps=10**6, batch=batch, frames=None, eval_every=0,
                                                    checkpoint_every=0), calibration=info)
            x = ImageSource(train, program.input.image_shape).batch(0, batch)
            gray_in = encode_images(program.input, x)
            gin = torch.from_numpy(gray_in.astype(np.int64))
            gray = tuner._gray()
            bench.guard.arm()
            frames_t, twin_t, step_t = [], [], []
            try:
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    tuner.meter.measure(gray, gray_in)
                    frames_t.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    phase = tuner.phase.detach().clone().requires_grad_(True)
                    tiles = tuner.twin_tiles(phase, gin)
                    torch.autograd.grad(tiles, phase, torch.ones_like(tiles))
                    twin_t.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    tuner._train_step()
                    step_t.append(time.perf_counter() - t)
            finally:
                bench.guard.make_safe()
            f, w, s = (statistics.median(v) for v in (frames_t, twin_t, step_t))
            row = {"batch": batch, "frames": batch * program.frames, "frames_s": f, "twin_backward_s": w,
                   "step_s": s, "ratio": s / (f + w)}
            rows.append(row)
            print(f"batch {batch:3d} ({row['frames']} frames): frames {f:.3f} s + twin fwd+bwd {w:.3f} s = "
                  f"{f + w:.3f} s; step {s:.3f} s; ratio {row['ratio']:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"profile": args.profile, "frames_per_image": program.frames,
                                         "threads": torch.get_num_threads(), "platform": platform.platform(),
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

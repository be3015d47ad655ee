"""The bench runner's own cost, and how long the simulated bench takes for a test set.

    python benchmarks/runner.py [--images 10000] [--repeats 3] [--profiles sim-ideal sim] [--json out.json]

The student is the default one (16 optical channels of collapsed 9x9 kernels on
28x28 Fashion-MNIST): on the 256x256 `sim` SLM that is 2 frames of 8 tiles per
image (time multiplexing). Its weights do not matter for timing.

* overhead: software time per camera frame with zero-latency simulated devices:
  the simulated camera returns a stored frame instantly, so the wall time of a
  run is labrig's own work (input encoding, device calls, tile cut, readout,
  back end, run-file writes). Batched (the sim's fast path) and frame by frame
  (the path a real camera takes: show, grab, per image). Target < 1 ms/frame.
* throughput: the Fashion-MNIST test set through the simulated bench as it is
  (every frame rendered by the wave-optics simulation), run file written,
  twin comparison off. Target: 10,000 images in < 60 s.

Medians over `--repeats` (overhead); one run per profile (throughput).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, run_program
from labrig.models import StudentConfig, StudentModel
from labrig.paths import default_data_dir


def _program(train, profile: str = "sim-ideal"):
    torch.manual_seed(0)
    student = StudentModel(StudentConfig()).eval()
    with torch.no_grad():
        return compile_program(student, profile, train.prepare(train.images[:256]), n_reference=2)


class _InstantFrames:
    """Stands in for the simulated world's renderer: the same stored frame, at once."""

    def __init__(self, world, frame: np.ndarray) -> None:
        self.world, self.frame = world, frame

    def render_batch(self, inputs, exposure_s, gain, rois=None, timeout_s=1.0):
        return np.broadcast_to(self.frame, (len(inputs), *self.frame.shape)).copy()

    def grab(self, exposure_s, gain, timeout_s):
        return self.frame.copy()


def overhead(program, test, images: int, batched: bool, repeats: int, out: Path) -> dict:
    """Median software ms per frame with devices that cost nothing."""
    per_frame, walls = [], []
    for r in range(repeats):
        with Bench.open("sim-ideal") as bench:
            world = bench.camera.world
            bench.guard.arm()
            frame = bench.camera.grab()
            bench.guard.make_safe()
            instant = _InstantFrames(world, frame)
            world.render_batch, world.grab = instant.render_batch, instant.grab
            result = run_program(bench, program, test, out / f"overhead{r}.h5", resume=False, progress=False,
                                 limit=images, batched=batched)
        walls.append(result.timing["wall_s"])
        per_frame.append(1e3 * result.timing["wall_s"] / result.frames)
    return {"path": "batched" if batched else "frame by frame", "images": images,
            "frames": images * program.frames, "ms_per_frame": statistics.median(per_frame),
            "wall_s": statistics.median(walls)}


def throughput(profile: str, train, test, images: int, out: Path) -> dict:
    program = _program(train, profile)
    with Bench.open(profile) as bench:
        result = run_program(bench, program, test, out / f"{profile}.h5", resume=False, progress=False, limit=images)
    t = result.timing
    return {"profile": profile, "images": result.images, "frames": result.frames, "wall_s": t["wall_s"],
            "device_s": t["device_s"], "software_s": t["software_s"],
            "software_ms_per_frame": t["software_per_frame_ms"], "frames_per_s": result.frames_per_s,
            "images_per_s": result.images_per_s, "file_mb": (out / f"{profile}.h5").stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--overhead-images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profiles", nargs="*", default=["sim-ideal", "sim"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = default_data_dir()
    train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
    program = _program(train)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; program: {program.multiplexing.reason}")
    results: dict = {"overhead": [], "throughput": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print("\n| path | frames | software ms/frame (median) |\n|---|---|---|")
        for batched in (True, False):
            n = args.overhead_images if batched else min(args.overhead_images, 512)
            row = overhead(program, test, n, batched, args.repeats, out)
            results["overhead"].append(row)
            print(f"| {row['path']} | {row['frames']} | {row['ms_per_frame']:.3f} |")
        print("\n| profile | images | frames | wall s | devices s | software s | frames/s | images/s | run file MB |"
              "\n|---|---|---|---|---|---|---|---|---|")
        for profile in args.profiles:
            row = throughput(profile, train, test, args.images, out)
            results["throughput"].append(row)
            print(f"| {profile} | {row['images']} | {row['frames']} | {row['wall_s']:.1f} | {row['device_s']:.1f} | "
                  f"{row['software_s']:.1f} | {row['frames_per_s']:.0f} | {row['images_per_s']:.0f} | "
                  f"{row['file_mb']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

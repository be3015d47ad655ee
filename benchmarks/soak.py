"""Soak: `labrig run` over the Fashion-MNIST test set on a simulated bench that misbehaves.

    python benchmarks/soak.py [--images 10000] [--kills 3] [--seed 0] [--json soak.json]

1. Reference: the images through a fault-free `sim-ideal` bench, in memory.
2. Faulty: the same through `labrig run` (a subprocess, the CLI as a user runs it) on
   `sim-ideal` with 1 % each of frame timeouts, dropped frames and SLM write errors
   and one camera disconnect (it comes back), run to completion in one go.
3. Killed: the same faulty run SIGKILLed `--kills` times and resumed each time
   (`labrig run` again, same report); each kill lands at a random moment (0-20 s)
   after that session wrote its first chunk.

Each faulty run must end with the reference's predictions exactly (no image lost,
duplicated or measured twice into the wrong place), and its run file must hold every
session. The student is a small 4-channel one at its initial weights (its accuracy
does not matter, only that every image's prediction comes out the same); `sim-ideal`
has no noise, so a fault-free run is the ground truth bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, read_run, run_program, save_program
from labrig.models import OpticsConfig, SCLCConfig, StudentConfig, StudentModel
from labrig.paths import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
FAULTS = """[bench]
name = "soak"
extends = "sim-ideal"

[faults]
seed = {seed}
frame_timeout_prob = 0.01
dropped_frame_prob = 0.01
slm_write_error_prob = 0.01
disconnect_after_frames = {disconnect}
"""


def _program(train):
    torch.manual_seed(0)
    student = StudentModel(StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                                         input_size=(28, 28), optics=OpticsConfig(profile="sim-ideal"))).eval()
    with torch.no_grad():
        return compile_program(student, "sim-ideal", train.prepare(train.images[:256]), n_reference=2)


def _cli(program: Path, profile: Path, data: Path, report: Path, images: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "labrig.cli", "run", "--program", str(program), "--profile",
                             str(profile), "--data", str(data), "--report", str(report), "--limit", str(images),
                             "--no-progress", "--timeout", "0.05"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(run_file: Path) -> int:
    """Images the run file holds now, read without HDF5's lock (the run has it open); -1 if none."""
    import h5py

    try:
        with h5py.File(run_file, "r", locking=False) as h5:
            return int(h5["done"][0])
    except Exception:  # not there yet, or caught mid-write: ask again
        return -1


def _check(run_file: Path, reference: np.ndarray) -> dict:
    run = read_run(run_file)
    predictions = run["predictions"]
    sessions = run["sessions"]
    faults: dict[str, int] = {}
    retried = reconnects = 0
    for s in sessions:
        for name, count in s.get("faults", {}).items():
            faults[name] = faults.get(name, 0) + count
        timing = s.get("timing", {})
        retried += int(timing.get("retried_frames", 0))
        reconnects += int(timing.get("reconnects", 0))
    starts = [int(s["start"]) for s in sessions]
    return {
        "status": run["status"], "done": run["done"], "total": run["total"],
        "images_lost": int(run["total"] - run["done"]),
        "predictions_differing": int((predictions != reference[: len(predictions)]).sum()),
        "identical_to_fault_free": bool(len(predictions) == len(reference) and (predictions == reference).all()),
        "sessions": len(sessions), "session_starts": starts,
        "sessions_ended": sum(1 for s in sessions if "ended" in s),
        "faults_recorded": faults, "retried": retried, "reconnects": reconnects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    data = default_data_dir()
    train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
    out: dict = {"images": args.images, "machine": platform.processor() or platform.machine(),
                 "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        program = _program(train)
        save_program(program, tmp / "prog.h5")
        profile = tmp / "soak.toml"
        profile.write_text(FAULTS.format(seed=args.seed, disconnect=args.images // 2))

        t = time.perf_counter()
        with Bench.open("sim-ideal") as bench:
            reference = run_program(bench, program, test, None, progress=False, limit=args.images).predictions
        out["reference_s"] = time.perf_counter() - t
        print(f"reference: {len(reference)} images in {out['reference_s']:.0f} s", flush=True)

        t = time.perf_counter()
        proc = _cli(tmp / "prog.h5", profile, data, tmp / "faulty.json", args.images)
        _, err = proc.communicate()
        out["faulty"] = {"exit": proc.returncode, "wall_s": time.perf_counter() - t,
                         "report": json.loads((tmp / "faulty.json").read_text()),
                         **_check(tmp / "faulty.h5", reference)}
        out["faulty"]["report"].pop("timing", None)
        print("faulty:", json.dumps({k: v for k, v in out["faulty"].items() if k != "report"}), flush=True)
        if proc.returncode:
            print(err, file=sys.stderr)

        killed, exits = [], []
        for kill in [*range(args.kills), None]:
            proc = _cli(tmp / "prog.h5", profile, data, tmp / "killed.json", args.images)
            if kill is not None:
                before = _done(tmp / "killed.h5")
                while proc.poll() is None and _done(tmp / "killed.h5") <= before:  # this session is measuring
                    time.sleep(0.2)
                try:
                    proc.wait(timeout=float(rng.uniform(0.0, 20.0)))  # then a random moment of it
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    killed.append(_done(tmp / "killed.h5"))
            proc.communicate()
            exits.append(proc.returncode)
        out["killed"] = {"done_when_killed": killed, "exits": exits, **_check(tmp / "killed.h5", reference)}
        print("killed and resumed:", json.dumps(out["killed"]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

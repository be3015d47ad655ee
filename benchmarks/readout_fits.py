"""Readout corrections compared on the same bench tiles (paired): which fit helps the back end most.

    python benchmarks/readout_fits.py --checkpoint runs/demo/experiment/jobs/<kd>/best.pt \
        --profile sim --calibration cal.h5 --images 2000 --work runs/readout-fits/sim --json out.json

compiles the student through the calibration *without* a readout correction,
measures once on the bench the tiles of the first 1,024 training images (the
probes a correction is fitted on; the compiler takes the first 256) and of the
first `--images` test images (a tracked run, re-registered every 500 images), and
the calibrated twin's tiles of the same probes. Every correction (twin- or
bench-fitted; K = 1 or 3; per tile or mixing the tiles; 256 or 1,024 probes) is
then fitted and applied to the *same* test tiles and scored by the student's
back end, so the differences between rows are not a compile's or a noise
draw's. The bench's tiles are kept in `--work` (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, load_program, run_program, save_program
from labrig.deploy.backend import build_backend
from labrig.deploy.correction import apply_correction, fit_correction
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.deploy.readout import TileReader
from labrig.deploy.refine import RefineConfig
from labrig.deploy.track import DriftConfig
from labrig.deploy.twin import ProgramTwin
from labrig.distill import load_model
from labrig.paths import default_data_dir

PROBES = 1024


def _signal(program, frames_or_tiles: np.ndarray, cut: bool) -> np.ndarray:
    reader = TileReader(program)
    return reader.signal(reader.cut(frames_or_tiles) if cut else frames_or_tiles, np.float64)


def measure(a: argparse.Namespace) -> None:
    """Compile without a correction and keep the tiles every fit needs (`tiles.npz`)."""
    student, _ = load_model(a.checkpoint, kind="student")
    data = a.data or default_data_dir()
    train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
    images = train.subset(range(min(2000, len(train))))  # as `labrig demo` compiles
    ideal = compile_program(student, a.profile, images, classes=tuple(train.classes))
    plain = compile_program(student, a.profile, images, classes=tuple(train.classes), calibration=a.calibration,
                            refine=RefineConfig(readout_kernel=0))
    a.work.mkdir(parents=True, exist_ok=True)
    save_program(plain, a.work / "program.h5")
    probes = train.subset(range(PROBES))
    gray = encode_images(ideal.input, ImageSource(probes, ideal.input.image_shape).batch(0, PROBES))
    target = _signal(ideal, ProgramTwin(ideal).frames(gray), cut=True)
    twin = _signal(plain, ProgramTwin(plain).frames(gray), cut=True)
    with Bench.open(a.profile) as bench:
        fit = run_program(bench, plain, probes, None, progress=False, calibration=a.calibration, save_tiles=True,
                          drift=DriftConfig())
        run = run_program(bench, plain, test, None, limit=a.images, progress=False, calibration=a.calibration,
                          save_tiles=True, drift=DriftConfig(every=500))
    np.savez(a.work / "tiles.npz", target=target, twin=twin, bench=_signal(plain, fit.tiles, cut=False),
             test=_signal(plain, run.tiles, cut=False), labels=np.asarray(test.labels[: a.images]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--profile", default="sim")
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--work", required=True, type=Path, help="where the measured tiles are kept")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if not (a.work / "tiles.npz").exists():
        measure(a)
    z = np.load(a.work / "tiles.npz")
    backend = build_backend(load_program(a.work / "program.h5").backend)

    def accuracy(tiles: np.ndarray) -> float:
        with torch.no_grad():
            predicted = backend(torch.from_numpy(tiles.astype(np.float32))).argmax(1).numpy()
        return float((predicted == z["labels"]).mean())

    rows = [{"fit": "none", "accuracy": accuracy(z["test"])}]
    for source in ("twin", "bench"):
        for probes in (256, PROBES):
            for kernel in (1, 3):
                for mix in (False, True):
                    c = fit_correction(z[source][:probes], z["target"][:probes], kernel, mix=mix)
                    with torch.no_grad():
                        corrected = apply_correction(torch.from_numpy(z["test"]), c).numpy()
                    rows.append({"fit": source, "probes": probes, "kernel": kernel, "mix": mix,
                                 "accuracy": accuracy(corrected)})
                    print(json.dumps(rows[-1]), flush=True)
    out = {"profile": a.profile, "calibration": a.calibration, "checkpoint": str(a.checkpoint), "images": a.images,
           "rows": rows}
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1))
    print(f"none: {rows[0]['accuracy']:.4f}")


if __name__ == "__main__":
    main()

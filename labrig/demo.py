"""The main job on the simulated bench (the README's first command), end to end.

1. The quick classification experiment on real Fashion-MNIST: a teacher, the
   SCLC student without and with KD, and the KD student through the `sim`
   optics (`labrig.experiments.classification`, quick preset).
2. The KD student compiled into a bench program (filter-SLM gray levels, tile
   layout, camera ROIs, exposure, back end) and its picture.
3. The program run on `sim-ideal` (truth off: the bench must equal the twin)
   and on `sim` (truth on, uncalibrated: the gap calibration must close),
   each into a resumable HDF5 run file, with the twin alongside.

Everything lands in one folder: the experiment report, the program and its
picture, one run file and report per bench, and ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_checkpoint, run_and_report, save_program, save_program_png
from labrig.experiments.classification import ClassificationConfig, run_classification
from labrig.experiments.jobs import write_json
from labrig.paths import default_data_dir

DEMO_PROFILES = ("sim-ideal", "sim")
COMPILE_FOR = "sim"
"""The program is compiled for the nominal `sim` geometry, which `sim-ideal` shares."""


def run_demo(
    out_dir: Path,
    data_dir: Path | None = None,
    n_images: int = 1000,
    *,
    progress: bool = True,
    config: ClassificationConfig | None = None,
    profiles: tuple[str, ...] = DEMO_PROFILES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the chain; writes everything into `out_dir` and returns the summary."""
    started = time.perf_counter()
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    out_dir = Path(out_dir)
    config = config or ClassificationConfig.quick()
    log("1/3 training (quick): teacher, no-KD and KD students, KD through the sim optics")
    report = run_classification(data_dir, out_dir / "experiment", config, device="auto", progress=progress, log=log)
    if report is None:
        raise KeyboardInterrupt
    checkpoint = Path(report["kd"]["checkpoint"])
    train = load_dataset(data_dir, split="train", size=config.input_size)
    log(f"2/3 compiling the KD student for the {COMPILE_FOR} bench")
    program = compile_checkpoint(checkpoint, COMPILE_FOR, train)
    save_program(program, out_dir / "program.h5")
    save_program_png(program, out_dir / "program.png")
    test = load_dataset(data_dir, split="test", size=config.input_size)
    runs = []
    for profile in profiles:
        log(f"3/3 running {n_images} test images on {profile}")
        with Bench.open(profile) as bench:
            outcome = run_and_report(bench, program, test, out_dir / f"run-{profile}.h5", limit=n_images,
                                     twin=True, bar=progress, resume=False, report=out_dir / f"run-{profile}.json")
        outcome.raise_failure()
        result = outcome.result
        runs.append({"profile": profile, **{k: v for k, v in result.to_report().items()
                                            if not hasattr(v, "shape")}})
    summary = {
        "data": str(data_dir),
        "experiment": {key: report[key]["accuracy"] for key in ("teacher", "linear", "kd", "kd_optical")},
        "program": {"path": str(out_dir / "program.h5"), "frames": program.frames,
                    "multiplexing": program.multiplexing.reason},
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _pct(value: float | None) -> str:
    return "    -" if value is None else f"{100 * value:6.2f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The results table printed at the end of the demo."""
    exp = summary["experiment"]
    lines = ["trained (quick; test accuracy %):",
             f"  teacher {_pct(exp['teacher'])}   SCLC no KD {_pct(exp['linear'])}   SCLC KD {_pct(exp['kd'])}   "
             f"KD through sim optics (twin) {_pct(exp['kd_optical'])}",
             f"compiled: {summary['program']['frames']} frame(s) per image; {summary['program']['multiplexing']}",
             "",
             f"{'bench':<10} {'images':>6} {'bench %':>8} {'twin %':>7} {'drop':>7} {'tiles vs twin':>13} {'frames/s':>9}"]
    for r in summary["runs"]:
        drop = (r["twin_accuracy"] - r["accuracy"]) if r["accuracy"] is not None and r["twin_accuracy"] is not None \
            else None
        lines.append(f"{r['profile']:<10} {r['images']:>6} {_pct(r['accuracy']):>8} {_pct(r['twin_accuracy']):>7} "
                     f"{_pct(drop):>7} {r['twin_tile_rel_error']:>13.2e} {r['frames_per_s']:>9.0f}")
    lines.append(f"\nwall time {summary['wall_seconds']:.0f} s")
    return "\n".join(lines)

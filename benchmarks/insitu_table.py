"""The in-situ table of docs/insitu.md, regenerated with one command.

    python benchmarks/insitu_table.py --checkpoint STUDENT.pt [--calibration cal.h5 | --known-imperfections]
        [--seeds 0 1 2] [--frames 30000] [--batch 16] [--test-images 10000] [--out docs/results/insitu]

Parts of it can run in parallel processes, each with its own `--out` (e.g. one for
`--arms fab`, one per seed of `--arms dec` with `--program DIR/calibrated-program.h5`
from the first), then `--merge DIR ...` writes the combined table and plot.

Arms, each measured on the `sim` bench (unmodelled effects on) over the first
`--test-images` of the test split (bench accuracy):

(a) the student compiled for the nominal bench, no calibration;
(b) compiled through the calibrated twin (calibration only);
(c) (b) + back end fine-tuned on measured tiles (``--mode backend``);
(d) (b) + masks and back end, physics-aware (``--mode pat``);
(e) (b) + masks and back end retrained through the calibrated twin only (``--mode twin``);
(f) the ideal twin: (a) on `sim-ideal` (the bench equals the twin).

(c)-(e) run once per seed with the same frame budget; their accuracy on
`--eval-images` test images is logged every `--eval-every` steps (the plot of
accuracy against bench frames). The bench follows the simulator's drift:
fine-tunes re-register their frames every `--reregister-every` steps, and the
test runs of the calibrated arms (b)-(e) every 500 images (`labrig run
--reregister-every 500`); (a) is run as it is (no calibration, no registration). `--known-imperfections` stands in for a real
calibration until one exists: the twin gets the simulator's *modelled* truth,
i.e. a perfect calibration (this script reads the truth for that, which labrig
itself never does); the unmodelled effects stay unknown, as on glass.
`--bench-readout`: (b)-(e) start from a program whose per-tile readout
correction was fitted on the bench's frames of 256 training images
(`labrig compile --bench-readout`); those frames come out of (c)/(d)'s budgets,
and are the only bench frames (e) then depends on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, load_program, run_program, save_program
from labrig.deploy.refine import RefineConfig
from labrig.deploy.track import DriftConfig
from labrig.distill import load_model
from labrig.hil import FineTuneConfig, FineTuner
from labrig.hil.api import calibrated_twin
from labrig.paths import default_data_dir

ARMS = {"d": "pat", "e": "twin", "c": "backend"}  # the comparison that matters first


def _accuracy(program: Any, profile: str, test: Any, n: int, calibration: Any = None,
              drift: DriftConfig | None = None) -> float:
    """Bench accuracy; `calibration` is the one the program was compiled for (run checks it)."""
    with Bench.open(profile) as bench:
        return float(run_program(bench, program, test, limit=n, progress=False, calibration=calibration,
                                 allow_stale=True, drift=drift).accuracy)


def _calibration(args: argparse.Namespace) -> Any:
    if args.calibration is not None:
        return str(args.calibration)
    with Bench.open(args.profile) as bench:  # the modelled truth at time 0: a perfect calibration
        return bench.shared["sim.world"].truth.imperfections


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--profile", default="sim")
    p.add_argument("--calibration", type=Path, default=None)
    p.add_argument("--known-imperfections", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--frames", type=int, default=30_000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr-mask", type=float, default=0.005)
    p.add_argument("--lr-backend", type=float, default=2e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--train-images", type=int, default=None)
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--eval-images", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--reregister-every", type=int, default=10, help="fine-tune steps between re-registrations")
    p.add_argument("--run-reregister-every", type=int, default=500, help="test-run images between re-registrations")
    p.add_argument("--pretrain-steps", type=int, default=0,
                   help="(d): steps through the calibrated (residual-corrected) twin before the bench steps; "
                        "(e) gets as many more twin steps")
    p.add_argument("--residual-images", type=int, default=0,
                   help="(d): training images measured first to fit the twin's learned residual (budgeted)")
    p.add_argument("--residual-refit-every", type=int, default=0, help="(d): steps between refits of the residual")
    p.add_argument("--bench-readout", action="store_true",
                   help="compile with the readout correction fitted on bench frames (taken from the (c)/(d) budgets)")
    p.add_argument("--arms", default="abcdef")
    p.add_argument("--program", type=Path, default=None, help="the calibrated program, compiled already")
    p.add_argument("--out", type=Path, default=Path("docs/results/insitu"))
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="merge these --out folders into --out")
    args = p.parse_args()
    if args.merge:
        _merge(args.merge, args.out)
        return
    if args.calibration is None and not args.known_imperfections:
        p.error("give --calibration cal.h5 or --known-imperfections")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or default_data_dir()
    train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
    student, _ = load_model(args.checkpoint, kind="student")
    student.eval()
    t0 = time.perf_counter()
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "settings": {k: str(v) for k, v in vars(args).items()},
                              "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads()},
                              "arms": {}, "curves": {}}
    out_json = args.out / "insitu.json"
    if out_json.exists():  # arms already measured with these settings are kept (rerun others with --arms)
        report["arms"] = json.loads(out_json.read_text()).get("arms", {})
        report["curves"] = json.loads(out_json.read_text()).get("curves", {})

    def save() -> None:
        report["wall_s"] = time.perf_counter() - t0
        out_json.write_text(json.dumps(report, indent=1, default=str))

    calib_images = train.subset(range(2000)) if hasattr(train, "subset") else train
    tracking = DriftConfig(every=args.run_reregister_every) if args.run_reregister_every else None
    programs = args.out / "programs"
    programs.mkdir(exist_ok=True)
    if "f" in args.arms or "a" in args.arms:
        nominal = compile_program(student, args.profile, calib_images, classes=tuple(train.classes))
    if "f" in args.arms:
        t = time.perf_counter()
        report["arms"]["f"] = {"accuracy": _accuracy(nominal, "sim-ideal", test, args.test_images),
                               "test_wall_s": time.perf_counter() - t, "load": os.getloadavg()}
        save()
    if "a" in args.arms:
        t = time.perf_counter()
        report["arms"]["a"] = {"accuracy": _accuracy(nominal, args.profile, test, args.test_images),
                               "test_wall_s": time.perf_counter() - t, "load": os.getloadavg()}
        save()
    calibration = _calibration(args)
    compiled = args.program or args.out / "calibrated-program.h5"
    if compiled.exists():
        calibrated = load_program(compiled)
    else:
        t = time.perf_counter()
        with Bench.open(args.profile) if args.bench_readout else contextlib.nullcontext() as bench:
            calibrated = compile_program(student, args.profile, calib_images, classes=tuple(train.classes),
                                         calibration=calibration, allow_stale=True, bench=bench,
                                         refine=RefineConfig(bench_readout=args.bench_readout))
        report["compile_calibrated_s"] = time.perf_counter() - t
        save_program(calibrated, compiled)
    correction = calibrated.source.get("calibration", {}).get("readout_correction") or {}
    compile_frames = int(correction.get("frames", 0))
    report["compile_bench_frames"] = compile_frames
    if "b" in args.arms:
        t = time.perf_counter()
        report["arms"]["b"] = {"accuracy": _accuracy(calibrated, args.profile, test, args.test_images, calibration,
                                                     tracking),
                               "test_wall_s": time.perf_counter() - t, "load": os.getloadavg()}
        save()
    for arm, mode in ARMS.items():
        if arm not in args.arms:
            continue
        runs = []
        for seed in args.seeds:
            cfg = FineTuneConfig(mode=mode, steps=10**9, batch=args.batch, frames=args.frames - compile_frames, seed=seed,
                                 lr_mask=args.lr_mask, lr_backend=args.lr_backend,
                                 lr_schedule=args.lr_schedule, eval_every=args.eval_every,
                                 checkpoint_every=0, reregister_every=args.reregister_every)
            if mode == "pat":
                cfg = dataclasses.replace(cfg, pretrain_steps=args.pretrain_steps, residual_images=args.residual_images,
                                          residual_refit_every=args.residual_refit_every)
            if mode == "twin":  # the same number of steps the bench arm can afford, and its pre-training
                cfg = dataclasses.replace(cfg, steps=args.pretrain_steps + args.frames // (args.batch * calibrated.frames),
                                          frames=None)
            t = time.perf_counter()
            with Bench.open(args.profile) as bench:
                twin, info = calibrated_twin(calibrated, calibration, bench=bench, ignore_stale=True)
                tuner = FineTuner(calibrated, twin, train, bench=bench, eval_data=test, config=cfg,
                                  train_limit=args.train_images, eval_limit=args.eval_images, calibration=info)
                result = tuner.run(progress=_log_progress(f"{arm}/seed{seed}"))
            wall = time.perf_counter() - t
            save_program(result.program, programs / f"{arm}-seed{seed}.h5")
            t = time.perf_counter()
            acc = _accuracy(result.program, args.profile, test, args.test_images, calibration, tracking)
            test_wall = time.perf_counter() - t
            runs.append({"seed": seed, "accuracy": acc, "status": result.status, "steps": result.steps,
                         "frames": result.frames, "eval_frames": result.eval_frames, "wall_s": wall,
                         "test_wall_s": test_wall, "load": os.getloadavg(),
                         "device_s": result.timing.get("device_s"), "events": result.events,
                         "residual_fit": result.program.source.get("finetune", {}).get("residual_fit")})
            report["curves"][f"{arm}/seed{seed}"] = result.evals
            accs = [r["accuracy"] for r in runs]
            report["arms"][arm] = {"mode": mode, "runs": runs, "accuracy": statistics.mean(accs),
                                   "std": statistics.stdev(accs) if len(accs) > 1 else None}
            save()
    save()
    _plot(report, args.out / "insitu.png")
    print(_table(report))


def _log_progress(name: str, every: int = 10) -> Any:
    """A fine-tune's progress as a log line every `every` steps (for long runs in the background)."""
    t0 = time.perf_counter()

    def progress(step: int, total: int, info: dict[str, Any]) -> None:
        if step % every == 0:
            acc = info.get("bench_accuracy", info.get("twin_accuracy"))
            print(f"{name}: step {step}, {info.get('frames')} frames, loss {info.get('loss', float('nan')):.3f}, "
                  f"last eval {acc}, {time.perf_counter() - t0:.0f} s", flush=True)

    return progress


def _merge(folders: list[Path], out: Path) -> None:
    """One report from several partial ones: arms' runs pooled by seed, curves joined."""
    out.mkdir(parents=True, exist_ok=True)
    merged: dict[str, Any] = {"parts": [str(f) for f in folders], "arms": {}, "curves": {}, "wall_s": {}}
    for folder in folders:
        part = json.loads((folder / "insitu.json").read_text())
        merged.setdefault("settings", part["settings"])
        merged.setdefault("checkpoint", part["checkpoint"])
        merged["wall_s"][str(folder)] = part.get("wall_s")
        merged["curves"].update(part["curves"])
        for arm, row in part["arms"].items():
            if "runs" not in row:
                merged["arms"][arm] = row
                continue
            runs = merged["arms"].setdefault(arm, {"mode": row["mode"], "runs": []})["runs"]
            runs.extend(r for r in row["runs"] if r["seed"] not in {q["seed"] for q in runs})
    for row in merged["arms"].values():
        if "runs" in row:
            row["runs"].sort(key=lambda r: r["seed"])
            accs = [r["accuracy"] for r in row["runs"]]
            row["accuracy"] = statistics.mean(accs)
            row["std"] = statistics.stdev(accs) if len(accs) > 1 else None
    (out / "insitu.json").write_text(json.dumps(merged, indent=1, default=str))
    _plot(merged, out / "insitu.png")
    print(_table(merged))


def _table(report: dict[str, Any]) -> str:
    names = {"a": "no calibration", "b": "calibration only", "c": "calibration + back end (bench frames)",
             "d": "calibration + physics-aware masks and back end", "e": "retrained through the calibrated twin only",
             "f": "ideal twin (sim-ideal)"}
    lines = ["| arm | | bench accuracy | bench frames (training) |", "|---|---|---|---|"]
    for arm in "abcdef":
        row = report["arms"].get(arm)
        if row is None:
            lines.append(f"| ({arm}) | {names[arm]} | not run | |")
            continue
        std = row.get("std")
        acc = f"{100 * row['accuracy']:.2f} %" + (f" ± {100 * std:.2f}" if std is not None else "")
        n = len(row.get("runs", [])) or 1
        frames = ", ".join(str(r["frames"]) for r in row.get("runs", [])) or "-"
        lines.append(f"| ({arm}) | {names[arm]} | {acc} ({n} seed{'s' if n > 1 else ''}) | {frames} |")
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = {"c": "tab:blue", "d": "tab:red", "e": "tab:green"}
    labels = {"c": "(c) back end", "d": "(d) physics-aware", "e": "(e) twin only (0 bench frames)"}
    for key, evals in report["curves"].items():
        arm = key.split("/")[0]
        if arm == "e":
            steps = [e["step"] for e in evals]
            per_step = report["arms"]["e"]["runs"][0]["steps"] or 1
            budget = int(report["settings"]["frames"])
            x = [s * budget / per_step for s in steps]  # drawn against the frames a bench arm spends per step
            y = [100 * e["bench_accuracy"] for e in evals if "bench_accuracy" in e]
        else:
            x = [e["frames"] for e in evals]
            y = [100 * e["bench_accuracy"] for e in evals]
        ax.plot(x[: len(y)], y, "o-", color=colours[arm], label=labels[arm] if key.endswith("seed0") else None)
    for arm, style in (("b", ":"), ("f", "--")):
        if arm in report["arms"]:
            ax.axhline(100 * report["arms"][arm]["accuracy"], ls=style, color="gray",
                       label={"b": "(b) calibration only", "f": "(f) ideal twin"}[arm])
    ax.set_xlabel("bench frames used for training (twin arm: same steps)")
    ax.set_ylabel("bench accuracy (%) on the evaluation images")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

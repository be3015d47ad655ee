"""How well calibration recovers the bench: truth / estimate / error per parameter, frames, time.

    python benchmarks/calibration_accuracy.py [--seeds 1 2 3 4 5] [--routines all] [--out docs/results/calibration-accuracy]

Runs `calibration.session.calibrate` (what ``labrig calibrate all`` runs) on
the embedded `sim` bench and on benches whose modelled truth is drawn at
random (`sim_backend.draw.draw_truth`, seeded) from realistic ranges of every
parameter, each with `sim`'s devices, noise and unmodelled effects. The
calibration sees only the device protocols; this script then reads the
simulator's truth to score it against the issue's tolerances. Writes
``<out>.md`` (tables) and ``<out>.json`` (everything) and prints the tables.
A parameter no routine estimated is listed as such and counts as a miss.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calibration.session import ROUTINES, calibrate, plan
from labrig.bench import Bench
from labrig.optics.aberrations import ZERNIKE_NAMES
from labrig.optics.imperfections import TABLE
from sim_backend.draw import draw_truth, write_profile

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tolerance:
    """How one parameter is scored: the error's unit and limit, and how a value is shown."""

    limit: float | None  # None: reported, no target
    unit: str
    error: Callable[[np.ndarray, np.ndarray], np.ndarray]  # per component
    show: Callable[[float], float] = float  # twin units -> shown units
    labels: tuple[str, ...] = ()


def _abs(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.abs(est - truth)


def _rel_pct(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return 100 * np.abs(est - truth) / np.abs(truth)


def _lut_rms(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMS phase error over the gray levels, the global phase (unobservable) removed."""
    d = np.angle(np.exp(1j * (est - truth)))
    d = np.angle(np.exp(1j * (d - np.angle(np.mean(np.exp(1j * d))))))
    return np.array([float(np.sqrt(np.mean(d**2)))])


def _hot(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Hot pixels missed plus hot pixels invented."""
    e, t = np.asarray(est) > 0, np.asarray(truth) > 0
    return np.array([float(np.sum(e != t))])


TOLERANCES: dict[str, Tolerance] = {
    "input_shift_px": Tolerance(0.1, "px", _abs, labels=("y", "x")),
    "input_rotation_rad": Tolerance(0.05, "deg", lambda e, t: np.degrees(_abs(e, t)), math.degrees),
    "filter_shift_px": Tolerance(0.1, "px", _abs, labels=("y", "x")),
    "camera_shift_px": Tolerance(0.1, "px", _abs, labels=("y", "x")),
    "camera_rotation_rad": Tolerance(0.05, "deg", lambda e, t: np.degrees(_abs(e, t)), math.degrees),
    "camera_scale": Tolerance(0.1, "%", _rel_pct),
    "zernike_rad": Tolerance(0.05, "rad", _abs, labels=ZERNIKE_NAMES),
    "slm_crosstalk_px": Tolerance(0.05, "px", _abs),
    "illumination_waist_m": Tolerance(5.0, "%", _rel_pct, lambda v: v * 1e3),
    "illumination_center_m": Tolerance(20.0, "um", lambda e, t: 1e6 * _abs(e, t), lambda v: v * 1e3, ("y", "x")),
    "input_contrast": Tolerance(None, "%", _rel_pct),
    "camera_gain": Tolerance(1.0, "%", _rel_pct),
    "camera_offset_dn": Tolerance(1.0, "DN", _abs),
    "slm_lut": Tolerance(0.05, "rad RMS", _lut_rms),
    "hot_pixels_e_per_s": Tolerance(None, "pixels wrong", _hot),
}
#: units the truth and estimate columns are shown in (the twin's, unless converted by `show`)
SHOWN_UNITS = {"input_rotation_rad": "deg", "camera_rotation_rad": "deg", "illumination_waist_m": "mm",
               "illumination_center_m": "mm"}


def _array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def score(estimates: dict[str, Any], truth: Any) -> list[dict[str, Any]]:
    """One row per scored component: parameter, truth, estimate, error, limit, ok."""
    missing = [e.name for e in TABLE if e.name not in TOLERANCES]
    if missing:  # the table grew: score the new imperfection here too
        raise AssertionError(f"no tolerance for imperfection(s) {missing}")
    rows: list[dict[str, Any]] = []
    for entry in TABLE:
        tol = TOLERANCES[entry.name]
        t = _array(getattr(truth, entry.name))
        if t is None:
            t = np.zeros(tuple(truth.camera_gain.shape)) if entry.name != "hot_pixels_e_per_s" else None
        est = _array(estimates.get(entry.name)) if entry.name in estimates else None
        if entry.name == "hot_pixels_e_per_s":
            t_map = t if t is not None else np.zeros(0)
            e_map = est if est is not None else np.zeros_like(t_map)
            if entry.name in estimates and t_map.size and e_map.shape == t_map.shape:
                rows.append(_row(entry.name, "", f"{int(np.sum(t_map > 0))} hot", f"{int(np.sum(e_map > 0))} found",
                                 float(_hot(e_map, t_map)[0]), tol))
            else:
                rows.append(_row(entry.name, "", f"{int(np.sum(t_map > 0))} hot", None, None, tol))
            continue
        if entry.name == "slm_lut":
            err = None if est is None or est.shape != t.shape else float(_lut_rms(est, t)[0])
            rows.append(_row(entry.name, "", f"{t.min():.3g}..{t.max():.3g}",
                             None if est is None else f"{est.min():.3g}..{est.max():.3g}", err, tol))
            continue
        t_flat = np.atleast_1d(t).ravel()
        e_flat = None if est is None else np.atleast_1d(est).ravel()
        if entry.name in ("illumination_waist_m", "input_contrast") and not np.all(np.isfinite(t_flat)):
            continue  # this bench has none (flat beam / perfect black): nothing to score
        errors = None if e_flat is None or e_flat.shape != t_flat.shape else tol.error(e_flat, t_flat)
        for i, tv in enumerate(t_flat):
            label = tol.labels[i] if i < len(tol.labels) else (str(i) if len(t_flat) > 1 else "")
            rows.append(_row(entry.name, label, tol.show(float(tv)),
                             None if e_flat is None else tol.show(float(e_flat[i])),
                             None if errors is None else float(errors[i]), tol))
    return rows


def _row(name: str, part: str, truth: Any, est: Any, error: float | None, tol: Tolerance) -> dict[str, Any]:
    ok = None if tol.limit is None else (error is not None and math.isfinite(error) and error <= tol.limit)
    return {"parameter": name + (f"[{part}]" if part else ""), "truth": truth, "estimate": est, "error": error,
            "unit": tol.unit, "limit": tol.limit, "ok": ok}


def _fmt(v: Any) -> str:
    if v is None:
        return "not estimated"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def case_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| parameter | truth | estimate | error | limit | |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "" if r["ok"] is None else ("ok" if r["ok"] else "**MISS**")
        unit = SHOWN_UNITS.get(r["parameter"].split("[")[0], "")
        name = r["parameter"] + (f" ({unit})" if unit else "")
        error = "-" if r["error"] is None else f"{r['error']:.3g} {r['unit']}"
        limit = "-" if r["limit"] is None else f"{r['limit']:g}"
        lines.append(f"| {name} | {_fmt(r['truth'])} | {_fmt(r['estimate'])} | {error} | {limit} | {verdict} |")
    return "\n".join(lines)


def run_case(label: str, profile: str | Path, routines: list[str], workdir: Path) -> dict[str, Any]:
    """Calibrate one bench routine by routine (what `calibrate(bench, "all")` runs, in its order), so a
    failing routine is reported and the others, unless they depend on it, still run and are scored."""
    out = workdir / f"{label}.h5"
    cal = None
    errors: dict[str, str] = {}
    with Bench.open(profile) as bench:
        started, cpu_started = time.perf_counter(), time.process_time()
        for name in plan(routines):
            blocked = [dep for dep in ROUTINES[name].after if dep in errors]
            if blocked:
                errors[name] = f"skipped: needs {', '.join(blocked)}"
                continue
            try:
                cal = calibrate(bench, [name], out=out, previous=cal)
            except Exception as exc:  # one bad routine must not hide the others: report it
                errors[name] = f"{type(exc).__name__}: {exc}"
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        truth = bench.shared["sim.world"].truth.imperfections
        rows = score(cal.values() if cal is not None else {}, truth)
    per_routine = {} if cal is None else {
        n: {"frames": r.result.frames, "seconds": round(r.duration_s, 2), "residual": r.result.residual,
            "residual_unit": r.result.residual_unit} for n, r in cal.routines.items()}
    return {"case": label, "profile": str(profile), "seconds": seconds, "cpu_s": cpu_s, "errors": errors,
            "frames": 0 if cal is None else cal.frames, "routines": per_routine, "rows": rows}


def report(cases: list[dict[str, Any]], header: str) -> str:
    parts = [header, ""]
    names = [e.name for e in TABLE]
    parts += ["## Summary: misses per parameter", "",
              "| case | frames | wall (s) | CPU (s) | " + " | ".join(names) + " |",
              "|---|---|---|---|" + "---|" * len(names)]
    for c in cases:
        cells = []
        for n in names:
            rows = [r for r in c["rows"] if r["parameter"].split("[")[0] == n]
            if not rows:
                cells.append("n/a")
            elif all(r["ok"] is None for r in rows):
                cells.append("-" if rows[0]["estimate"] is not None else "not est.")
            elif any(r["estimate"] is None for r in rows):
                cells.append("not est.")
            else:
                miss = sum(1 for r in rows if r["ok"] is False)
                cells.append("ok" if miss == 0 else f"**{miss} miss**")
        parts.append(f"| {c['case']} | {c['frames']} | {c['seconds']:.0f} | {c['cpu_s']:.0f} | "
                     + " | ".join(cells) + " |")
    for c in cases:
        parts += ["", f"## {c['case']}", ""]
        for name, error in c["errors"].items():
            parts += [f"- routine `{name}` failed: {' '.join(error.split())}"]
        if c["errors"]:
            parts.append("")
        parts.append(f"{c['frames']} frames, {c['seconds']:.1f} s wall, {c['cpu_s']:.1f} s CPU. Routines: " + ", ".join(
            f"{n} ({r['frames']} frames, {r['seconds']} s, residual {r['residual']:.3g} {r['residual_unit']})"
            for n, r in c["routines"].items()))
        parts += ["", case_table(c["rows"])]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5],
                        help="drawn truths (sim_backend.draw seeds); none: only sim")
    parser.add_argument("--routines", nargs="*", default=["all"])
    parser.add_argument("--no-sim", action="store_true", help="skip the embedded sim bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "calibration-accuracy",
                        help="output stem: writes <out>.md and <out>.json")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, metavar="JSON",
                        help="no calibration: one report from earlier runs' JSON files (cases run in parallel)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cases = []
    if args.merge:
        for path in args.merge:
            cases += json.loads(path.read_text(encoding="utf-8"))["cases"]
        seeds = [c["case"][4:] for c in cases if c["case"].startswith("draw")]
        header = (f"# Calibration accuracy\n\n`python benchmarks/calibration_accuracy.py` on sim and drawn truths "
                  f"{', '.join(seeds)} ({len(args.merge)} runs merged with `--merge`); routines: {', '.join(ROUTINES)}.")
        return _write(cases, header, args.out)
    with tempfile.TemporaryDirectory(prefix="labrig-calacc-") as tmp:
        work = Path(tmp)
        plan = [] if args.no_sim else [("sim", "sim")]
        for seed in args.seeds:
            path = write_profile(work / f"draw{seed}.toml", draw_truth(seed), base="sim", name=f"sim-draw{seed}")
            plan.append((f"draw{seed}", path))
        for label, profile in plan:
            print(f"calibrating {label} ...", file=sys.stderr, flush=True)
            case = run_case(label, profile, args.routines, work)
            cases.append(case)
            partial = args.out.with_suffix(".partial.json")  # each case kept as soon as it is done
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"routines": list(ROUTINES), "cases": cases}, indent=1, default=str),
                               encoding="utf-8")
            print(f"  {label}: {case['frames']} frames, {case['seconds']:.1f} s"
                  + "".join(f"; {n} FAILED: {e}" for n, e in case["errors"].items()), file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"# Calibration accuracy\n\n`python benchmarks/calibration_accuracy.py "
              f"--seeds {' '.join(map(str, args.seeds))}` on {platform.machine()} ({os.cpu_count()} cores, load "
              f"average {load:.1f} at the end: wall times include waiting for the CPU), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; routines: {', '.join(ROUTINES)}.")
    return _write(cases, header, args.out)


def _write(cases: list[dict[str, Any]], header: str, out: Path) -> int:
    text = report(cases, header)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(
        {"routines": list(ROUTINES), "cases": cases}, indent=1, default=str), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

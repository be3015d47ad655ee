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
#: combinations of the parameters that the frames determine (`identifiable_rows`)
DERIVED = ("image_translation_px", "beam_on_modulator_um", "zernike_identifiable_rad")
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


def unmodelled_pupil_projection(world: Any) -> tuple[np.ndarray, np.ndarray]:
    """What of the simulator's unmodelled pupil phase (SLM flatness error, trefoil, secondary
    astigmatism) looks exactly like the twin's own terms: its least-squares projection over the
    Fourier grid onto piston, tilt and the named Zernike terms. Returns (the named terms' share,
    rad; the tilt as an image shift, output samples (rows, cols)). No frame can tell these apart
    from the named terms and the camera's shift; a benchmark may read them, calibration never."""
    from labrig.optics.aberrations import pupil_coordinates, zernike_basis

    geo = world.geometry
    factor = world.unmodelled.filter_factor(geo, torch.float64)
    if factor is None:
        return np.zeros(len(ZERNIKE_NAMES)), np.zeros(2)
    phase = torch.angle(factor)
    rho, theta = pupil_coordinates(geo.fourier_grid)
    n = phase.shape[-1]
    rows, cols = (torch.arange(s, dtype=torch.float64) - s // 2 for s in phase.shape)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    design = torch.cat([torch.ones(1, *phase.shape, dtype=torch.float64), yy[None], xx[None],
                        zernike_basis(rho, theta)]).reshape(3 + len(ZERNIKE_NAMES), -1).T
    coef = torch.linalg.lstsq(design, phase.reshape(-1, 1)).solution[:, 0].numpy()
    # a phase slope g rad per SLM px moves the image by g N / (2 pi) output samples (a grating's k)
    return coef[3:], coef[1:3] * n / (2 * math.pi)


def identifiable_rows(estimates: dict[str, Any], truth: Any, world: Any) -> list[dict[str, Any]]:
    """The combinations the frames determine, against the truth (issue 14's tolerances).

    A 4f bench is shift-invariant: moving the input modulator by d px moves its image by M d
    camera px, exactly as a camera shift of -M d does, and moves it across the beam as a beam
    shift of -d p does; only the image's translation on the camera (camera shift + M input shift)
    and the beam's place on the modulator (beam centre - input shift x pitch) reach the frames.
    The twin separates the input's share only through how a fractional shift resamples its
    pixels, which the unmodelled pixel aperture changes. The named Zernike terms are scored
    against the truth plus the unmodelled pupil's share in them (`unmodelled_pupil_projection`).
    """
    geo = world.geometry
    m_true = geo.input.pitch_m * geo.focal2_m / geo.focal1_m / geo.camera.pitch_m
    rows: list[dict[str, Any]] = []
    zern_share, _tilt = unmodelled_pupil_projection(world)

    def get(name: str) -> np.ndarray | None:
        return _array(estimates.get(name)) if name in estimates else None

    t = {n: _array(getattr(truth, n)) for n in ("input_shift_px", "camera_shift_px", "camera_scale",
                                                "illumination_center_m", "illumination_waist_m", "zernike_rad")}
    cam, inp, scale = get("camera_shift_px"), get("input_shift_px"), get("camera_scale")
    tol_px = Tolerance(0.1, "px", _abs, labels=("y", "x"))
    t_img = t["camera_shift_px"] + m_true / float(t["camera_scale"]) * t["input_shift_px"]
    e_img = None if cam is None or inp is None else cam + m_true / float(scale if scale is not None else 1.0) * inp
    for i, lab in enumerate(("y", "x")):
        err = None if e_img is None else float(abs(e_img[i] - t_img[i]))
        rows.append(_row("image_translation_px", lab, float(t_img[i]), None if e_img is None else float(e_img[i]),
                         err, tol_px))
    if np.all(np.isfinite(t["illumination_waist_m"])):
        centre = get("illumination_center_m")
        tol_um = Tolerance(20.0, "um", _abs, labels=("y", "x"))
        t_b = 1e6 * (t["illumination_center_m"] - t["input_shift_px"] * geo.input.pitch_m)
        e_b = None if centre is None or inp is None else 1e6 * (centre - inp * geo.input.pitch_m)
        for i, lab in enumerate(("y", "x")):
            err = None if e_b is None else float(abs(e_b[i] - t_b[i]))
            rows.append(_row("beam_on_modulator_um", lab, float(t_b[i]), None if e_b is None else float(e_b[i]),
                             err, tol_um))
    z = get("zernike_rad")
    t_z = t["zernike_rad"] + zern_share
    tol_z = TOLERANCES["zernike_rad"]
    for i, lab in enumerate(ZERNIKE_NAMES):
        err = None if z is None else float(abs(z[i] - t_z[i]))
        rows.append(_row("zernike_identifiable_rad", lab, float(t_z[i]), None if z is None else float(z[i]), err, tol_z))
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
        world = bench.shared["sim.world"]
        truth = world.truth.imperfections
        estimates = cal.values() if cal is not None else {}
        rows = score(estimates, truth)
        derived = identifiable_rows(estimates, truth, world)
        per_routine = routine_rows(cal, truth) if cal is not None else []
    per_routine_rows = per_routine
    per_routine = {} if cal is None else {
        n: {"frames": r.result.frames, "seconds": round(r.duration_s, 2), "residual": r.result.residual,
            "residual_unit": r.result.residual_unit} for n, r in cal.routines.items()}
    return {"case": label, "profile": str(profile), "seconds": seconds, "cpu_s": cpu_s, "errors": errors,
            "frames": 0 if cal is None else cal.frames, "routines": per_routine, "rows": rows,
            "identifiable": derived, "by_estimating_routine": per_routine_rows,
            "global_fit": {} if cal is None or "global_fit" not in cal.routines else {
                k: v for k, v in cal.routines["global_fit"].result.products.items() if k.startswith("held_error")}}


def routine_rows(cal: Any, truth: Any) -> list[dict[str, Any]]:
    """Each parameter as its own estimating routine (the table's `routine`) left it, before the
    global fit moved it for the held-back tiles' sake."""
    values = {}
    for entry in TABLE:
        if entry.routine in cal.routines and entry.name in cal.routines[entry.routine].result.values:
            values[entry.name] = cal.routines[entry.routine].result.values[entry.name]
    return score(values, truth)


def score_file(label: str, path: Path, profile: str | Path) -> dict[str, Any]:
    """A case from a calibration file that `labrig calibrate all` wrote (its routines' durations as
    the wall time; no CPU time), scored against `profile`'s truth like `run_case`."""
    from calibration.store import load_calibration

    cal = load_calibration(path)
    with Bench.open(profile) as bench:
        world = bench.shared["sim.world"]
        truth = world.truth.imperfections
        estimates = cal.values()
        rows, derived = score(estimates, truth), identifiable_rows(estimates, truth, world)
        by_routine = routine_rows(cal, truth)
    per_routine = {n: {"frames": r.result.frames, "seconds": round(r.duration_s, 2), "residual": r.result.residual,
                       "residual_unit": r.result.residual_unit} for n, r in cal.routines.items()}
    return {"case": label, "profile": str(profile), "file": str(path), "seconds": sum(r.duration_s for r in
            cal.routines.values()), "cpu_s": float("nan"), "errors": {}, "frames": cal.frames,
            "routines": per_routine, "rows": rows, "identifiable": derived, "by_estimating_routine": by_routine,
            "global_fit": {} if "global_fit" not in cal.routines else {
                k: v for k, v in cal.routines["global_fit"].result.products.items() if k.startswith("held_error")}}


def report(cases: list[dict[str, Any]], header: str) -> str:
    parts = [header, ""]
    names = [e.name for e in TABLE] + list(DERIVED)
    parts += ["## Summary: misses per parameter", "",
              "| case | frames | wall (s) | CPU (s) | " + " | ".join(names) + " |",
              "|---|---|---|---|" + "---|" * len(names)]
    def cells(rows_all: list[dict[str, Any]]) -> list[str]:
        out = []
        for n in names:
            rows = [r for r in rows_all if r["parameter"].split("[")[0] == n]
            if not rows:
                out.append("n/a")
            elif all(r["ok"] is None for r in rows):
                out.append("-" if rows[0]["estimate"] is not None else "not est.")
            elif any(r["estimate"] is None for r in rows):
                out.append("not est.")
            else:
                miss = sum(1 for r in rows if r["ok"] is False)
                out.append("ok" if miss == 0 else f"**{miss} miss**")
        return out

    for c in cases:
        parts.append(f"| {c['case']} | {c['frames']} | {c['seconds']:.0f} | {c['cpu_s']:.0f} | "
                     + " | ".join(cells(c["rows"] + c.get("identifiable", []))) + " |")
    if any(c.get("by_estimating_routine") for c in cases):
        parts += ["", "As each parameter's own routine (`TABLE`'s `routine`) left it, before the global fit:", "",
                  "| case | | | | " + " | ".join(names) + " |", "|---|---|---|---|" + "---|" * len(names)]
        for c in cases:
            if c.get("by_estimating_routine"):
                parts.append(f"| {c['case']} | | | | " + " | ".join(cells(c["by_estimating_routine"])) + " |")
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
        if c.get("identifiable"):
            parts += ["", "What the frames determine (`identifiable_rows`: image translation, beam on the modulator, "
                          "Zernike terms with the unmodelled pupil's share):", "", case_table(c["identifiable"])]
        if c.get("global_fit"):
            g = c["global_fit"]
            parts += ["", "Held-back tile error (global fit): " + ", ".join(f"{k[len('held_error_'):]} {v:.3g}"
                                                                         for k, v in g.items())]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5],
                        help="drawn truths (sim_backend.draw seeds); none: only sim")
    parser.add_argument("--routines", nargs="*", default=["all"])
    parser.add_argument("--no-sim", action="store_true", help="skip the embedded sim bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "calibration-accuracy",
                        help="output stem: writes <out>.md and <out>.json")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep each case's calibration file and drawn profile here (for deployment runs)")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, metavar="JSON",
                        help="no calibration: one report from earlier runs' JSON files (cases run in parallel)")
    parser.add_argument("--score", nargs=3, action="append", default=[], metavar=("LABEL", "CAL_H5", "PROFILE"),
                        help="no calibration: score a file `labrig calibrate all` wrote (repeatable; merged with "
                             "--merge's cases)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cases = []
    if args.merge or args.score:
        for label, path, profile in args.score:
            cases.append(score_file(label, Path(path), profile))
        for path in args.merge or []:
            cases += json.loads(path.read_text(encoding="utf-8"))["cases"]
        seeds = [c["case"][4:] for c in cases if c["case"].startswith("draw")]
        scored = ", ".join(f"{label} (`labrig calibrate all` file)" for label, _, _ in args.score)
        header = (f"# Calibration accuracy\n\n`python benchmarks/calibration_accuracy.py`: {scored}"
                  f"{'; ' if scored and seeds else ''}{'drawn truths ' + ', '.join(seeds) if seeds else ''} "
                  f"({len(args.merge or [])} runs merged with `--merge`); routines: {', '.join(ROUTINES)}.")
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
            if args.keep is not None:
                import shutil

                args.keep.mkdir(parents=True, exist_ok=True)
                for kept in (work / f"{label}.h5", Path(profile)):
                    if kept.exists():
                        shutil.copy2(kept, args.keep / kept.name)
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

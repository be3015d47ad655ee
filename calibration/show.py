"""A calibration for people: a text summary and one figure with each routine's own plot.

Used by ``labrig calibration show`` and the console's Calibration dock (which
draws the same `Routine.plot` into its own canvas), so both show the same thing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from calibration.base import Routine, RoutineResult
from calibration.store import DEFAULT_MAX_AGE_S, Calibration, staleness

__all__ = ["calibration_rois", "format_calibration", "format_value", "input_footprint", "plot_routine", "routine_states",
           "save_calibration_png"]


def format_value(value: Any) -> str:
    """Short text for an estimate: numbers with 4 significant digits, long arrays summarised."""
    if value is None:
        return "none"
    a = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if a.dtype.kind not in "biuf":
        return str(value)
    if a.ndim == 0:
        v = float(a)
        return "inf" if math.isinf(v) else f"{v:.4g}"
    if a.size <= 8:
        return "[" + ", ".join(f"{float(v):.4g}" for v in a.ravel()) + "]"
    nonzero = int(np.count_nonzero(a))
    return f"{'x'.join(map(str, a.shape))} array, {float(a.min()):.4g} .. {float(a.max()):.4g}, {nonzero} nonzero"


def format_calibration(cal: Calibration, max_age_s: float | None = DEFAULT_MAX_AGE_S,
                       bench_or_profile: Any = None) -> str:
    """Provenance, state (fresh or why stale, against `bench_or_profile` when given: age otherwise),
    then one block per routine: when, frames, time, residual, estimates and products."""
    prov = cal.provenance
    profile = prov.get("profile", {})
    lines = [
        f"calibration {cal.path or '<unsaved>'}",
        f"  bench profile {profile.get('name', '?')} ({profile.get('source', '?')}), hash {str(profile.get('hash', ''))[:12]}",
        f"  saved {cal.saved or '-'}, calibration hash {cal.hash[:12]}, {cal.frames} frames in all",
    ]
    for role, dev in prov.get("devices", {}).items():
        ident = dev.get("identity", {})
        lines.append(f"  {role:8s} {dev.get('kind', '')}: " + " ".join(
            str(ident.get(k)) for k in ("vendor", "model", "serial") if ident.get(k)))
    reasons = staleness(cal, bench_or_profile, max_age_s)
    lines.append("  state: " + ("fresh" if not reasons else "STALE: " + "; ".join(reasons)))
    for name, record in cal.routines.items():
        r = record.result
        lines.append("")
        lines.append(f"{name}: {record.title or name}")
        lines.append(f"  measured {record.time}, {r.frames} frames, {record.duration_s:.1f} s, "
                     f"residual {r.residual:.4g} {r.residual_unit}")
        for key, value in r.values.items():
            lines.append(f"  {key:24s} {format_value(value)}")
        if r.products:
            lines.append("  products: " + ", ".join(
                f"{k} ({format_value(v)})" if np.ndim(v) == 0 else f"{k} {'x'.join(map(str, np.shape(v)))}"
                for k, v in r.products.items()))
        if r.notes:
            lines.append(f"  notes: {r.notes}")
    return "\n".join(lines)


def _routine(name: str) -> Routine:
    from calibration.session import ROUTINES

    cls = ROUTINES.get(name)
    if cls is None:  # measured by a routine this labrig lacks: the default (residual) plot
        class _Unknown(Routine):
            def run(self, *args: Any, **kwargs: Any) -> RoutineResult:  # pragma: no cover
                raise NotImplementedError

        unknown = _Unknown()
        unknown.name = name
        return unknown
    return cls()


def plot_routine(name: str, result: RoutineResult, ax: Any) -> None:
    """Draw one routine's result with that routine's own `plot` (a failing plot is shown as text)."""
    try:
        _routine(name).plot(result, ax)
    except Exception as exc:  # a figure must never hide the rest of the calibration
        ax.clear()
        ax.text(0.5, 0.5, f"{name}: cannot plot ({type(exc).__name__}: {exc})", ha="center", va="center",
                transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
    if not ax.get_title():
        ax.set_title(name, fontsize=9)


def save_calibration_png(cal: Calibration, path: str | Path) -> Path:
    """One PNG with a panel per routine (in run order), written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from labrig.io import atomic_write

    names = list(cal.routines) or ["(empty)"]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        if name in cal.routines:
            plot_routine(name, cal.routines[name].result, ax)
        else:
            ax.text(0.5, 0.5, "no routine results", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    fig.suptitle(f"calibration of {cal.profile_name}" + (f", saved {cal.saved}" if cal.saved else ""), fontsize=10)
    fig.tight_layout()
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def input_footprint(twin: Any, level: float = 0.5) -> tuple[int, int, int, int]:
    """Camera rectangle (top, left, bottom, right; bottom/right exclusive) where the input
    modulator's image lands, per `twin`: a full-on input through a flat filter, thresholded at
    `level` of its peak. With a calibrated twin this is where the bench's image really is."""
    import torch

    g = twin.geometry
    with torch.no_grad():
        gray = torch.full(tuple(g.input.resolution), g.input.levels - 1, dtype=torch.long)
        flat = torch.zeros(tuple(g.filter.resolution), dtype=torch.long)
        amplitude = twin.input_amplitude(gray)
        power = twin.camera_power(twin.output_power(amplitude, twin.filter_transmission(flat), 1.0))
    lit = (power >= level * power.max()).cpu().numpy()
    rows, cols = np.nonzero(lit.any(axis=1))[0], np.nonzero(lit.any(axis=0))[0]
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def calibration_rois(cal: Calibration) -> list[tuple[int, int, int, int]]:
    """The ROIs the live view draws for a calibration: where the input's image lands on the camera."""
    return [input_footprint(cal.twin())]


def routine_states(cal: Calibration | None, bench_or_profile: Any = None, failed: dict[str, str] | None = None,
                   max_age_s: float | None = DEFAULT_MAX_AGE_S) -> list[tuple[str, str, str]]:
    """(routine, state, detail) for every registered routine (and any other the calibration holds),
    in run order; state is ``not run``, ``fresh``, ``stale`` or ``failed`` (this session's last try)."""
    from calibration.session import ROUTINES

    failed = failed or {}
    names = list(ROUTINES) + [n for n in (cal.routines if cal is not None else {}) if n not in ROUTINES]
    out = []
    for name in names:
        if name in failed:
            out.append((name, "failed", failed[name]))
        elif cal is None or name not in cal.routines:
            out.append((name, "not run", ""))
        else:
            reasons = staleness(cal, bench_or_profile, max_age_s, routines=[name])
            record = cal.routines[name]
            detail = f"{record.result.residual:.3g} {record.result.residual_unit}, {record.result.frames} frames"
            out.append((name, "stale", "; ".join(reasons)) if reasons else (name, "fresh", detail))
    return out

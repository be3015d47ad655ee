"""The one calibration engine: run routines in dependency order, each result into the twin before the next.

`calibrate(bench, ["camera", "slm_lut"], out="cal.h5")` is what the CLI
(`labrig calibrate`), the console's Calibration dock and scripts call. It
starts the twin from the previous calibration (when it was measured on this
bench's profile), runs each routine through the device protocols, writes each
result's values into the twin (`apply_values`) so later routines start from
earlier estimates, and keeps each routine's latest good result. A routine that
fails, a device fault, or a cancel leaves the bench safe and writes nothing:
the file at `out` is replaced (atomically) only when every requested routine
succeeded, unless ``partial=True`` asks for a checkpoint after each good one.

`ROUTINES` is the registry: every `Routine` subclass defined in the routine
modules of `MODULES` that exist, in the order a full calibration runs them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibration.base import (
    CalibrationCancelled,
    CalibrationError,
    Cancel,
    Progress,
    Routine,
    RoutineResult,
    never_cancel,
    no_progress,
)
from calibration.store import Calibration, bench_provenance, load_calibration, save_calibration
from drivers.errors import LabrigError

if TYPE_CHECKING:
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

log = logging.getLogger(__name__)

#: routine modules in the order a full calibration runs them (photometric first: later fits need
#: the camera's offset and gain and the SLM's LUT); a module not written yet is skipped
MODULES: tuple[str, ...] = (
    "calibration.camera",
    "calibration.illumination",
    "calibration.slm_lut",
    "calibration.crosstalk",
    "calibration.fourier",
    "calibration.registration",
    "calibration.aberrations",
    "calibration.global_fit",
    "calibration.reregister",  # registered (run by name, or by a runner), not part of "all": see Reregister.in_all
)

#: listener(event, routine, payload): "start" (None), "done" (RoutineResult), "failed" (the error),
#: "skipped" (why) — the console's per-routine state comes from these
Listener = Callable[[str, str, Any], None]


def _discover(modules: Iterable[str]) -> tuple[dict[str, type[Routine]], dict[str, str]]:
    """Routine classes by name, and the modules that exist but failed to import (module -> error)."""
    found: dict[str, type[Routine]] = {}
    broken: dict[str, str] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that routine module does not exist (yet)
            broken[module_name] = f"{type(exc).__name__}: {exc}"
            continue
        except Exception as exc:  # a broken module is named wherever it matters, never skipped silently
            broken[module_name] = f"{type(exc).__name__}: {exc}"
            log.error("calibration routine module %s failed to import: %s", module_name, exc)
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Routine) and cls.__module__ == module.__name__
                    and not inspect.isabstract(cls) and cls.name):
                if cls.name in found:
                    raise LabrigError(f"two calibration routines are named {cls.name!r}: "
                                      f"{found[cls.name].__module__} and {module_name}")
                found[cls.name] = cls
    return found, broken


#: every routine, by name, in run order; BROKEN: routine modules that failed to import (and why)
ROUTINES, BROKEN = _discover(MODULES)


def register(cls: type[Routine]) -> type[Routine]:
    """Add a routine class (a lab's own, or a test's) to `ROUTINES`; usable as a decorator."""
    if not cls.name:
        raise LabrigError(f"routine class {cls.__qualname__} has no name")
    ROUTINES[cls.name] = cls
    return cls


def plan(names: Sequence[str] | str, have: Iterable[str] = (),
         registry: dict[str, type[Routine]] | None = None) -> list[str]:
    """The routines to run for `names` ("all", or names), dependencies first.

    A routine's ``after`` that is neither requested nor in `have` (results a
    previous calibration already holds) is added to the plan; an unknown name
    or a dependency cycle is a clear error.
    """
    default_registry = registry is None
    registry = ROUTINES if registry is None else registry
    order = list(registry)
    if isinstance(names, str):
        names = [names]
    if not names or list(names) == ["all"]:
        if default_registry and BROKEN:  # "all" without a routine would be a silent gap
            raise LabrigError("cannot run all calibration routines: " + "; ".join(
                f"{m} failed to import ({e})" for m, e in BROKEN.items()))
        wanted = [n for n in order if getattr(registry[n], "in_all", True)]
    else:
        unknown = [n for n in names if n not in registry]
        if unknown:
            extra = (f"; broken routine modules: {', '.join(f'{m} ({e})' for m, e in BROKEN.items())}"
                     if default_registry and BROKEN else "")
            raise LabrigError(f"unknown calibration routine(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(order) or 'none'} (or 'all'){extra}")
        wanted = list(dict.fromkeys(names))
    have = set(have)
    out: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in out:
            return
        if name in visiting:
            raise LabrigError(f"calibration routines depend on each other in a cycle: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        for dep in registry[name].after:
            if dep not in registry:
                raise LabrigError(f"routine {name!r} needs {dep!r}, which is not a known routine")
            if dep not in wanted and dep in have:
                continue
            visit(dep)
        visiting.pop()
        out.append(name)

    for name in sorted(wanted, key=order.index):
        visit(name)
    return out


def start_twin(bench: Bench, previous: Calibration | None, dtype: Any = None) -> Twin:
    """The twin a calibration starts from: the previous calibration's if measured on this profile, else ideal."""
    import torch

    from labrig.geometry import geometry_from_profile
    from labrig.optics.system import Twin

    geometry = geometry_from_profile(bench.profile.root)
    dtype = dtype or torch.float64
    if previous is not None and previous.profile_hash == bench_provenance(bench)["profile"]["hash"]:
        return previous.twin(geometry, dtype)
    if previous is not None:
        log.warning("previous calibration was measured on another profile; starting from the ideal twin")
    return Twin(geometry, dtype=dtype)


def calibrate(
    bench: Bench,
    routines: Sequence[str] | str = "all",
    *,
    out: str | Path | None = None,
    previous: Calibration | str | Path | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    listener: Listener | None = None,
    partial: bool = False,
    twin: Twin | None = None,
    registry: dict[str, type[Routine]] | None = None,
) -> Calibration:
    """Run `routines` ("all" or names) on `bench`; return the calibration (saved to `out` if given).

    `previous` (a Calibration or file) supplies the starting twin and the
    results of routines not rerun; `progress(done, total, "routine: message")`
    reports each routine's own progress; `cancel()` stops at the next frame.
    Raises `CalibrationError` (naming the routine and the cause) or
    `CalibrationCancelled`; the bench is made safe and `out` is left as it was
    (``partial=True``: it holds the routines that succeeded before).
    """
    registry = ROUTINES if registry is None else registry
    progress = progress or no_progress
    cancel = cancel or never_cancel
    listener = listener or (lambda event, routine, payload: None)
    if isinstance(previous, str | Path):
        previous = load_calibration(previous)
    provenance = bench_provenance(bench)
    if previous is not None and previous.profile_hash == provenance["profile"]["hash"]:
        cal = Calibration(provenance, dict(previous.routines))
    else:
        cal = Calibration(provenance)
    names = plan(routines, cal.routines, registry)
    if not names:
        raise LabrigError("no calibration routine to run (none are registered)")
    twin = twin if twin is not None else start_twin(bench, previous)

    from calibration.nuisance import carry
    from labrig.optics.imperfections import apply_values

    for kept in cal.routines.values():  # nuisance terms earlier routines fitted (never the twin's own)
        carry(twin, kept.result.products)

    for index, name in enumerate(names):
        routine = registry[name]()
        label = f"{name} ({index + 1}/{len(names)})"

        def routine_progress(done: int, total: int, message: str, _label: str = label) -> None:
            progress(done, total, f"{_label}: {message}" if message else _label)

        listener("start", name, None)
        progress(0, max(routine.frames_hint, 1), f"{label}: starting")
        started = time.perf_counter()
        try:
            if cancel():
                raise CalibrationCancelled(name)
            result = routine.run(bench, twin, progress=routine_progress, cancel=cancel)
            _check_result(routine, result)
            try:
                apply_values(twin.imperfections, result.values)
            except ValueError as exc:
                raise CalibrationError(name, f"estimates do not fit the twin: {exc}") from exc
        except CalibrationError as exc:
            _safe(bench)
            listener("failed", name, exc)
            raise
        except LabrigError as exc:  # a device fault, a safety trip, a bad setting
            _safe(bench)
            error = CalibrationError(name, f"{type(exc).__name__}: {exc}")
            listener("failed", name, error)
            raise error from exc
        except BaseException as exc:  # Ctrl-C, a bug: safe first, then let it through
            _safe(bench)
            listener("failed", name, exc)
            raise
        duration = time.perf_counter() - started
        _safe(bench)
        carry(twin, result.products)
        cal = cal.with_result(result, duration_s=duration, provenance=provenance, title=routine.title)
        listener("done", name, result)
        log.info("%s: residual %.3g %s, %d frames, %.1f s", name, result.residual, result.residual_unit,
                 result.frames, duration)
        if out is not None and partial:
            cal = save_calibration(cal, out)
    if out is not None:
        cal = save_calibration(cal, out)
    return cal


def _check_result(routine: Routine, result: RoutineResult) -> None:
    if not isinstance(result, RoutineResult):
        raise CalibrationError(routine.name, f"returned {type(result).__name__}, not a RoutineResult")
    if result.routine != routine.name:
        raise CalibrationError(routine.name, f"its result says it came from routine {result.routine!r}")
    extra = sorted(set(result.values) - set(routine.estimates))
    if extra:
        raise CalibrationError(routine.name, f"estimated {extra}, which it does not declare in `estimates`")


def _safe(bench: Bench) -> None:
    try:
        bench.make_safe()
    except Exception:  # pragma: no cover - make_safe logs its own failures; never mask the first error
        log.exception("making the bench safe failed")


__all__ = ["BROKEN", "MODULES", "ROUTINES", "Listener", "calibrate", "plan", "register", "start_twin"]

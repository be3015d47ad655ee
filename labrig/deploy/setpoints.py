"""What a run changes on the bench, said aloud and put back afterwards.

A run sets the program's laser power, camera gain and exposure, shows its masks on
the filter SLM and its images on the input modulator, and makes the bench safe when
it ends. An operator who had the bench set up for something else must not find it
silently changed: `kept_setpoints` reads the device setpoints before, reports every
one the run changed, puts back those that can be put back, and says so for what is
not (light is never turned back on by itself: a safe bench stays safe).
Only the device protocols are used (`Bench` roles, `drivers.base`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from drivers.base import SLM
from labrig.bench import Bench

__all__ = ["Setpoints", "describe_changes", "kept_setpoints", "read_setpoints", "restore_setpoints"]


@dataclass
class Setpoints:
    """The device settings a run touches, as the devices report them."""

    exposure_s: float
    gain: float
    laser_power_w: float | None = None
    light_on: bool = False
    patterns: dict[str, np.ndarray] = field(default_factory=dict)
    """Gray levels each SLM role shows (``input``, ``filter``)."""


def read_setpoints(bench: Bench) -> Setpoints:
    cam, laser, shutter = bench.camera, bench.laser, bench.shutter
    light = bool(laser is not None and laser.enabled) or bool(shutter is not None and shutter.shutter_open)
    patterns = {role: d.pattern for role, d in bench.devices.items() if isinstance(d, SLM)}
    return Setpoints(float(cam.exposure_s), float(cam.gain),
                     None if laser is None else float(laser.power_w), light, patterns)


def _ms(s: float) -> str:
    return f"{s * 1e3:.4g} ms"


def _mw(w: float | None) -> str:
    return "-" if w is None else f"{w * 1e3:.4g} mW"


def describe_changes(before: Setpoints, after: Setpoints) -> list[str]:
    """One line per setting that differs ("camera exposure 1 ms -> 12.5 ms")."""
    lines = []
    if not np.isclose(before.exposure_s, after.exposure_s, rtol=1e-6, atol=0):
        lines.append(f"camera exposure {_ms(before.exposure_s)} -> {_ms(after.exposure_s)}")
    if not np.isclose(before.gain, after.gain, rtol=1e-6, atol=1e-9):
        lines.append(f"camera gain {before.gain:.4g} -> {after.gain:.4g}")
    if before.laser_power_w is not None and after.laser_power_w is not None and not np.isclose(
            before.laser_power_w, after.laser_power_w, rtol=1e-6, atol=1e-12):
        lines.append(f"laser power {_mw(before.laser_power_w)} -> {_mw(after.laser_power_w)}")
    if before.light_on != after.light_on:
        lines.append(f"light {'on' if before.light_on else 'off'} -> {'on' if after.light_on else 'off'}")
    for role, pattern in before.patterns.items():
        now = after.patterns.get(role)
        if now is not None and not np.array_equal(pattern, now):
            lines.append(f"the {role} SLM pattern (to the run's last)")
    return lines


def restore_setpoints(bench: Bench, before: Setpoints) -> list[str]:
    """Put back exposure, gain, laser power and the SLM patterns; one line per thing done
    or not done (a failure to restore is reported, never raised: the bench is safe)."""
    now = read_setpoints(bench)
    lines: list[str] = []

    def put(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            lines.append(f"restored {what}")
        except Exception as exc:
            lines.append(f"could NOT restore {what}: {type(exc).__name__}: {exc}")

    cam, laser = bench.camera, bench.laser
    if not np.isclose(before.exposure_s, now.exposure_s, rtol=1e-6, atol=0):
        put(f"camera exposure {_ms(before.exposure_s)}", lambda: setattr(cam, "exposure_s", before.exposure_s))
    if not np.isclose(before.gain, now.gain, rtol=1e-6, atol=1e-9):
        put(f"camera gain {before.gain:.4g}", lambda: setattr(cam, "gain", before.gain))
    if laser is not None and before.laser_power_w is not None and not np.isclose(
            before.laser_power_w, now.laser_power_w or 0.0, rtol=1e-6, atol=1e-12):
        put(f"laser power {_mw(before.laser_power_w)}", lambda: setattr(laser, "power_w", before.laser_power_w))
    for role, pattern in before.patterns.items():
        device = bench.devices.get(role)
        current = now.patterns.get(role)
        if isinstance(device, SLM) and current is not None and not np.array_equal(pattern, current):
            put(f"the {role} SLM's pattern", lambda d=device, p=pattern: d.show(p))
    if before.light_on and not now.light_on:
        lines.append("light NOT restored: the run ended with the bench made safe (laser off, shutter closed); "
                     "arm it again to continue")
    return lines


@contextmanager
def kept_setpoints(bench: Bench, say: Callable[[str], None]) -> Iterator[Setpoints]:
    """Around a run: read the setpoints, and afterwards `say` what the run changed and what
    was put back (also when the run raised)."""
    before = read_setpoints(bench)
    try:
        yield before
    finally:
        try:
            after = read_setpoints(bench)
            changed = describe_changes(before, after)
            for line in changed:
                say(f"the run changed {line}")
            for line in restore_setpoints(bench, before) if changed else []:
                say(line)
            if not changed:
                say("the run left every device setting as it found it")
        except Exception as exc:  # the devices may be gone (a disconnect ended the run)
            say(f"could NOT check or restore the device settings after the run: {type(exc).__name__}: {exc}")

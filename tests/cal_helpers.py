"""Small, fast simulated benches for calibration tests.

`small_profile(tmp_path, truth=...)` writes a profile like `sim` (same optics
design, devices and noise) on a quarter-size grid: a 64 x 64 filter SLM, a
64 x 64 camera and a 16 x 16 input modulator, with f1 chosen so that one input
pixel is still one simulation sample and f2 = f1/2 (one camera pixel per
sample). A routine's test runs on it in a few seconds; compare its estimates
against `truth_of(bench)` (tests may read the truth; routines never do).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim_backend.draw import draw_truth, write_profile

#: the small grid: filter and camera side, input side (samples)
FILTER_N, CAMERA_N, INPUT_N = 64, 64, 16
WAVELENGTH_M, FILTER_PITCH_M, INPUT_PITCH_M = 532e-9, 8e-6, 16e-6
#: lambda f1 / (N p) = input pitch: one input pixel per sample, as in `sim`
FOCAL1_M = INPUT_PITCH_M * FILTER_N * FILTER_PITCH_M / WAVELENGTH_M

SMALL_TABLES: dict[str, dict[str, Any]] = {
    "optics": {"focal1_m": FOCAL1_M, "focal2_m": FOCAL1_M / 2},
    "devices.input": {"resolution": [INPUT_N, INPUT_N], "pitch_m": INPUT_PITCH_M},
    "devices.filter": {"resolution": [FILTER_N, FILTER_N], "pitch_m": FILTER_PITCH_M},
    "devices.camera": {"resolution": [CAMERA_N, CAMERA_N]},
}

#: keyword -> the profile table it overrides (other keywords are taken as dotted table names)
_ALIASES = {"camera": "devices.camera", "filter": "devices.filter", "input": "devices.input",
            "laser": "devices.laser", "shutter": "devices.shutter"}


def small_truth(seed: int) -> dict[str, Any]:
    """A drawn truth (`sim_backend.draw.draw_truth`) sized for the small bench's input."""
    return draw_truth(seed, input_width_m=INPUT_N * INPUT_PITCH_M)


def small_profile(
    tmp_path: Path,
    truth: Mapping[str, Any] | bool | None = None,
    *,
    name: str = "small",
    unmodelled: bool | Mapping[str, Any] = False,
    **overrides: Mapping[str, Any],
) -> Path:
    """Write ``<tmp_path>/<name>.toml``: a small `sim` bench; returns its path (for `Bench.open`).

    `truth`: None/True keeps `sim`'s [truth], False is an ideal bench, a dict
    replaces [truth] (``enabled`` defaults to true; e.g. ``small_truth(3)`` or
    ``{"camera_shift_px": [0.4, -0.2], "noise": False}``). `unmodelled`: the
    twin-less effects of ``[truth.unmodelled]`` (off by default, so a routine's
    test sees only what it models; True keeps `sim`'s). `overrides`: tables to
    merge over, by role (``camera={"exposure_s": 2e-3}``) or dotted name
    (``faults={"frame_timeout_prob": 0.2}``, ``**{"devices.laser": {...}}``).
    """
    tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in SMALL_TABLES.items()}
    for key, keys in overrides.items():
        dotted = _ALIASES.get(key, key)
        tables[dotted] = {**tables.get(dotted, {}), **dict(keys)}
    return write_profile(Path(tmp_path) / f"{name}.toml", truth, name=name, unmodelled=unmodelled, tables=tables)


def truth_of(bench: Any) -> Any:
    """The simulated bench's hidden `Imperfections` (tests only: routines never see it)."""
    return bench.shared["sim.world"].truth.imperfections


__all__ = ["CAMERA_N", "FILTER_N", "INPUT_N", "SMALL_TABLES", "small_profile", "small_truth", "truth_of"]

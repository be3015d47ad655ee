"""Random realistic truths for the simulated bench: so nothing is tuned to `sim.toml`'s values.

`draw_truth(seed)` returns a ``[truth]`` table with every modelled
imperfection of `labrig.optics.imperfections.TABLE` drawn from a range an
aligned lab bench plausibly has (the ranges are in `RANGES`, in profile
units). `write_profile` writes a self-contained profile TOML: an embedded one
(``sim`` by default) with its ``[truth]`` replaced and any tables overridden.
Tests and the calibration benchmark use both; a calibration that only works on
one truth fails here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labrig.optics.aberrations import ZERNIKE_NAMES
from labrig.optics.imperfections import PROFILE_KEYS

#: profile key -> (low, high) of a uniform draw (``log`` ranges are drawn log-uniformly);
#: illumination ranges are fractions of the input modulator's width (the beam is sized to it)
RANGES: dict[str, tuple[float, float]] = {
    "input_shift_px": (-0.5, 0.5),
    "input_rotation_deg": (-0.5, 0.5),
    "filter_shift_px": (-1.0, 1.0),
    "camera_shift_px": (-2.0, 2.0),
    "camera_rotation_deg": (-0.5, 0.5),
    "camera_scale": (0.995, 1.005),
    "zernike.defocus": (-0.5, 0.5),
    "zernike.other": (-0.2, 0.2),
    "zernike.spherical": (-0.1, 0.1),
    "slm_lut_gamma": (0.9, 1.25),
    "slm_max_phase_rad": (5.6, 6.8),
    "slm_crosstalk_px": (0.2, 0.7),
    "illumination_waist_fraction": (1.0, 2.5),
    "illumination_center_fraction": (-0.15, 0.15),
    "input_contrast.log": (100.0, 1000.0),
    "camera_gain_error": (0.9, 1.1),
    "camera_offset_error_dn": (-8.0, 8.0),
    "hot_pixel_fraction": (0.0, 5e-4),
    "hot_pixel_e_per_s.log": (1e5, 1e6),
    "drift_px_per_s": (-0.03, 0.03),
}


def draw_truth(seed: int, input_width_m: float = 64 * 16e-6) -> dict[str, Any]:
    """A ``[truth]`` table with every modelled imperfection drawn at random (seeded).

    `input_width_m` is the input modulator's width (rows * pitch) that the
    illumination's waist and centre scale with (default: `sim`'s).
    """
    rng = np.random.default_rng(seed)

    def u(key: str, n: int | None = None) -> Any:
        lo, hi = RANGES[key]
        if key.endswith(".log"):
            v = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
        else:
            v = rng.uniform(lo, hi, n)
        return [round(float(x), 6) for x in v] if n is not None else round(float(v), 6)

    zernike = {}
    for name in ZERNIKE_NAMES:
        key = f"zernike.{name}" if f"zernike.{name}" in RANGES else "zernike.other"
        zernike[name] = u(key)
    truth: dict[str, Any] = {
        "enabled": True,
        "seed": int(seed),
        "input_shift_px": u("input_shift_px", 2),
        "input_rotation_deg": u("input_rotation_deg"),
        "filter_shift_px": u("filter_shift_px", 2),
        "camera_shift_px": u("camera_shift_px", 2),
        "camera_rotation_deg": u("camera_rotation_deg"),
        "camera_scale": u("camera_scale"),
        "zernike_rad": zernike,
        "slm_lut_gamma": u("slm_lut_gamma"),
        "slm_max_phase_rad": u("slm_max_phase_rad"),
        "slm_crosstalk_px": u("slm_crosstalk_px"),
        "illumination_waist_m": float(f"{u('illumination_waist_fraction') * input_width_m:.6g}"),
        "illumination_center_m": [float(f"{c * input_width_m:.6g}") for c in u("illumination_center_fraction", 2)],
        "input_contrast": round(u("input_contrast.log"), 1),
        "camera_gain_error": u("camera_gain_error"),
        "camera_offset_error_dn": u("camera_offset_error_dn"),
        "hot_pixel_fraction": float(f"{u('hot_pixel_fraction'):.3g}"),
        "hot_pixel_e_per_s": float(f"{u('hot_pixel_e_per_s.log'):.3g}"),
        "drift_px_per_s": u("drift_px_per_s", 2),
    }
    missing = set(PROFILE_KEYS) - set(truth)
    if missing:  # the imperfection table grew: draw the new one here too (DESIGN.md's triangle)
        raise AssertionError(f"draw_truth draws no value for [truth] key(s) {sorted(missing)}")
    return truth


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def profile_data(
    truth: Mapping[str, Any] | bool | None = None,
    *,
    base: str | Path = "sim",
    name: str | None = None,
    unmodelled: bool | Mapping[str, Any] = True,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The merged settings of profile `base` with its ``[truth]`` replaced and `tables` merged over.

    `truth`: a ``[truth]`` table (``enabled`` defaults to true), True/None to keep
    the base's, False for an ideal bench. `unmodelled`: keep the base's
    ``[truth.unmodelled]`` (True), drop it (False) or use the given table.
    `tables`: dotted table names (``"devices.camera"``, ``"faults"``) -> keys merged over them.
    """
    from labrig.bench.profile import load_profile  # profiles are read where they live

    data = load_profile(base).as_dict()
    base_truth = dict(data.get("truth", {}))
    if truth is False:
        new_truth: dict[str, Any] = {"enabled": False}
    elif truth is None or truth is True:
        new_truth = {k: v for k, v in base_truth.items() if k != "unmodelled"}
    else:
        new_truth = {"enabled": True, **dict(truth)}
    if unmodelled is True and "unmodelled" in base_truth and "unmodelled" not in new_truth:
        new_truth["unmodelled"] = base_truth["unmodelled"]
    elif isinstance(unmodelled, Mapping):
        new_truth["unmodelled"] = dict(unmodelled)
    elif unmodelled is False:
        new_truth.pop("unmodelled", None)
    data["truth"] = new_truth
    for dotted, keys in (tables or {}).items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _deep_merge(dict(node.get(parts[-1], {})), keys)
    if name is not None:
        data.setdefault("bench", {})["name"] = name
    data.get("bench", {}).pop("extends", None)
    return data


def write_profile(path: str | Path, truth: Mapping[str, Any] | bool | None = None, **kwargs: Any) -> Path:
    """Write `profile_data(truth, **kwargs)` as a self-contained TOML file; returns its path."""
    from labrig.bench.profile import _dump_toml  # the one TOML writer for profiles

    path = Path(path)
    data = profile_data(truth, **kwargs)
    path.write_text(f"# written by sim_backend.draw (truth seed {data['truth'].get('seed', '-')})\n"
                    + _dump_toml(data), encoding="utf-8")
    return path


__all__ = ["RANGES", "draw_truth", "profile_data", "write_profile"]

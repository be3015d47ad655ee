"""The simulated bench's hidden truth and fault plan, read from [truth] and [faults].

The truth is an `Imperfections` (the twin's own parameterisation) plus what
only a real bench has: noise, drift over time and frame latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivers.config import Section
from labrig.optics.aberrations import ZERNIKE_NAMES, zernike_from_names
from labrig.optics.imperfections import Imperfections, gamma_phase_lut
from labrig.optics.specs import BenchGeometry


@dataclass(frozen=True)
class Truth:
    imperfections: Imperfections
    enabled: bool
    seed: int
    drift_px_per_s: tuple[float, float]
    latency_s: float
    noise: bool = False
    """Shot, dark and read noise: on with the truth unless ``noise = false``."""


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    frame_timeout_prob: float = 0.0
    dropped_frame_prob: float = 0.0
    disconnect_after_frames: int = 0
    disconnect_permanent: bool = False
    slm_write_error_prob: float = 0.0
    interlock_open: bool = False


def _hot_pixels(geometry: BenchGeometry, fraction: float, rate: float, seed: int) -> torch.Tensor | None:
    if fraction <= 0:
        return None
    gen = torch.Generator().manual_seed(seed + 1)
    mask = torch.rand(geometry.camera.resolution, generator=gen, dtype=torch.float64) < fraction
    return mask.to(torch.float64) * rate


def read_truth(root: Section, geometry: BenchGeometry) -> Truth:
    """Parse [truth]; with ``enabled = false`` (or no table) the bench is ideal."""
    table = root.section("truth", required=False)
    enabled = table.get_bool("enabled", False)
    seed = table.get_int("seed", 0)
    if not enabled:  # the other keys stay as documentation of what would be on
        return Truth(Imperfections.ideal(geometry), False, seed, (0.0, 0.0), 0.0)
    zern = table.section("zernike_rad", required=False)
    try:
        zernike = zernike_from_names({k: zern.get_float(k) for k in zern.data})
    except ValueError as exc:
        raise table.error("zernike_rad", f"{exc}") from None
    levels = geometry.filter.levels
    if geometry.filter.modulation == "phase":
        lut = gamma_phase_lut(
            levels,
            table.get_float("slm_max_phase_rad", 2 * math.pi, positive=True),
            table.get_float("slm_lut_gamma", 1.0, positive=True),
        )
    else:
        lut = (torch.arange(levels, dtype=torch.float64) / (levels - 1)) ** table.get_float("slm_lut_gamma", 1.0, positive=True)
    imperfections = Imperfections(
        geometry,
        input_shift_px=table.get_floats("input_shift_px", 2, [0.0, 0.0]),
        input_rotation_rad=math.radians(table.get_float("input_rotation_deg", 0.0)),
        filter_shift_px=table.get_floats("filter_shift_px", 2, [0.0, 0.0]),
        camera_shift_px=table.get_floats("camera_shift_px", 2, [0.0, 0.0]),
        camera_rotation_rad=math.radians(table.get_float("camera_rotation_deg", 0.0)),
        camera_scale=table.get_float("camera_scale", 1.0, positive=True),
        zernike_rad=zernike,
        slm_lut=lut,
        slm_crosstalk_px=table.get_float("slm_crosstalk_px", 0.0, min=0.0),
        illumination_waist_m=table.get_float("illumination_waist_m", math.inf, positive=True)
        if "illumination_waist_m" in table else math.inf,
        illumination_center_m=table.get_floats("illumination_center_m", 2, [0.0, 0.0]),
        input_contrast=table.get_float("input_contrast", math.inf, min=1.0) if "input_contrast" in table else math.inf,
        camera_gain=table.get_float("camera_gain_error", 1.0, positive=True),
        camera_offset_dn=table.get_float("camera_offset_error_dn", 0.0),
        hot_pixels_e_per_s=_hot_pixels(
            geometry,
            table.get_float("hot_pixel_fraction", 0.0, min=0.0, max=1.0),
            table.get_float("hot_pixel_e_per_s", 5e5, min=0.0),
            seed,
        ),
    )
    drift = table.get_floats("drift_px_per_s", 2, [0.0, 0.0])
    truth = Truth(
        imperfections, True, seed, (drift[0], drift[1]), table.get_float("latency_s", 0.0, min=0.0),
        noise=table.get_bool("noise", True),
    )
    table.check_unused()
    return truth


def read_faults(root: Section) -> FaultPlan:
    table = root.section("faults", required=False)
    plan = FaultPlan(
        seed=table.get_int("seed", 0),
        frame_timeout_prob=table.get_float("frame_timeout_prob", 0.0, min=0.0, max=1.0),
        dropped_frame_prob=table.get_float("dropped_frame_prob", 0.0, min=0.0, max=1.0),
        disconnect_after_frames=table.get_int("disconnect_after_frames", 0, min=0),
        disconnect_permanent=table.get_bool("disconnect_permanent", False),
        slm_write_error_prob=table.get_float("slm_write_error_prob", 0.0, min=0.0, max=1.0),
        interlock_open=table.get_bool("interlock_open", False),
    )
    table.check_unused()
    return plan


__all__ = ["ZERNIKE_NAMES", "FaultPlan", "Truth", "read_faults", "read_truth"]

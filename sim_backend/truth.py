"""The simulated bench's hidden truth and fault plan, read from [truth] and [faults].

The truth is an `Imperfections` (the twin's own parameterisation) plus what
only a real bench has: noise, drift over time and frame latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.config import Section
from labrig.optics.aberrations import ZERNIKE_NAMES
from labrig.optics.imperfections import Imperfections, read_profile_values
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


#: [truth] keys that are the simulator's own (not imperfections of the twin)
SIM_KEYS = ("enabled", "seed", "noise", "drift_px_per_s", "latency_s")
#: sub-tables other sim_backend modules parse (engineer E: sim_backend/unmodelled.py)
SUBTABLES = ("unmodelled",)


def read_truth(root: Section, geometry: BenchGeometry) -> Truth:
    """Parse [truth]; with ``enabled = false`` (or no table) the bench is ideal.

    The imperfections' keys, units and conversions come from the one table in
    `labrig.optics.imperfections`; only the simulator's own keys are read here.
    """
    table = root.section("truth", required=False)
    enabled = table.get_bool("enabled", False)
    seed = table.get_int("seed", 0)
    if not enabled:  # the other keys stay as documentation of what would be on
        return Truth(Imperfections.ideal(geometry), False, seed, (0.0, 0.0), 0.0)
    imperfections = Imperfections(geometry, **read_profile_values(table, geometry, seed))
    drift = table.get_floats("drift_px_per_s", 2, [0.0, 0.0])
    truth = Truth(
        imperfections, True, seed, (drift[0], drift[1]), table.get_float("latency_s", 0.0, min=0.0),
        noise=table.get_bool("noise", True),
    )
    table.accept(*SUBTABLES)  # parsed by their own modules, from the same [truth] table
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


__all__ = ["SIM_KEYS", "SUBTABLES", "ZERNIKE_NAMES", "FaultPlan", "Truth", "read_faults", "read_truth"]

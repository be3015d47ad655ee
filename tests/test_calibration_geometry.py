"""The geometric routines (fourier, registration, aberrations, global fit, reregister) on small
simulated benches with drawn truths: each estimate within the issue's tolerance.

A routine's test starts the twin where the routines before it would leave it: the
photometric estimates (LUT, crosstalk, illumination, contrast) and, where named,
earlier geometric ones are copied from the truth (tests may read the truth; the
routines never do), so each test checks one routine.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.aberrations import Aberrations
from calibration.base import CalibrationError
from calibration.fourier import FourierRegistration
from calibration.global_fit import GlobalFit
from calibration.registration import Registration
from calibration.reregister import Reregister, measure_shift
from labrig.bench.bench import Bench
from labrig.geometry import geometry_from_profile
from labrig.optics.system import Twin
from tests.cal_helpers import small_profile, small_truth, truth_of

PHOTOMETRIC = ("slm_lut", "slm_crosstalk_px", "illumination_waist_m", "illumination_center_m", "input_contrast")
SHIFT_PX, ROTATION_RAD, SCALE, ZERNIKE_RAD = 0.1, math.radians(0.05), 1e-3, 0.05


def twin_from(bench: Bench, known: tuple[str, ...] = PHOTOMETRIC) -> Twin:
    """An ideal twin with the `known` imperfections copied from the truth."""
    twin = Twin(geometry_from_profile(bench.profile.root))
    truth = truth_of(bench)
    for name in known:
        getattr(twin.imperfections, name).data = getattr(truth, name).detach().clone().to(torch.float64)
    return twin


def plots(routine: object, result: object) -> None:
    """The routine's figure draws from its result (as `labrig calibration show` does)."""
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    routine.plot(result, ax)
    assert ax.has_data() or ax.texts


def err(bench: Bench, values: dict, name: str) -> np.ndarray:
    return np.abs(np.asarray(values[name]) - getattr(truth_of(bench), name).detach().numpy())


@pytest.mark.parametrize("seed", [1, 2])
def test_fourier_finds_camera_rotation_and_scale(tmp_path: Path, seed: int) -> None:
    with Bench.open(small_profile(tmp_path, small_truth(seed))) as bench:
        routine = FourierRegistration()
        result = routine.run(bench, twin_from(bench))
        plots(routine, result)
        assert err(bench, result.values, "camera_rotation_rad") <= ROTATION_RAD
        assert err(bench, result.values, "camera_scale") <= SCALE
        assert result.residual < 0.1 and 9 <= result.frames <= FourierRegistration.frames_hint + 8


@pytest.mark.parametrize("seed", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_registration_finds_shifts_and_rotation(tmp_path: Path, seed: int) -> None:
    with Bench.open(small_profile(tmp_path, small_truth(seed))) as bench:
        twin = twin_from(bench, (*PHOTOMETRIC, "zernike_rad", "camera_rotation_rad", "camera_scale"))
        result = Registration().run(bench, twin)
        plots(Registration(), result)
        for name in ("input_shift_px", "camera_shift_px", "filter_shift_px"):
            assert err(bench, result.values, name).max() <= SHIFT_PX, name
        assert err(bench, result.values, "input_rotation_rad") <= ROTATION_RAD
        # the twin passed in is the session's to update, not the routine's
        assert float(twin.imperfections.input_rotation_rad) == 0.0


def test_aberrations_find_zernike_terms(tmp_path: Path) -> None:
    with Bench.open(small_profile(tmp_path, small_truth(5))) as bench:
        twin = twin_from(bench, (*PHOTOMETRIC, "camera_rotation_rad", "camera_scale"))
        result = Aberrations().run(bench, twin)
        plots(Aberrations(), result)
        assert err(bench, result.values, "zernike_rad").max() <= ZERNIKE_RAD
        assert result.residual < 2.0


def test_aberrations_escape_local_minima(tmp_path: Path) -> None:
    """Drawn truth 2 (a fit from a flat pupil stuck 0.3-1 rad off, its input shift a pixel off):
    the multi-start search and the input-shift rescan land within the tolerance. (Truth 3 with
    its terms tripled, beyond the drawn ranges, lands 0.06 rad off with the 0.5 px filter-shift
    guard: docs/calibration.md; not run here, 50 s.)"""
    truth = small_truth(2)
    with Bench.open(small_profile(tmp_path, truth)) as bench:
        twin = twin_from(bench, (*PHOTOMETRIC, "camera_rotation_rad", "camera_scale"))
        result = Aberrations(search="multi").run(bench, twin)
        assert err(bench, result.values, "zernike_rad").max() <= ZERNIKE_RAD
        assert result.residual < 1.5


def test_global_fit_brings_the_held_back_error_down(tmp_path: Path) -> None:
    """Started from estimates off by about a routine's tolerance, the fit lands within it and
    the held-back tile error falls >= 20x below the ideal twin's."""
    with Bench.open(small_profile(tmp_path, small_truth(6))) as bench:
        twin = twin_from(bench, (*PHOTOMETRIC, "zernike_rad", "input_shift_px", "input_rotation_rad",
                                 "filter_shift_px", "camera_shift_px", "camera_rotation_rad", "camera_scale"))
        imp = twin.imperfections
        imp.camera_shift_px.data += torch.tensor([0.15, -0.1], dtype=torch.float64)
        imp.zernike_rad.data += 0.06
        imp.filter_shift_px.data -= 0.15
        result = GlobalFit().run(bench, twin)
        plots(GlobalFit(), result)
        products = result.products
        assert products["held_error_ideal"] / products["held_error_final"] >= 20
        assert products["held_error_final"] < products["held_error_start"]
        assert err(bench, result.values, "camera_shift_px").max() <= SHIFT_PX
        assert err(bench, result.values, "zernike_rad").max() <= ZERNIKE_RAD


def test_reregister_follows_drift(tmp_path: Path) -> None:
    truth = {**small_truth(7), "drift_px_per_s": [0.4, -0.3]}
    with Bench.open(small_profile(tmp_path, truth)) as bench:
        twin = twin_from(bench, tuple(n for n, _ in truth_of(bench).named_parameters()))
        world = bench.shared["sim.world"]
        world.time_s += 1.0  # a second of drift: 0.4, -0.3 px
        result = Reregister().run(bench, twin)
        plots(Reregister(), result)
        now = world.twin.imperfections.camera_shift_px.detach().numpy()
        assert np.abs(np.asarray(result.values["camera_shift_px"]) - now).max() <= 0.03
        assert result.frames <= Reregister.frames_hint + 4


def test_measure_shift_is_subpixel() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.indices((48, 48))
    spots = [(rng.uniform(10, 38), rng.uniform(10, 38)) for _ in range(6)]

    def image(d: tuple[float, float]) -> np.ndarray:
        return sum(np.exp(-((yy - r - d[0]) ** 2 + (xx - c - d[1]) ** 2) / 3.0) for r, c in spots)

    d, resid = measure_shift(image((0.37, -0.21)), image((0.0, 0.0)))
    assert np.allclose(d, [0.37, -0.21], atol=0.01) and resid < 0.01
    with pytest.raises(ValueError, match="structure"):
        measure_shift(np.ones((8, 8)), np.zeros((8, 8)))


def test_dark_bench_is_a_clear_error(tmp_path: Path) -> None:
    path = small_profile(tmp_path, small_truth(1), laser={"power_w": 0.0})
    with Bench.open(path) as bench, pytest.raises(CalibrationError, match=r"'fourier'.*dark"):
        FourierRegistration().run(bench, twin_from(bench))
    assert not bench.guard.armed

"""The photometric routines (camera, SLM LUT, crosstalk, illumination) on small simulated benches.

Each runs against drawn truths (not only `sim`'s values) and must recover them
within the issue's tolerances; each refuses a bench whose light is off. The
routines see only the device protocols and the twin; these tests read the truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cal_helpers import small_profile, small_truth, truth_of

from calibration.base import CalibrationError
from calibration.camera import CameraRoutine
from calibration.crosstalk import CrosstalkRoutine
from calibration.illumination import IlluminationRoutine
from calibration.slm_lut import SlmLutRoutine
from labrig.bench.bench import Bench
from labrig.geometry import geometry_from_profile
from labrig.optics import Twin
from labrig.optics.imperfections import apply_values


def check_plot(routine: object, result: object) -> None:
    """The routine's figure draws from its result (as `labrig calibration show` does)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        routine.plot(result, ax)
        assert ax.has_data()
    finally:
        plt.close(fig)


def open_small(tmp_path: Path, truth: object, **overrides: object) -> Iterator[tuple[Bench, Twin]]:
    path = small_profile(tmp_path, truth, **overrides)
    with Bench.open(path) as bench:
        yield bench, Twin(geometry_from_profile(bench.profile.root))


@pytest.mark.parametrize("seed", [3, 8])
def test_camera_recovers_gain_offset_and_hot_pixels(tmp_path: Path, seed: int) -> None:
    truth = small_truth(seed)
    truth["hot_pixel_fraction"] = 1e-3  # a few on a 64 x 64 camera
    for bench, twin in open_small(tmp_path, truth):
        routine = CameraRoutine()
        result = routine.run(bench, twin)
        check_plot(routine, result)
        true = truth_of(bench)
        assert result.values["camera_gain"] == pytest.approx(float(true.camera_gain), rel=0.01)
        assert result.values["camera_offset_dn"] == pytest.approx(float(true.camera_offset_dn), abs=1.0)
        hot_true = true.hot_pixels_e_per_s.numpy() > 0
        hot = np.asarray(result.values["hot_pixels_e_per_s"])
        assert np.array_equal(hot > 0, hot_true)
        assert hot[hot_true] == pytest.approx(true.hot_pixels_e_per_s.numpy()[hot_true], rel=0.05)
        spec = twin.geometry.camera
        assert result.products["read_noise_e"] == pytest.approx(spec.read_noise_e, rel=0.05)
        assert result.products["dark_dn"].shape == spec.resolution
        assert result.frames < 130
        assert bench.camera.exposure_s == pytest.approx(1e-3)  # the exposure in use is restored
        assert not bench.guard.armed


def test_camera_refuses_a_dark_bench(tmp_path: Path) -> None:
    for bench, twin in open_small(tmp_path, small_truth(5), laser={"power_w": 0.0}):
        with pytest.raises(CalibrationError, match=r"camera.*dark level"):
            CameraRoutine().run(bench, twin)
        assert not bench.guard.armed


@pytest.mark.parametrize("seed", [4, 9])
def test_crosstalk_then_lut_recover_the_filter_slm(tmp_path: Path, seed: int) -> None:
    """Crosstalk first (it needs no LUT), then the LUT through the twin holding that crosstalk."""
    for bench, twin in open_small(tmp_path, small_truth(seed)):
        true = truth_of(bench)
        crosstalk = CrosstalkRoutine().run(bench, twin)
        check_plot(CrosstalkRoutine(), crosstalk)
        assert crosstalk.values["slm_crosstalk_px"] == pytest.approx(float(true.slm_crosstalk_px), abs=0.05)
        assert crosstalk.frames <= 25
        apply_values(twin.imperfections, crosstalk.values)
        lut = SlmLutRoutine(step=8).run(bench, twin)
        check_plot(SlmLutRoutine(), lut)
        error = np.asarray(lut.values["slm_lut"]) - true.slm_lut.numpy()
        assert np.sqrt(np.mean(error**2)) <= 0.05
        inverse = lut.products["inverse_lut"]  # gray level for phase 2 pi k / levels
        phase_of_inverse = true.slm_lut.numpy()[inverse]
        wanted = 2 * np.pi * np.arange(len(inverse)) / len(inverse)
        wrapped = np.angle(np.exp(1j * (phase_of_inverse - wanted)))
        assert np.sqrt(np.mean(wrapped**2)) < 0.06
        assert not bench.guard.armed


def test_lut_refuses_an_interlocked_laser(tmp_path: Path) -> None:
    for bench, twin in open_small(tmp_path, small_truth(2), faults={"interlock_open": True}):
        with pytest.raises(CalibrationError, match=r"slm_lut.*interlock"):
            SlmLutRoutine(step=8).run(bench, twin)
        assert not bench.guard.armed


#: what the registration and aberrations routines estimate before the illumination routine runs
#: (here taken from the truth, as the session would have written their results into the twin)
GEOMETRY = ("input_shift_px", "input_rotation_rad", "camera_shift_px", "camera_rotation_rad", "camera_scale",
            "zernike_rad")


@pytest.mark.parametrize("seed", [2, 5])
def test_illumination_recovers_beam_and_contrast(tmp_path: Path, seed: int) -> None:
    # the filter SLM's pixel envelope is physics every SLM has (the routine divides it out); the
    # small bench's unmodelled truth is off, so switch that one effect on
    pixels = {"enabled": True, "pixel_aperture": True}
    for bench, twin in open_small(tmp_path, small_truth(seed), unmodelled=pixels):
        true = truth_of(bench)
        apply_values(twin.imperfections, {k: getattr(true, k).detach().clone() for k in GEOMETRY})
        result = IlluminationRoutine().run(bench, twin)
        check_plot(IlluminationRoutine(), result)
        waist = float(true.illumination_waist_m)
        assert result.values["illumination_waist_m"] == pytest.approx(waist, rel=0.05)
        centre = np.asarray(result.values["illumination_center_m"])
        assert np.abs(centre - true.illumination_center_m.numpy()).max() <= 20e-6
        assert result.values["input_contrast"] == pytest.approx(float(true.input_contrast), rel=0.05)
        assert not bench.guard.armed


def test_illumination_refuses_a_dark_bench(tmp_path: Path) -> None:
    for bench, twin in open_small(tmp_path, small_truth(2), laser={"power_w": 0.0}):
        with pytest.raises(CalibrationError, match=r"illumination.*dark level"):
            IlluminationRoutine().run(bench, twin)
        assert not bench.guard.armed

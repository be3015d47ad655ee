"""slmsuite SLMs and cameras through labrig's drivers, checked against slmsuite's own physics.

A blazed grating shown through `SlmsuiteSLM` must send the simulated camera's
spot where slmsuite's Fourier calibration (`FourierSLM.kxyslm_to_ijcam`) puts it.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

pytest.importorskip("slmsuite")
pytest.importorskip("scipy")

from drivers.config import Section
from drivers.errors import ConfigError, DeviceError, PatternError
from drivers.plugin import DeviceContext
from drivers.vendors.slm import SlmsuiteSLM, load_lut_file
from drivers.vendors.slmsuite_camera import SlmsuiteCamera

OPTICS = {"optics": {"wavelength_m": 532e-9, "focal1_m": 0.1, "focal2_m": 0.1}}
F_EFF_PX = 3000.0  # camera pixels per unit of normalized k (SLM k-space -> camera, "ij" units)
CAM_W, CAM_H = 160, 120


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _context(role: str, shared: dict) -> DeviceContext:
    return DeviceContext(profile=Section(OPTICS), role=role, shared=shared)


def _slm(shared: dict, role: str = "filter", **table: object) -> SlmsuiteSLM:
    data = {"slmsuite_class": "SimulatedSLM",
            "slmsuite_args": {"gpu": False, "wav_um": 0.532}, "resolution": [96, 128], "pitch_m": 8e-6,
            "bit_depth": 8, **table}
    return SlmsuiteSLM.from_config(Section(data, f"devices.{role}"), _context(role, shared))


def _camera(shared: dict, **args: object) -> SlmsuiteCamera:
    affine = {"M": [[F_EFF_PX, 0.0], [0.0, F_EFF_PX]], "b": [CAM_W / 2, CAM_H / 2]}
    data = {"slmsuite_class": "SimulatedCamera", "slm": "filter",
            "resolution": [CAM_H, CAM_W], "bit_depth": 12, "pitch_m": 5e-6,
            "slmsuite_args": {"bitdepth": 12, "gain": 0.5, **affine, **args}}
    return SlmsuiteCamera.from_config(Section(data, "devices.camera"), _context("camera", shared))


@pytest.fixture
def slm_and_camera():
    shared: dict = {}
    slm = _slm(shared).open()
    camera = _camera(shared).open()
    yield slm, camera
    camera.close()
    slm.close()


def _spot(frame: np.ndarray) -> tuple[float, float]:
    """(x, y) centroid of the pixels above half the peak."""
    weights = np.where(frame >= frame.max() / 2, frame.astype(np.float64), 0.0)
    yy, xx = np.indices(frame.shape)
    return float((weights * xx).sum() / weights.sum()), float((weights * yy).sum() / weights.sum())


def test_slm_takes_geometry_from_the_profile_and_wavelength_from_optics(slm_and_camera) -> None:
    slm, camera = slm_and_camera
    assert slm.device.shape == (96, 128) and slm.resolution == (96, 128)
    assert slm.device.wav_um == pytest.approx(0.532)
    assert slm.pitch_m == pytest.approx(8e-6) and slm.modulation == "phase"
    assert camera.resolution == (CAM_H, CAM_W) and camera.bit_depth == 12
    assert slm.identity()["model"] == "SimulatedSLM"
    np.testing.assert_array_equal(slm.pattern, 0)


@pytest.mark.parametrize("k", [(0.006, -0.004), (-0.009, 0.005)])
def test_blazed_grating_moves_the_spot_where_slmsuite_predicts(slm_and_camera, k) -> None:
    from slmsuite.hardware.cameraslms import FourierSLM
    from slmsuite.holography import toolbox

    slm, camera = slm_and_camera
    fourier = FourierSLM(camera.device, slm.device)
    M, b = fourier.fourier_calibration_build(F_EFF_PX, units="ij")
    fourier.fourier_calibrate_analytic(M, b)
    predicted = fourier.kxyslm_to_ijcam(np.array(k)).ravel()

    slm.show(np.zeros(slm.resolution, dtype=np.uint8))
    x0, y0 = _spot(camera.grab())
    assert (x0, y0) == pytest.approx((CAM_W / 2, CAM_H / 2), abs=1.0)  # zero order on the axis

    gray = slm.phase_to_gray(toolbox.phase.blaze(slm.device, vector=k))
    slm.show(gray)
    np.testing.assert_array_equal(slm.device.display, gray)  # shown exactly, no re-quantisation
    frame = camera.grab()
    x, y = _spot(frame)
    assert (x, y) == pytest.approx(tuple(predicted), abs=1.0)
    assert np.hypot(x - x0, y - y0) > 15  # it really moved


def test_phase_to_gray_inverts_the_lut() -> None:
    slm = _slm({}).open()
    try:
        lut = slm.lut
        gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
        np.testing.assert_array_equal(slm.phase_to_gray(lut[gray]), gray)
        # slmsuite's SLMs lower the phase delay as the gray level rises: the LUT follows it
        assert lut[1] == pytest.approx(2 * np.pi - 2 * np.pi / 256)
        with pytest.raises(PatternError, match=r"phases, not transmissions"):
            slm.transmission_to_gray(np.zeros((2, 2)))
    finally:
        slm.close()


def test_amplitude_input_modulator_and_lut_loading(tmp_path) -> None:
    lut = np.linspace(0.0, 1.0, 256) ** 2.2  # a gamma-like intensity response
    np.savetxt(tmp_path / "lut.txt", lut)
    profile = tmp_path / "bench.toml"
    profile.write_text("")
    data = {"slmsuite_class": "SimulatedSLM", "slmsuite_args": {"gpu": False, "wav_um": 0.532},
            "resolution": [96, 128], "pitch_m": 8e-6, "bit_depth": 8, "lut_file": "lut.txt"}
    slm = SlmsuiteSLM.from_config(Section(data, "devices.input", str(profile)), _context("input", {}))
    assert slm.modulation == "amplitude"
    slm.open()
    try:
        np.testing.assert_allclose(slm.lut, lut)
        gray = slm.transmission_to_gray(np.array([[0.0, 0.25], [0.5, 1.0]]))
        np.testing.assert_allclose(lut[gray], [[0.0, 0.25], [0.5, 1.0]], atol=0.01)
        slm.show(gray.repeat(48, 0).repeat(64, 1))
        slm.load_lut(np.linspace(0, 1, 256))  # after a calibration
        assert slm.transmission_to_gray(np.array([0.5]))[0] in (127, 128)
        slm.close()
        slm.open()  # the calibrated LUT survives reopening
        np.testing.assert_allclose(slm.lut, np.linspace(0, 1, 256))
        with pytest.raises(PatternError, match=r"256 finite values"):
            slm.load_lut(np.zeros(10))
    finally:
        slm.close()
    with pytest.raises(ConfigError, match=r"needs 1024 finite values, found shape"):
        load_lut_file(tmp_path / "lut.txt", 1024)


def test_settle_time_is_waited_after_a_pattern() -> None:
    slm = _slm({}, settle_s=0.05).open()
    try:
        start = time.perf_counter()
        slm.show(np.ones(slm.resolution, dtype=np.uint8))
        assert time.perf_counter() - start >= 0.05
        start = time.perf_counter()
        slm.show(np.ones(slm.resolution, dtype=np.uint8), wait=False)
        assert time.perf_counter() - start < 0.05
    finally:
        slm.close()


def test_bad_patterns_and_profiles_are_refused() -> None:
    slm = _slm({}).open()
    try:
        with pytest.raises(PatternError, match=r"shape"):
            slm.show(np.zeros((10, 10), dtype=np.uint8))
        with pytest.raises(PatternError, match=r"integer"):
            slm.show(np.zeros(slm.resolution))
    finally:
        slm.close()
    with pytest.raises(ConfigError, match=r"unknown slmsuite class 'NoSuchSLM'.*Meadowlark"):
        _slm({}, slmsuite_class="NoSuchSLM")
    with pytest.raises(ConfigError, match=r"input modulator is an amplitude modulator"):
        _slm({}, role="input", modulation="phase")
    with pytest.raises(ConfigError, match=r"unknown key.*devices.filter.slm_args"):
        _slm({}, slm_args={})
    mismatch = _slm({}, slmsuite_args={"gpu": False, "wav_um": 0.532, "resolution": (64, 64)})
    with pytest.raises(DeviceError, match=r"reports resolution \(64, 64\), the profile says \(96, 128\)"):
        mismatch.open()
    assert not mismatch.is_open and mismatch.device is None
    no_wavelength = _slm({}, slmsuite_args={"gpu": False})
    with pytest.raises(DeviceError, match=r"wav_um = 1, optics.wavelength_m is 5.32e-07; set slmsuite_args.wav_um"):
        no_wavelength.open()


def test_simulated_camera_needs_its_slm() -> None:
    data = {"slmsuite_class": "SimulatedCamera", "slm": "filter"}
    with pytest.raises(ConfigError, match=r"no slmsuite.slm device fills the 'filter' role"):
        SlmsuiteCamera.from_config(Section(data, "devices.camera"), _context("camera", {}))
    shared: dict = {}
    _slm(shared)  # built, not opened
    camera = _camera(shared)
    with pytest.raises(DeviceError, match=r"is not open"):
        camera.open()


def test_camera_exposure_goes_through_slmsuite(slm_and_camera) -> None:
    slm, camera = slm_and_camera
    slm.show(np.zeros(slm.resolution, dtype=np.uint8))
    bright = camera.grab().astype(float).sum()
    camera.exposure_s = 0.5
    assert camera.device.exposure_s == pytest.approx(0.5)
    assert camera.grab().astype(float).sum() == pytest.approx(bright / 2, rel=0.05)
    burst = camera.grab_burst(3)
    assert burst.shape == (3, CAM_H, CAM_W)

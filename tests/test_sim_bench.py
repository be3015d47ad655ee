"""The simulated bench: equal to the twin with the truth off, every imperfection
visible and seeded with it on, faults injected on request, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drivers.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    FrameDropped,
    OutOfRange,
    PatternError,
    SafetyError,
)
from labrig.bench import Bench
from labrig.geometry import geometry_from_profile
from labrig.optics import Twin
from labrig.profiles import load_profile

RNG = np.random.default_rng(3)


def _patterns(bench: Bench) -> tuple[np.ndarray, np.ndarray]:
    inp = np.zeros(bench.input.resolution, np.uint8)
    inp[20:44, 20:44] = RNG.integers(0, 256, (24, 24))
    filt = RNG.integers(0, 256, bench.filter.resolution).astype(np.uint8)
    return inp, filt


def _frame(bench: Bench, inp: np.ndarray, filt: np.ndarray) -> np.ndarray:
    bench.input.show(inp)
    bench.filter.show(filt)
    bench.guard.arm()
    try:
        return bench.camera.grab().astype(np.int64)
    finally:
        bench.guard.make_safe()


def _profile(tmp_path: Path, truth: str, faults: str = "", name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[bench]\nname = "test"\nextends = "sim-ideal"\n\n[truth]\n{truth}\n\n[faults]\n{faults}\n'
    )
    return path


def test_truth_off_frame_equals_twin_exactly() -> None:
    with Bench.open("sim-ideal") as bench:
        inp, filt = _patterns(bench)
        frame = _frame(bench, inp, filt)
        geometry = geometry_from_profile(load_profile("sim-ideal").root)
        twin = Twin(geometry, dtype=torch.float32)
        expected = twin.frame(
            torch.from_numpy(inp).long(), torch.from_numpy(filt).long(),
            laser_power_w=bench.laser.power_w, exposure_s=bench.camera.exposure_s, gain=bench.camera.gain,
        )
        assert frame.max() > 200, "the test pattern should light the camera"
        np.testing.assert_array_equal(frame, expected.numpy().astype(np.int64))
        # a float64 twin agrees to the float32 rounding of the ADC (at most 1 DN)
        twin64 = Twin(geometry, dtype=torch.float64)
        expected64 = twin64.frame(
            torch.from_numpy(inp).long(), torch.from_numpy(filt).long(),
            laser_power_w=bench.laser.power_w, exposure_s=bench.camera.exposure_s, gain=bench.camera.gain,
        )
        assert np.abs(frame - expected64.numpy()).max() <= 1


def test_batched_path_equals_frame_by_frame() -> None:
    with Bench.open("sim-ideal") as bench:
        inputs = np.stack([_patterns(bench)[0] for _ in range(5)])
        _, filt = _patterns(bench)
        bench.filter.show(filt)
        bench.guard.arm()
        batch = bench.camera.grab_batch(inputs)
        single = []
        for inp in inputs:
            bench.input.show(inp)
            single.append(bench.camera.grab())
        np.testing.assert_array_equal(batch, np.stack(single))


def test_dark_when_laser_off_or_shutter_closed() -> None:
    with Bench.open("sim-ideal") as bench:
        inp, filt = _patterns(bench)
        bench.input.show(inp)
        bench.filter.show(filt)
        dark = bench.camera.grab()  # guard not armed: laser off, shutter closed
        spec = geometry_from_profile(bench.profile.root).camera
        expected = round(spec.offset_dn + spec.dark_current_e_per_s * bench.camera.exposure_s * spec.conversion_dn_per_e)
        assert np.all(dark == expected)


# one imperfection at a time, noise off: each must change the frame
EFFECTS = {
    "input_shift_px": "input_shift_px = [0.7, -0.6]",
    "input_rotation": "input_rotation_deg = 2.0",
    "filter_shift_px": "filter_shift_px = [1.5, -1.0]",
    "camera_shift_px": "camera_shift_px = [1.5, -0.5]",
    "camera_rotation": "camera_rotation_deg = 2.0",
    "camera_scale": "camera_scale = 1.03",
    "defocus": "zernike_rad = { defocus = 1.0 }",
    "coma": "zernike_rad = { coma_horizontal = 1.0 }",
    "slm_lut": "slm_lut_gamma = 1.3\nslm_max_phase_rad = 5.5",
    "slm_crosstalk": "slm_crosstalk_px = 1.0",
    "illumination": "illumination_waist_m = 5e-4\nillumination_center_m = [1e-4, 0.0]",
    "input_contrast": "input_contrast = 20.0",
    "camera_gain": "camera_gain_error = 1.2",
    "camera_offset": "camera_offset_error_dn = 15.0",
    "hot_pixels": "hot_pixel_fraction = 0.01",
}


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_truth_effect_is_visible(tmp_path: Path, effect: str) -> None:
    with Bench.open("sim-ideal") as ideal:
        inp, filt = _patterns(ideal)
        reference = _frame(ideal, inp, filt)
    profile = _profile(tmp_path, f"enabled = true\nnoise = false\n{EFFECTS[effect]}")
    with Bench.open(profile) as bench:
        frame = _frame(bench, inp, filt)
    assert np.abs(frame - reference).max() >= 10, f"{effect} left the frame unchanged"


def test_drift_moves_the_image_over_time(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "enabled = true\nnoise = false\ndrift_px_per_s = [50.0, 0.0]")
    with Bench.open(profile) as bench:
        inp, filt = _patterns(bench)
        first = _frame(bench, inp, filt)
        bench.guard.arm()
        for _ in range(20):
            later = bench.camera.grab().astype(np.int64)
    assert np.abs(later - first).max() >= 10


def test_truth_on_is_noisy_but_seeded() -> None:
    frames = []
    for _ in range(2):
        with Bench.open("sim") as bench:
            inp, filt = _patterns(bench) if not frames else (frames[0][2], frames[0][3])
            bench.input.show(inp)
            bench.filter.show(filt)
            bench.guard.arm()
            frames.append((bench.camera.grab(), bench.camera.grab(), inp, filt))
    (a1, a2, *_), (b1, b2, *_) = frames
    assert not np.array_equal(a1, a2), "consecutive frames must differ by noise"
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)


def test_different_seed_gives_different_noise(tmp_path: Path) -> None:
    grabs = []
    for seed in (1, 2):
        profile = _profile(tmp_path, f"enabled = true\nseed = {seed}", name=f"s{seed}.toml")
        with Bench.open(profile) as bench:
            inp = np.full(bench.input.resolution, 128, np.uint8)
            grabs.append(_frame(bench, inp, np.zeros(bench.filter.resolution, np.uint8)))
    assert not np.array_equal(*grabs)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        ("frame_timeout_prob = 1.0", DeviceTimeout),
        ("dropped_frame_prob = 1.0", FrameDropped),
    ],
)
def test_injected_frame_faults(tmp_path: Path, faults: str, error: type) -> None:
    with Bench.open(_profile(tmp_path, "enabled = false", faults)) as bench:
        with pytest.raises(error, match="fault injection"):
            bench.camera.grab(timeout_s=0.01)


def test_injected_disconnect(tmp_path: Path) -> None:
    with Bench.open(_profile(tmp_path, "enabled = false", "disconnect_after_frames = 2")) as bench:
        bench.camera.grab()
        bench.camera.grab()
        with pytest.raises(DeviceDisconnected):
            bench.camera.grab()
        with pytest.raises(DeviceDisconnected):
            bench.camera.grab_batch(np.zeros((2, *bench.input.resolution), np.uint8))


def test_injected_slm_write_error(tmp_path: Path) -> None:
    with Bench.open(_profile(tmp_path, "enabled = false", "slm_write_error_prob = 1.0")) as bench:
        before = bench.filter.pattern
        with pytest.raises(DeviceError, match="write to the SLM failed"):
            bench.filter.show(np.ones(bench.filter.resolution, np.uint8))
        np.testing.assert_array_equal(bench.filter.pattern, before)


def test_open_interlock_refuses_emission(tmp_path: Path) -> None:
    with Bench.open(_profile(tmp_path, "enabled = false", "interlock_open = true")) as bench:
        with pytest.raises(SafetyError):
            bench.guard.arm()
        assert not bench.laser.enabled
        assert not bench.shutter.shutter_open


def test_bad_patterns_and_settings_are_refused() -> None:
    with Bench.open("sim-ideal") as bench:
        with pytest.raises(PatternError, match=r"\(10, 10\)"):
            bench.filter.show(np.zeros((10, 10), np.uint8))
        with pytest.raises(PatternError, match="float"):
            bench.filter.show(np.zeros(bench.filter.resolution, np.float32))
        with pytest.raises(PatternError, match="256"):
            bench.input.show(np.full(bench.input.resolution, 256, np.uint16))
        with pytest.raises(OutOfRange, match="exposure_s"):
            bench.camera.exposure_s = 5.0
        with pytest.raises(OutOfRange, match="gain"):
            bench.camera.gain = float("nan")


@pytest.mark.parametrize(
    ("truth", "key"),
    [
        ("enabled = true\nzernike_rad = { trefoil = 1.0 }", "truth.zernike_rad"),
        ("enabled = true\ncamera_scale = -1.0", "truth.camera_scale"),
        ("enabled = true\ncamra_shift_px = [1, 2]", "truth.camra_shift_px"),
        ("enabled = true\ninput_shift_px = [1]", "truth.input_shift_px"),
    ],
)
def test_malformed_truth_names_the_key(tmp_path: Path, truth: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Bench.open(_profile(tmp_path, truth))


def test_unknown_device_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[bench]\nname = "t"\nextends = "sim-ideal"\n\n[devices.camera]\nexposre_s = 0.01\n')
    with pytest.raises(ConfigError, match=r"devices\.camera\.exposre_s"):
        Bench.open(path)


def test_input_modulator_larger_than_window_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text('[bench]\nname = "t"\nextends = "sim-ideal"\n\n[devices.input]\nresolution = [512, 512]\n')
    with pytest.raises((ConfigError, ValueError), match="input modulator"):
        Bench.open(path)

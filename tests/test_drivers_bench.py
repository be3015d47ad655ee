"""A bench assembled from the real drivers, opened from a TOML profile by the same code as `sim`.

Camera: harvesters on the simulated GenTL producer viky.cti (or slmsuite's
SimulatedCamera); SLMs: slmsuite SimulatedSLM; shutter and laser: pty fakes
speaking the SC10 and OBIS protocols. Also: the shipped real-rig example profile
validates and builds (without opening anything).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("serial")
pytest.importorskip("slmsuite")
pytest.importorskip("scipy")

from fake_serial_devices import FakeObis, FakeSC10
from test_drivers_genicam import VIKY

from drivers.errors import DeviceError
from drivers.vendors.genicam import GenICamCamera, live_acquirers
from drivers.vendors.serial.obis import CoherentObis
from drivers.vendors.serial.sc10 import ThorlabsSC10
from drivers.vendors.slm import SlmsuiteSLM
from drivers.vendors.slmsuite_camera import SlmsuiteCamera
from labrig.bench import Bench
from labrig.geometry import geometry_from_profile
from labrig.io import json_default
from labrig.profiles import example_profiles, load_profile

RIG_EXAMPLE = example_profiles()["rig-example"]

GENICAM_CAMERA = """\
kind = "genicam.camera"
cti = ["{viky}"]
serial_number = "0"
pixel_format = "Mono8"
resolution = [240, 320]
frame_rate_hz = 200.0
pitch_m = 5e-6
"""

SLMSUITE_CAMERA = """\
kind = "slmsuite.camera"
slmsuite_class = "SimulatedCamera"
slm = "filter"
resolution = [120, 160]
bit_depth = 12
slmsuite_args = {{ bitdepth = 12, gain = 0.5, M = [[3000.0, 0.0], [0.0, 3000.0]], b = [80.0, 60.0] }}
"""

PROFILE = """\
[bench]
name = "real-drivers"
description = "viky camera, slmsuite simulated SLMs, pty SC10 and OBIS"

[optics]
wavelength_m = 532e-9
focal1_m = 0.1
focal2_m = 0.05
illumination = "coherent"

[devices.laser]
kind = "coherent.obis"
port = "{laser}"
timeout_s = 0.2
power_w = 0.02
power_range_w = [0.0, 0.05]

[devices.shutter]
kind = "thorlabs.sc10"
port = "{shutter}"
timeout_s = 0.2

[devices.input]
kind = "slmsuite.slm"
slmsuite_class = "SimulatedSLM"
slmsuite_args = {{ gpu = false, wav_um = 0.532 }}
resolution = [64, 64]
pitch_m = 16e-6
bit_depth = 8
fill_factor = 0.92

[devices.filter]
kind = "slmsuite.slm"
slmsuite_class = "SimulatedSLM"
slmsuite_args = {{ gpu = false, wav_um = 0.532 }}
resolution = [96, 128]
pitch_m = 8e-6
bit_depth = 8
settle_s = 0.0

[devices.camera]
{camera}"""


@pytest.fixture
def instruments():
    sc10, obis = FakeSC10(), FakeObis()
    yield sc10, obis
    sc10.close()
    obis.close()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write(tmp_path: Path, instruments, camera: str) -> Path:
    sc10, obis = instruments
    path = tmp_path / "real-drivers.toml"
    path.write_text(PROFILE.format(laser=obis.port, shutter=sc10.port, camera=camera))
    return path


@pytest.mark.parametrize("camera", ["genicam", "slmsuite"])
def test_bench_of_real_drivers_opens_and_grabs(tmp_path: Path, instruments, camera: str) -> None:
    if camera == "genicam" and VIKY is None:
        pytest.skip("harvesters/genicam with viky.cti not installed")
    table = GENICAM_CAMERA.format(viky=VIKY) if camera == "genicam" else SLMSUITE_CAMERA.format()
    sc10, obis = instruments
    shape = (240, 320) if camera == "genicam" else (120, 160)
    with Bench.open(_write(tmp_path, instruments, table)) as bench:
        assert isinstance(bench.laser, CoherentObis) and isinstance(bench.shutter, ThorlabsSC10)
        assert isinstance(bench.input, SlmsuiteSLM) and bench.input.modulation == "amplitude"
        assert isinstance(bench.filter, SlmsuiteSLM) and bench.filter.modulation == "phase"
        assert isinstance(bench.camera, GenICamCamera if camera == "genicam" else SlmsuiteCamera)
        assert not obis.emission and not sc10.enabled  # opened dark

        bench.input.show(bench.input.transmission_to_gray(np.full((64, 64), 0.5)))
        bench.filter.show(np.zeros((96, 128), dtype=np.uint8))
        frame = bench.snap(tmp_path / "frame.npy")
        assert frame.shape == shape and np.array_equal(np.load(tmp_path / "frame.npy"), frame)
        assert "SOURce:AM:STATe ON" in obis.log  # snap armed the light ...
        assert not obis.emission and not sc10.enabled  # ... and made it safe again
        bench.snap(tmp_path / "frame.h5")
        assert bench.camera.grab_burst(2).shape == (2, *shape)

        info = bench.describe()
        json.dumps(info, default=json_default)  # storable with a run
        assert info["devices"]["laser"]["identity"]["serial"] == "OBIS-0042"
        assert info["devices"]["filter"]["settings"]["slmsuite_class"] == "SimulatedSLM"
    assert not obis.emission and not sc10.enabled
    assert live_acquirers() == 0


def test_bench_open_failure_leaves_everything_safe_and_closed(tmp_path: Path, instruments) -> None:
    sc10, obis = instruments
    table = SLMSUITE_CAMERA.format().replace("bit_depth = 12", "bit_depth = 10")
    with pytest.raises(DeviceError, match=r"SimulatedCamera \(camera\): the camera has 12 bits, the profile's bit_depth is 10"):
        Bench.open(_write(tmp_path, instruments, table))
    assert not obis.emission and not sc10.enabled  # the laser and shutter were already open


def test_rig_example_profile_validates_and_builds() -> None:
    profile = load_profile(RIG_EXAMPLE)
    assert profile.name == "rig-example"
    geometry = geometry_from_profile(profile.root)  # the twin can be built from it
    assert geometry.filter.resolution == (1152, 1920) and geometry.camera.bit_depth == 12
    bench = Bench(profile)
    bench._build()  # every table is valid for its driver; nothing is opened
    kinds = {role: type(device).__name__ for role, device in bench.devices.items()}
    assert kinds == {"laser": "CoherentObis", "shutter": "ThorlabsSC10", "input": "SlmsuiteSLM",
                     "filter": "SlmsuiteSLM", "camera": "GenICamCamera"}
    assert bench.filter.cls.__name__ == "Meadowlark" and bench.input.cls.__name__ == "ScreenMirrored"
    assert bench.camera.config.trigger_source == "Software"
    assert bench.camera.config.roi.width == 1024 and bench.camera.config.pixel_format == "Mono12"
    assert not any(device.is_open for device in bench.devices.values())

"""The GenICam driver against the real simulated GenTL producer (viky.cti) and a fake node map.

viky (shipped in the genicam wheel) enumerates three cameras and streams Mono8
or RGBa8 frames of a bouncing ball; it has no ExposureTime, Gain, Offset or
Trigger nodes, so that logic is tested on a fake node map below.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from drivers.config import Section
from drivers.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    FrameDropped,
    OutOfRange,
    Unsupported,
)
from drivers.plugin import DeviceContext
from drivers.vendors.genicam import (
    DeviceSelector,
    GenICamCamera,
    GenICamSettings,
    NodeAccess,
    find_producers,
    frame_from_component,
    live_acquirers,
)


def _viky() -> Path | None:
    try:
        import genicam
        import harvesters.core  # noqa: F401
    except ImportError:
        return None
    path = Path(genicam.__file__).parent / "viky.cti"
    return path if path.is_file() else None


VIKY = _viky()
needs_viky = pytest.mark.skipif(VIKY is None, reason="harvesters/genicam with viky.cti not installed")


def _camera(**table: Any) -> GenICamCamera:
    data = {"cti": [str(VIKY)], "serial_number": "1", "pixel_format": "Mono8",
            "frame_rate_hz": 200.0, **table}
    return GenICamCamera.from_config(Section(data, "devices.camera"),
                                     DeviceContext(Section({}), "camera"))


@pytest.fixture
def viky():
    camera = _camera(width=320, height=240).open()
    yield camera
    camera.close()
    assert live_acquirers() == 0


# -- against viky.cti ---------------------------------------------------------------------------


@needs_viky
def test_enumerates_the_three_viky_cameras() -> None:
    from drivers.vendors.genicam import enumerate_devices

    devices = enumerate_devices([VIKY])
    assert [d["serial_number"] for d in devices] == ["0", "1", "2"]
    assert {d["model"] for d in devices} == {"Viky"}
    assert live_acquirers() == 0


@needs_viky
def test_producers_from_the_gentl_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GENICAM_GENTL64_PATH", f"{tmp_path}:{VIKY.parent}")
    assert find_producers() == [VIKY.resolve()]
    with pytest.raises(DeviceError, match=r"does not exist"):
        find_producers([tmp_path / "missing.cti"])
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    with pytest.raises(DeviceError, match=r"no GenTL producer"):
        find_producers()


@needs_viky
@pytest.mark.parametrize("select", [{"index": 1}, {"serial_number": "1"}, {"device_id": "VikyTL_DEV_green"}])
def test_open_by_index_serial_or_id(select) -> None:
    data = {"cti": [str(VIKY)], "pixel_format": "Mono8", **select}
    camera = GenICamCamera.from_config(Section(data, "devices.camera"), DeviceContext(Section({}), "camera"))
    with camera:
        assert camera.identity()["serial"] == "1"
        assert camera.identity()["device_id"] == "VikyTL_DEV_green"
        assert camera.identity()["producer"] == "viky.cti"


@needs_viky
def test_ambiguous_or_missing_camera_is_named() -> None:
    with pytest.raises(DeviceError, match=r"3 cameras match model='Viky'.*serial=0.*serial=2"):
        GenICamCamera(cti=[VIKY], selector=DeviceSelector({"model": "Viky"})).open()
    with pytest.raises(DeviceError, match=r"no camera matches serial_number='7'"):
        GenICamCamera(cti=[VIKY], selector=DeviceSelector({"serial_number": "7"})).open()
    assert live_acquirers() == 0


@needs_viky
def test_grabs_mono8_frames_of_the_roi_that_change(viky: GenICamCamera) -> None:
    assert viky.resolution == (240, 320) and viky.bit_depth == 8
    assert viky.pixel_format == "Mono8"
    first = viky.grab(timeout_s=1.0)
    assert first.shape == (240, 320) and first.dtype == np.uint8
    time.sleep(0.1)
    later = viky.grab(timeout_s=1.0)
    assert np.count_nonzero(first != later) > 20  # the ball moved
    burst = viky.grab_burst(4)
    assert burst.shape == (4, 240, 320) and burst.dtype == np.uint8
    viky.set_roi(width=200, height=100)
    assert viky.resolution == (100, 200) and viky.grab().shape == (100, 200)
    assert viky.roi == {"width": 200, "height": 100}


@needs_viky
def test_absent_nodes_are_clear_errors(viky: GenICamCamera) -> None:
    with pytest.raises(DeviceError, match=r"no ExposureTime / ExposureTimeAbs node"):
        viky.exposure_s = 0.01
    with pytest.raises(DeviceError, match=r"no Gain node"):
        viky.gain = 1.0
    with pytest.raises(DeviceError, match=r"no OffsetX node"):
        viky.set_roi(offset_x=8)
    with pytest.raises(DeviceError, match=r"no TriggerMode node"):
        viky.set_trigger("Software")
    with pytest.raises(OutOfRange, match=r"Width 5000 is outside \[100, 800\]"):
        viky.set_roi(width=5000)
    assert viky.grab().shape == (240, 320)  # still streaming after the refusals
    with pytest.raises(DeviceError, match=r"has no ExposureTime"):
        _camera(serial_number="2", exposure_s=0.01).open()
    assert live_acquirers() == 1  # the failed open left nothing behind


@needs_viky
def test_refuses_a_pixel_format_it_cannot_make_2d() -> None:
    camera = GenICamCamera(cti=[VIKY], selector=DeviceSelector({"serial_number": "0"}))
    with pytest.raises(DeviceError, match=r"PixelFormat is RGBa8, which labrig cannot turn into a 2-D "
                                          "array; set pixel_format to one the camera offers: Mono8"):
        camera.open()
    assert not camera.is_open and live_acquirers() == 0
    with pytest.raises(ConfigError, match=r"'RGB8' cannot be turned into a 2-D array"):
        _camera(pixel_format="RGB8")
    with _camera() as cam, pytest.raises(OutOfRange, match=r"'RGBa8' cannot be turned"):
        cam.pixel_format = "RGBa8"


@needs_viky
def test_settings_list_the_user_level_features(viky: GenICamCamera) -> None:
    settings = viky.settings()
    assert settings["features"]["Width"] == 320
    assert settings["features"]["PixelFormat"] == "Mono8"
    assert settings["exposure_s"] is None  # viky has no exposure control
    features = {f.name: f for f in viky.features()}
    assert features["PixelFormat"].choices == ("RGBa8", "Mono8")
    assert features["Width"].minimum == 100 and features["Width"].writable
    assert all(f.visibility in ("Beginner", "Expert") for f in features.values())
    viky.set_feature("BouncingBallSize", 30)
    assert viky.get_feature("BouncingBallSize") == 30


@needs_viky
def test_close_and_reopen_without_leaks() -> None:
    camera = _camera()
    for _ in range(3):
        camera.open()
        harvester, acquirer = camera.harvester, camera.acquirer
        assert live_acquirers() == 1 and acquirer.is_valid()
        camera.grab()
        camera.close()
        assert camera.harvester is None and camera.acquirer is None
        assert not acquirer.is_valid()
        assert harvester.image_acquirers == [] and harvester.files == []
        assert harvester.device_info_list == []
        assert live_acquirers() == 0
    camera.close()  # twice is fine


@needs_viky
def test_opening_a_camera_keeps_the_sigint_handler() -> None:
    """harvesters installs a SIGINT handler that swallows Ctrl-C; the bench's must survive."""
    before = signal.getsignal(signal.SIGINT)
    with _camera() as camera:
        assert signal.getsignal(signal.SIGINT) is before
        camera.reconnect()
        assert signal.getsignal(signal.SIGINT) is before


@needs_viky
def test_the_same_camera_cannot_be_opened_twice(viky: GenICamCamera) -> None:
    other = _camera()
    with pytest.raises(DeviceError, match=r"is in use"):
        other.open()
    assert live_acquirers() == 1 and viky.grab().shape == (240, 320)
    second = _camera(serial_number="2")  # another camera on the same producer shares the harvester
    with second:
        assert second.harvester is viky.harvester and live_acquirers() == 2
        assert second.grab().shape == (400, 400)
    assert live_acquirers() == 1 and viky.grab().shape == (240, 320)


@needs_viky
def test_lost_device_is_reported_and_reconnected(viky: GenICamCamera) -> None:
    viky.set_roi(width=256, height=128)
    viky.harvester.update()  # re-enumeration: the acquirer is gone, as after a cable pull
    with pytest.raises(DeviceDisconnected, match=r"reconnect"):
        viky.grab()
    viky.reconnect()
    assert viky.grab().shape == (128, 256)  # the window came back with it
    assert live_acquirers() == 1


@needs_viky
def test_grab_reconnects_by_itself_when_asked() -> None:
    with _camera(reconnect_attempts=1) as camera:
        camera.harvester.update()
        assert camera.grab().shape == (400, 400)
        assert live_acquirers() == 1


@needs_viky
def test_grab_times_out() -> None:
    with _camera(frame_rate_hz=2.0) as camera:
        camera.grab(timeout_s=2.0)  # a frame just arrived; the next is 0.5 s away
        start = time.perf_counter()
        with pytest.raises(DeviceTimeout, match=r"no frame within 0.05 s"):
            camera.grab(timeout_s=0.05)
        assert time.perf_counter() - start < 0.5


# -- against a fake node map ----------------------------------------------------------------------


class FakeNode:
    def __init__(self, value: Any, *, lo: float | None = None, hi: float | None = None,
                 unit: str = "", symbolics: tuple[str, ...] = (), inc: int | None = None) -> None:
        self.value = value
        self.unit = unit
        self.symbolics = symbolics
        if lo is not None:
            self.min, self.max = lo, hi
        if inc is not None:
            self.inc = inc


class WidthNode(FakeNode):
    """Width whose maximum shrinks as OffsetX grows, as on a real sensor."""

    def __init__(self, offset: FakeNode) -> None:
        super().__init__(640, lo=16, hi=1280, inc=16)
        self.offset = offset

    @property
    def max(self) -> int:
        return 1280 - self.offset.value

    @max.setter
    def max(self, value: int) -> None:
        pass


class FakeCommand:
    def __init__(self) -> None:
        self.count = 0

    def execute(self) -> None:
        self.count += 1


def fake_node_map(**extra: Any) -> SimpleNamespace:
    """An SFNC camera: exposure in us, gain in dB, frame-start software trigger."""
    offset_x = FakeNode(0, lo=0, hi=1264, inc=16)
    nodes = {
        "PixelFormat": FakeNode("Mono12", symbolics=("Mono8", "Mono12", "BayerRG8")),
        "Width": WidthNode(offset_x),
        "Height": FakeNode(480, lo=16, hi=1024, inc=2),
        "OffsetX": offset_x,
        "OffsetY": FakeNode(0, lo=0, hi=1008, inc=2),
        "ExposureTime": FakeNode(10000.0, lo=20.0, hi=1e6, unit="us"),
        "ExposureAuto": FakeNode("Continuous", symbolics=("Off", "Once", "Continuous")),
        "Gain": FakeNode(0.0, lo=0.0, hi=24.0, unit="dB"),
        "GainAuto": FakeNode("Continuous", symbolics=("Off", "Continuous")),
        "AcquisitionFrameRate": FakeNode(30.0, lo=1.0, hi=120.0, unit="Hz"),
        "AcquisitionFrameRateEnable": FakeNode(False),
        "TriggerSelector": FakeNode("AcquisitionStart", symbolics=("AcquisitionStart", "FrameStart")),
        "TriggerMode": FakeNode("Off", symbolics=("Off", "On")),
        "TriggerSource": FakeNode("Line0", symbolics=("Line0", "Line1", "Software")),
        "TriggerSoftware": FakeCommand(),
        **extra,
    }
    return SimpleNamespace(**nodes)


class FakeComponent:
    def __init__(self, frame: np.ndarray, fmt: str = "Mono12", padding: int = 0) -> None:
        self.data_format = fmt
        self.height, self.width = frame.shape
        padded = np.pad(frame, ((0, 0), (0, padding)))
        self.data = padded.ravel()


class FakeBuffer:
    def __init__(self, acquirer: FakeAcquirer, frame: np.ndarray) -> None:
        self.acquirer = acquirer
        self.payload = SimpleNamespace(components=[FakeComponent(frame)])

    def queue(self) -> None:
        self.acquirer.queued += 1

    def __enter__(self) -> FakeBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue()


class FakeAcquirer:
    """Frames numbered from 1; `stale` frames wait in the queue before any grab."""

    def __init__(self, node_map: SimpleNamespace, stale: int = 2) -> None:
        self.node_map = node_map
        self.stale = stale
        self.fetched = 0
        self.queued = 0
        self.triggers_at_fetch: list[int] = []
        self.streaming = True

    def is_valid(self) -> bool:
        return True

    def is_acquiring(self) -> bool:
        return self.streaming

    def stop(self) -> None:
        self.streaming = False

    def start(self) -> None:
        self.streaming = True

    def _frame(self) -> np.ndarray:
        self.fetched += 1
        h, w = self.node_map.Height.value, self.node_map.Width.value
        return np.full((h, w), self.fetched, dtype=np.uint16)

    def try_fetch(self, *, timeout: float) -> FakeBuffer | None:
        if self.stale <= 0:
            return None
        self.stale -= 1
        return FakeBuffer(self, self._frame())

    def fetch(self, *, timeout: float) -> FakeBuffer:
        self.triggers_at_fetch.append(self.node_map.TriggerSoftware.count)
        return FakeBuffer(self, self._frame())


def _fake_camera(settings: GenICamSettings, node_map: SimpleNamespace | None = None) -> GenICamCamera:
    """A camera wired to a fake node map and acquirer, past the harvesters part of open."""
    node_map = node_map or fake_node_map()
    camera = GenICamCamera("fake GenICam", settings=settings)
    camera.nodes = NodeAccess(node_map, camera.name)
    camera.acquirer = FakeAcquirer(node_map)
    camera._configure()
    camera._is_open = True
    return camera


def test_exposure_gain_and_frame_rate_on_sfnc_nodes() -> None:
    nm = fake_node_map()
    camera = _fake_camera(GenICamSettings(exposure_s=2e-3, gain=2.0, frame_rate_hz=50.0), nm)
    assert nm.ExposureTime.value == pytest.approx(2000.0) and nm.ExposureAuto.value == "Off"
    assert nm.Gain.value == pytest.approx(20 * np.log10(2.0)) and nm.GainAuto.value == "Off"
    assert nm.AcquisitionFrameRate.value == 50.0 and nm.AcquisitionFrameRateEnable.value is True
    assert camera.exposure_bounds_s == pytest.approx((20e-6, 1.0))
    assert camera.gain_bounds == pytest.approx((1.0, 10 ** (24 / 20)))
    assert camera.bit_depth == 12 and camera.resolution == (480, 640)
    camera.exposure_s = 0.5
    assert nm.ExposureTime.value == pytest.approx(5e5) and camera.config.exposure_s == 0.5
    with pytest.raises(OutOfRange, match=r"exposure_s 2.0 is outside \[2e-05, 1\]"):
        camera.exposure_s = 2.0
    camera.gain = 1.0
    assert nm.Gain.value == pytest.approx(0.0)
    camera.frame_rate_hz = 100
    assert camera.frame_rate_hz == 100.0
    with pytest.raises(OutOfRange, match=r"AcquisitionFrameRate 500.0 is outside \[1, 120\]"):
        camera.frame_rate_hz = 500


def test_software_trigger_fires_before_each_fetch() -> None:
    nm = fake_node_map()
    camera = _fake_camera(GenICamSettings(trigger_source="Software"), nm)
    assert (nm.TriggerSelector.value, nm.TriggerSource.value, nm.TriggerMode.value) == (
        "FrameStart", "Software", "On")
    frame = camera.grab()
    assert frame.shape == (480, 640) and frame.dtype == np.uint16
    assert frame[0, 0] == 3  # frames 1 and 2 were stale and dropped
    assert camera.acquirer.queued == 3  # every buffer went back
    burst = camera.grab_burst(3)
    assert [int(f[0, 0]) for f in burst] == [4, 5, 6]
    assert camera.acquirer.triggers_at_fetch == [1, 2, 3, 4]
    camera.set_trigger(None)
    assert nm.TriggerMode.value == "Off"
    camera.grab()
    assert nm.TriggerSoftware.count == 4  # free run: no trigger
    camera.set_trigger("Line1")
    assert (nm.TriggerSource.value, nm.TriggerMode.value) == ("Line1", "On")
    with pytest.raises(OutOfRange, match=r"TriggerSource cannot be 'Line9'; the camera offers Line0, Line1"):
        camera.set_trigger("Line9")


def test_roi_order_and_increments() -> None:
    nm = fake_node_map()
    nm.OffsetX.value = 640
    camera = _fake_camera(GenICamSettings(pixel_format="Mono8"), nm)
    camera.set_roi(width=1280, height=512, offset_x=0, offset_y=2)  # the offset must go first
    assert (nm.Width.value, nm.OffsetX.value, nm.OffsetY.value) == (1280, 0, 2)
    assert camera.acquirer.streaming  # paused for the change, then restarted
    assert camera.resolution == (512, 1280) and camera.bit_depth == 8
    with pytest.raises(OutOfRange, match=r"Width 100 is not min 16 plus a multiple of 16"):
        camera.set_roi(width=100)


def test_missing_trigger_and_exposure_nodes_are_named() -> None:
    nm = fake_node_map()
    del nm.TriggerSoftware
    with pytest.raises(DeviceError, match=r"no TriggerSoftware node"):
        _fake_camera(GenICamSettings(trigger_source="Software"), nm)
    nm = fake_node_map()
    del nm.ExposureTime
    nm.ExposureTimeAbs = FakeNode(100.0, lo=10.0, hi=1e5, unit="us")  # a pre-SFNC camera
    camera = _fake_camera(GenICamSettings(exposure_s=1e-3), nm)
    assert nm.ExposureTimeAbs.value == pytest.approx(1000.0)
    assert camera.exposure_bounds_s == pytest.approx((1e-5, 0.1))


def test_frames_from_components() -> None:
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.testing.assert_array_equal(frame_from_component(FakeComponent(frame), "cam"), frame)
    np.testing.assert_array_equal(frame_from_component(FakeComponent(frame, padding=2), "cam"), frame)
    with pytest.raises(DeviceError, match=r"pixel format BayerRG8, which labrig cannot turn"):
        frame_from_component(FakeComponent(frame, "BayerRG8"), "cam")
    short = FakeComponent(frame)
    short.data = short.data[:5]
    with pytest.raises(FrameDropped, match=r"incomplete frame"):
        frame_from_component(short, "cam")


def test_profile_keys_are_validated() -> None:
    def build(**table: Any) -> GenICamCamera:
        return GenICamCamera.from_config(Section(table, "devices.camera"), DeviceContext(Section({}), "camera"))

    camera = build(resolution=[480, 640], bit_depth=12, serial_number="A1", pitch_m=3.45e-6,
                   fill_factor=1.0, read_noise_e=2.0, features={"BlackLevel": 4})
    assert camera.config.pixel_format == "Mono12"
    assert (camera.config.roi.width, camera.config.roi.height) == (640, 480)
    assert camera.config.features == {"BlackLevel": 4} and camera.pixel_pitch_m == 3.45e-6
    with pytest.raises(ConfigError, match=r"bit_depth: 8 disagrees with pixel_format Mono12"):
        build(bit_depth=8, pixel_format="Mono12")
    with pytest.raises(ConfigError, match=r"disagrees with height x width"):
        build(resolution=[480, 640], width=320)
    with pytest.raises(ConfigError, match=r"unknown key.*devices.camera.exposure"):
        build(exposure=0.01)


# -- on-camera binning ---------------------------------------------------------------------------


class BinningNode(FakeNode):
    """BinningHorizontal/Vertical that shrink the window node, as a sensor does (Width/Height
    count binned pixels): the window is the full sensor side divided by the factor."""

    def __init__(self, window: FakeNode, sensor: int, hi: int = 4) -> None:
        self.window, self.sensor = window, sensor
        super().__init__(1, lo=1, hi=hi, inc=1)

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, factor: int) -> None:
        self._value = factor
        self.window.value = self.sensor // factor


def binning_node_map() -> SimpleNamespace:
    nm = fake_node_map()
    nm.Height = FakeNode(1024, lo=16, hi=1024, inc=2)
    nm.BinningSelector = FakeNode("Region0", symbolics=("Sensor", "Region0"))
    nm.BinningHorizontal = BinningNode(nm.Width, 1280)
    nm.BinningVertical = BinningNode(nm.Height, 1024)
    nm.BinningHorizontalMode = FakeNode("Average", symbolics=("Sum", "Average"))
    nm.BinningVerticalMode = FakeNode("Average", symbolics=("Sum", "Average"))
    return nm


def test_binning_on_a_camera_that_bins() -> None:
    nm = binning_node_map()
    camera = _fake_camera(GenICamSettings(trigger_source=None), nm)
    support = camera.binning_support()
    assert support["supported"] and support["horizontal_max"] == 4 and support["modes"] == ("Sum", "Average")
    camera.set_binning(2, mode="Sum")
    assert (nm.BinningHorizontal.value, nm.BinningVertical.value) == (2, 2)
    assert nm.BinningSelector.value == "Sensor" and nm.BinningHorizontalMode.value == "Sum"
    assert camera.resolution == (512, 640) and camera.grab().shape == (512, 640)
    assert camera.binning.horizontal == 2 and camera.settings()["binning"]["mode"] == "Sum"
    assert camera.config.binning is not None and camera.config.binning.vertical == 2  # reapplied on reconnect
    with pytest.raises(OutOfRange, match=r"BinningHorizontal 8 is outside \[1, 4\]"):
        camera.set_binning(8)
    with pytest.raises(OutOfRange, match=r"BinningHorizontalMode cannot be 'Median'"):
        camera.set_binning(2, mode="Median")
    nm2 = binning_node_map()  # a profile's binning is applied on open, before the window
    again = _fake_camera(GenICamSettings(trigger_source=None, binning=camera.config.binning), nm2)
    assert again.resolution == (512, 640) and nm2.BinningVerticalMode.value == "Sum"


def test_binning_refused_clearly_by_a_camera_without_the_nodes() -> None:
    camera = _fake_camera(GenICamSettings(trigger_source=None), fake_node_map())
    assert camera.binning_support() == {"supported": False, "missing": ["BinningHorizontal", "BinningVertical"]}
    assert camera.binning.horizontal == 1
    with pytest.raises(Unsupported, match=r"binning is unsupported.*no BinningHorizontal / BinningVertical node"):
        camera.set_binning(2)
    from drivers.vendors.genicam import Binning

    with pytest.raises(Unsupported, match=r"binning is unsupported"):  # a profile asking for it fails on open
        _fake_camera(GenICamSettings(trigger_source=None, binning=Binning(2, 2)), fake_node_map())


@needs_viky
def test_viky_reports_binning_unsupported(viky: GenICamCamera) -> None:
    assert viky.binning_support()["supported"] is False
    with pytest.raises(Unsupported, match=r"on-camera binning is unsupported"):
        viky.set_binning(2)
    assert viky.grab().shape == (240, 320)  # still streaming, window unchanged


def test_binning_profile_keys() -> None:
    def build(**table: Any) -> GenICamCamera:
        return GenICamCamera.from_config(Section(table, "devices.camera"), DeviceContext(Section({}), "camera"))

    assert build(binning=2).config.binning.horizontal == 2
    b = build(binning=[4, 2], binning_mode="Sum").config.binning
    assert (b.horizontal, b.vertical, b.mode) == (4, 2, "Sum")
    with pytest.raises(ConfigError, match=r"devices.camera.binning: expected a factor >= 1"):
        build(binning=[0, 2])

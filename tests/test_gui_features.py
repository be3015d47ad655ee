"""A GenICam camera's own features in the Devices dock's ParameterTree."""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from drivers.vendors.genicam.nodes import Feature
from labrig.gui.features import FeatureTree, feature_params, has_features


class FakeCamera:
    """The feature API of `GenICamCamera`, over a dict; refuses BlackLevel above 10."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {"BlackLevel": 2.0, "ReverseX": False, "PixelFormat": "Mono8",
                                       "DeviceModelName": "Viky", "BinningHorizontal": 1}
        self.writes: list[tuple[str, Any]] = []

    def features(self) -> list[Feature]:
        v = self.values
        return [
            Feature("BlackLevel", "float", v["BlackLevel"], True, "Beginner", "Black level",
                    "offset added to every pixel", "DN", 0.0, 100.0),
            Feature("ReverseX", "bool", v["ReverseX"], True, "Expert"),
            Feature("PixelFormat", "enum", v["PixelFormat"], True, "Beginner",
                    choices=("Mono8", "Mono12")),
            Feature("DeviceModelName", "str", v["DeviceModelName"], False, "Beginner"),
            Feature("BinningHorizontal", "int", v["BinningHorizontal"], True, "Expert",
                    minimum=1, maximum=4, increment=1),
            Feature("DeviceReset", "command", None, True, "Guru"),
        ]

    def get_feature(self, name: str) -> Any:
        return self.values[name]

    def set_feature(self, name: str, value: Any) -> None:
        if name == "BlackLevel" and value > 10:
            raise ValueError("BlackLevel 50 is above the camera's 10")
        self.writes.append((name, value))
        self.values[name] = value


def test_params_follow_the_features_and_leave_out_commands() -> None:
    specs = {s["name"]: s for s in feature_params(FakeCamera().features())}
    assert "DeviceReset" not in specs
    assert specs["BlackLevel"]["limits"] == (0.0, 100.0) and specs["BlackLevel"]["suffix"] == "DN"
    assert specs["PixelFormat"]["type"] == "list" and specs["PixelFormat"]["limits"] == ["Mono8", "Mono12"]
    assert specs["DeviceModelName"]["readonly"] and not specs["ReverseX"]["readonly"]
    assert specs["BinningHorizontal"]["step"] == 1
    assert not has_features(object())


def test_edits_reach_the_camera_and_refusals_revert(qtbot) -> None:
    camera = FakeCamera()
    tree = FeatureTree(threading.RLock())
    qtbot.addWidget(tree)
    assert tree.show_camera(camera)
    assert tree.root is not None
    tree.root.child("ReverseX").setValue(True)
    tree.root.child("PixelFormat").setValue("Mono12")
    assert ("ReverseX", True) in camera.writes and camera.values["PixelFormat"] == "Mono12"
    tree.root.child("BlackLevel").setValue(50.0)  # the camera refuses: the row shows its value
    assert camera.values["BlackLevel"] == 2.0 and tree.root.child("BlackLevel").value() == 2.0
    assert not tree.show_camera(object()) and tree.root is None


def _viky():
    from pathlib import Path
    try:
        import genicam
        import harvesters.core  # noqa: F401
    except ImportError:
        return None
    path = Path(genicam.__file__).parent / "viky.cti"
    return path if path.is_file() else None


def test_devices_dock_shows_a_genicam_cameras_features(qtbot, tmp_path) -> None:
    viky = _viky()
    if viky is None:
        pytest.skip("harvesters/genicam with viky.cti not installed")
    from PySide6.QtCore import QSettings

    from labrig.gui.main_window import MainWindow

    profile = tmp_path / "viky.toml"
    profile.write_text(
        '[bench]\nname = "viky"\n[optics]\nwavelength_m = 532e-9\nfocal1_m = 0.2\nfocal2_m = 0.2\n'
        f'illumination = "coherent"\n[devices.camera]\nkind = "genicam.camera"\ncti = ["{viky}"]\n'
        'serial_number = "1"\npixel_format = "Mono8"\ntrigger_source = "off"\n')
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow("sim", settings=settings)
    qtbot.addWidget(window)
    window.live.auto_start.setChecked(False)
    try:
        dock = window.devices
        dock.connect_bench()  # the simulator's camera has no node map: no features box
        qtbot.waitUntil(lambda: window.session.connected, timeout=30_000)
        assert dock.features_box.isHidden()
        window.session.disconnect()
        dock.profile.setCurrentText(str(profile))
        dock.connect_bench()
        qtbot.waitUntil(lambda: window.session.connected, timeout=30_000)
        assert not dock.features_box.isHidden()
        names = [c.name() for c in dock.features.root.children()]
        assert "Width" in names and "PixelFormat" in names, names
    finally:
        window.close()

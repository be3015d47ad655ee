"""`labrig bench discover`: cameras through the GenTL producers, serial ports, displays, a profile."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drivers.discover import Discovery, Probe, _displays, discover, starting_profile
from labrig.cli import main
from labrig.profiles import load_profile


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


@needs_viky
def test_lists_viky_cameras_and_writes_a_profile_that_loads(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rig.toml"
    assert main(["bench", "discover", "--cti", str(VIKY), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cameras: 3 found" in printed and "serial_number=1" in printed
    assert "serial ports:" in printed and "displays:" in printed
    profile = load_profile(out)  # valid as written: the operator edits from a working file
    camera = profile.data["devices"]["camera"]
    assert camera["kind"] == "genicam.camera" and camera["serial_number"] == "0"
    assert camera["cti"] == [str(VIKY.resolve())]
    # never overwrites a profile the operator may already have edited
    with pytest.raises(SystemExit, match="exists"):
        main(["bench", "discover", "--cti", str(VIKY), "--out", str(out)])


def test_a_missing_producer_is_reported_not_fatal(tmp_path: Path) -> None:
    found = discover([tmp_path / "nope.cti"], drm=tmp_path / "nodrm")
    assert found.cameras.found == [] and "nope.cti" in found.cameras.error
    assert found.serial_ports.method  # the other probes still ran
    text = starting_profile(found)
    assert "no GenICam camera found" in text and "nope.cti" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DRM connectors are Linux")
def test_connected_drm_outputs_are_displays(tmp_path: Path) -> None:
    for name, status, modes in (("card0-HDMI-A-1", "connected", "1920x1080\n1280x720\n"),
                                ("card0-DP-1", "disconnected", ""),
                                ("card0-eDP-1", "connected", "2560x1600\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "status").write_text(status + "\n")
        (tmp_path / name / "modes").write_text(modes)
    probe = _displays(tmp_path)
    assert [(d["output"], d["resolution"]) for d in probe.found] == [
        ("HDMI-A-1", [1080, 1920]), ("eDP-1", [1600, 2560])]
    text = starting_profile(Discovery(Probe("cameras"), Probe("serial_ports"), probe))
    assert "HDMI-A-1 [1080, 1920]" in text
    missing = _displays(tmp_path / "absent")
    assert missing.found == [] and "does not exist" in missing.error

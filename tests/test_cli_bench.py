"""`labrig bench info|snap` through `labrig.cli.main`, with the fake plugin and (if present) sim."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
from PIL import Image

from labrig.cli import main
from labrig.io import atomic_write


def test_info_table(fakeplug: ModuleType, write_profile, capsys) -> None:
    assert main(["bench", "info", "--profile", str(write_profile())]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bench fake")
    for role, kind in [("laser", "fake.laser"), ("shutter", "fake.shutter"), ("camera", "fake.camera")]:
        assert any(line.split()[:2] == [role, kind] for line in out.splitlines() if line.strip())
    assert "vendor=fakeplug" in out and "bit_depth" in out
    assert not fakeplug.INSTANCES["laser"].is_open  # info closes the bench again


def test_info_json(fakeplug: ModuleType, write_profile, capsys) -> None:
    assert main(["bench", "info", "-p", str(write_profile()), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["profile"]["name"] == "fake"
    assert list(info["devices"]) == ["laser", "shutter", "camera"]
    assert info["devices"]["camera"]["identity"]["vendor"] == "fakeplug"
    assert info["devices"]["camera"]["settings"]["resolution"] == [6, 8]


@pytest.mark.parametrize("suffix", [".npy", ".png", ".h5"])
def test_snap_writes_atomically(fakeplug: ModuleType, write_profile, tmp_path, capsys, suffix) -> None:
    outdir = tmp_path / "frames"
    outdir.mkdir()
    out = outdir / f"frame{suffix}"
    assert main(["bench", "snap", "--profile", str(write_profile()), "--out", str(out),
                 "--timeout", "0.5"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert [p.name for p in outdir.iterdir()] == [out.name]  # no temporary file left behind
    if suffix == ".npy":
        frame = np.load(out)
    elif suffix == ".png":
        with Image.open(out) as img:
            frame = np.asarray(img)
            assert img.text["labrig.bit_depth"] == "12"
    else:
        with h5py.File(out, "r") as h5:
            frame = h5["frame"][()]
            assert h5.attrs["profile"] == "fake"
            assert json.loads(h5.attrs["camera_settings"])["bit_depth"] == 12
            assert "labrig_version" in h5.attrs and "time" in h5.attrs
            assert "[devices.camera]" in h5.attrs["profile_toml"]
    assert frame.shape == (6, 8)
    assert frame.max() == 4095 - 5  # taken with the laser on and the shutter open
    events = fakeplug.EVENTS
    grab = events.index("camera.grab")
    assert "laser.enable" in events[:grab] and "shutter.open_shutter" in events[:grab]
    assert "laser.disable" in events[grab:]
    assert not fakeplug.INSTANCES["laser"].enabled


def test_snap_bad_format_is_one_line_error(fakeplug: ModuleType, write_profile, tmp_path, capsys) -> None:
    code = main(["bench", "snap", "-p", str(write_profile()), "--out", str(tmp_path / "f.jpg")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("labrig: error:") and "unsupported frame format '.jpg'" in err
    assert err.count("\n") == 1


def test_unknown_kind_is_one_line_error(fakeplug: ModuleType, write_profile, capsys) -> None:
    path = write_profile(camera='kind = "fake.cam"')
    assert main(["bench", "info", "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labrig: error: ") and "Traceback" not in err
    assert "devices.camera.kind" in err and "fake.cam" in err and str(path) in err


def test_debug_shows_traceback(fakeplug: ModuleType, write_profile, capsys) -> None:
    path = write_profile(camera='kind = "fake.cam"')
    assert main(["--debug", "bench", "info", "--profile", str(path)]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["bench", "info", "--profile", str(path), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_return_status(capsys) -> None:
    assert main([]) == 2
    assert main(["bench"]) == 2
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "calib.h5"
    target.write_text("good")

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["calib.h5"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["calib.h5"]


def test_info_on_sim_lists_five_devices(capsys) -> None:
    pytest.importorskip("sim_backend.devices")
    assert main(["bench", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["profile"]["name"] == "sim"
    assert sorted(info["devices"]) == ["camera", "filter", "input", "laser", "shutter"]
    assert main(["bench", "info"]) == 0
    assert "sim.camera" in capsys.readouterr().out


def test_a_frame_without_a_bench_saves_as_npy_only(tmp_path: Path) -> None:
    """The console saves the frame on screen even when no bench is connected: raw .npy,
    since PNG and HDF5 carry the bench's metadata."""
    from drivers.errors import ConfigError
    from labrig.bench.frames import save_frame

    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.testing.assert_array_equal(np.load(save_frame(tmp_path / "f.npy", frame)), frame)
    with pytest.raises(ConfigError, match="need a connected bench"):
        save_frame(tmp_path / "f.png", frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy"]

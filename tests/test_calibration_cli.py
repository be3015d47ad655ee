"""`labrig calibrate` and `labrig calibration show` through the real entry point: files, Ctrl-C, errors."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from cal_fakes import REGISTRY
from cal_helpers import small_profile, small_truth

from calibration import session
from calibration.store import load_calibration
from labrig.cli import main


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in REGISTRY.items():
        monkeypatch.setitem(session.ROUTINES, name, cls)


def test_calibrate_then_show(fakes: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = small_profile(tmp_path, small_truth(6))
    out = tmp_path / "cal.h5"
    assert main(["calibrate", "spot", "--profile", str(profile), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "offset" in text and "spot" in text and f"wrote {out}: 2 routines" in text
    cal = load_calibration(out)
    assert list(cal.routines) == ["offset", "spot"]  # `spot` needs `offset` first

    assert main(["calibration", "show", str(out), "--png", str(tmp_path / "cal.png")]) == 0
    text = capsys.readouterr().out
    assert "bench profile small" in text and "state: fresh" in text and "camera_offset_dn" in text
    assert (tmp_path / "cal.png").stat().st_size > 5_000
    assert main(["calibration", "show", str(out), "--profile", "sim"]) == 0
    assert "STALE: routine 'offset' was measured with another profile ('small'" in capsys.readouterr().out

    # a rerun of one routine keeps the other's result from the file it updates
    assert main(["calibrate", "offset", "--profile", str(profile), "--out", str(out), "--no-progress"]) == 0
    again = load_calibration(out)
    assert list(again.routines) == ["spot", "offset"]
    assert again.routines["spot"].time == cal.routines["spot"].time


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raising KeyboardInterrupt, as in a terminal: a shell starts background jobs with SIGINT
    ignored, and Python keeps an ignored SIGINT ignored (the Ctrl-C below would then do nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_and_failures_leave_the_file(fakes: None, ctrl_c_raises: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    profile = small_profile(tmp_path, small_truth(6))
    out = tmp_path / "cal.h5"
    assert main(["calibrate", "offset", "--profile", str(profile), "--out", str(out), "--no-progress"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["calibrate", "offset", "interrupted", "--profile", str(profile), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the bench was made safe" in err and "is unchanged" in err
    assert out.read_bytes() == before
    assert main(["calibrate", "broken", "--profile", str(profile), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labrig: error: calibration routine 'broken'") and "write failed" in err
    assert out.read_bytes() == before
    assert main(["calibrate", "nope", "--profile", str(profile), "--out", str(out)]) == 2
    assert "unknown calibration routine(s) 'nope'" in capsys.readouterr().err
    assert main(["calibration", "show", str(tmp_path / "absent.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err

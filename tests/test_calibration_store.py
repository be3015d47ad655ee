"""Calibration files and the engine: round trip, provenance, staleness, refusals that write nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from cal_fakes import REGISTRY, Offset, Spot
from cal_helpers import small_profile, small_truth, truth_of

from calibration.base import CalibrationCancelled, CalibrationError
from calibration.session import calibrate, plan
from calibration.store import (
    CalibrationFileError,
    StaleCalibration,
    check_fresh,
    load_calibration,
    staleness,
)
from drivers.errors import LabrigError
from labrig.bench import Bench, load_profile


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return small_profile(tmp_path, small_truth(4))


def _is_safe(bench: Bench) -> bool:
    return not bench.guard.armed and not bench.laser.enabled and not bench.shutter.shutter_open


def test_round_trip_keeps_values_products_provenance_and_hash(profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.h5"
    with Bench.open(profile) as bench:
        cal = calibrate(bench, "all", out=out, registry={"offset": Offset, "spot": Spot})
        truth = truth_of(bench)
        assert _is_safe(bench)
    loaded = load_calibration(out)
    assert list(loaded.routines) == ["offset", "spot"]
    assert loaded.hash == cal.hash
    assert Spot.seen_offset_dn == pytest.approx(cal.values()["camera_offset_dn"])  # applied before `spot` ran
    assert loaded.frames == cal.frames == sum(r.result.frames for r in cal.routines.values()) > 6
    assert loaded.result("offset").values["camera_offset_dn"] == pytest.approx(truth.camera_offset_dn.item(), abs=1.0)
    np.testing.assert_array_equal(loaded.product("offset", "dark_dn"), cal.product("offset", "dark_dn"))
    assert loaded.product("offset", "exposure_s") == pytest.approx(1e-3)
    np.testing.assert_array_equal(loaded.product("offset", "dark_spectrum"), cal.product("offset", "dark_spectrum"))
    assert loaded.provenance["profile"]["name"] == "small"
    assert loaded.provenance["devices"]["camera"]["identity"]["serial"] == "SIM-0004"
    twin = loaded.twin()
    assert twin.imperfections.camera_offset_dn.item() == pytest.approx(cal.values()["camera_offset_dn"])
    assert twin.imperfections.camera_shift_px.tolist() == pytest.approx(cal.values()["camera_shift_px"])
    with pytest.raises(KeyError, match="no product 'nope'"):
        loaded.product("offset", "nope")


def test_failure_or_cancel_leaves_previous_file_and_bench_safe(profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.h5"
    with Bench.open(profile) as bench:
        calibrate(bench, ["offset"], out=out, registry=REGISTRY)
        before = out.read_bytes()
        with pytest.raises(CalibrationError, match=r"'broken'.*DeviceError.*write failed"):
            calibrate(bench, ["offset", "broken"], out=out, previous=out, registry=REGISTRY)
        assert _is_safe(bench)
        assert out.read_bytes() == before
        with pytest.raises(CalibrationCancelled, match=r"'spot'.*cancelled"):
            calibrate(bench, ["spot"], out=out, previous=out, registry=REGISTRY,
                      cancel=lambda: True)
        assert _is_safe(bench) and out.read_bytes() == before
        # the previous offset is reused, not rerun, when only `spot` is asked for
        events = []
        cal = calibrate(bench, ["spot"], out=out, previous=out, registry=REGISTRY,
                        listener=lambda e, r, p: events.append((e, r)))
        assert events == [("start", "spot"), ("done", "spot")]
        assert list(cal.routines) == ["offset", "spot"]


def test_camera_timeouts_are_a_named_error_and_write_nothing(tmp_path: Path) -> None:
    path = small_profile(tmp_path, small_truth(2), faults={"frame_timeout_prob": 1.0})
    out = tmp_path / "cal.h5"
    with Bench.open(path) as bench:
        with pytest.raises(CalibrationError, match=r"'offset'.*retries"):
            calibrate(bench, ["offset"], out=out, registry=REGISTRY)
        assert _is_safe(bench)
    assert not out.exists()


def test_staleness_names_age_profile_and_device(profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.h5"
    with Bench.open(profile) as bench:
        cal = calibrate(bench, ["offset"], out=out, registry=REGISTRY)
        check_fresh(cal, bench)  # just measured: fresh
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        with pytest.raises(StaleCalibration, match=r"'offset' is 48\.0 h old \(limit 24\.0 h\)"):
            check_fresh(cal, bench, now=later)
        check_fresh(cal, bench, max_age_s=None, now=later)  # the override: no age limit
        cal.routines["offset"].provenance["devices"]["camera"]["identity"]["serial"] = "OTHER-1"
        assert any("camera device changed" in r for r in staleness(cal, bench))
    other = small_profile(tmp_path, small_truth(5), name="other")
    with pytest.raises(StaleCalibration, match="another profile"):
        check_fresh(load_calibration(out), load_profile(other))
    assert "routine 'spot' was never run" in staleness(load_calibration(out), routines=["spot"])


def test_plan_orders_dependencies_and_names_unknown_routines() -> None:
    assert plan(["spot"], registry=REGISTRY) == ["offset", "spot"]
    assert plan(["spot"], have=["offset"], registry=REGISTRY) == ["spot"]
    assert plan("all", registry=REGISTRY) == ["offset", "spot", "broken", "interrupted", "slow"]
    with pytest.raises(LabrigError, match=r"unknown calibration routine.*'nope'"):
        plan(["nope"], registry=REGISTRY)


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CalibrationFileError, match="does not exist"):
        load_calibration(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CalibrationFileError, match="not a readable HDF5"):
        load_calibration(junk)


@pytest.mark.parametrize(("tables", "cause"), [
    ({"laser": {"power_w": 0.0}}, "dark level"),             # laser off: no frame taken in the dark is data
    ({"optics": {"transmission": 1e-3}, "camera": {"gain": 4.0}}, "saturated"),  # 100x the light, ADC clips
])
def test_dark_or_saturated_series_is_refused_and_writes_nothing(tmp_path: Path, tables: dict, cause: str) -> None:
    path = small_profile(tmp_path, small_truth(3), **tables)
    out = tmp_path / "cal.h5"
    with Bench.open(path) as bench:
        with pytest.raises(CalibrationError, match=f"'spot'.*{cause}"):
            calibrate(bench, ["spot"], out=out, registry=REGISTRY)
        assert not bench.guard.armed and not bench.laser.enabled
    assert not out.exists()


def test_a_broken_routine_module_is_named_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calibration import session

    (tmp_path / "calib_broken_mod.py").write_text("raise RuntimeError('half-written routine')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found, broken = session._discover(["calib_broken_mod", "calib_absent_mod"])
    assert found == {} and list(broken) == ["calib_broken_mod"] and "half-written routine" in broken["calib_broken_mod"]
    monkeypatch.setattr(session, "BROKEN", broken)
    with pytest.raises(LabrigError, match=r"cannot run all.*calib_broken_mod.*half-written"):
        session.plan("all")

"""SafetyGuard and the bench's promise: whatever happens, the laser ends off and the shutter closed."""

from __future__ import annotations

import signal
from types import ModuleType

import pytest

from drivers.config import Section
from drivers.errors import DeviceError, SafetyError
from drivers.plugin import DeviceContext
from labrig.bench import Bench, SafetyGuard, open_bench


def _devices(fakeplug: ModuleType, **laser_cfg: object):
    shared: dict = {}
    laser = fakeplug.FakeLaser.from_config(
        Section(dict(laser_cfg)), DeviceContext(Section({}), "laser", shared))
    shutter = fakeplug.FakeShutter.from_config(Section({}), DeviceContext(Section({}), "shutter", shared))
    return laser.open(), shutter.open()


def test_arm_then_make_safe(fakeplug: ModuleType) -> None:
    laser, shutter = _devices(fakeplug)
    guard = SafetyGuard(shutter, laser, install=False)
    guard.arm()
    assert guard.armed and laser.enabled and shutter.shutter_open
    events = fakeplug.EVENTS
    assert events.index("shutter.close_shutter") < events.index("laser.enable") < events.index(
        "shutter.open_shutter")
    guard.make_safe()
    assert not guard.armed and not laser.enabled and not shutter.shutter_open


def test_arm_refuses_with_open_interlock(fakeplug: ModuleType) -> None:
    laser, shutter = _devices(fakeplug, interlock=False)
    guard = SafetyGuard(shutter, laser, install=False)
    with pytest.raises(SafetyError, match="interlock"):
        guard.arm()
    assert "laser.enable" not in fakeplug.EVENTS
    assert not laser.enabled and not shutter.shutter_open


def test_arm_refuses_unconnected_shutter(fakeplug: ModuleType) -> None:
    laser, shutter = _devices(fakeplug)
    shutter.close()
    with pytest.raises(SafetyError, match="not connected"):
        SafetyGuard(shutter, laser, install=False).arm()
    assert not laser.enabled


def test_make_safe_tries_both_when_laser_raises(fakeplug: ModuleType) -> None:
    laser, shutter = _devices(fakeplug, fail_disable=True)
    guard = SafetyGuard(shutter, laser, install=False)
    laser.enable()
    shutter.open_shutter()
    with pytest.raises(SafetyError, match=r"disabling laser.*simulated failure") as err:
        guard.make_safe()
    assert isinstance(err.value.__cause__, DeviceError)
    assert not shutter.shutter_open  # the shutter was still closed


def test_guard_without_devices_is_a_no_op() -> None:
    guard = SafetyGuard(None, None, install=False)
    guard.arm()
    guard.make_safe()


def test_signal_handlers_chain_and_restore(fakeplug: ModuleType, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("atexit.register", lambda fn: calls.append(-1))
    monkeypatch.setattr("atexit.unregister", lambda fn: calls.append(-2))

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        laser, shutter = _devices(fakeplug)
        guard = SafetyGuard(shutter, laser)
        assert signal.getsignal(signal.SIGTERM) == guard._on_signal
        laser.enable()
        shutter.open_shutter()
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert not laser.enabled and not shutter.shutter_open
        assert calls == [-1, signal.SIGTERM]  # atexit registered, previous handler chained
        guard.release()
        assert signal.getsignal(signal.SIGTERM) is previous
        assert calls[-1] == -2
    finally:
        signal.signal(signal.SIGTERM, old)


def test_bench_open_failure_closes_what_was_opened(fakeplug: ModuleType, write_profile) -> None:
    sigterm = signal.getsignal(signal.SIGTERM)
    path = write_profile(camera='kind = "fake.camera"\nfail_open = true')
    with pytest.raises(DeviceError, match="simulated failure to open"):
        Bench.open(path)
    laser, shutter = fakeplug.INSTANCES["laser"], fakeplug.INSTANCES["shutter"]
    assert not laser.is_open and not laser.enabled
    assert not shutter.is_open and not shutter.shutter_open
    events = fakeplug.EVENTS
    # opened light source first, then closed in reverse order
    assert events[:3] == ["laser.open", "shutter.open", "camera.open"]
    assert events.index("shutter.close") < events.index("laser.close")
    assert signal.getsignal(signal.SIGTERM) == sigterm


def test_exception_inside_with_makes_safe(fakeplug: ModuleType, write_profile) -> None:
    with pytest.raises(RuntimeError, match="boom"), open_bench(write_profile()) as bench:
        bench.guard.arm()
        assert bench.laser.enabled and bench.shutter.shutter_open
        raise RuntimeError("boom")
    assert not bench.laser.enabled and not bench.shutter.shutter_open
    assert all(not d.is_open for d in bench.devices.values())
    assert bench.closed
    bench.close()  # idempotent


def test_close_collects_errors_and_closes_everything(fakeplug: ModuleType, write_profile) -> None:
    bench = Bench.open(write_profile())
    bench.guard.arm()
    bench.laser.fail_disable = True
    with pytest.raises(DeviceError, match=r"making safe.*closing laser"):
        bench.close()
    assert not bench.shutter.shutter_open
    assert all(not d.is_open for d in bench.devices.values())


def test_close_error_does_not_hide_the_original(fakeplug: ModuleType, write_profile) -> None:
    with pytest.raises(RuntimeError, match="boom") as err, open_bench(write_profile()) as bench:
        bench.laser.fail_disable = True
        raise RuntimeError("boom")
    assert any("simulated failure to switch off" in n for n in getattr(err.value, "__notes__", []))
    assert not bench.shutter.is_open


def test_open_fails_when_laser_cannot_be_switched_off(fakeplug: ModuleType, write_profile) -> None:
    profile = write_profile(laser='kind = "fake.laser"\nfail_disable = true')
    with pytest.raises(DeviceError, match="simulated failure to switch off"):
        Bench.open(profile)  # the initial make_safe fails: nothing stays open
    assert not fakeplug.INSTANCES["laser"].is_open
    assert not fakeplug.INSTANCES["shutter"].is_open


def test_foreign_open_error_names_the_role(fakeplug: ModuleType, write_profile) -> None:
    path = write_profile(shutter='kind = "fake.shutter"\nfail_open_runtime = true')
    with pytest.raises(DeviceError, match=r"opening the shutter \(fake.shutter.*RuntimeError: vendor SDK") as err:
        Bench.open(path)
    assert isinstance(err.value.__cause__, RuntimeError)
    assert not fakeplug.INSTANCES["laser"].is_open

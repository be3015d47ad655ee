"""Serial drivers through real pseudo-terminals: pyserial on one end, a fake instrument on the other.

Nothing in pyserial is mocked: the drivers open the slave side of a pty, and the
fakes in `fake_serial_devices` answer on the master side in a thread.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("serial")

from fake_serial_devices import FakeObis, FakeSC10

from drivers.config import Section
from drivers.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    OutOfRange,
    SafetyError,
)
from drivers.plugin import DeviceContext
from drivers.vendors.serial.obis import CoherentObis
from drivers.vendors.serial.sc10 import SC10Protocol, ThorlabsSC10
from drivers.vendors.serial.transport import Refused, SerialTransport
from labrig.bench import Bench

TIMEOUT_S = 0.15


@pytest.fixture
def sc10():
    fake = FakeSC10()
    yield fake
    fake.close()


@pytest.fixture
def obis():
    fake = FakeObis()
    yield fake
    fake.close()


def _shutter(fake: FakeSC10, **table: object) -> ThorlabsSC10:
    data = {"port": fake.port, "timeout_s": TIMEOUT_S, "retries": 2, **table}
    return ThorlabsSC10.from_config(Section(data, "devices.shutter"), DeviceContext(Section({}), "shutter"))


def _laser(fake: FakeObis, **table: object) -> CoherentObis:
    data = {"port": fake.port, "timeout_s": TIMEOUT_S, "retries": 2, **table}
    return CoherentObis.from_config(Section(data, "devices.laser"), DeviceContext(Section({}), "laser"))


# -- SC10 ---------------------------------------------------------------------------------------


def test_sc10_opens_in_manual_mode_closed_and_moves(sc10: FakeSC10) -> None:
    sc10.enabled = True  # left open by someone at the front panel
    with _shutter(sc10) as shutter:
        assert shutter.identity()["firmware"] == "THORLABS SC10 VERSION 1.07"
        assert sc10.log[:3] == ["id?", "mode=1", "mode?"]
        assert not sc10.enabled and shutter.confirm_closed()
        shutter.open_shutter()
        assert sc10.enabled and shutter.shutter_open and not shutter.confirm_closed()
        shutter.close_shutter()
        assert not sc10.enabled and shutter.confirm_closed()
        sc10.mode = 4  # someone chose "repeat" at the front panel: 'ens' would start cycling
        shutter.open_shutter()
        assert sc10.mode == 1 and sc10.enabled
    assert not sc10.enabled  # closing the device closes the shutter
    assert sc10.log.count("ens") == 5


def test_sc10_garbled_reply_is_retried(sc10: FakeSC10) -> None:
    with _shutter(sc10) as shutter:
        sc10.garble(1)
        assert shutter.reports_closed() is True
        assert list(shutter.transport.retried) == [("closed?", 2)]
        assert sc10.log.count("closed?") >= 2


def test_sc10_toggle_is_never_resent_blindly(sc10: FakeSC10) -> None:
    with _shutter(sc10) as shutter:
        sc10.garble(1, command="ens")  # the toggle happened, its reply was mangled
        before = sc10.log.count("ens")
        shutter.open_shutter()
        assert sc10.enabled and sc10.log.count("ens") == before + 1
        sc10.ignore_next("ens")  # this toggle is lost on the line: the read-back sends one more
        shutter.close_shutter()
        assert not sc10.enabled and sc10.log.count("ens") == before + 3


def test_sc10_refusals_and_wrong_devices(sc10: FakeSC10) -> None:
    with _shutter(sc10) as shutter:
        with pytest.raises(Refused, match=r"CMD_NOT_DEFINED"):
            shutter.transport.request("bogus?")
        assert sc10.log.count("bogus?") == 1  # a refusal is not retried
    other = FakeSC10(ident="ACME FW 2.0")
    try:
        with pytest.raises(DeviceError, match=r"answered 'id\?' with 'ACME FW 2.0', which is not an SC10"):
            _shutter(other).open()
    finally:
        other.close()


def test_sc10_stuck_blade_is_a_safety_error(sc10: FakeSC10) -> None:
    with _shutter(sc10, confirm_timeout_s=0.1) as shutter:
        shutter.open_shutter()
        sc10.stuck_open = True
        with pytest.raises(SafetyError, match=r"did not confirm closed.*closed\?=0"):
            shutter.close_shutter()
        sc10.stuck_open = False


def test_sc10_interlock_blocks_opening(sc10: FakeSC10) -> None:
    with _shutter(sc10) as shutter:
        sc10.interlock_tripped = True
        with pytest.raises(SafetyError, match=r"interlock is tripped"):
            shutter.open_shutter()
        assert not sc10.enabled and "ens" not in sc10.log[-2:]


def test_silent_device_times_out(sc10: FakeSC10) -> None:
    shutter = _shutter(sc10, retries=1)
    sc10.silent = True
    start = time.perf_counter()
    with pytest.raises(DeviceTimeout, match=r"no reply to 'id\?' .* within 0.15 s \(2 attempts\)"):
        shutter.open()
    assert 0.25 < time.perf_counter() - start < 1.5
    assert not shutter.is_open and not shutter.transport.is_open


def test_vanished_device_is_disconnected(sc10: FakeSC10) -> None:
    shutter = _shutter(sc10).open()
    sc10.vanish()
    with pytest.raises(DeviceDisconnected, match=r"went away"):
        shutter.enabled()
    start = time.perf_counter()
    with pytest.raises(DeviceDisconnected, match=r"was lost"):
        shutter.enabled()
    assert time.perf_counter() - start < 0.05  # no waiting on a dead port
    with pytest.raises(DeviceDisconnected):
        shutter.close()  # cannot confirm the shutter closed: said so, and closed anyway
    assert not shutter.is_open


def test_unopenable_port_is_named(tmp_path: Path) -> None:
    transport = SerialTransport(str(tmp_path / "ttyUSB9"), SC10Protocol(), name="SC10")
    with pytest.raises(DeviceError, match=r"SC10: cannot open serial port .*ttyUSB9"):
        transport.open()


def test_a_request_interrupted_by_a_safety_command_is_not_retried(sc10: FakeSC10) -> None:
    """A signal handler making the bench safe mid-request: the outer request must not resend."""
    with _shutter(sc10) as shutter:
        transport = shutter.transport
        complete = transport.protocol.complete
        fired = []

        def complete_with_interrupt(command: str, received: bytes) -> bool:
            if not fired:
                fired.append(True)
                assert transport.request("ens?") == "0"  # what make_safe() would do from the handler
            return complete(command, received)

        transport.protocol.complete = complete_with_interrupt  # type: ignore[method-assign]
        with pytest.raises(DeviceError, match=r"interrupted by another command"):
            transport.request("mode=1")
        transport.protocol.complete = complete  # type: ignore[method-assign]
        assert sc10.log.count("mode=1") == 2  # the one at open, and the interrupted one, not resent


# -- OBIS ---------------------------------------------------------------------------------------


def test_obis_starts_dark_and_reads_everything_back(obis: FakeObis) -> None:
    assert obis.emission
    with _laser(obis, power_w=0.01) as laser:
        assert not obis.emission  # switched off at open, whatever the power-up state
        assert laser.identity()["serial"] == "OBIS-0042"
        assert "OBIS" in laser.identity()["model"]
        assert laser.power_bounds_w == (0.0, 0.1) and obis.setpoint_w == 0.01
        assert laser.interlock_ok()
        laser.enable()
        assert obis.emission and laser.emission_on()
        assert laser.measured_power_w() == pytest.approx(0.01)
        laser.power_w = 0.05
        assert obis.setpoint_w == pytest.approx(0.05)
        with pytest.raises(OutOfRange, match=r"power_w 0.5 is outside \[0, 0.1\]"):
            laser.power_w = 0.5
        laser.disable()
        assert not obis.emission and laser.measured_power_w() == 0.0
        laser.enable()
    assert not obis.emission  # closing switches emission off
    assert obis.log.index("SYSTem:LOCK?") < obis.log.index("SOURce:AM:STATe ON")


def test_obis_interlock_open_refuses_emission(obis: FakeObis) -> None:
    with _laser(obis) as laser:
        obis.interlock_closed = False
        with pytest.raises(SafetyError, match=r"interlock open"):
            laser.enable()
        assert "SOURce:AM:STATe ON" not in obis.log and not laser.enabled


def test_obis_garbled_reply_is_retried_then_given_up(obis: FakeObis) -> None:
    with _laser(obis, retries=1) as laser:
        obis.garble(1)
        assert laser.measured_power_w() == pytest.approx(0.0)
        assert list(laser.transport.retried) == [("SOURce:POWer:LEVel?", 2)]
        obis.garble(5)
        with pytest.raises(DeviceError, match=r"garbled reply to 'SOURce:POWer:LEVel\?' .* after 2 attempts"):
            laser.measured_power_w()
        obis.garble(0)


def test_obis_refusal_and_identity_checks(obis: FakeObis) -> None:
    with _laser(obis) as laser:
        with pytest.raises(Refused, match=r"refused 'SOURce:FOO 1': ERR-100"):
            laser.transport.request("SOURce:FOO 1")
    with pytest.raises(DeviceError, match=r"does not name 'Sapphire'"):
        _laser(obis, identity_contains="Sapphire").open()
    with pytest.raises(ConfigError, match=r"power_w: 0.5 W is outside power_range_w"):
        _laser(obis, power_w=0.5, power_range_w=[0.0, 0.05])


def test_obis_vanishes_mid_run(obis: FakeObis) -> None:
    laser = _laser(obis).open()
    laser.enable()
    obis.vanish()
    with pytest.raises(DeviceDisconnected):
        laser.measured_power_w()
    with pytest.raises(DeviceDisconnected, match=r"was lost"):
        laser.close()  # emission state unknown: reported, not hidden
    assert not laser.is_open


# -- the bench's safety sequence ----------------------------------------------------------------


def _bench_profile(tmp_path: Path, sc10: FakeSC10, obis: FakeObis) -> Path:
    path = tmp_path / "serial-bench.toml"
    path.write_text(f"""\
[bench]
name = "serial"

[optics]
wavelength_m = 532e-9
focal1_m = 0.1
focal2_m = 0.1
illumination = "coherent"

[devices.laser]
kind = "coherent.obis"
port = "{obis.port}"
timeout_s = {TIMEOUT_S}
power_w = 0.02

[devices.shutter]
kind = "thorlabs.sc10"
port = "{sc10.port}"
timeout_s = {TIMEOUT_S}

[devices.camera]
kind = "fake.camera"
resolution = [6, 8]
""")
    return path


def test_exception_mid_run_leaves_laser_off_and_shutter_closed(
        tmp_path: Path, sc10: FakeSC10, obis: FakeObis, fakeplug: ModuleType) -> None:
    with pytest.raises(RuntimeError, match=r"boom"), Bench.open(_bench_profile(tmp_path, sc10, obis)) as bench:
        start = time.monotonic()
        bench.guard.arm()
        assert obis.emission and sc10.enabled
        # armed only after the shutter reported closed and the interlock reported safe
        emission = obis.last("SOURce:AM:STATe ON")
        assert sc10.received_between("closed?", start, emission)
        assert obis.received_between("SYSTem:LOCK?", start, emission)
        assert sc10.last("ens") > emission  # the shutter opened last
        boom = time.monotonic()
        raise RuntimeError("boom")
    assert not obis.emission and not sc10.enabled
    # leaving the block: laser off first, then the shutter closed
    assert obis.first_after("SOURce:AM:STATe OFF", boom) < sc10.first_after("ens", boom)


def test_arm_refuses_when_the_shutter_does_not_report_closed(
        tmp_path: Path, sc10: FakeSC10, obis: FakeObis, fakeplug: ModuleType) -> None:
    with Bench.open(_bench_profile(tmp_path, sc10, obis)) as bench:
        bench.shutter.confirm_timeout_s = 0.05
        sc10.stuck_open = True
        with pytest.raises(SafetyError, match=r"did not confirm closed"):
            bench.guard.arm()
        assert "SOURce:AM:STATe ON" not in obis.log and not obis.emission
        sc10.stuck_open = False
        obis.interlock_closed = False
        with pytest.raises(SafetyError, match=r"interlock is open; not enabling"):
            bench.guard.arm()
        assert "SOURce:AM:STATe ON" not in obis.log and not sc10.enabled


def test_snap_arms_then_makes_safe(tmp_path: Path, sc10: FakeSC10, obis: FakeObis,
                                   fakeplug: ModuleType) -> None:
    with Bench.open(_bench_profile(tmp_path, sc10, obis)) as bench:
        frame = bench.snap(tmp_path / "frame.npy")
        assert frame.shape == (6, 8)
        assert "SOURce:AM:STATe ON" in obis.log and sc10.log.count("ens") >= 2  # was armed
        assert not obis.emission and not sc10.enabled  # and made safe after
        assert bench.describe()["devices"]["laser"]["identity"]["serial"] == "OBIS-0042"


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="SIGINT is handled by something else here")
def test_ctrl_c_makes_the_serial_bench_safe(tmp_path: Path, sc10: FakeSC10, obis: FakeObis,
                                            fakeplug: ModuleType) -> None:
    with pytest.raises(KeyboardInterrupt), Bench.open(_bench_profile(tmp_path, sc10, obis)) as bench:
        bench.guard.arm()
        signal.raise_signal(signal.SIGINT)
        pytest.fail("the handler should have raised KeyboardInterrupt")
    assert not obis.emission and not sc10.enabled
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_arm_takes_back_a_hijacked_signal_handler(tmp_path: Path, sc10: FakeSC10, obis: FakeObis,
                                                  fakeplug: ModuleType) -> None:
    """A library that replaces SIGINT after the bench opened (harvesters does) must not
    leave the light on: arming reinstalls the safety handler and chains to the other one."""
    seen: list[int] = []
    original = signal.getsignal(signal.SIGINT)
    try:
        with Bench.open(_bench_profile(tmp_path, sc10, obis)) as bench:
            signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
            bench.guard.arm()
            assert signal.getsignal(signal.SIGINT) == bench.guard._on_signal
            signal.raise_signal(signal.SIGINT)
            assert seen == [signal.SIGINT]  # the other handler still ran, after making safe
            assert not obis.emission and not sc10.enabled
    finally:
        signal.signal(signal.SIGINT, original)


def test_profile_errors_name_the_key(sc10: FakeSC10) -> None:
    with pytest.raises(ConfigError, match=r"devices.shutter.port: required key is missing"):
        ThorlabsSC10.from_config(Section({}, "devices.shutter"), DeviceContext(Section({}), "shutter"))
    with pytest.raises(ConfigError, match=r"unknown key.*devices.shutter.baud\b"):
        _shutter(sc10, baud=9600)


def test_obis_open_sets_handshaking_and_prompt_it_assumes(obis: FakeObis) -> None:
    """A laser left with handshaking off and the prompt on (another program's settings) still opens."""
    obis.handshaking, obis.prompt = False, True
    with _laser(obis, power_w=0.01) as laser:
        assert obis.handshaking and not obis.prompt
        assert laser.identity()["serial"] == "OBIS-0042" and not obis.emission
    assert "SYSTem:ERRor:CLEar" in obis.log


def test_obis_switches_to_cw_power_mode(obis: FakeObis) -> None:
    obis.mode = "DIGITAL"
    with _laser(obis, power_w=0.01):
        assert obis.mode == "CWP"
    assert "SOURce:AM:INTernal CWP" in obis.log


def test_obis_refused_emission_reads_the_fault_register(obis: FakeObis) -> None:
    obis.refuse_emission, obis.fault = True, "0x00000400"
    with _laser(obis) as laser:
        with pytest.raises(DeviceError, match=r"emission ON refused.*SYSTem:FAULt\? = 0x00000400"):
            laser.enable()
        assert not obis.emission and not laser.enabled

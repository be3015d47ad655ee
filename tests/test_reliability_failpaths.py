"""A property over the bench's failure paths (issue 16): whichever device raises at whichever
call during a run, the run ends with the shutter closed and the laser off (as the simulated
optics see them, not as the drivers believe), and its run file valid: readable, its images a
prefix of a clean run's, resumable to the same predictions."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import held_out, program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    FrameDropped,
    LabrigError,
    SafetyError,
    WriteFailed,
)
from labrig.bench import Bench
from labrig.deploy import RunAborted, read_run, run_program

EXAMPLES = max(1, int(os.environ.get("LABRIG_FUZZ_EXAMPLES", "100")) // 4)
IMAGES, BATCH = 24, 8
#: every hardware hook a run goes through, per role
HOOKS = {
    "laser": ("_enable_hw", "_set_power_hw", "_interlock_hw"),
    "shutter": ("_set_shutter_hw",),
    "filter": ("_show_hw",),
    "camera": ("grab_batch", "_set_exposure_hw", "_set_gain_hw"),
}
ERRORS = (DeviceError, DeviceTimeout, DeviceDisconnected, FrameDropped, WriteFailed, SafetyError, RuntimeError)


class Saboteur:
    """Counts calls to every hook and makes call number `at` raise `error` (once)."""

    def __init__(self, bench: Bench, hooks: dict[str, tuple[str, ...]] = HOOKS) -> None:
        self.calls = 0
        self.at = -1
        self.error: type[BaseException] = DeviceError
        self.fired: str | None = None
        for role, names in hooks.items():
            device = bench.devices[role]
            for name in names:
                setattr(device, name, self._wrap(f"{role}.{name}", getattr(device, name)))

    def _wrap(self, label: str, hook):
        def hooked(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at and self.fired is None:
                self.fired = label
                raise self.error(f"{label}: injected failure")
            return hook(*args, **kwargs)

        return hooked


@pytest.fixture(scope="module")
def rig():
    folder = Path(tempfile.mkdtemp(prefix="labrig-failpaths-"))
    with Bench.open("sim-ideal") as bench:
        clean = run_program(bench, program(), held_out(), None, progress=False, limit=IMAGES, batch=BATCH).predictions
        saboteur = Saboteur(bench)
        saboteur.at = -1
        run_program(bench, program(), held_out(), None, progress=False, limit=IMAGES, batch=BATCH)
        yield bench, saboteur, clean, folder, saboteur.calls
    shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_device_failing_at_any_call_leaves_the_light_off_and_the_file_valid(rig, data) -> None:
    bench, saboteur, clean, folder, calls_per_run = rig
    saboteur.calls, saboteur.fired = 0, None
    saboteur.at = data.draw(st.integers(1, calls_per_run), label="failing call")
    saboteur.error = data.draw(st.sampled_from(ERRORS), label="error")
    out = folder / "run.h5"
    out.unlink(missing_ok=True)
    world = bench.camera.world
    try:
        result = run_program(bench, program(), held_out(), out, progress=False, limit=IMAGES, batch=BATCH,
                             reconnect_wait_s=0)
        assert result.status == "complete"  # survived: a transient fault retried, a reconnect
    except (RunAborted, RuntimeError, DeviceError, KeyboardInterrupt):
        pass
    # the light is off as the optics see it, whatever the drivers believe
    assert not (world.laser_enabled and world.shutter_open and world.laser_power_w > 0), saboteur.fired
    if saboteur.fired not in ("laser._enable_hw", "shutter._set_shutter_hw"):
        assert not world.laser_enabled and not world.shutter_open, saboteur.fired  # both, not just one
    if world.laser_enabled or world.shutter_open:
        bench.make_safe()  # the failure was in making safe itself: the next make-safe must succeed
        assert not world.laser_enabled and not world.shutter_open, saboteur.fired
    if out.exists():
        run = read_run(out)
        assert run["done"] <= IMAGES
        np.testing.assert_array_equal(run["predictions"], clean[: run["done"]])
        saboteur.at = -1
        resumed = run_program(bench, program(), held_out(), out, progress=False, limit=IMAGES, batch=BATCH)
        assert resumed.status == "complete"
        np.testing.assert_array_equal(read_run(out)["predictions"], clean)
    assert not bench.laser.enabled and not world.laser_enabled and not world.shutter_open


CAL_HOOKS = {"laser": ("_enable_hw", "_set_power_hw"), "shutter": ("_set_shutter_hw",),
             "filter": ("_show_hw",), "input": ("_show_hw",), "camera": ("_grab_hw", "grab_batch", "_set_exposure_hw")}


@pytest.fixture(scope="module")
def cal_rig():
    from cal_helpers import small_profile, small_truth

    from calibration.session import calibrate

    folder = Path(tempfile.mkdtemp(prefix="labrig-calfail-"))
    with Bench.open(small_profile(folder, small_truth(3))) as bench:
        saboteur = Saboteur(bench, CAL_HOOKS)
        calibrate(bench, ["camera"], out=folder / "good.h5")
        yield bench, saboteur, folder, saboteur.calls
    shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=max(2, EXAMPLES // 4), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_calibration_failing_at_any_call_leaves_the_light_off_and_no_partial_file(cal_rig, data) -> None:
    from calibration.session import calibrate
    from calibration.store import load_calibration

    bench, saboteur, folder, calls = cal_rig
    saboteur.calls, saboteur.fired = 0, None
    saboteur.at = data.draw(st.integers(1, calls), label="failing call")
    saboteur.error = data.draw(st.sampled_from(ERRORS), label="error")
    out = folder / "cal.h5"
    shutil.copy(folder / "good.h5", out)
    before = out.read_bytes()
    world = bench.camera.world
    try:
        calibrate(bench, ["camera"], out=out)
    except (LabrigError, RuntimeError):
        assert out.read_bytes() == before, saboteur.fired  # a failed calibration writes nothing
    assert not (world.laser_enabled and world.shutter_open), saboteur.fired
    if world.laser_enabled or world.shutter_open:
        bench.make_safe()
        assert not world.laser_enabled and not world.shutter_open, saboteur.fired
    load_calibration(out)  # valid: the old one or the new one, never a partial file
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary left


FT_STEPS = 2


@pytest.fixture(scope="module")
def ft_rig():
    from test_hil import _deterministic, _tuner

    folder = Path(tempfile.mkdtemp(prefix="labrig-ftfail-"))
    with Bench.open(_deterministic(folder)) as bench:
        saboteur = Saboteur(bench, CAL_HOOKS)  # a fine-tune drives the same devices as a calibration
        assert _tuner(bench, folder / "clean", FT_STEPS).run().status == "complete"
        yield bench, saboteur, folder, saboteur.calls, _tuner
    shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=max(2, EXAMPLES // 4), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_finetune_failing_at_any_call_leaves_the_light_off_and_its_files_valid(ft_rig, data) -> None:
    from labrig.hil.trainer import CHECKPOINT

    bench, saboteur, folder, calls, tuner = ft_rig
    saboteur.calls, saboteur.fired = 0, None
    saboteur.at = data.draw(st.integers(1, calls), label="failing call")
    saboteur.error = data.draw(st.sampled_from(ERRORS), label="error")
    out = folder / "ft"
    shutil.rmtree(out, ignore_errors=True)
    world = bench.camera.world
    result = None
    try:
        result = tuner(bench, out, FT_STEPS).run()
        assert result.status in ("complete", "fault"), (saboteur.fired, result.status, result.error)
    except (LabrigError, RuntimeError):
        pass  # raised out of making safe, or not a device error: the light must still be off
    assert not (world.laser_enabled and world.shutter_open), saboteur.fired
    if world.laser_enabled or world.shutter_open:
        bench.make_safe()  # the failure was in making safe itself: the next make-safe must succeed
    assert not world.laser_enabled and not world.shutter_open and not bench.guard.armed, saboteur.fired
    saboteur.at = -1
    if (out / CHECKPOINT).exists():  # valid: a resumed fine-tune loads it and finishes
        resumed = tuner(bench, out, FT_STEPS)
        assert resumed.step == (result.steps if result is not None else resumed.step) <= FT_STEPS
        assert resumed.run().status == "complete", saboteur.fired
    if result is not None:
        from labrig.deploy import load_program, save_program

        assert load_program(save_program(result.program, out / "program.h5")).digest() == result.program.digest()
    assert not out.exists() or not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], saboteur.fired

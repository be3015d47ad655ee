"""Device kinds through real entry points (the `fakeplug` distribution from conftest)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from drivers.config import Section
from drivers.errors import ConfigError
from drivers.plugin import DeviceContext
from labrig.bench import Bench, PluginError, available_kinds, create_device, device_class


def test_available_kinds_include_the_fake_plugin(fakeplug: ModuleType) -> None:
    kinds = available_kinds()
    assert {"fake.camera", "fake.laser", "fake.shutter", "fake.broken"} <= set(kinds)
    assert kinds == sorted(kinds)


def test_device_class_resolves(fakeplug: ModuleType) -> None:
    assert device_class("fake.camera") is fakeplug.FakeCamera


def test_unknown_kind_names_kind_key_and_installed(fakeplug: ModuleType) -> None:
    with pytest.raises(ConfigError) as err:
        device_class("fake.cmaera", key="devices.camera.kind", source="lab.toml")
    message = str(err.value)
    assert not isinstance(err.value, PluginError)
    assert "lab.toml: devices.camera.kind: unknown device kind 'fake.cmaera'" in message
    assert "fake.camera" in message and "fake.shutter" in message


def test_plugin_import_error_names_plugin_and_chains(fakeplug: ModuleType) -> None:
    with pytest.raises(PluginError) as err:
        device_class("fake.broken")
    message = str(err.value)
    assert "'fake.broken'" in message and "fakeplug_broken:Camera" in message
    assert "fakeplug 0.1" in message
    assert "libfakevendor.so" in message
    assert isinstance(err.value.__cause__, ImportError)


def test_not_a_device(fakeplug: ModuleType) -> None:
    with pytest.raises(PluginError, match=r"'fake.notadevice'.*not a subclass of drivers.base.Device"):
        device_class("fake.notadevice")


def test_device_without_from_config(fakeplug: ModuleType) -> None:
    with pytest.raises(PluginError, match=r"'fake.nofactory'.*has no from_config"):
        device_class("fake.nofactory")


def test_create_device_passes_section_and_context(fakeplug: ModuleType) -> None:
    section = Section({"kind": "fake.camera", "resolution": [3, 5]}, "devices.camera", "lab.toml")
    context = DeviceContext(profile=Section({}), role="camera")
    camera = create_device("fake.camera", section, context)
    assert isinstance(camera, fakeplug.FakeCamera)
    assert camera.resolution == (3, 5)
    assert context.shared["camera"] is camera


def test_bench_with_broken_plugin_names_profile_key(
    fakeplug: ModuleType, write_profile, tmp_path: Path
) -> None:
    path = write_profile(shutter='kind = "fake.broken"')
    with pytest.raises(PluginError, match=r"fake\.toml: devices\.shutter\.kind: device plugin 'fake.broken'"):
        Bench.open(path)


def test_bench_rejects_device_in_wrong_role(fakeplug: ModuleType, write_profile) -> None:
    path = write_profile(shutter='kind = "fake.laser"')
    with pytest.raises(ConfigError, match=r"devices\.shutter\.kind: 'fake.laser' builds a FakeLaser"):
        Bench.open(path)
    assert fakeplug.EVENTS == []  # config errors come before any hardware is touched


def test_sim_kinds_are_registered() -> None:
    pytest.importorskip("sim_backend.devices")
    assert {"sim.camera", "sim.laser", "sim.shutter", "sim.phase_slm"} <= set(available_kinds())
    for kind in available_kinds():
        if kind.startswith("sim."):
            assert hasattr(device_class(kind), "from_config")


def test_foreign_error_in_from_config_names_the_table(fakeplug: ModuleType, write_profile) -> None:
    path = write_profile(camera='kind = "fake.camera"\nfail_build = true')
    with pytest.raises(ConfigError, match=r"\[devices\.camera\]: 'fake.camera' could not be built.*driver bug") as err:
        Bench.open(path)
    assert isinstance(err.value.__cause__, ValueError)


def test_bench_refuses_an_input_that_shows_no_patterns(fakeplug: ModuleType, write_profile) -> None:
    path = write_profile(input='kind = "fake.shutter"')
    with pytest.raises(ConfigError, match=r"devices\.input\.kind: 'fake.shutter' builds a FakeShutter, which does not "
                                          r"implement InputModulator"):
        Bench.open(path)


def test_batched_grab_is_a_declared_capability(fakeplug: ModuleType) -> None:
    """A camera with a method named grab_batch is not batched unless it declares BatchCamera."""
    from types import SimpleNamespace

    import numpy as np

    from drivers.base import BatchCamera
    from labrig.deploy import ProgramMismatch
    from labrig.deploy.acquire import Acquirer

    class Lookalike(fakeplug.FakeCamera):
        def grab_batch(self, patterns: np.ndarray) -> np.ndarray:
            raise AssertionError("never called: not a declared BatchCamera")

    class Declared(Lookalike, BatchCamera):
        pass

    from deploy_helpers import program as compiled

    program = compiled()
    modulator = fakeplug.FakeSLM("input", resolution=(2, 2))
    lookalike = Lookalike("cam", resolution=(2, 2))
    assert not Acquirer(SimpleNamespace(camera=lookalike, input=modulator), program).batched  # type: ignore[arg-type]
    assert Acquirer(SimpleNamespace(camera=Declared("cam", resolution=(2, 2)), input=None), program).batched  # type: ignore[arg-type]
    with pytest.raises(ProgramMismatch, match="no input modulator"):
        Acquirer(SimpleNamespace(camera=lookalike, input=None), program)  # type: ignore[arg-type]

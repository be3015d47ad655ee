"""Bench profiles: loading, validation messages (key + file), extends."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from labrig.profiles import Profile, embedded_profiles, load_profile

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GOOD = """\
[bench]
name = "lab"

[optics]
wavelength_m = 633e-9
focal1_m = 0.1
focal2_m = 0.2
illumination = "coherent"

[devices.camera]
kind = "fake.camera"
"""


def write(tmp_path: Path, text: str, name: str = "lab.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_is_embedded_sim() -> None:
    profile = load_profile(None)
    assert profile.name == "sim"
    assert profile.source == "<embedded sim>"
    assert profile.device_roles() == ["laser", "shutter", "input", "filter", "camera"]
    assert profile.root.section("optics").get_str("illumination") == "coherent"
    assert {"sim", "sim-ideal"} <= set(embedded_profiles())


def test_sim_ideal_extends_sim() -> None:
    profile = load_profile("sim-ideal")
    assert profile.name == "sim-ideal"
    assert profile.data["truth"]["enabled"] is False
    assert profile.data["truth"]["seed"] == 7  # inherited from sim
    assert profile.data["devices"]["camera"]["kind"] == "sim.camera"
    assert "extends" not in profile.data["bench"]
    assert profile.chain == ("<embedded sim>", "<embedded sim-ideal>")


def test_unknown_name_lists_embedded() -> None:
    with pytest.raises(ConfigError, match=r"unknown bench profile 'nope'.*sim, sim-ideal"):
        load_profile("nope")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "absent.toml")


def test_path_as_string(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_profile(str(path)).name == "lab"
    assert load_profile(path).source == str(path)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\n[devices.filter]\nkind = \n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert "line 14" in str(err.value)


def test_missing_optics(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("[optics]", "[other]"))
    with pytest.raises(ConfigError, match=r"\[optics\] is missing") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_missing_camera(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("[devices.camera]", "[devices.laser]"))
    with pytest.raises(ConfigError, match=r"devices\.camera") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_bad_wavelength_type_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("633e-9", '"red"'))
    with pytest.raises(ConfigError, match=r"optics\.wavelength_m: expected a number") as err:
        load_profile(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("focal2_m = 0.2", "focal2_m = -0.2", "optics.focal2_m"),
        ('illumination = "coherent"', 'illumination = "laser"', "optics.illumination"),
        ('name = "lab"', "name = 3", "bench.name"),
        ('kind = "fake.camera"', "kind = 5", "devices.camera.kind"),
        ('kind = "fake.camera"', "", "devices.camera.kind"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_profile(path)


def test_unknown_role(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[devices.sensor]\nkind = "x"\n')
    with pytest.raises(ConfigError, match=r"devices\.sensor: unknown device role.*camera") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_extends_deep_merges_file_over_parent(tmp_path: Path) -> None:
    write(tmp_path, GOOD + '\n[devices.laser]\nkind = "fake.laser"\npower_w = 0.01\n', "base.toml")
    child = write(
        tmp_path,
        '[bench]\nname = "child"\nextends = "base.toml"\n\n'
        "[optics]\nfocal2_m = 0.3\n\n[devices.laser]\npower_w = 0.02\n",
        "child.toml",
    )
    profile = load_profile(child)
    assert profile.name == "child"
    assert profile.data["optics"] == {
        "wavelength_m": 633e-9, "focal1_m": 0.1, "focal2_m": 0.3, "illumination": "coherent",
    }
    assert profile.data["devices"]["laser"] == {"kind": "fake.laser", "power_w": 0.02}
    assert profile.device_roles() == ["laser", "camera"]
    assert profile.origin("optics.focal2_m") == str(child)
    assert profile.origin("optics.focal1_m") == str(tmp_path / "base.toml")


def test_extends_error_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("633e-9", "-1.0"), "base.toml")
    child = write(tmp_path, '[bench]\nname = "child"\nextends = "base.toml"\n', "child.toml")
    with pytest.raises(ConfigError, match=r"base\.toml \(extended by .*child\.toml\): optics\.wavelength_m"):
        load_profile(child)


def test_extends_embedded_by_name(tmp_path: Path) -> None:
    child = write(tmp_path, '[bench]\nname = "mine"\nextends = "sim"\n[truth]\nseed = 1\n')
    profile = load_profile(child)
    assert profile.data["truth"]["seed"] == 1
    assert profile.data["truth"]["enabled"] is True
    assert len(profile.device_roles()) == 5


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('name = "lab"', 'name = "a"\nextends = "b.toml"'), "a.toml")
    write(tmp_path, GOOD.replace('name = "lab"', 'name = "b"\nextends = "a.toml"'), "b.toml")
    with pytest.raises(ConfigError, match=r"cycle.*a\.toml -> .*b\.toml -> .*a\.toml"):
        load_profile(tmp_path / "a.toml")


def test_extends_unknown_parent(tmp_path: Path) -> None:
    child = write(tmp_path, '[bench]\nname = "c"\nextends = "nope"\n')
    with pytest.raises(ConfigError, match=r"lab\.toml: bench\.extends: unknown bench profile 'nope'"):
        load_profile(child)


def test_snapshot_round_trips() -> None:
    profile = load_profile("sim-ideal")
    text = profile.to_toml_snapshot()
    assert tomllib.loads(text) == profile.as_dict()
    copy = profile.as_dict()
    copy["bench"]["name"] = "changed"
    assert profile.data["bench"]["name"] == "sim-ideal"


def test_snapshot_reloads_as_profile(tmp_path: Path) -> None:
    path = write(tmp_path, load_profile("sim").to_toml_snapshot(), "snap.toml")
    again = load_profile(path)
    assert isinstance(again, Profile)
    assert again.data == load_profile("sim").data

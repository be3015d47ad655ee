"""A driver written from each copy-me template, registered by entry point, opens in a bench.

"Written from a template" here is what a newcomer does: copy the file, rename the class,
replace every line marked ``raise NotImplementedError("HW: <hook>")`` with calls to the
hardware (here an in-memory stand-in, `acme_sdk`), and touch nothing else. So the test
fails if a template needs more than its marked hooks, misses a hook its protocol needs,
or does not build from a profile table.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import drivers.templates
from drivers.base import SLM, Camera, LaserController, Shutter
from drivers.errors import DeviceError
from labrig.bench import Bench

TEMPLATES = Path(drivers.templates.__file__).parent
MARK = re.compile(r'^(?P<indent>\s*)raise NotImplementedError\("HW: (?P<hook>\w+)"\)\s*$')

#: (template module, template class, new module, new class, its protocol)
KINDS = {
    "camera": ("camera", "TemplateCamera", "acme_camera", "AcmeCamera", Camera),
    "slm": ("slm", "TemplateSLM", "acme_slm", "AcmeSLM", SLM),
    "shutter": ("shutter", "TemplateShutter", "acme_shutter", "AcmeShutter", Shutter),
    "laser": ("laser", "TemplateLaser", "acme_laser", "AcmeLaser", LaserController),
}

#: the "vendor SDK" the filled hooks call: light reaches the camera only with the laser on
#: and the shutter open, so a frame says whether it was taken armed
SDK = '''
STATE = {"laser": False, "power": 0.0, "shutter": False, "patterns": {}, "open": set(), "exposure": None}


def frame(shape, bits):
    lit = STATE["laser"] and STATE["shutter"]
    return __import__("numpy").full(shape, (1 << bits) - 1 if lit else 3, dtype="uint16")
'''

#: each marked hook of each template, written for `acme_sdk`
FILLS: dict[str, dict[str, str]] = {
    "camera": {
        "_open_hw": 'acme_sdk.STATE["open"].add("camera")',
        "_close_hw": 'acme_sdk.STATE["open"].discard("camera")',
        "_grab_hw": "return acme_sdk.frame(self.resolution, self.bit_depth)",
        "_set_exposure_hw": 'acme_sdk.STATE["exposure"] = exposure_s',
        "_set_gain_hw": "pass",
    },
    "slm": {
        "_open_hw": 'acme_sdk.STATE["open"].add(self.name)',
        "_close_hw": 'acme_sdk.STATE["open"].discard(self.name)',
        "_show_hw": 'acme_sdk.STATE["patterns"][self.display] = pattern.copy()',
    },
    "shutter": {
        "_open_hw": 'acme_sdk.STATE["open"].add("shutter")\nself._set_shutter_hw(False)',
        "_close_hw": 'self._set_shutter_hw(False)\nacme_sdk.STATE["open"].discard("shutter")',
        "_set_shutter_hw": 'acme_sdk.STATE["shutter"] = open_',
        "_closed_hw": 'return not acme_sdk.STATE["shutter"]',
    },
    "laser": {
        "_open_hw": 'acme_sdk.STATE["open"].add("laser")\nself._enable_hw(False)\n'
                    "self._set_power_hw(self._initial_power_w)\nself._power_w = self._initial_power_w",
        "_close_hw": 'self._enable_hw(False)\nacme_sdk.STATE["open"].discard("laser")',
        "_enable_hw": 'acme_sdk.STATE["laser"] = on',
        "_set_power_hw": 'acme_sdk.STATE["power"] = power_w',
        "_interlock_hw": "return True",
        "_measured_power_hw": 'return acme_sdk.STATE["power"] if acme_sdk.STATE["laser"] else 0.0',
    },
}

PROFILE = """\
[bench]
name = "acme"

[optics]
wavelength_m = 633e-9
focal1_m = 0.1
focal2_m = 0.1
illumination = "coherent"

[devices.laser]
kind = "acme.laser"
port = "/dev/ttyACM0"
power_range_w = [0.0, 0.05]
power_w = 0.01

[devices.shutter]
kind = "acme.shutter"
port = "/dev/ttyUSB0"

[devices.input]
kind = "acme.slm"
display = 1
resolution = [8, 8]
pitch_m = 8e-6
modulation = "amplitude"

[devices.filter]
kind = "acme.slm"
display = 2
resolution = [16, 16]
pitch_m = 8e-6

[devices.camera]
kind = "acme.camera"
serial = "42"
resolution = [6, 10]
bit_depth = 12
pitch_m = 5e-6
"""


def _marked(text: str) -> list[str]:
    return [m.group("hook") for line in text.splitlines() if (m := MARK.match(line))]


def write_from_template(kind: str, filled: bool = True) -> str:
    """The driver module a newcomer writes from template `kind`: renamed, hooks filled."""
    module, cls, _new_module, new_cls, _ = KINDS[kind]
    lines = []
    for line in (TEMPLATES / f"{module}.py").read_text().splitlines():
        m = MARK.match(line)
        if m and filled:
            code = FILLS[kind][m.group("hook")]
            lines.append(textwrap.indent(code, m.group("indent")))
        else:
            lines.append(line)
    text = "\n".join(lines).replace(cls, new_cls) + "\n"
    future = "from __future__ import annotations\n"
    return text.replace(future, future + "\nimport acme_sdk  # the vendor's SDK\n") if filled else text


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Path]]:
    """The drivers written from the templates, installed as the `acme-labrig` distribution."""
    site = tmp_path / "site"
    dist = site / "acme_labrig-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-labrig\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[labrig.devices]\n" + "".join(
        f"acme.{kind} = {new_module}:{new_cls}\n" for kind, (_, _, new_module, new_cls, _) in KINDS.items()))
    (site / "acme_sdk.py").write_text(SDK)
    for kind, (_, _, new_module, _, _) in KINDS.items():
        (site / f"{new_module}.py").write_text(write_from_template(kind))
    monkeypatch.syspath_prepend(str(site))
    import acme_sdk

    profile = tmp_path / "acme.toml"
    profile.write_text(PROFILE)
    yield acme_sdk, profile
    for name in ("acme_sdk", *(k[2] for k in KINDS.values())):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_hook_is_marked_and_the_protocols_needs_are_among_them(kind: str) -> None:
    module, cls_name, _, _, protocol = KINDS[kind]
    text = (TEMPLATES / f"{module}.py").read_text()
    marked = _marked(text)
    assert sorted(marked) == sorted(FILLS[kind]), "the test fills exactly the marked hooks"
    defined = [n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef) and n.name.endswith("_hw")]
    assert sorted(defined) == sorted(marked), f"{module}.py: every _hw hook is marked, and only those"
    abstract = set(getattr(protocol, "__abstractmethods__", ()))
    assert abstract <= set(marked), f"{module}.py leaves {abstract - set(marked)} of {protocol.__name__} out"
    template = getattr(__import__(f"drivers.templates.{module}", fromlist=[cls_name]), cls_name)
    assert not inspect.isabstract(template) and issubclass(template, protocol)
    assert "``HW:``" in text.split("class ")[0]  # the module docstring says what to fill


def test_drivers_written_from_the_templates_open_in_a_bench(acme: tuple[ModuleType, Path]) -> None:
    sdk, profile = acme
    with Bench.open(profile) as bench:
        assert {role: type(d).__name__ for role, d in bench.devices.items()} == {
            "laser": "AcmeLaser", "shutter": "AcmeShutter", "input": "AcmeSLM", "filter": "AcmeSLM",
            "camera": "AcmeCamera"}
        assert sdk.STATE["open"] == {"laser", "shutter", "SLM 1", "SLM 2", "camera"}
        assert sdk.STATE["power"] == 0.01 and not sdk.STATE["laser"]
        bench.camera.exposure_s = 0.02
        assert sdk.STATE["exposure"] == 0.02
        bench.filter.show(np.full((16, 16), 7, np.uint8))
        assert int(sdk.STATE["patterns"][2][0, 0]) == 7
        frame = bench.snap(profile.parent / "frame.npy")
        assert frame.shape == (6, 10) and frame.max() == 4095  # taken with the light on ...
        assert not sdk.STATE["laser"] and not sdk.STATE["shutter"]  # ... and made safe after
        assert bench.describe()["devices"]["camera"]["identity"]["serial"] == "42"
    assert sdk.STATE["open"] == set()


def test_an_unfilled_hook_is_a_clear_error_naming_it(acme: tuple[ModuleType, Path]) -> None:
    """The camera copied but not filled in: opening the bench names the hook to write, and
    the laser and shutter that did open are left safe."""
    sdk, profile = acme
    camera_module = KINDS["camera"][2]
    (Path(sys.modules["acme_sdk"].__file__).parent / f"{camera_module}.py").write_text(
        write_from_template("camera", filled=False))
    sys.modules.pop(camera_module, None)
    with pytest.raises(DeviceError, match=r"opening the camera \(acme.camera.*NotImplementedError: HW: _open_hw"):
        Bench.open(profile)
    assert not sdk.STATE["laser"] and not sdk.STATE["shutter"]


def test_templates_are_files_to_copy_not_kinds() -> None:
    from labrig.bench import available_kinds

    assert not [k for k in available_kinds() if "template" in k.lower()]

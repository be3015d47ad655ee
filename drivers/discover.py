"""What is attached to this computer, for setting up a new rig: cameras, serial ports, displays.

It sits beside the vendor drivers (labrig reaches them only through entry points,
never by name). ``labrig bench discover`` calls `discover` and `starting_profile`: the first lists
GenICam cameras (through the GenTL producers it can find), serial ports (where
lasers and shutters usually sit) and displays (where an HDMI SLM would appear);
the second turns that into a profile TOML the operator then edits. Nothing here
opens a device for control: cameras are only enumerated, ports are never opened,
so discovery is safe with the light on. Every probe says how it looked, so "none
found" can be told apart from "could not look".
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Discovery", "Probe", "discover", "find_cti_files", "starting_profile"]


@dataclass
class Probe:
    """One kind of thing looked for: what was found, how it was looked for, what failed."""

    kind: str
    found: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""
    error: str = ""


@dataclass
class Discovery:
    cameras: Probe
    serial_ports: Probe
    displays: Probe

    def as_dict(self) -> dict[str, Any]:
        return {p.kind: {"found": p.found, "method": p.method, "error": p.error}
                for p in (self.cameras, self.serial_ports, self.displays)}


# -- cameras ----------------------------------------------------------------------------------


def find_cti_files(cti: Sequence[str | os.PathLike[str]] = (),
                   environ: dict[str, str] | None = None) -> tuple[list[Path], str]:
    """Producers to enumerate with, and where they came from: `cti` when given, else
    ``$GENICAM_GENTL64_PATH``, else the producers shipped in installed Python packages
    (the ``genicam`` wheel's viky.cti, a simulated camera producer)."""
    from drivers.errors import DeviceError
    from drivers.vendors.genicam.producers import GENTL_PATH_VAR, find_producers

    env = dict(os.environ if environ is None else environ)
    if cti:
        return find_producers(cti), "the named producers"
    if env.get(GENTL_PATH_VAR):
        try:
            return find_producers((), environ=env), f"${GENTL_PATH_VAR}"
        except DeviceError:
            pass
    try:
        import genicam
    except ImportError:
        return [], f"${GENTL_PATH_VAR} (unset or empty); no genicam package installed"
    shipped = sorted(Path(genicam.__file__).parent.glob("*.cti"))
    return shipped, f"${GENTL_PATH_VAR} unset; producers shipped in the genicam package"


def _cameras(cti: Sequence[str | os.PathLike[str]]) -> Probe:
    probe = Probe("cameras")
    try:
        files, source = find_cti_files(cti)
    except Exception as exc:  # a named producer missing: say so, go on with the other probes
        probe.error = str(exc)
        return probe
    probe.method = f"GenTL producers from {source}: " + (", ".join(map(str, files)) or "none")
    try:
        from drivers.vendors.genicam.producers import enumerate_devices
    except ImportError as exc:
        probe.error = f"harvesters is not installed ({exc})"
        return probe
    for path in files:  # one producer at a time: a broken one does not hide the others
        try:
            devices = enumerate_devices([path])
        except Exception as exc:
            probe.error += f"{path.name}: {exc}; "
            continue
        for dev in devices:
            probe.found.append({
                "vendor": dev.get("vendor") or "", "model": dev.get("model") or "",
                "serial_number": str(dev.get("serial_number") or ""),
                "user_id": dev.get("user_defined_name") or "", "device_id": dev.get("id_") or "",
                "cti": str(path),
            })
    probe.error = probe.error.rstrip("; ")
    return probe


# -- serial ports -----------------------------------------------------------------------------


def _serial_ports() -> Probe:
    probe = Probe("serial_ports", method="pyserial serial.tools.list_ports.comports()")
    try:
        from serial.tools import list_ports
    except ImportError as exc:
        probe.error = f"pyserial is not installed ({exc})"
        return probe
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        probe.found.append({
            "device": port.device, "description": port.description or "",
            "manufacturer": port.manufacturer or "", "serial_number": port.serial_number or "",
            "vid_pid": f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None else "",
        })
    return probe


# -- displays ---------------------------------------------------------------------------------

_MODE = re.compile(r"^(\d+)x(\d+)")


def _displays(drm: Path = Path("/sys/class/drm")) -> Probe:
    """Connected display outputs. Linux: the kernel's DRM connectors (no X server needed);
    elsewhere the desktop's screens through Qt, when PySide6 is installed."""
    probe = Probe("displays")
    if sys.platform.startswith("linux"):
        probe.method = f"DRM connectors in {drm}"
        if not drm.is_dir():
            probe.error = f"{drm} does not exist (no GPU driver loaded, or a container)"
            return probe
        for conn in sorted(drm.glob("card*-*")):
            status = (conn / "status").read_text().strip() if (conn / "status").exists() else ""
            if status != "connected":
                continue
            modes = (conn / "modes").read_text().split() if (conn / "modes").exists() else []
            m = _MODE.match(modes[0]) if modes else None
            probe.found.append({"output": conn.name.split("-", 1)[1],
                                "resolution": [int(m[2]), int(m[1])] if m else None,
                                "modes": modes[:5]})
        return probe
    probe.method = "Qt QGuiApplication.screens()"
    try:
        from PySide6.QtGui import QGuiApplication
    except ImportError as exc:
        probe.error = f"PySide6 is not installed ({exc}); cannot list displays"
        return probe
    app = QGuiApplication.instance() or QGuiApplication([])
    for i, screen in enumerate(app.screens()):
        size = screen.size()
        probe.found.append({"output": screen.name(), "display_number": i,
                            "resolution": [size.height(), size.width()]})
    return probe


def discover(cti: Sequence[str | os.PathLike[str]] = (), *,
             drm: Path = Path("/sys/class/drm")) -> Discovery:
    """Look for cameras, serial ports and displays; never opens a device for control."""
    return Discovery(_cameras(cti), _serial_ports(), _displays(drm))


# -- starting profile -------------------------------------------------------------------------


def _q(value: Any) -> str:
    return json.dumps(value)  # a JSON string or list is a valid TOML value


def starting_profile(found: Discovery, name: str = "my-rig") -> str:
    """A profile TOML with the first camera found filled in and every other find as a
    comment beside the key it would go in; the optics are placeholders to measure."""
    lines = [
        "# A starting profile written by `labrig bench discover`. Edit it: check the optics,",
        "# uncomment the devices your rig has, then `labrig bench info --profile THIS.toml`.",
        "# Every key is described in docs/profile-schema.md; a full example is",
        "# labrig/profiles/examples/rig-example.toml.",
        "",
        "[bench]",
        f"name = {_q(name)}",
        "",
        "[optics]",
        "# placeholders: measure your rig",
        "wavelength_m = 532e-9",
        "focal1_m = 0.2",
        "focal2_m = 0.2",
        'illumination = "coherent"',
        "",
    ]
    ports = found.serial_ports.found
    port_note = [f"#   {p['device']}: {p['description']} {p['manufacturer']} "
                 f"serial={p['serial_number'] or '?'} usb={p['vid_pid'] or '-'}" for p in ports]
    port_note = port_note or [f"#   none found ({found.serial_ports.error or found.serial_ports.method})"]
    for role, kind in (("laser", "coherent.obis"), ("shutter", "thorlabs.sc10")):
        lines += [f"# [devices.{role}]", f'# kind = "{kind}"',
                  f'# port = "{ports[0]["device"] if ports else "/dev/ttyUSB0"}"',
                  "# serial ports found:", *port_note, ""]
    displays = found.displays.found
    lines += ["# An HDMI SLM appears as a display; displays found:"]
    lines += [f"#   display {i}: {d['output']} {d.get('resolution')}" for i, d in enumerate(displays)]
    if not displays:
        lines.append(f"#   none ({found.displays.error or 'looked with ' + found.displays.method})")
    lines += ["# [devices.input]", '# kind = "slmsuite.slm"', '# slmsuite_class = "ScreenMirrored"',
              "# slmsuite_args = { display_number = 1, bitdepth = 8 }", ""]
    cams = found.cameras.found
    lines += ["[devices.camera]"]
    if cams:
        cam = cams[0]
        lines += ['kind = "genicam.camera"', f"cti = [{_q(cam['cti'])}]",
                  f"serial_number = {_q(cam['serial_number'])}",
                  f"# {cam['vendor']} {cam['model']} ({cam['device_id']})"]
        for other in cams[1:]:
            lines.append(f"# other camera: serial_number = {_q(other['serial_number'])}  "
                         f"# {other['vendor']} {other['model']} via {Path(other['cti']).name}")
    else:
        why = found.cameras.error or found.cameras.method
        lines += [f"# no GenICam camera found ({why}); the simulated camera stands in",
                  'kind = "sim.camera"']
    return "\n".join(lines) + "\n"

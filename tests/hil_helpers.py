"""Small simulated benches for the unmodelled-truth and in-situ tests (64 px filter, 16 px input).

One input pixel is one simulation sample and one camera pixel one output sample,
as on `sim`, at a quarter of the focal lengths: every frame costs ~1/16 of `sim`'s.
"""

from __future__ import annotations

from pathlib import Path

SMALL = """\
[bench]
name = "{name}"
extends = "{extends}"

[optics]
focal1_m = 0.015398496240601503
focal2_m = 0.0076992481203007515

[devices.input]
resolution = [16, 16]

[devices.filter]
resolution = [64, 64]

[devices.camera]
resolution = [64, 64]
"""


#: every [truth.unmodelled] key switched off: a child of `sim-ideal` inherits `sim`'s values otherwise
#: (tables merge key by key, so an empty table would not switch anything off)
UNMODELLED_OFF = {
    "pixel_aperture": "false", "ghost_fraction": "0.0", "ghost_shift_px": "[0, 0]",
    "extra_zernike_rad": "{ trefoil_vertical = 0.0, trefoil_oblique = 0.0, secondary_astig_vertical = 0.0, "
                         "secondary_astig_oblique = 0.0 }", "slm_phase_error_waves_rms": "0.0", "camera_knee_fraction": "1.0",
    "laser_fluctuation_rms": "0.0",
}


def unmodelled_table(**on: str) -> str:
    """[truth.unmodelled] lines: enabled, every effect off except the ones given (TOML values)."""
    values = {"enabled": "true", **UNMODELLED_OFF, **on}
    return "\n".join(f"{k} = {v}" for k, v in values.items())


def small_profile(tmp_path: Path, *, extends: str = "sim-ideal", truth: str = "", unmodelled: str = "",
                  name: str = "small") -> Path:
    """A small bench; `truth` / `unmodelled` are TOML lines for [truth] / [truth.unmodelled]."""
    text = SMALL.format(name=name, extends=extends)
    if truth:
        text += f"\n[truth]\n{truth}\n"
    if unmodelled:
        text += f"\n[truth.unmodelled]\n{unmodelled}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path

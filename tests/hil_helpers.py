"""Small simulated benches for the unmodelled-truth and in-situ tests (64 or 128 px filter).

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
focal1_m = {f1!r}
focal2_m = {f2!r}

[devices.input]
resolution = [{inp}, {inp}]

[devices.filter]
resolution = [{n}, {n}]

[devices.camera]
resolution = [{n}, {n}]
"""
#: `sim`'s focal length f1 for its 256-pixel filter SLM (f2 = f1 / 2)
SIM_F1 = 0.06159398496240601


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
                  name: str = "small", filter_px: int = 64, input_px: int = 16) -> Path:
    """A small bench (`filter_px` square filter SLM and camera, `input_px` input modulator);
    `truth` / `unmodelled` are TOML lines for [truth] / [truth.unmodelled]."""
    f1 = SIM_F1 * filter_px / 256
    text = SMALL.format(name=name, extends=extends, f1=f1, f2=f1 / 2, n=filter_px, inp=input_px)
    if truth:
        text += f"\n[truth]\n{truth}\n"
    if unmodelled:
        text += f"\n[truth.unmodelled]\n{unmodelled}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def write_toy_data(folder: Path, n_test: int) -> Path:
    """An IDX dataset folder of toy images: 64 training images (seed 1) and `n_test` test images (seed 5)."""
    from data_helpers import write_idx_split
    from model_helpers import toy_dataset

    for split, data in (("train", toy_dataset(64, seed=1)), ("test", toy_dataset(n_test, seed=5))):
        write_idx_split(folder, data.images[:, 0].numpy(), data.labels.numpy().astype("u1"), split)
    return folder

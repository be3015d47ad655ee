"""Does a program fit this bench? Checked before any light goes on.

A program is compiled for a bench's SLM size and bit depth, its input
modulator, its camera and a tile layout its filter grid can hold; running it
elsewhere would show wrong patterns or read the wrong pixels. Every misfit is
listed, each naming what does not fit (schema version, SLM size, bit depth,
channel count, ...) and every optical parameter it was compiled for (another
wavelength or focal length would run "fine" and be wrong).
"""

from __future__ import annotations

import math
from typing import Any

from labrig.bench import Bench
from labrig.deploy.errors import ProgramMismatch
from labrig.deploy.multiplexing import tile_capacity
from labrig.deploy.program import SCHEMA_VERSION, Program, geometry_to_dict
from labrig.geometry import geometry_from_profile

__all__ = ["check_fits", "geometry_misfits", "misfits"]


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def _fmt(shape: tuple[int, ...] | None) -> str:
    return "none" if shape is None else "x".join(str(s) for s in shape)


def misfits(program: Program, bench: Bench) -> list[str]:
    """Why `program` cannot run on `bench` (an open `Bench`); empty when it can."""
    c = program.constraints
    problems: list[str] = []
    if program.schema_version != SCHEMA_VERSION:
        problems.append(f"schema version: the program has {program.schema_version}, this labrig runs {SCHEMA_VERSION}")
    slm, inp, cam = bench.filter, bench.input, bench.camera
    if slm is None:
        problems.append("SLM: this bench has no filter SLM")
    else:
        if _shape(slm.resolution) != c.slm_resolution:
            problems.append(f"SLM size: the program is for {_fmt(c.slm_resolution)}, this bench's filter SLM "
                            f"is {_fmt(_shape(slm.resolution))}")
        if int(slm.bit_depth) != c.slm_bit_depth:
            problems.append(f"SLM bit depth: the program is for {c.slm_bit_depth} bits, this bench's filter SLM "
                            f"has {slm.bit_depth}")
        if slm.modulation != c.slm_modulation:
            problems.append(f"SLM modulation: the program is for a {c.slm_modulation} SLM, this bench has "
                            f"a {slm.modulation} one")
    if inp is None:
        problems.append("input modulator: this bench has none to show images on")
    else:
        res = _shape(inp.resolution)
        if res != c.input_resolution:
            problems.append(f"input modulator size: the program is for {_fmt(c.input_resolution)}, this bench's "
                            f"is {_fmt(res)}")
        depth = inp.bit_depth
        if depth != c.input_bit_depth:
            problems.append(f"input modulator bit depth: the program is for {c.input_bit_depth} bits, this "
                            f"bench's has {depth}")
    if _shape(cam.resolution) != c.camera_resolution:
        problems.append(f"camera size: the program is for {_fmt(c.camera_resolution)}, this bench's camera is "
                        f"{_fmt(_shape(cam.resolution))}")
    if int(cam.bit_depth) != c.camera_bit_depth:
        problems.append(f"camera bit depth: the program is for {c.camera_bit_depth} bits, this bench's camera "
                        f"has {cam.bit_depth}")
    problems += _channel_misfits(program, bench)
    problems += _optics_misfits(program, bench)
    return problems


#: relative difference under which two optical parameters count as the same (float round trips)
OPTICS_RTOL = 1e-6


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _optics_misfits(program: Program, bench: Bench) -> list[str]:
    """Every optical parameter the program was compiled for (wavelength, focal lengths, pitches,
    camera response, ...) against this bench's: masks and exposure are only right for those."""
    return geometry_misfits(program.geometry, bench, "the program", "recompile it")


def geometry_misfits(recorded: dict[str, Any] | None, bench: Bench, owner: str = "the program",
                     remedy: str = "recompile it") -> list[str]:
    """Every parameter of a recorded bench geometry (`geometry_to_dict`: what a program was
    compiled for, what a calibration was measured on) that differs from `bench`'s, each named;
    `owner` names the record in the messages."""
    if not recorded:
        return [f"optics: {owner} records no bench geometry ({remedy})"]
    try:
        here = _leaves(geometry_to_dict(geometry_from_profile(bench.profile.root)))
    except Exception as exc:  # a bench without a full optical description
        return [f"optics: this bench's geometry cannot be read from its profile: {exc}"]
    problems = []
    for key, compiled in _leaves(recorded).items():
        current = here.get(key)
        if isinstance(compiled, int | float) and isinstance(current, int | float) \
                and not isinstance(compiled, bool) and not isinstance(current, bool):
            same = math.isclose(float(compiled), float(current), rel_tol=OPTICS_RTOL, abs_tol=0.0)
        else:
            same = compiled == current
        if not same:
            problems.append(f"optics {key}: {owner} is for {_value(compiled)}, this bench has {_value(current)}")
    return problems


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "x".join(str(x) for x in v)
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _channel_misfits(program: Program, bench: Bench) -> list[str]:
    """Tiles per frame against what this bench's filter grid holds; tiles inside the camera;
    the back end reading as many channels as the optics deliver."""
    mux, ro = program.multiplexing, program.readout
    problems = []
    if program.backend.in_channels != program.out_channels:
        problems.append(f"channel count: the back end reads {program.backend.in_channels} channels, the optics "
                        f"deliver {program.out_channels}")
    if len(ro.offsets) != mux.per_frame or len(ro.rois) != mux.per_frame:
        problems.append(f"channel count: {mux.per_frame} channels per frame but {len(ro.rois)} camera ROIs")
    rows, cols = bench.camera.resolution
    outside = [k for k, r in enumerate(ro.rois) if r[0] < 0 or r[1] < 0 or r[2] > rows or r[3] > cols]
    if outside:
        problems.append(f"channel count: tiles {outside} lie outside this bench's {rows}x{cols} camera")
    if bench.filter is not None and bench.input is not None:
        geometry = geometry_from_profile(bench.profile.root)
        capacity = tile_capacity(geometry.fourier_grid.shape, ro.tile_shape, program.input.image_shape,
                                 mux.gap, limit=max(mux.per_frame, 1))
        if capacity < mux.per_frame:
            problems.append(
                f"channel count: the program puts {mux.per_frame} tiles of {_fmt(ro.tile_shape)} on a frame; "
                f"this bench's {_fmt(geometry.fourier_grid.shape)} filter grid holds {capacity}")
    return problems


def check_fits(program: Program, bench: Bench) -> None:
    """Raise `ProgramMismatch` listing every misfit of `program` on `bench`."""
    problems = misfits(program, bench)
    if problems:
        raise ProgramMismatch(
            f"program compiled for bench {program.profile!r} does not fit bench {bench.profile.name!r}: "
            + "; ".join(problems), problems)

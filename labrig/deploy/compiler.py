"""Compile a trained student into a bench program.

Every optical decision is the student's own optical path's (`OpticalPath`,
built for the target profile with the student's `OpticsConfig`): the frame
plan (spatial or time multiplexing), the per-frame multiplexed masks and
their normalisation, the double-phase encoding, the SLM quantisation, the
input encoding and the readout scale. So on an ideal bench the program
computes exactly what the student's ``optics_aware`` mode computes (with noise
off), and the twin's prediction for the program is the bench's output.

Compiled through a calibration (``calibration=``), the program is made for the
bench as measured instead: the ideal program's tiles on the training images
are the target, and `labrig.deploy.refine` makes gray levels (measured inverse
LUT, aberrations pre-compensated, optimised through the calibrated twin) whose
tiles on the calibrated twin match them; the ROIs follow the measured camera
geometry, the dark level the measured offset, the exposure and the readout
scale the calibrated twin, and a small per-tile readout correction (a K x K
filter and an offset, `labrig.deploy.correction`) maps what the patterns still
cannot match onto the ideal tiles. No retraining: the back end is the student's.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from labrig.bench import Bench
from labrig.deploy.backend import backend_program, build_backend
from labrig.deploy.calibrated import SOURCE_KEY, CompileCalibration, resolve_calibration
from labrig.deploy.correction import apply_correction, fit_correction, relative_error
from labrig.deploy.errors import ProgramError
from labrig.deploy.exposure import choose_exposures
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images, gray_dtype, make_input_encoding, nearest_level
from labrig.deploy.multiplexing import choose_multiplexing
from labrig.deploy.program import (
    BenchConstraints,
    FilterPatterns,
    Program,
    Readout,
    Reference,
    geometry_to_dict,
    non_finite,
)
from labrig.deploy.readout import TileReader
from labrig.deploy.refine import (
    RefineConfig,
    optimise_filter,
    rois_on_camera,
    tile_centres_on_camera,
)
from labrig.deploy.twin import ProgramTwin
from labrig.distill.checkpoint import non_finite_tensors
from labrig.io import json_default
from labrig.models.errors import ModelConfigError
from labrig.models.optical import OpticalPath, OpticsConfig
from labrig.models.registry import model_config
from labrig.optics.encoding import double_phase, normalise_mask
from labrig.optics.multiplex import TileLayout
from labrig.optics.quantize import nearest_gray_level
from labrig.optics.system import Twin
from labrig.profiles import Profile, load_profile

__all__ = ["DEFAULT_EXPOSURE_FILL", "compile_program", "state_digest", "with_reference"]

DEFAULT_EXPOSURE_FILL = 0.85
#: calibration images the exposure is chosen on (the brightest tile over these)
MAX_CALIBRATION = 512


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _profile_ref(profile: Profile | str | Path) -> Profile | str:
    """What `OpticsConfig.profile` takes: the name or path as given, else the Profile itself."""
    return str(profile) if isinstance(profile, str | Path) else profile


def _profile_label(profile: Profile | str | Path, prof: Profile) -> str:
    """How to name the profile again later (`labrig run` without --profile): as given,
    else the file it came from, else its embedded name."""
    if isinstance(profile, str | Path):
        return str(profile)
    return prof.name if prof.source.startswith("<embedded") else prof.source


def _bench_settings(prof: Profile, optics: OpticsConfig) -> tuple[float, float, tuple[float, float] | None]:
    """Laser power, camera gain and exposure range the profile configures (else the student's)."""
    devices = prof.data.get("devices", {})
    laser = devices.get("laser", {}).get("power_w", optics.laser_power_w)
    camera = devices.get("camera", {})
    bounds = camera.get("exposure_range_s")
    return (float(laser), float(camera.get("gain", optics.gain)),
            None if bounds is None else (float(bounds[0]), float(bounds[1])))


def _filter_gray(masks: torch.Tensor, lut: torch.Tensor, modulation: str, levels: int) -> tuple[np.ndarray, str]:
    """Normalised masks (F, N, N) -> gray levels: double-phase on a phase SLM (as
    `OpticalPath.measure`), |H|² through the intensity LUT on an amplitude SLM."""
    if modulation == "phase":
        # angle() of an exact zero is 0; measure() does the same substitution
        masks = torch.where(masks.abs() > 0, masks, torch.full_like(masks, torch.finfo(lut.dtype).tiny))
        gray = nearest_gray_level(double_phase(masks), lut).numpy()
        encoding = "double_phase"
    else:
        gray = nearest_level(masks.abs().square().numpy(), lut.numpy())
        encoding = "amplitude"
    return gray.astype(gray_dtype(levels)), encoding


def compile_program(
    student: torch.nn.Module,
    profile: Profile | str | Path,
    calibration_images: Any,
    *,
    reference_images: Any = None,
    n_reference: int = 8,
    exposure_fill: float = DEFAULT_EXPOSURE_FILL,
    classes: tuple[str, ...] | list[str] = (),
    source: dict[str, Any] | None = None,
    calibration: Any = None,
    refine: RefineConfig | None = None,
    allow_stale: bool = False,
    bench: Bench | None = None,
) -> Program:
    """A `Program` for `student` (a `StudentModel`) on the bench `profile` describes.

    `calibration_images` (a dataset or (N, H, W) images in [0, 1], the training set)
    set the exposure; the first `n_reference` of them (or `reference_images`) get
    the twin's expected outputs. `source` adds provenance (e.g. the checkpoint path).

    `calibration` (a calibration file, a `calibration.store.Calibration`, or an
    `Imperfections`) compiles for the bench as measured (see the module docstring);
    the store's staleness check runs against `bench` (an open bench) or else the
    profile, unless `allow_stale`. `refine` sets the optimisation (default `RefineConfig()`).
    """
    _check_finite_weights(student)
    front, cfg = student.front, student.config
    detection = front.config.detection
    if detection == "linear":
        raise ProgramError("a student with linear detection cannot run on a bench: a camera measures intensity")
    if front.config.in_channels != 1:
        raise ProgramError(f"the bench shows one input channel; the student has {front.config.in_channels}")
    prof = load_profile(profile)
    optics = cfg.optics or OpticsConfig()
    laser, gain, bounds = _bench_settings(prof, optics)
    try:
        path = OpticalPath(dataclasses.replace(optics, profile=_profile_ref(profile), laser_power_w=laser,
                                               gain=gain), detection).double()
    except ModelConfigError as exc:
        raise ProgramError(f"cannot compile for bench {prof.name}: {exc}") from exc
    geometry = path.geometry
    image_shape = tuple(cfg.input_size)

    with torch.no_grad():
        kernels = path.filter_kernels(front.collapsed_kernels(torch.float64)[:, 0].detach().cpu())
        try:
            plan, mux = choose_multiplexing(path, kernels.shape[0], image_shape, tuple(kernels.shape[-2:]))
        except ModelConfigError as exc:
            raise ProgramError(f"cannot compile for bench {prof.name}: {exc}") from exc
        masks, peak = normalise_mask(path.frame_masks(kernels, plan))
        lut = path.twin.imperfections.slm_lut.detach().to(torch.float64)
        gray, encoding = _filter_gray(masks, lut, geometry.filter.modulation, geometry.filter.levels)
    if encoding == "amplitude":
        mux = dataclasses.replace(mux, reason=mux.reason + "; amplitude SLM: |H| only, the masks' phase is lost")

    layout = plan.layout
    rois = layout.camera_rois(geometry.output_grid, geometry.camera.pitch_m, geometry.camera.resolution)
    program = Program(
        profile=prof.name,
        constraints=BenchConstraints(
            profile=_profile_label(profile, prof),
            slm_resolution=tuple(geometry.filter.resolution), slm_bit_depth=geometry.filter.bit_depth,
            slm_modulation=geometry.filter.modulation,
            input_resolution=tuple(geometry.input.resolution), input_bit_depth=geometry.input.bit_depth,
            camera_resolution=tuple(geometry.camera.resolution), camera_bit_depth=geometry.camera.bit_depth,
            illumination=geometry.illumination,
        ),
        geometry=geometry_to_dict(geometry),
        detection=detection,
        source=json.loads(json.dumps({"kind": "student", "config": model_config(student),
                                      "state_sha256": state_digest(student), **(source or {})},
                                     default=json_default)),
        multiplexing=mux,
        filter=FilterPatterns(
            encoding=encoding, gray=gray, lut=lut.numpy(),
            masks=masks.to(torch.complex64).numpy(), peak=peak.reshape(-1).numpy(),
            kernels=kernels.numpy(),
        ),
        input=make_input_encoding(geometry, image_shape, detection, lut=path.twin.input_modulator.lut.numpy()),
        readout=Readout(
            tile_shape=tuple(layout.tile_shape), offsets=tuple(tuple(o) for o in layout.offsets),
            rois=tuple(tuple(r) for r in rois), exposure_s=(1.0,) * plan.frames, gain=gain,
            laser_power_w=laser, dark_dn=(0.0,) * plan.frames, scale=(1.0,) * plan.frames,
            exposure_fill=float(exposure_fill), exposure_note="", pair_subtract=detection == "incoherent",
        ),
        backend=backend_program(student.back, front.out_channels, cfg.num_classes, classes),
        reference=Reference(np.zeros((0, *image_shape), np.float32), np.zeros((0,), np.float32),
                            np.zeros((0,), np.float32)),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    program = _with_exposure(program, path, calibration_images, bounds)
    if calibration is not None:
        if encoding != "double_phase":
            raise ProgramError("compiling through a calibration needs a phase filter SLM (double-phase masks)")
        if program.readout.pair_subtract:
            raise ProgramError("compiling through a calibration is built for coherent detection: a student with "
                               "signed incoherent kernels reads tile differences, which the refinement and the "
                               "readout correction do not match yet; compile it without --calibration")
        cal = resolve_calibration(calibration, geometry, bench_or_profile=bench if bench is not None else prof,
                                  allow_stale=allow_stale)
        config = refine or RefineConfig()
        if config.bench_readout and bench is None:
            raise ProgramError("measuring the readout correction on the bench (bench_readout) needs an open bench")
        on_bench = _OnBench(bench, calibration, allow_stale) if config.bench_readout else None
        program = _through_calibration(program, path, plan.layout, cal, calibration_images, bounds, config, on_bench)
    program = with_reference(program, calibration_images if reference_images is None else reference_images,
                              n_reference)
    bad = non_finite(program)
    if bad:
        raise ProgramError(f"compiling for bench {prof.name} gave non-finite values (NaN or inf) in "
                           f"{', '.join(bad)}: the student, the calibration or the images are broken")
    return program


def _check_finite_weights(student: torch.nn.Module) -> None:
    """A student with NaN or infinite weights compiles into masks of NaN: refuse it, naming the tensor."""
    bad = non_finite_tensors(student.state_dict())
    if bad:
        raise ProgramError(f"the student's weights are not finite (NaN or inf) in {', '.join(bad)}: "
                           "retrain it or use another checkpoint")


def _peak_tile_power(program: Program, calibration: Any) -> np.ndarray:
    """(F,) the brightest tile pixel's power (W) per frame over the calibration images, as the
    program's twin (ideal or calibrated) predicts it at the program's ROIs."""
    images = ImageSource(calibration, program.input.image_shape, limit=MAX_CALIBRATION)
    if len(images) == 0:
        raise ProgramError("compiling needs calibration images (the training set) to choose the exposure")
    twin, reader = ProgramTwin(program), TileReader(program)
    peak = np.zeros(program.frames)
    frame_of = np.arange(program.multiplexing.channels) // program.multiplexing.per_frame
    for s in range(0, len(images), 64):
        power = reader.cut(twin.camera_power(encode_images(program.input, images.batch(s, s + 64))))
        per_channel = power.max(axis=(0, 2, 3))
        np.maximum.at(peak, frame_of, per_channel)
    return peak


def _with_exposure(program: Program, path: OpticalPath, calibration: Any,
                   bounds: tuple[float, float] | None) -> Program:
    """Exposures from the twin's brightest tile over the calibration images, and the
    readout constants that go with them (`OpticalPath.dark_dn` / `dn_per_unit`)."""
    peak = _peak_tile_power(program, calibration)
    ro = program.readout
    exposures, note = choose_exposures(peak, path.geometry, ro.gain, ro.exposure_fill, bounds)
    peaks = program.filter.peak
    with torch.no_grad():
        dark = tuple(float(path.dark_dn(e)) for e in exposures)
        scale = tuple(float(p**2 / path.dn_per_unit(torch.float64, torch.device("cpu"), e))
                      for p, e in zip(peaks, exposures, strict=True))
    readout = dataclasses.replace(ro, exposure_s=exposures, dark_dn=dark, scale=scale, exposure_note=note)
    return dataclasses.replace(program, readout=readout)


def with_reference(program: Program, images: Any, n: int | None = None) -> Program:
    """`program` with its reference remade: the twin's expected back-end input and logits for
    the first `n` of `images` (all when None). Whoever changes a program's masks, readout or
    back end (the compiler, in-situ fine-tuning) calls this so the program's self-check
    (`labrig run --twin`, the console's reference view) describes the program as it now is."""
    source = ImageSource(images, program.input.image_shape, limit=n)
    x = source.batch(0, len(source))
    raw = TileReader(program).cut(ProgramTwin(program).frames(encode_images(program.input, x)))
    tiles = TileReader(program).signal(raw).astype(np.float32)
    with torch.no_grad():
        logits = build_backend(program.backend)(torch.from_numpy(tiles)).numpy()
    return dataclasses.replace(program, reference=Reference(x.astype(np.float32), tiles, logits))


def _through_calibration(program: Program, path: OpticalPath, layout: TileLayout, cal: CompileCalibration,
                         calibration: Any, bounds: tuple[float, float] | None, config: RefineConfig,
                         on_bench: _OnBench | None = None) -> Program:
    """The ideal `program` remade for the calibrated bench (see the module docstring); `on_bench`:
    the readout correction is fitted on the bench's frames instead of the calibrated twin's."""
    geometry = path.geometry
    # Module.to converts in place: each twin gets its own copy of the calibrated values
    twin = Twin(geometry, copy.deepcopy(cal.imperfections).to(torch.float64), dtype=torch.float64)
    with torch.no_grad():
        twin.input_modulator.lut.copy_(torch.as_tensor(program.input.lut))
    centres = tile_centres_on_camera(twin, layout)
    rois, residual = rois_on_camera(centres, tuple(program.readout.tile_shape))
    rows, cols = geometry.camera.resolution
    outside = [k for k, r in enumerate(rois) if r[0] < 0 or r[1] < 0 or r[2] > rows or r[3] > cols]
    if outside:
        raise ProgramError(f"with the calibrated camera geometry tiles {outside} fall off the {rows}x{cols} camera")
    probes = ImageSource(calibration, program.input.image_shape,
                         limit=max(config.probes, config.readout_probes if config.readout_kernel else 0))
    gray_all = encode_images(program.input, probes.batch(0, len(probes)))
    ideal_reader = TileReader(program)
    target_all = ideal_reader.signal(ideal_reader.cut(ProgramTwin(program).frames(gray_all)), np.float64)
    gray_in, target = gray_all[: config.probes], target_all[: config.probes]
    fast = Twin(geometry, copy.deepcopy(cal.imperfections).to(torch.float32), dtype=torch.float32)
    with torch.no_grad():
        fast.input_modulator.lut.copy_(torch.as_tensor(program.input.lut))
        amplitude = fast.input_amplitude(torch.from_numpy(gray_in.astype(np.int64)))[:, None]
    gray, report = optimise_filter(
        fast, torch.from_numpy(program.filter.kernels), layout, program.multiplexing.per_frame,
        torch.from_numpy(program.filter.peak), torch.from_numpy(program.filter.gray.astype(np.int64)),
        amplitude, torch.from_numpy(target), rois, residual, program.readout.laser_power_w, config)
    lut = cal.imperfections.slm_lut.detach().to(torch.float64)
    lineage = {**cal.lineage, "refine": report.as_dict(),
               "tile_centres_px": [[round(v, 4) for v in c] for c in centres.tolist()]}
    calibrated = dataclasses.replace(
        program,
        source={**program.source, SOURCE_KEY: json.loads(json.dumps(lineage, default=json_default))},
        filter=dataclasses.replace(program.filter, encoding=f"double_phase ({report.encoding} pairs) optimised "
                                   "through the calibrated twin",
                                   gray=gray.numpy().astype(program.filter.gray.dtype), lut=lut.numpy()),
        readout=dataclasses.replace(program.readout, rois=tuple(tuple(r) for r in rois)),
    )
    calibrated = _calibrated_readout(calibrated, twin, calibration, bounds, gray_in, target)
    if not config.readout_kernel:
        return calibrated
    n = config.readout_probes
    return _with_correction(calibrated, gray_all[:n], target_all[:n], config.readout_kernel,
                            None if on_bench is None else (on_bench, probes.batch(0, n)), mix=config.readout_mix)


class _OnBench(NamedTuple):
    """The open bench a readout correction is measured on, and the calibration it runs with."""

    bench: Bench
    calibration: Any
    allow_stale: bool


def _bench_tiles(on_bench: _OnBench, program: Program, images: np.ndarray) -> tuple[np.ndarray, int]:
    """(B, T, th, tw) the bench's tiles for `images` in student units (the program as compiled, no
    correction), and the frames it took. The run's own guards apply: no frame without light is data.
    The frames are registered to the twin first (drift tracking from the first chunk), as every
    tracked run's are: a correction fitted on unregistered frames would learn the bench's drift
    since the calibration as blur, and a run that re-registers would then undo that shift twice."""
    from labrig.deploy.run import run_program  # the runner imports the compiler's package
    from labrig.deploy.track import DriftConfig

    result = run_program(on_bench.bench, program, images, None, progress=False, resume=False, save_tiles=True,
                         calibration=on_bench.calibration, allow_stale=on_bench.allow_stale, drift=DriftConfig())
    if result.tiles is None or len(result.tiles) != len(images):
        raise ProgramError(f"the bench gave tiles for {0 if result.tiles is None else len(result.tiles)} of "
                           f"{len(images)} readout probes")
    return TileReader(program).signal(result.tiles, np.float64), int(result.frames)


def _with_correction(program: Program, gray_in: np.ndarray, target: np.ndarray, kernel: int,
                     bench: tuple[_OnBench, np.ndarray] | None = None, *, mix: bool) -> Program:
    """`program` with the per-tile readout correction (`labrig.deploy.correction`) fitted on the first
    three quarters of the probes and kept only if it brings the held-back quarter closer to the
    ideal tiles; then refitted on them all. The tiles it corrects are the calibrated twin's, or,
    with `bench` (an open bench and the probe images), the bench's own. The errors go into the
    calibration lineage."""
    frames = 0
    if bench is None:
        reader = TileReader(program)
        measured = reader.signal(reader.cut(ProgramTwin(program).frames(gray_in)), np.float64)
    else:
        measured, frames = _bench_tiles(bench[0], program, bench[1])
    fit = max(1, (3 * len(measured)) // 4)
    before = relative_error(measured[fit:], target[fit:])
    trial = fit_correction(measured[:fit], target[:fit], kernel, mix=mix)
    with torch.no_grad():
        corrected = apply_correction(torch.from_numpy(measured[fit:]), trial).numpy()
    after = relative_error(corrected, target[fit:])
    lineage = dict(program.source[SOURCE_KEY])
    lineage["readout_correction"] = {"kernel": kernel, "mix": mix, "probes": len(measured),
                                     "held_back": len(measured) - fit,
                                     "tiles": "calibrated twin" if bench is None else "bench", "frames": frames,
                                     "error_before": round(before, 5), "error_after": round(after, 5),
                                     "kept": bool(after < before)}
    source = {**program.source, SOURCE_KEY: lineage}
    if not after < before:
        return dataclasses.replace(program, source=source)
    correction = fit_correction(measured, target, kernel, mix=mix)
    return dataclasses.replace(program, source=source,
                               readout=dataclasses.replace(program.readout, correction=correction))


def _calibrated_readout(program: Program, twin: Twin, calibration: Any, bounds: tuple[float, float] | None,
                        gray_in: np.ndarray, target: np.ndarray) -> Program:
    """Exposure from the calibrated twin's brightest tile; the dark level from the measured
    offset (and the camera's dark current); the scale per frame that maps the calibrated
    twin's tiles (DN above dark) onto the ideal program's on the probe images (least squares)."""
    ro, mux = program.readout, program.multiplexing
    exposures, note = choose_exposures(_peak_tile_power(program, calibration), twin.geometry, ro.gain,
                                       ro.exposure_fill, bounds)
    imp = twin.imperfections
    with torch.no_grad():
        dark = tuple(float(twin.camera.to_dn(twin.camera.mean_electrons(torch.zeros((), dtype=torch.float64), e),
                                             ro.gain, imp.camera_gain, imp.camera_offset_dn)) for e in exposures)
    program = dataclasses.replace(program, readout=dataclasses.replace(
        ro, exposure_s=exposures, dark_dn=dark, scale=(1.0,) * program.frames,
        exposure_note=note + "; through the calibrated twin"))
    reader = TileReader(program)
    measured = reader.signal(reader.cut(ProgramTwin(program).frames(gray_in)), np.float64)  # DN above dark
    frame_of = np.arange(mux.channels) // mux.per_frame
    scale = []
    for f in range(program.frames):
        d, y = measured[:, frame_of == f], target[:, frame_of == f]
        den = float(np.square(d).sum())
        if den <= 0:
            raise ProgramError(f"frame {f}: the calibrated twin puts no light on its tiles")
        scale.append(float((d * y).sum() / den))
    return dataclasses.replace(program, readout=dataclasses.replace(program.readout, scale=tuple(scale)))

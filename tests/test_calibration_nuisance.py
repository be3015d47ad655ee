"""Nuisance terms (pupil beyond the twin's Zernike set), clipping read from frames, the session
carrying a routine's nuisance terms to the next, the illumination envelope modes, and the
accuracy benchmark's gauge-invariant scores."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from calibration.base import CalibrationError, Routine, RoutineResult
from calibration.illumination import IlluminationRoutine
from calibration.nuisance import (
    APODISATION,
    OUTPUT_ENVELOPE,
    PUPIL_MODES,
    carried,
    nuisance_terms,
    nuisance_values,
    pupil_basis,
    with_nuisance,
)
from calibration.probe import SATURATED_FRACTION, Probe, clip_level
from calibration.session import MODULES, ROUTINES, calibrate
from calibration.twinfit import camera_power, working_twin
from labrig.bench import Bench
from labrig.geometry import geometry_from_profile
from labrig.optics.aberrations import pupil_coordinates, zernike_basis
from labrig.optics.imperfections import Imperfections
from labrig.optics.system import Twin
from tests.cal_helpers import small_profile, small_truth, truth_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _twin(bench: Bench, **values) -> Twin:
    geo = geometry_from_profile(bench.profile.root)
    return Twin(geo, Imperfections(geo, dtype=torch.float64, **values), dtype=torch.float64)


def test_nuisance_modes_are_orthogonal_to_the_twins_terms(tmp_path: Path) -> None:
    """The nuisance modes leave the named terms the projection of the whole pupil phase:
    orthonormal among themselves, orthogonal to piston, tilt and the six named terms."""
    with Bench.open(small_profile(tmp_path, False)) as bench:
        twin = _twin(bench)
        basis = pupil_basis(twin).reshape(-1, 64 * 64).numpy()
        grid = twin.geometry.fourier_grid
        rho, theta = pupil_coordinates(grid)
        y, x = grid.mesh(torch.float64)
        fixed = torch.cat([torch.ones(1, *rho.shape, dtype=torch.float64), y[None], x[None],
                           zernike_basis(rho, theta)]).reshape(9, -1).numpy()
    assert basis.shape[0] == len(nuisance_terms(6)) == 19
    gram = basis @ basis.T / basis.shape[1]
    assert np.allclose(gram, np.eye(len(gram)), atol=1e-9)
    assert np.abs(basis @ fixed.T).max() / basis.shape[1] < 1e-9


def test_nuisance_twin_is_the_twin_until_its_terms_move(tmp_path: Path) -> None:
    with Bench.open(small_profile(tmp_path, small_truth(2))) as bench:
        truth = truth_of(bench)
        twin = _twin(bench, zernike_rad=truth.zernike_rad.clone())
        inp = np.zeros((16, 16), dtype=np.uint8)
        inp[8, 8] = 255
        flat = np.zeros((64, 64), dtype=np.uint8)
        plain = camera_power(twin, inp, flat)
        work = with_nuisance(working_twin(twin))
        assert torch.allclose(camera_power(work, inp, flat), plain, rtol=1e-12, atol=1e-30)
        assert nuisance_values(work)[APODISATION] == 0.0
        getattr(work.imperfections, PUPIL_MODES).data[0] = 0.5
        moved = camera_power(work, inp, flat)
        assert float((moved - plain).abs().max()) > 1e-2 * float(plain.abs().max())
        getattr(work.imperfections, OUTPUT_ENVELOPE).data.fill_(0.5)
        assert float(camera_power(work, inp, flat).sum()) < float(moved.sum())
        # the twin's own parameters only: a copy of a nuisance twin is the plain twin again
        assert torch.allclose(camera_power(working_twin(work), inp, flat), plain, rtol=1e-12, atol=1e-30)


def test_clip_level_is_read_from_the_frame() -> None:
    rng = np.random.default_rng(0)
    frame = np.round(rng.normal(2000, 15, (64, 64)))
    assert clip_level(frame, 4095) == 4095  # a noisy bright frame: its maximum is no clip
    frame[:8, :8] = 3870  # a sensor's full well, below the ADC's full scale
    assert clip_level(frame, 4095) == 3870
    dim = np.round(rng.normal(40, 1, (64, 64)))  # a dim frame's equal maxima are noise
    assert clip_level(dim, 4095) == 4095
    frame[0, 0] = 4095
    assert clip_level(frame, 4095) == 4095


def test_probe_refuses_a_frame_clipped_below_full_scale(tmp_path: Path) -> None:
    with Bench.open(small_profile(tmp_path, False)) as bench, Probe(bench, "t") as probe:
        probe.remember_dark(float(bench.camera.exposure_s), np.full((64, 64), 32.0), 1.0)
        frame = np.full((1, 64, 64), 100.0)
        frame[0, :4, :4] = 3870  # 16 px: above SATURATED_FRACTION of 4096
        assert 16 / 4096 > SATURATED_FRACTION
        with pytest.raises(CalibrationError, match="clips below the ADC full scale"):
            probe.check_frames(frame)
        probe.check_frames(frame, allow_saturated=True)


class _Leaves(Routine):
    name, title, estimates = "leaves_nuisance", "leaves nuisance terms", ()

    def run(self, bench, twin, *, progress=None, cancel=None):
        return RoutineResult(self.name, {}, 0.0, "-", 0, products={PUPIL_MODES: [0.1, 0.2], APODISATION: 0.3})


class _Reads(Routine):
    name, title, estimates, after = "reads_nuisance", "reads nuisance terms", (), ("leaves_nuisance",)
    seen: ClassVar[dict] = {}

    def run(self, bench, twin, *, progress=None, cancel=None):
        _Reads.seen = carried(twin)
        return RoutineResult(self.name, {}, 0.0, "-", 0)


def test_session_carries_nuisance_terms_to_later_routines(tmp_path: Path) -> None:
    registry = {"leaves_nuisance": _Leaves, "reads_nuisance": _Reads}
    with Bench.open(small_profile(tmp_path, False)) as bench:
        cal = calibrate(bench, "all", registry=registry)
        assert _Reads.seen[APODISATION] == 0.3 and list(_Reads.seen[PUPIL_MODES]) == [0.1, 0.2]
        _Reads.seen = {}
        calibrate(bench, ["reads_nuisance"], previous=cal, registry=registry)  # from a previous file's results
        assert _Reads.seen[APODISATION] == 0.3


def test_reregister_is_registered_but_not_in_all() -> None:
    from calibration.session import plan

    assert MODULES[-1] == "calibration.reregister" and "reregister" in ROUTINES
    assert "reregister" not in plan("all") and plan(["reregister"])[-1] == "reregister"


def test_illumination_envelope_modes(tmp_path: Path) -> None:
    """On a bench without the SLM's pixel envelope (unmodelled truth off) the datasheet's envelope
    reads the beam too wide; ``envelope="none"`` is within the 5 % / 20 um tolerance."""
    with pytest.raises(ValueError, match="envelope"):
        IlluminationRoutine(envelope="guess")
    with Bench.open(small_profile(tmp_path, small_truth(1))) as bench:
        truth = truth_of(bench)
        keep = ("input_shift_px", "input_rotation_rad", "camera_shift_px", "camera_rotation_rad", "camera_scale",
                "zernike_rad", "slm_lut", "slm_crosstalk_px", "filter_shift_px", "camera_gain", "camera_offset_dn")
        twin = _twin(bench, **{n: getattr(truth, n).clone() for n in keep})
        result = IlluminationRoutine(envelope="none", contrast=False).run(bench, twin)
        waist = result.values["illumination_waist_m"]
        assert abs(waist / float(truth.illumination_waist_m) - 1) <= 0.05
        centre = np.asarray(result.values["illumination_center_m"])
        assert np.abs(centre - truth.illumination_center_m.numpy()).max() <= 20e-6
        assert "output envelope: none" in result.notes


def test_benchmark_scores_are_gauge_invariant(tmp_path: Path) -> None:
    """Moving the input by d px, the camera by -M d and the beam by d p changes no frame: the
    benchmark's image translation and beam-on-modulator rows are the same, and exact at the truth."""
    import calibration_accuracy as ca

    with Bench.open(small_profile(tmp_path, small_truth(3))) as bench:
        world = bench.shared["sim.world"]
        truth = world.truth.imperfections
        est = {n: getattr(truth, n).detach().clone() for n in ("input_shift_px", "camera_shift_px", "camera_scale",
                                                               "illumination_center_m", "zernike_rad")}
        rows = ca.identifiable_rows(est, truth, world)
        assert all(r["error"] < 1e-9 for r in rows)
        geo = world.geometry
        m = geo.input.pitch_m * geo.focal2_m / geo.focal1_m / geo.camera.pitch_m / float(truth.camera_scale)
        d = torch.tensor([0.37, -0.6], dtype=torch.float64)
        moved = {**est, "input_shift_px": est["input_shift_px"] + d, "camera_shift_px": est["camera_shift_px"] - m * d,
                 "illumination_center_m": est["illumination_center_m"] + d * geo.input.pitch_m}
        assert all(r["error"] < 1e-9 for r in ca.identifiable_rows(moved, truth, world))
        assert any(r["error"] > 0.3 for r in ca.score(moved, truth) if r["parameter"].startswith("input_shift"))
        off = {**est, "zernike_rad": est["zernike_rad"] + 0.1}
        assert all(math.isclose(r["error"], 0.1, rel_tol=1e-6) for r in ca.identifiable_rows(off, truth, world)
                   if r["parameter"].startswith("zernike"))

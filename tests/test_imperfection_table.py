"""The one declaration of the imperfections: the twin, the simulator's [truth] and
calibration all read it; drawn truths cover every entry; estimates go into a twin."""

from __future__ import annotations

import math

import pytest
import torch
from cal_helpers import small_profile, small_truth, truth_of

from drivers.errors import ConfigError
from labrig.bench import Bench, load_profile
from labrig.geometry import geometry_from_profile
from labrig.optics.imperfections import (
    BY_NAME,
    NAMES,
    PROFILE_KEYS,
    TABLE,
    Imperfections,
    apply_values,
)
from sim_backend.draw import draw_truth
from sim_backend.truth import read_truth


def _geometry():
    return geometry_from_profile(load_profile("sim").root)


def test_table_builds_every_parameter_of_the_twin() -> None:
    imp = Imperfections.ideal(_geometry())
    assert set(imp.tensors()) == set(NAMES)
    for entry in TABLE:
        assert entry.routine, f"{entry.name} names no estimating routine"
        value = getattr(imp, entry.name)
        if entry.trainable:
            assert tuple(value.shape) == entry.expected_shape(_geometry())


def test_sim_truth_is_read_through_the_table_with_unit_conversions() -> None:
    root = load_profile("sim").root
    truth = read_truth(root, geometry_from_profile(root)).imperfections
    assert truth.camera_rotation_rad.item() == pytest.approx(math.radians(0.4))
    assert truth.camera_gain.item() == pytest.approx(1.04)
    assert truth.camera_offset_dn.item() == pytest.approx(6.0)
    assert truth.zernike_rad[0].item() == pytest.approx(0.4)
    assert truth.slm_lut[-1].item() == pytest.approx(6.0 * (255 / 256) ** 1.12)
    assert int((truth.hot_pixels_e_per_s > 0).sum()) > 0


def test_truth_typo_is_named(tmp_path) -> None:
    path = small_profile(tmp_path, {"camera_shift_pz": [0.1, 0.0]})
    with pytest.raises(ConfigError, match=r"truth\.camera_shift_pz"):
        Bench.open(path)


def test_drawn_truths_set_every_key_and_differ_by_seed(tmp_path) -> None:
    a, b = draw_truth(1), draw_truth(2)
    assert set(PROFILE_KEYS) <= set(a)
    assert a != b and draw_truth(1) == a
    with Bench.open(small_profile(tmp_path, small_truth(5))) as bench:
        truth = truth_of(bench)
        drawn = small_truth(5)
        assert truth.camera_scale.item() == pytest.approx(drawn["camera_scale"], rel=1e-6)
        assert truth.slm_crosstalk_px.item() == pytest.approx(drawn["slm_crosstalk_px"], rel=1e-6)


def test_apply_values_writes_estimates_and_refuses_bad_ones() -> None:
    geometry = _geometry()
    imp = Imperfections.ideal(geometry)
    apply_values(imp, {"camera_shift_px": [0.5, -0.25], "camera_gain": 1.02,
                       "hot_pixels_e_per_s": torch.ones(geometry.camera.resolution)})
    assert imp.camera_shift_px.tolist() == [0.5, -0.25]
    assert imp.camera_gain.item() == pytest.approx(1.02)
    assert imp.hot_pixels_e_per_s.sum().item() == geometry.camera.resolution[0] * geometry.camera.resolution[1]
    with pytest.raises(ValueError, match=r"camera_shift_px.*shape"):
        apply_values(imp, {"camera_shift_px": [1.0]})
    with pytest.raises(ValueError, match="unknown imperfection"):
        apply_values(imp, {"camera_shfit_px": [1.0, 0.0]})
    with pytest.raises(ValueError, match="not finite"):
        apply_values(imp, {"camera_gain": float("nan")})
    assert BY_NAME["slm_lut"].routine == "slm_lut"


def test_routines_estimate_what_the_table_says() -> None:
    """Each registered routine writes only declared imperfections, and the routine the table names
    for an imperfection (when it exists) does estimate it: the table and the routines agree."""
    from calibration.session import ROUTINES

    for name, cls in ROUTINES.items():
        assert set(cls.estimates) <= set(NAMES), f"routine {name} estimates undeclared {set(cls.estimates) - set(NAMES)}"
    for entry in TABLE:
        if entry.routine in ROUTINES:
            assert entry.name in ROUTINES[entry.routine].estimates, (
                f"the table says {entry.routine!r} estimates {entry.name!r}, but it does not")
